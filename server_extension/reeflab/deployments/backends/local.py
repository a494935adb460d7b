"""Deployments as local `deepaas-run` processes, one per deployment, under the user's identity."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

import psutil
from tornado.httpclient import AsyncHTTPClient
from traitlets import Float, Unicode, default

from ...files import free_port
from ..models import Deployment, storage_env
from .base import BackendStatus, DeploymentBackend

LOG_FILE = "deepaas.log"


def tail_lines(path: Path, count: int) -> list[str]:
    if not path.exists():
        return []
    with open(path, errors="replace") as log:
        return [line.rstrip("\n") for line in deque(log, maxlen=count)]


def cpu_set(cpus: float) -> set[int]:
    """The first ceil(cpus) CPUs this process may use: the deployment's CPU affinity."""
    available = sorted(os.sched_getaffinity(0))
    return set(available[: max(1, min(len(available), math.ceil(cpus)))])


class LocalProcessBackend(DeploymentBackend):
    """`deepaas-run` on a free 127.0.0.1 port, in its own session, working dir and log file.

    Hardware is applied as far as one machine allows: CPU affinity and thread counts from the
    CPU share, `CUDA_VISIBLE_DEVICES` from the GPU count, and a memory watchdog that stops a
    deployment whose processes use more than its memory (reported as the failure reason).
    """

    name = "local"

    deepaas_run = Unicode(config=True, help="The deepaas-run executable")
    stop_grace = Float(3, config=True, help="Seconds a deployment gets to stop before it is killed")

    @default("deepaas_run")
    def _default_deepaas_run(self) -> str:
        return str(Path(sys.executable).parent / "deepaas-run")

    async def start(self, deployment: Deployment, folder: Path) -> dict:
        mounts = await asyncio.get_running_loop().run_in_executor(None, self._mounts, deployment)
        port = free_port()
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
        command = [
            self.deepaas_run,
            "--model-name",
            deployment.entry_point,
            "--listen-ip",
            "127.0.0.1",
            "--listen-port",
            str(port),
            "--workers",
            "1",
        ]
        with open(folder / LOG_FILE, "ab") as log:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives a restart of the Jupyter server; stopped by group
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
        started = psutil.Process(process.pid).create_time()
        return {"pid": process.pid, "port": port, "started": started, "log": str(folder / LOG_FILE)}

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
        process = self._process(deployment)
        if process is None:
            lines = "\n".join(tail_lines(Path(deployment.runtime.get("log", "")), 15))
            return BackendStatus("failed", f"the module stopped unexpectedly. Last lines of its log:\n{lines}")
        used = _memory_of(process)
        limit = deployment.hardware.memory_MB * 10**6
        if used > limit:
            await self.stop(deployment)
            return BackendStatus(
                "failed", f"used {used / 1e6:.0f} MB of memory, more than its {deployment.hardware.memory_MB} MB"
            )
        url = f"http://127.0.0.1:{deployment.runtime['port']}/v2/models/"
        try:
            response = await AsyncHTTPClient().fetch(url, request_timeout=2, raise_error=False)
            ready = response.code == 200
        except OSError:
            ready = False
        return BackendStatus("ready" if ready else "starting")

    async def stop(self, deployment: Deployment) -> None:
        process = self._process(deployment)
        if process is None:
            return
        group = os.getpgid(process.pid)
        os.killpg(group, signal.SIGTERM)
        for _ in range(int(self.stop_grace / 0.1)):  # DEEPaaS may ignore SIGTERM while its workers run
            if _exited(process):
                break
            await asyncio.sleep(0.1)
        # its workers share the session's process group: nothing of it may stay behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(psutil.Error, ChildProcessError):
            await asyncio.get_running_loop().run_in_executor(None, process.wait, 5)  # reap our child

    def endpoint(self, deployment: Deployment) -> tuple[str, int]:
        return "127.0.0.1", int(deployment.runtime["port"])

    async def logs(self, deployment: Deployment, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / LOG_FILE, tail)


def _exited(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _memory_of(process: psutil.Process) -> int:
    """Resident memory of a process and its children (DEEPaaS predicts in worker processes)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total
