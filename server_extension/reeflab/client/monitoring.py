"""Monitoring from Python: the platform's status for you; per deployment see `Deployment.metrics()`/`drift()`."""

from __future__ import annotations

from typing import Any

from .connection import Connection, default_connection


def status(connection: Connection | None = None) -> dict[str, Any]:
    """What you run now (`running`: deployments, jobs, pipelines, checks), what it holds (`held`: cpu,
    memory_MB, gpu) and what your server's machine has free (`machine`: cpu, memory_MB, gpus); in kubernetes
    mode the pods of your namespace instead (`namespace`: pods with their requests, `requested`)."""
    return (connection or default_connection()).get("status")


def platform_status(connection: Connection | None = None) -> dict[str, Any]:
    """Hub admins: what each user runs (`users`: running, servers) and the platform's free capacity (`machine`, or
    `cluster` in kubernetes mode), from the usage service; others get a ReefLabClientError (403)."""
    return (connection or default_connection()).get("platform", "status")


def platform_usage(since: int = 86400, step: int = 3600, connection: Connection | None = None) -> dict[str, Any]:
    """Hub admins: each user's CPU-hours, GPU-hours, requests and peak memory over the last `since` seconds, in
    total and in `step` second buckets (a whole number of hours): `{"users": {name: {..., "buckets": [...]}}}`."""
    return (connection or default_connection()).get("platform", "usage", since=since, step=step)


def prometheus_text(connection: Connection | None = None) -> str:
    """Your deployments' metrics in Prometheus' text format (what an operator's Prometheus scrapes)."""
    connection = connection or default_connection()
    response = connection.session.get(connection.api_url("metrics"), timeout=connection.timeout)
    response.raise_for_status()
    return response.text
