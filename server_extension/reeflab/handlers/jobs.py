"""Notebook jobs: submit, list, progress, logs (tail and follow), cancel, output notebook."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import NotFound
from ..jobs.models import JobRequest
from ..jobs.service import JobService
from .runs import RunCancelHandler, RunHandler, RunLogHandler, RunsBase, RunsHandler


class JobsBase(RunsBase):
    auth_resource = "reeflab:jobs"

    @property
    def runs(self) -> JobService:
        return self.services.jobs


class JobsHandler(JobsBase, RunsHandler):
    """GET: your jobs. POST: run a notebook with parameters as a job."""

    request_model, what, listed_as = JobRequest, "job request", "jobs"


class JobHandler(JobsBase, RunHandler):
    """GET: one job with its progress (or failing cell). DELETE: forget it (cancelling it if it runs)."""


class CancelHandler(JobsBase, RunCancelHandler):
    pass


class JobLogHandler(JobsBase, RunLogHandler):
    """?rank=N: that rank's own log (a distributed job)."""

    def log_options(self) -> dict[str, Any]:
        return {"rank": self.int_argument("rank", 0, 0) if self.get_argument("rank", "") else None}


class OutputHandler(JobsBase):
    """GET: the executed notebook (.ipynb JSON); it also lies at the job's `output` path in your folder."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        path = self.runs.output_path(self.username, job_id)
        if not path.is_file():
            raise NotFound(f"Job '{job_id}' has not written its output notebook yet; try again once it runs.")
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.finish(await self.run_blocking(path.read_bytes))
