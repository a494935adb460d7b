"""Module checks: start one on an installed module, list, get with its report, log (tail and follow), delete, and
the report's readable page; publishing a checked module to the shared catalogue index."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from pydantic import BaseModel, ConfigDict, Field
from tornado import web

from ..checks.service import CheckRequest, ModuleCheckService
from .base import ReefLabHandler
from .runs import RunHandler, RunLogHandler, RunsBase, RunsHandler, authorized_each_time

# the page is the runner's, which writes what modules say: none of it runs as script with the user's session
CHECK_PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


class ChecksBase(RunsBase):
    auth_resource = "reeflab:checks"

    @property
    def runs(self) -> ModuleCheckService:
        return self.services.checks


class ChecksHandler(ChecksBase, RunsHandler):
    """GET: your checks. POST {"module": id}: check an installed module (its metadata, API, tests, style...)."""

    request_model, what, listed_as = CheckRequest, "check request", "checks"


class CheckHandler(ChecksBase, RunHandler):
    """GET: one check with its report once completed. DELETE: forget it (stopping it if it runs)."""


class CheckLogHandler(ChecksBase, RunLogHandler):
    pass


class CheckPageHandler(ChecksBase):
    """GET: the report as a readable page (text/html): of one of your checks, or of the report a badge names."""

    @web.authenticated
    @authorized_each_time
    async def get(self, check_id: str) -> None:
        page = await self.run_blocking(self.runs.page, self.username, check_id)
        self.set_header("Content-Security-Policy", CHECK_PAGE_POLICY)
        # an API handler's answers are JSON unless it says otherwise
        self.finish(page, set_content_type="text/html; charset=utf-8")


class PublishRequest(BaseModel):
    """POST /reeflab/api/catalog/published"""

    model_config = ConfigDict(extra="forbid")

    module: str = Field(min_length=1, description="Id of a module whose latest check passed")


class PublishedHandler(ReefLabHandler):
    """GET: the modules published to the platform's catalogue. POST {"module": id}: publish one whose latest check
    passed, with its report (other users see it in their marketplace, with its badge)."""

    auth_resource = "reeflab:catalog"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"modules": await self.run_blocking(self.services.checks.published)})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(PublishRequest, "publication")
        item = await self.run_blocking(self.services.checks.publish, self.username, request.module)
        self.write_json(item, status=201)


class PublishedModuleHandler(ReefLabHandler):
    """DELETE: take a module you published out of the platform's catalogue."""

    auth_resource = "reeflab:catalog"

    @web.authenticated
    @authorized
    async def delete(self, module_id: str) -> None:
        await self.run_blocking(self.services.checks.unpublish, module_id)
        self.set_status(204)
        self.finish()
