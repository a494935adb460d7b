"""Monitoring of deployments: request metrics (JSON and Prometheus' text format) and drift settings/results."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from prometheus_client import CONTENT_TYPE_LATEST
from tornado import web

from ..kube import KubernetesClient
from ..monitoring.kube_status import user_namespace_status
from ..monitoring.models import DriftRequest
from ..monitoring.status import machine_status, user_status
from .base import ReefLabHandler
from .deployments import DeploymentsBase


class DeploymentMetricsHandler(DeploymentsBase):
    """GET ?since=<seconds>&step=<seconds>: a deployment's requests, errors, items and latency percentiles,
    in total and over time, and its drift state."""

    @web.authenticated
    @authorized
    async def get(self, deployment_id: str) -> None:
        since = self.int_argument("since", 3600, 60, 90 * 86400)
        step = self.int_argument("step", max(1, since // 60), 1, since)
        self.write_json(self.services.monitoring.metrics(self.username, deployment_id, since, step))


class DriftHandler(DeploymentsBase):
    """GET: drift settings, evaluations (statistic, p-value) and events. PUT: turn drift detection on or off."""

    @web.authenticated
    @authorized
    async def get(self, deployment_id: str) -> None:
        self.write_json(self.services.monitoring.drift(self.username, deployment_id))

    @web.authenticated
    @authorized
    async def put(self, deployment_id: str) -> None:
        request = self.parse_body(DriftRequest, "drift settings")
        self.write_json(await self.services.monitoring.configure_drift(self.username, deployment_id, request))


class PrometheusHandler(DeploymentsBase):
    """GET: your deployments' and serverless services' metrics in Prometheus' text format (scrape with
    `Authorization: token <yours>`)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        serverless = await self.run_blocking(self.services.serverless.owned_metrics)
        text = self.services.monitoring.prometheus(self.username, serverless)
        self.finish(text, set_content_type=CONTENT_TYPE_LATEST)


class StatusHandler(ReefLabHandler):
    """GET /reeflab/api/status: what you run now (deployments, jobs, pipelines, checks), what it holds, and
    what this machine has free (CPUs, memory, GPUs); in kubernetes mode, the pods of your namespace instead."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        status = user_status(self.username, self.services.runs)
        backend = self.services.deployments.backend
        if isinstance(backend, KubernetesClient):  # kubernetes mode: the pods in your namespace, from the cluster
            status["namespace"] = await user_namespace_status(backend)
        else:  # local mode: the machine your server runs on
            status["machine"] = await self.run_blocking(machine_status)
        self.write_json(status)


class PlatformStatusHandler(ReefLabHandler):
    """GET /reeflab/api/platform/status, for hub admins: what each user runs, their servers, and the platform's
    free CPU, memory and GPUs, as the usage service answers this server's token (others: its 403)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.services.platform.status())


class PlatformUsageHandler(ReefLabHandler):
    """GET /reeflab/api/platform/usage?since=<seconds, 86400>&step=<seconds, 3600>, for hub admins: each user's
    CPU-hours, GPU-hours, requests and peak memory, in total and per step, from the usage service."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        since = self.int_argument("since", 86400, 3600, 366 * 86400)
        step = self.int_argument("step", 3600, 3600, 366 * 86400)
        self.write_json(await self.services.platform.usage(since, step))
