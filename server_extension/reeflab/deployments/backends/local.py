"""Deployments as local DEEPaaS processes, one per deployment, under the user's identity, each
serving on a Unix socket in its private folder (reeflab.deployments.serve) rather than a TCP port."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
from pathlib import Path

from jupyter_server_proxy.unixsock import UnixResolver
from tornado.httpclient import HTTPClientError
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from traitlets import Float, Unicode

from ...errors import Conflict
from ...limits import Cgroup, memory_limit_for, out_of_memory, pss_of
from ...processes import cgroup_of, cpu_set, running, socket_path, spawn, stop_group, tail_lines
from .. import HEALTH_CHECK_HEADER
from ..models import Deployment, storage_env
from .base import BackendStatus, DeploymentBackend, Endpoint

LOG_FILE = "deepaas.log"
BEFORE_SOCKETS = "it was started by an older ReefLab, on a TCP port any local process could call: restart it"


async def answers(socket: str, path: str = "/v2/models/", timeout: float = 2) -> bool:
    """Whether DEEPaaS answers GET `path` with 200 on its Unix socket (as the proxy route reaches it)."""
    client = SimpleAsyncHTTPClient(force_instance=True, resolver=UnixResolver(socket))
    try:
        response = await client.fetch(
            f"http://localhost{path}", headers={HEALTH_CHECK_HEADER: "1"}, request_timeout=timeout, raise_error=False
        )
        return response.code == 200
    except (OSError, HTTPClientError):
        return False
    finally:
        client.close()


class LocalProcessBackend(DeploymentBackend):
    """DEEPaaS (deepaas-run's app, reeflab.deployments.serve) on a Unix socket of mode 0600 in the
    deployment's private folder, in its own session, working dir and log file: only its owner's
    processes, such as the authenticated route of their Jupyter server, can call it.

    Hardware is applied as far as one machine allows: CPU affinity and thread counts from the
    CPU share, `CUDA_VISIBLE_DEVICES` from the GPU count, and a cgroup per deployment whose CPU quota and
    memory limit (`memory_limit_for` its memory_MB) the kernel enforces; where no cgroup can be made, a
    watchdog on its proportional set size. Running out of memory is reported as the failure reason.
    """

    name = "local"

    python = Unicode(sys.executable, config=True, help="Python with DEEPaaS and the modules, to run the deployments")
    stop_grace = Float(3, config=True, help="Seconds a deployment gets to stop before it is killed")

    async def start(self, deployment: Deployment, folder: Path) -> dict:
        mounts = await asyncio.get_running_loop().run_in_executor(None, self._mounts, deployment)
        folder.chmod(0o700)  # the socket's protection: only the owner may enter
        socket = socket_path(folder, deployment.id)
        workdir = folder / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        threads = str(max(1, math.ceil(deployment.hardware.cpu)))
        gpus = ",".join(str(i) for i in range(deployment.hardware.gpu))
        env = {
            **os.environ,
            **deployment.env,
            **mounts,
            "DEEPAAS_V2_MODEL": deployment.entry_point,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "CUDA_VISIBLE_DEVICES": gpus,
            "YOLO_OFFLINE": "1",
        }
        cgroup = Cgroup.create(
            f"deployment-{deployment.id}",
            memory_limit_for(deployment.hardware.memory_MB),
            deployment.hardware.cpu,
            oom_group=True,  # DEEPaaS without its worker is of no use: an OOM kill takes all of it (v2)
        )
        # served under its route's full path (deepaas-run --base-path), so that the Swagger UI at /api
        # loads its assets and swagger.json through the route; the route forwards that full path
        route = getattr(self.parent, "route_path", None)
        base_path = route(deployment.id) if route is not None else ""
        command = [
            self.python,
            "-m",
            "reeflab.deployments.serve",
            "--model-name",
            deployment.entry_point,
            "--socket",
            str(socket),
            "--workers",
            "1",
            *(["--base-path", base_path] if base_path else []),
        ]
        log = folder / LOG_FILE
        process = spawn(command, log=log, cwd=workdir, env=env, cpus=cpu_set(deployment.hardware.cpu), cgroup=cgroup)
        return {
            **process,
            "socket": str(socket),
            "base_path": base_path,
            "log": str(log),
            "cgroup": cgroup.name if cgroup is not None else None,  # None: the PSS watchdog limits it
        }

    def _mounts(self, deployment: Deployment) -> dict[str, str]:
        """REEFLAB_STORAGE_<NAME> -> the mounted folder, mounting what is not mounted yet (no credential given)."""
        storage = getattr(self.parent, "storage", None)
        if not deployment.storage:
            return {}
        if storage is None:
            raise RuntimeError("storage is not available on this server")
        found = {}
        for name in deployment.storage:
            connection = storage.get(deployment.owner, name)
            if storage.mount_status(connection).get("state") != "mounted":
                storage.mount(deployment.owner, name)
            found[storage_env(name)] = str(storage.mountpoint(connection))
        return found

    async def status(self, deployment: Deployment, folder: Path | None = None) -> BackendStatus:
        # (a deployment whose start is under way has no runtime yet: DeploymentService.check does not ask then)
        if "socket" not in deployment.runtime:
            await self.stop(deployment)
            return BackendStatus("failed", BEFORE_SOCKETS)
        process = running(deployment.runtime)
        cgroup = cgroup_of(deployment.runtime)
        # v1 kills only the biggest process (DEEPaaS's worker, which it then restarts in vain): an OOM kill
        # of any of its processes ends the deployment, whether or not the main one still runs
        if cgroup is not None and cgroup.oom_killed():
            limit = cgroup.memory_limit or memory_limit_for(deployment.hardware.memory_MB)
            await self.stop(deployment)
            return _out_of_memory(deployment, limit)
        if process is None:
            await self.stop(deployment)  # frees its cgroup and whatever it left in it
            lines = "\n".join(tail_lines(Path(deployment.runtime.get("log", "")), 15))
            return BackendStatus("failed", f"the module stopped unexpectedly. Last lines of its log:\n{lines}")
        if cgroup is None:  # no kernel limit here: watch its proportional set size (never a sum of RSS)
            used, limit = pss_of(process.pid), memory_limit_for(deployment.hardware.memory_MB)
            if used > limit:
                await self.stop(deployment)
                return _out_of_memory(deployment, limit, used)
        models = deployment.runtime.get("base_path", "") + "/v2/models/"
        return BackendStatus("ready" if await answers(deployment.runtime["socket"], models) else "starting")

    async def stop(self, deployment: Deployment, folder: Path | None = None) -> None:
        process = running(deployment.runtime)
        if process is not None:
            await stop_group(process, self.stop_grace)
        cgroup = cgroup_of(deployment.runtime)
        if cgroup is not None:  # kills what is left in it (a worker that left the process group too)
            await asyncio.get_running_loop().run_in_executor(None, cgroup.remove)

    def endpoint(self, deployment: Deployment) -> Endpoint:
        if "socket" not in deployment.runtime:
            raise Conflict(f"Deployment '{deployment.id}': {BEFORE_SOCKETS}.")
        return Endpoint.unix(deployment.runtime["socket"], base_path=deployment.runtime.get("base_path", ""))

    async def logs(self, deployment: Deployment, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / LOG_FILE, tail)


def _out_of_memory(deployment: Deployment, limit: int, used: int | None = None) -> BackendStatus:
    """Why it was stopped, and what to do: the limit it had, and what it was given; said in its log too
    (the module itself only saw a signal)."""
    measured = f"it used {used / 1e6:.0f} MB; " if used is not None else ""
    given = deployment.hardware.memory_MB
    reason = out_of_memory(limit, f"{measured}it was given {given} MB; restart it with more memory")
    with contextlib.suppress(OSError, KeyError):
        with open(deployment.runtime["log"], "a") as log:
            log.write(f"ReefLab: {reason}\n")
    return BackendStatus("failed", reason, out_of_memory=True)
