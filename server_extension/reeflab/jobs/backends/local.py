"""Notebook jobs as detached local processes: `python -m reeflab.jobs.runner <folder>` in its own session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
from traitlets import Float

from ...deployments.backends.local import cpu_set, tail_lines
from ...profiles import HardwareProfile
from ..models import Job
from ..store import LOG_FILE, read_status
from .base import JobBackend

FINAL = ("completed", "failed", "cancelled")


def job_env(job: Job, base: dict[str, str]) -> dict[str, str]:
    """The runner's (and so the kernel's) environment: thread counts and GPUs of the job's hardware."""
    threads = str(max(1, math.ceil(job.cpu)))
    env = {**base, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "YOLO_OFFLINE": "1"}
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(job.gpu))
    env["REEFLAB_JOB_ID"] = job.id
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if env.get("MLFLOW_TRACKING_URI"):  # runs of one notebook land in one experiment unless told otherwise
        env.setdefault("MLFLOW_EXPERIMENT_NAME", Path(job.notebook).stem)
    return env


class LocalJobBackend(JobBackend):
    """The runner in its own session, with the job's CPU affinity and thread counts; cancel kills it all."""

    name = "local"

    cancel_grace = Float(5, config=True, help="Seconds the runner gets to stop its kernel before all is killed")

    async def start(
        self, job: Job, folder: Path, spec: dict[str, Any], profile: HardwareProfile, secrets: dict | None = None
    ) -> dict:
        (folder / "spec.json").write_text(json.dumps(spec, indent=1))
        cpus = cpu_set(job.cpu)
        with open(folder / LOG_FILE, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "reeflab.jobs.runner", str(folder)],
                cwd=spec["cwd"],
                env={**job_env(job, dict(os.environ)), **(secrets or {})},  # in its environment, not argv
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the browser and a restart of the Jupyter server
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
        return {"pid": process.pid, "started": psutil.Process(process.pid).create_time()}

    def _process(self, job: Job) -> psutil.Process | None:
        """The runner if it still runs: same pid *and* start time (pids are reused)."""
        try:
            process = psutil.Process(job.runtime["pid"])
            if abs(process.create_time() - job.runtime["started"]) > 1:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                process.wait(0)  # reap our exited child
                return None
            return process
        except (KeyError, psutil.NoSuchProcess, psutil.TimeoutExpired):
            return None

    async def status(self, job: Job, folder: Path) -> dict[str, Any]:
        status = read_status(folder)
        if status.get("state") in FINAL:
            if self._process(job) is not None:  # still writing its last lines: not finished yet
                return {**status, "state": "running"}
            return status
        if self._process(job) is None:
            lines = "\n".join(tail_lines(folder / LOG_FILE, 15))
            reason = f"the job process ended unexpectedly. Last lines of its log:\n{lines}"
            return {**status, "state": "failed", "reason": reason}
        return status

    async def cancel(self, job: Job, folder: Path) -> None:
        process = self._process(job)
        kernels = [pid for pid in read_status(folder).get("kernel_pids", [])]
        if process is not None:
            group = os.getpgid(process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)  # the runner stops its kernel and records the cancel
            for _ in range(int(self.cancel_grace / 0.1)):
                if _exited(process):
                    break
                await asyncio.sleep(0.1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
            with contextlib.suppress(psutil.Error, ChildProcessError):
                await asyncio.get_running_loop().run_in_executor(None, process.wait, 5)  # reap our child
        for pid in kernels:  # kernels run in sessions of their own: make sure none is left
            with contextlib.suppress(psutil.Error):
                kernel = psutil.Process(pid)
                if kernel.create_time() >= job.runtime.get("started", 0) - 1:
                    for member in [*kernel.children(recursive=True), kernel]:
                        with contextlib.suppress(psutil.Error):
                            member.kill()

    async def logs(self, job: Job, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / LOG_FILE, tail)


def _exited(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
