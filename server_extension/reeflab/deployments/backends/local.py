"""Deployments as local DEEPaaS processes, one per deployment, under the user's identity, each
serving on a Unix socket in its private folder (reeflab.deployments.serve) rather than a TCP port."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import stat
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

import psutil
from jupyter_server_proxy.unixsock import UnixResolver
from tornado.httpclient import HTTPClientError
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from traitlets import Float, Unicode

from ...errors import Conflict
from ...limits import Cgroup, memory_limit_for, out_of_memory, pss_of
from .. import HEALTH_CHECK_HEADER
from ..models import Deployment, storage_env
from .base import BackendStatus, DeploymentBackend, Endpoint

LOG_FILE = "deepaas.log"
SOCKET_FILE = "api.sock"
MAX_SOCKET_PATH = 107  # bytes: sun_path holds 108, with the terminating NUL
BEFORE_SOCKETS = "it was started by an older ReefLab, on a TCP port any local process could call: restart it"


def tail_lines(path: Path, count: int) -> list[str]:
    if not path.exists():
        return []
    with open(path, errors="replace") as log:
        return [line.rstrip("\n") for line in deque(log, maxlen=count)]


def cpu_set(cpus: float) -> set[int]:
    """The first ceil(cpus) CPUs this process may use: the deployment's CPU affinity."""
    available = sorted(os.sched_getaffinity(0))
    return set(available[: max(1, min(len(available), math.ceil(cpus)))])


def socket_path(folder: Path, deployment_id: str) -> Path:
    """`<folder>/api.sock`; where that path is too long for a socket, `<tmp>/reeflab-<uid>/<id>.sock`,
    in a folder checked to be this account's own, mode 0700 and not a link."""
    path = folder / SOCKET_FILE
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    private = Path(tempfile.gettempdir()) / f"reeflab-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        private.mkdir(mode=0o700)
    found = private.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        shorter = "or set a shorter DeploymentService.root_dir"
        raise RuntimeError(f"{private} is not a private folder of this account: remove it, {shorter}")
    return private / f"{deployment_id}.sock"


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
        cpus = cpu_set(deployment.hardware.cpu)
        cgroup = Cgroup.create(
            f"deployment-{deployment.id}",
            memory_limit_for(deployment.hardware.memory_MB),
            deployment.hardware.cpu,
            oom_group=True,  # DEEPaaS without its worker is of no use: an OOM kill takes all of it (v2)
        )

        def preexec() -> None:
            """In the child before exec: into the cgroup first, so every process it starts is inside too."""
            if cgroup is not None:
                cgroup.enter()
            os.sched_setaffinity(0, cpus)

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
        try:
            with open(folder / LOG_FILE, "ab") as log:
                process = subprocess.Popen(
                    command,
                    cwd=workdir,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # survives a restart of the Jupyter server; stopped by group
                    preexec_fn=preexec,
                )
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        started = psutil.Process(process.pid).create_time()
        return {
            "pid": process.pid,
            "socket": str(socket),
            "base_path": base_path,
            "started": started,
            "log": str(folder / LOG_FILE),
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

    def _process(self, deployment: Deployment) -> psutil.Process | None:
        """The deployment's process if it still runs: same pid *and* start time (pids are reused)."""
        runtime = deployment.runtime
        try:
            process = psutil.Process(runtime["pid"])
            if abs(process.create_time() - runtime["started"]) > 1:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                process.wait(0)  # reap our exited child
                return None
            return process
        except (KeyError, psutil.NoSuchProcess, psutil.TimeoutExpired):
            return None

    async def status(self, deployment: Deployment) -> BackendStatus:
        # (a deployment whose start is under way has no runtime yet: DeploymentService.check does not ask then)
        if "socket" not in deployment.runtime:
            await self.stop(deployment)
            return BackendStatus("failed", BEFORE_SOCKETS)
        process = self._process(deployment)
        cgroup = _cgroup(deployment)
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

    async def stop(self, deployment: Deployment) -> None:
        process = self._process(deployment)
        if process is not None:
            await self._stop_process(process)
        cgroup = _cgroup(deployment)
        if cgroup is not None:  # kills what is left in it (a worker that left the process group too)
            await asyncio.get_running_loop().run_in_executor(None, cgroup.remove)

    async def _stop_process(self, process: psutil.Process) -> None:
        """SIGTERM to its main process, SIGKILL to its process group after it exits or the grace period ends,
        and reap it. (DEEPaaS stops its workers itself in half a second; with the whole group sent SIGTERM,
        it waits for ever on its dead worker pool.)"""
        group = os.getpgid(process.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGTERM)
        for _ in range(int(self.stop_grace / 0.1)):
            if _exited(process):
                break
            await asyncio.sleep(0.1)
        # its workers share the session's process group: nothing of it may stay behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if process.ppid() == os.getpid():  # reap our child (an orphan's zombie is its new parent's to reap)
                await asyncio.get_running_loop().run_in_executor(None, process.wait, 5)

    def endpoint(self, deployment: Deployment) -> Endpoint:
        if "socket" not in deployment.runtime:
            raise Conflict(f"Deployment '{deployment.id}': {BEFORE_SOCKETS}.")
        return Endpoint.unix(deployment.runtime["socket"], base_path=deployment.runtime.get("base_path", ""))

    async def logs(self, deployment: Deployment, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / LOG_FILE, tail)


def _exited(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _cgroup(deployment: Deployment) -> Cgroup | None:
    """The deployment's cgroup (found again by name after a restart of the Jupyter server), or None."""
    name = deployment.runtime.get("cgroup")
    return Cgroup.find(name) if name else None


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
