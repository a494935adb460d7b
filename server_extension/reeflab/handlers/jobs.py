"""Notebook jobs: submit, list, progress, logs (tail and follow), cancel, output notebook."""

from __future__ import annotations

import asyncio

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import NotFound
from ..jobs.models import JobRequest
from .base import ReefLabHandler, parse_body
from .deployments import _new_lines


class JobsBase(ReefLabHandler):
    auth_resource = "reeflab:jobs"

    @property
    def jobs(self):
        return self.services.jobs


class JobsHandler(JobsBase):
    """GET: your jobs. POST: run a notebook with parameters as a job."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"jobs": [j.public() for j in self.jobs.list(self.username)]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = parse_body(JobRequest, self.request.body, "job")
        groups = self.services.identity.groups(self.current_user)
        profiles = self.services.profiles.catalog()
        job = await self.jobs.submit(self.username, groups, request, profiles)
        self.write_json(job.public(), status=201)


class JobHandler(JobsBase):
    """GET: one job with its progress (or failing cell). DELETE: forget it (cancelling it if it runs)."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.write_json((await self.jobs.fresh(self.username, job_id)).public())

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        await self.jobs.delete(self.username, job_id)
        self.set_status(204)
        self.finish()


class CancelHandler(JobsBase):
    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        self.write_json((await self.jobs.cancel(self.username, job_id)).public())


class OutputHandler(JobsBase):
    """GET: the executed notebook (.ipynb JSON); it also lies at the job's `output` path in your folder."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        path = self.jobs.output_path(self.username, job_id)
        if not path.is_file():
            raise NotFound(f"Job '{job_id}' has not written its output notebook yet; try again once it runs.")
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.finish(await self.run_blocking(path.read_bytes))


class JobLogHandler(JobsBase):
    """GET ?tail=N: the last lines. GET ?follow=1: stream new lines until the job ends."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        tail = self.get_argument("tail", "200")
        lines = await self.jobs.logs(self.username, job_id, int(tail) if tail.isdigit() else 0)
        if self.get_argument("follow", "0") not in ("1", "true"):
            self.write_json({"lines": lines})
            return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        seen: list[str] = []
        running = True
        while not self.request.connection.stream.closed():
            new = _new_lines(seen, lines)
            if new:
                self.write("".join(line + "\n" for line in new))
                await self.flush()
            seen = lines
            if not running:
                break
            try:
                running = (await self.jobs.fresh(self.username, job_id)).active
                if running:
                    await asyncio.sleep(0.5)
                lines = await self.jobs.logs(self.username, job_id, 1000)  # once more after the end
            except NotFound:  # deleted while followed
                break
        self.finish()
