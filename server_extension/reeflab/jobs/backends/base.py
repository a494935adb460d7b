"""What every notebook-job backend provides to JobService."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

from ...profiles import HardwareProfile
from ...runs.backend import RunBackend
from ..models import Job


class JobBackend(RunBackend):
    """Starts, watches, stops notebook jobs (and pipeline runs). Subclasses: local, kubernetes."""

    max_nodes = 1  # nodes one distributed job may span

    @abstractmethod
    async def start(
        self, job: Job, folder: Path, spec: dict[str, Any], profile: HardwareProfile, secrets: dict | None = None
    ) -> dict:
        """Launch the job; return the runtime handle kept in `job.runtime`.

        `spec` is what the runner needs: input, output (absolute paths), cwd, parameters, kernel, storage.
        `secrets` (storage credentials) go to the job's environment only: never to a file, a log or a record.
        """

    @abstractmethod
    async def status(self, job: Job, folder: Path) -> dict[str, Any]:
        """The runner's view: state, progress, error, reason, finished_at (also after a server restart)."""

    @abstractmethod
    async def stop(self, job: Job, folder: Path) -> None:
        """Stop the job and everything it started (kernel included); idempotent."""

    @abstractmethod
    async def logs(self, job: Job, folder: Path, tail: int) -> list[str]:
        """The last `tail` lines of its log."""
