"""Where pipeline runs run: Elyra's local runtime in a detached runner process of the user's account."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..files import write_private
from ..jobs.backends.local import LocalJobBackend, job_env
from ..jobs.store import LOG_FILE
from ..processes import cpu_set, spawn
from .models import PipelineRun


class LocalPipelineBackend(LocalJobBackend):
    """The pipeline runner detached in its own session; status, stop and logs as for notebook jobs."""

    name = "local"

    async def start(self, run: PipelineRun, folder: Path, spec: dict, profile) -> dict:  # noqa: ARG002
        write_private(folder / "spec.json", json.dumps(spec, indent=1))
        command = [sys.executable, "-m", "reeflab.pipelines.runner", str(folder)]
        env = job_env(run, dict(os.environ))
        return spawn(command, log=folder / LOG_FILE, cwd=spec["root"], env=env, cpus=cpu_set(run.cpu), cgroup=None)
