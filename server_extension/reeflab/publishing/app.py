"""`python -m reeflab.publishing`: the catalogue service, standalone or as the hub-managed service `reeflab-catalogue`.

Routes (under JUPYTERHUB_SERVICE_PREFIX, or --base-url), every one needs `Authorization: token <hub token>` (or,
for tests and development without a hub, a token of `--CatalogueApp.static_tokens_file`, JSON {token: user}):
- GET index.json: the published modules, in the format the marketplace reads from remote indexes;
- POST modules {"id", "metadata", "check"}: publish a module with the passing report of its check, as the caller;
- DELETE modules/<id>: take it out (its publisher, or a hub admin);
- GET reports.json, GET reports/<name>.html: the platform's reports of the installed modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tornado import web
from traitlets import Bool

from .._version import __version__
from ..checks.models import CheckReport
from ..errors import BadRequest
from ..modules.metadata import validate_metadata
from ..service_app import Caller, Callers, HubServiceApp, ServiceHandler
from .index import PublishedIndex
from .platform_checks import PlatformChecks

MODULE_ID = r"(?P<module>[a-z0-9][a-z0-9\-_.]*)"
log = logging.getLogger("reeflab.publishing")


class Publication(BaseModel):
    """POST modules"""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-_.]*$", max_length=100, description="The module's id")
    metadata: dict[str, Any] = Field(description="Its ai4-metadata")
    check: CheckReport = Field(description="The report of its latest check, which passed")


class CatalogueHandler(ServiceHandler):
    def initialize(self, index: PublishedIndex, checks: PlatformChecks, callers: Callers) -> None:
        self.index, self.checks, self.callers = index, checks, callers
        self.caller = Caller()


class IndexHandler(CatalogueHandler):
    def get(self) -> None:
        self.reply(200, {"modules": self.index.modules()})


class ModulesHandler(CatalogueHandler):
    def post(self) -> None:
        try:
            publication = Publication.model_validate_json(self.request.body)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors()[:5])
            raise BadRequest(f"Invalid publication: {problems}") from None
        report = publication.check
        if report.module != publication.id or not report.passed:
            raise BadRequest(f"Publish '{publication.id}' with a report of its own check that passed.")
        problems = validate_metadata(publication.metadata)
        if problems:
            raise BadRequest(f"The metadata of '{publication.id}' is not valid: {problems[0].message}")
        item = self.index.publish(
            publication.id, publication.metadata, report.model_dump(mode="json"), publisher=self.caller.user
        )
        self.reply(201, item)


class ModuleHandler(CatalogueHandler):
    def delete(self, module: str) -> None:
        self.index.unpublish(module, self.caller.user, admin=self.caller.admin)
        self.reply(204)


class ReportsHandler(CatalogueHandler):
    def get(self) -> None:
        self.reply(200, {"reports": self.checks.listing()})


class ReportPageHandler(CatalogueHandler):
    def get(self, name: str) -> None:
        try:
            page = self.checks.reports.page(name).read_bytes()
        except (ValueError, FileNotFoundError):
            self.reply(404, {"message": f"The platform has no report '{name}'."})
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
        self.finish(page)


def routes(base_url: str, **context: Any) -> list:
    return [
        (f"{base_url}index.json", IndexHandler, context),
        (f"{base_url}modules", ModulesHandler, context),
        (f"{base_url}modules/{MODULE_ID}", ModuleHandler, context),
        (f"{base_url}reports.json", ReportsHandler, context),
        (rf"{base_url}reports/(?P<name>[a-z0-9][a-z0-9\-_.]*@[a-z0-9]+)\.html", ReportPageHandler, context),
    ]


class CatalogueApp(HubServiceApp):
    name = "reeflab-catalogue"
    default_port = 8097
    version = __version__
    description = "ReefLab's catalogue service: published modules and the platform's module checks"
    aliases = {"ip": "CatalogueApp.ip", "port": "CatalogueApp.port", "base-url": "CatalogueApp.base_url"}
    aliases["state-dir"] = "CatalogueApp.state_dir"

    state_folder = "catalogue"  # the index and the reports
    check_installed = Bool(True, config=True, help="Check the installed modules at start (again when they changed)")

    async def serve(self) -> None:
        state = self.private_state()  # written by this service alone; users read through its API
        checks = PlatformChecks(state / "reports")
        context = {"index": PublishedIndex(state / "index.json"), "checks": checks, "callers": self.callers()}
        log.info("ReefLab catalogue at http://%s:%s%s (state in %s)", self.ip, self.port, self.base_url, state)
        checking = asyncio.create_task(checks.run()) if self.check_installed else None
        await self.serve_until_stopped(web.Application(routes(self.base_url, **context), xsrf_cookies=False))
        if checking is not None:
            checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checking


def main() -> None:
    CatalogueApp.launch_instance()
