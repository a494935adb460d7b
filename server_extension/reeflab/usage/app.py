"""`python -m reeflab.usage`: the usage service, the hub-managed service `reeflab-usage` (local mode).

It runs under the platform's account, not a user's: every `--interval` seconds (60) it samples what each hub
user's processes use (sampler.py) and keeps per-user, per-hour rows in `<state-dir>/usage.sqlite` (kept across
restarts). Hub admins only (others: 403), with `Authorization: token <hub token>`:
- GET usage?since=<seconds back, 86400>&step=<seconds, a multiple of 3600>: CPU-hours, GPU-hours, requests and
  peak memory of each user, in total and in `step` buckets;
- GET status: what each user runs now (their deployments, jobs, pipelines, checks, and their server) and what
  this machine has free (CPUs, memory, GPUs).

With --kubernetes (the hub's account in the cluster): GET status answers from the cluster (each user namespace's
pods and requests, the nodes' free capacity); nothing is sampled, GET usage says so (501).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Bool, Float, Unicode

from .._version import __version__
from ..errors import BadRequest, Forbidden
from ..monitoring.status import machine_status, runs_status
from ..service_app import Caller, Callers, HubServiceApp, ServiceHandler
from .sampler import Sampler, active_runs
from .store import HOUR, UsageStore

log = logging.getLogger("reeflab.usage")
MAX_SINCE = 366 * 86400


class Hub:
    """The hub's users (names, admin, servers), asked with the service's own token."""

    def __init__(self) -> None:
        self.url = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        self.token = os.environ.get("JUPYTERHUB_API_TOKEN", "")

    async def users(self) -> list[dict[str, Any]]:
        if not self.url:
            return []
        request = HTTPRequest(f"{self.url}/users", headers={"Authorization": f"token {self.token}"}, request_timeout=30)
        response = await AsyncHTTPClient().fetch(request)
        return json.loads(response.body)


class Usage:
    def __init__(self, store: UsageStore, sampler: Sampler, hub: Hub, interval: float, kubernetes: bool = False):
        self.store, self.sampler, self.hub, self.interval = store, sampler, hub, interval
        self.kubernetes = kubernetes
        self._api: Any = None

    async def sample_once(self) -> None:
        names = [user["name"] for user in await self.hub.users()]
        usage, requests = await asyncio.to_thread(self.sampler.sample, names)
        await asyncio.to_thread(self.store.add, time.time(), usage, requests)

    async def run(self) -> None:
        while True:
            try:
                await self.sample_once()
            except Exception:  # noqa: BLE001 - a failed sample (hub restarting) must not end the sampling
                log.exception("usage sample failed")
            await asyncio.sleep(self.interval)

    async def status(self) -> dict[str, Any]:
        if self.kubernetes:
            from ..kube import connect_api
            from ..monitoring.kube_status import platform_status

            if self._api is None:
                self._api = await connect_api()
            return await platform_status(self._api)
        users = []
        for user in await self.hub.users():
            runs = await asyncio.to_thread(active_runs, self.sampler.home(user["name"]))
            entry = runs_status(user["name"], runs)
            entry["admin"] = bool(user.get("admin"))
            entry["servers"] = {
                name or "default": {"ready": bool(server.get("ready")), "started": server.get("started")}
                for name, server in (user.get("servers") or {}).items()
            }
            users.append(entry)
        return {"users": users, "machine": await asyncio.to_thread(machine_status)}


class UsageHandler(ServiceHandler):
    def initialize(self, usage: Usage, callers: Callers) -> None:
        self.usage, self.callers = usage, callers
        self.caller = Caller()

    async def prepare(self) -> None:
        await super().prepare()
        if self.caller.user is not None and not self.caller.admin:
            raise Forbidden("Only hub admins see the platform's usage.")

    def seconds(self, name: str, default: float, minimum: float, maximum: float) -> float:
        raw = self.get_argument(name, str(default))
        try:
            value = float(raw)
        except ValueError:
            raise BadRequest(f"'{name}' must be a number of seconds, not {raw!r}.") from None
        if not minimum <= value <= maximum:
            raise BadRequest(f"'{name}' must be between {minimum:.0f} and {maximum:.0f} seconds, not {raw}.")
        return value


class UsageRowsHandler(UsageHandler):
    async def get(self) -> None:
        if self.usage.kubernetes:
            message = "Usage over time is sampled in local mode only; in kubernetes mode read the cluster's metrics."
            self.reply(501, {"message": message})
            return
        since = self.seconds("since", 86400, 1, MAX_SINCE)
        step = self.seconds("step", HOUR, HOUR, MAX_SINCE)
        if step % HOUR:
            raise BadRequest(f"'step' must be a whole number of hours (a multiple of {HOUR}), not {step:g}.")
        rows = await asyncio.to_thread(self.usage.store.rows, time.time() - since, step)
        self.reply(200, rows)


class StatusHandler(UsageHandler):
    async def get(self) -> None:
        self.reply(200, await self.usage.status())


def routes(base_url: str, **context: Any) -> list:
    return [(f"{base_url}usage", UsageRowsHandler, context), (f"{base_url}status", StatusHandler, context)]


class UsageApp(HubServiceApp):
    name = "reeflab-usage"
    default_port = 8098
    version = __version__
    description = "ReefLab's usage service: each user's usage over time and the platform's status, for admins"
    aliases = {"ip": "UsageApp.ip", "port": "UsageApp.port", "base-url": "UsageApp.base_url"}
    aliases |= {"state-dir": "UsageApp.state_dir", "interval": "UsageApp.interval"}
    aliases |= {"homes": "UsageApp.homes_dir", "engine-db": "UsageApp.engine_db"}
    flags = {"kubernetes": ({"UsageApp": {"kubernetes": True}}, "Status from the cluster; no sampling")}

    state_folder = "usage"  # usage.sqlite
    interval = Float(60, config=True, help="Seconds between samples")
    homes_dir = Unicode("", config=True, help="Users' homes (<homes>/<user>): their deployments' request counts")
    engine_db = Unicode("", config=True, help="The serverless engine's engine.sqlite: its services' calls")
    kubernetes = Bool(False, config=True, help="Status from the cluster (the hub's account); no sampling")

    async def serve(self) -> None:
        state = self.private_state()  # other users' usage: read through the API by admins only
        sampler = Sampler(
            Path(self.homes_dir) if self.homes_dir else None, Path(self.engine_db) if self.engine_db else None
        )
        usage = Usage(UsageStore(state / "usage.sqlite"), sampler, Hub(), self.interval, self.kubernetes)
        log.info(
            "ReefLab usage at http://%s:%s%s (every %ss; state in %s)",
            self.ip,
            self.port,
            self.base_url,
            self.interval,
            state,
        )
        sampling = asyncio.create_task(usage.run() if not self.kubernetes else asyncio.Event().wait())
        app = web.Application(routes(self.base_url, usage=usage, callers=self.callers()), xsrf_cookies=False)
        await self.serve_until_stopped(app)
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        usage.store.close()
        if usage._api is not None:
            await usage._api.close()


def main() -> None:
    UsageApp.launch_instance()
