"""Notebook jobs: submit, list, progress, logs (tail and follow), cancel, output notebook."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import NotFound
from ..jobs.models import JobRequest
from .base import ReefLabHandler


class JobsBase(ReefLabHandler):
    auth_resource = "reeflab:jobs"


class JobsHandler(JobsBase):
    """GET: your jobs. POST: run a notebook with parameters as a job."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"jobs": [j.public() for j in self.services.jobs.list(self.username)]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(JobRequest, "job request")
        profiles = self.services.profiles.catalog()
        job = await self.services.jobs.submit(self.username, self.groups, request, profiles)
        self.write_json(job.public(), status=201)


class JobHandler(JobsBase):
    """GET: one job with its progress (or failing cell). DELETE: forget it (cancelling it if it runs)."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.write_json((await self.services.jobs.fresh(self.username, job_id)).public())

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        await self.services.jobs.delete(self.username, job_id)
        self.set_status(204)
        self.finish()


class CancelHandler(JobsBase):
    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        self.write_json((await self.services.jobs.cancel(self.username, job_id)).public())


class OutputHandler(JobsBase):
    """GET: the executed notebook (.ipynb JSON); it also lies at the job's `output` path in your folder."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        path = self.services.jobs.output_path(self.username, job_id)
        if not path.is_file():
            raise NotFound(f"Job '{job_id}' has not written its output notebook yet; try again once it runs.")
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.finish(await self.run_blocking(path.read_bytes))


class JobLogHandler(JobsBase):
    """GET ?tail=N: the last lines. GET ?follow=1: stream new lines until the job ends."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        jobs, owner = self.services.jobs, self.username

        async def active() -> bool:
            return (await jobs.fresh(owner, job_id)).active

        await self.write_log(lambda tail: jobs.logs(owner, job_id, tail), active)
