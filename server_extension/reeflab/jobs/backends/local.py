"""Notebook jobs as detached local processes: `python -m reeflab.jobs.runner <folder>` in its own session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import psutil
from traitlets import Float

from ...limits import Cgroup, out_of_memory, pss_of
from ...processes import cgroup_of, cpu_set, running, spawn, stop_group, tail_lines
from ...profiles import HardwareProfile
from ..models import Job
from ..store import LOG_FILE, read_status
from .base import JobBackend

FINAL = ("completed", "failed", "cancelled")


def job_env(job: Job, base: dict[str, str]) -> dict[str, str]:
    """The runner's (and so the kernel's) environment: thread counts and GPUs of the job's hardware."""
    threads = str(max(1, math.ceil(job.cpu)))
    processes = getattr(job, "processes", None)  # pipeline runs start their runner with this environment too
    if processes:  # the profile's CPUs shared among the ranks (torchrun's own default would be 1 each)
        threads = str(max(1, math.floor(job.cpu / processes)))
        env_backend = {"REEFLAB_DDP_BACKEND": "nccl" if job.gpu else "gloo"}
    else:
        env_backend = {}
    env = {**base, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "YOLO_OFFLINE": "1", **env_backend}
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(job.gpu))
    env["REEFLAB_JOB_ID"] = job.id
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if env.get("MLFLOW_TRACKING_URI"):  # runs of one notebook land in one experiment unless told otherwise
        env.setdefault("MLFLOW_EXPERIMENT_NAME", Path(job.notebook).stem)
    return env


class LocalJobBackend(JobBackend):
    """The runner in its own session, with the job's CPU affinity and thread counts; cancel kills it all.

    The runner and its kernel run in a cgroup with the CPU quota and memory of the job's profile (as a pod's
    limits in kubernetes); where no cgroup can be made, a watchdog on their proportional set size.
    """

    name = "local"

    cancel_grace = Float(5, config=True, help="Seconds the runner gets to stop its kernel before all is killed")

    async def start(
        self, job: Job, folder: Path, spec: dict[str, Any], profile: HardwareProfile, secrets: dict | None = None
    ) -> dict:
        (folder / "spec.json").write_text(json.dumps(spec, indent=1))
        cgroup = Cgroup.create(f"job-{job.id}", job.memory_MB * 10**6, job.cpu)
        # in its environment, not argv; it survives the browser and a restart of the Jupyter server
        env = {**job_env(job, dict(os.environ)), **(secrets or {})}
        command = [sys.executable, "-m", "reeflab.jobs.runner", str(folder)]
        process = spawn(command, log=folder / LOG_FILE, cwd=spec["cwd"], env=env, cpus=cpu_set(job.cpu), cgroup=cgroup)
        return {**process, "cgroup": cgroup.name if cgroup is not None else None}  # None: the PSS watchdog limits it

    async def status(self, job: Job, folder: Path) -> dict[str, Any]:
        status = read_status(folder)
        process = running(job.runtime)
        if status.get("state") in FINAL:
            if process is not None:  # still writing its last lines: not finished yet
                return {**status, "state": "running"}
            return await self._ended(job, status)
        if process is None:
            lines = "\n".join(tail_lines(folder / LOG_FILE, 15))
            reason = f"the job process ended unexpectedly. Last lines of its log:\n{lines}"
            return await self._ended(job, {**status, "state": "failed", "reason": reason})
        if cgroup_of(job.runtime) is None:  # no kernel limit here: watch its proportional set size (never a sum of RSS)
            used = pss_of(process.pid)
            if used > job.memory_MB * 10**6:
                await self.stop(job, folder)
                return {**status, "state": "failed", "reason": _out_of_memory(job, job.memory_MB * 10**6, used)}
        return status

    async def _ended(self, job: Job, status: dict[str, Any]) -> dict[str, Any]:
        """A finished job frees its cgroup; a failure after the kernel's OOM kill says so (papermill only
        sees a dead kernel)."""
        cgroup = cgroup_of(job.runtime)
        if cgroup is None:
            return status
        if status.get("state") == "failed" and cgroup.oom_killed():
            status = {**status, "reason": _out_of_memory(job, cgroup.memory_limit or job.memory_MB * 10**6)}
        await asyncio.get_running_loop().run_in_executor(None, cgroup.remove)
        return status

    async def stop(self, job: Job, folder: Path) -> None:
        process = running(job.runtime)
        status = read_status(folder)  # kernels, and a distributed job's ranks and their kernels
        kernels = [*status.get("kernel_pids", []), *status.get("pids", [])]
        if process is not None:  # the runner stops its kernel and records the cancel
            await stop_group(process, self.cancel_grace)
        for pid in kernels:  # kernels run in sessions of their own: make sure none is left
            with contextlib.suppress(psutil.Error):
                kernel = psutil.Process(pid)
                if kernel.create_time() >= job.runtime.get("started", 0) - 1:
                    for member in [*kernel.children(recursive=True), kernel]:
                        with contextlib.suppress(psutil.Error):
                            member.kill()
        cgroup = cgroup_of(job.runtime)
        if cgroup is not None:  # kills whatever is still in it
            await asyncio.get_running_loop().run_in_executor(None, cgroup.remove)

    async def logs(self, job: Job, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / LOG_FILE, tail)


def _out_of_memory(job: Job, limit: int, used: int | None = None) -> str:
    """Why the job was stopped, and what to do: the limit of its profile."""
    measured = f"it used {used / 1e6:.0f} MB; " if used is not None else ""
    return out_of_memory(limit, f"{measured}profile '{job.profile}'; run it with a profile that has more memory")
