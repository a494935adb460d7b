"""Pipeline runs: submit an Elyra pipeline with parameters, list, per-node status, logs, cancel."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..pipelines.models import PipelineRequest
from .base import ReefLabHandler


class PipelinesBase(ReefLabHandler):
    auth_resource = "reeflab:pipelines"


class PipelinesHandler(PipelinesBase):
    """GET: your pipeline runs. POST: run a .pipeline file with parameters in the background."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"runs": [r.public() for r in self.services.pipelines.list(self.username)]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(PipelineRequest, "pipeline request")
        profiles = self.services.profiles.catalog()
        run = await self.services.pipelines.submit(self.username, self.groups, request, profiles)
        self.write_json(run.public(), status=201)


class PipelineRunHandler(PipelinesBase):
    """GET: one run with every node's state, cell progress and error. DELETE: forget it (cancelling it)."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.write_json((await self.services.pipelines.fresh(self.username, run_id)).public())

    @web.authenticated
    @authorized
    async def delete(self, run_id: str) -> None:
        await self.services.pipelines.delete(self.username, run_id)
        self.set_status(204)
        self.finish()


class PipelineCancelHandler(PipelinesBase):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        self.write_json((await self.services.pipelines.cancel(self.username, run_id)).public())


class PipelineLogHandler(PipelinesBase):
    """GET ?tail=N: the run's log; ?node=<id>: that node's own log (its cells' output)."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        node = self.get_argument("node", "") or None
        lines = await self.services.pipelines.logs(self.username, run_id, self.tail_argument(), node)
        self.write_json({"lines": lines})
