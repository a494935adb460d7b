"""ModuleCheckService: a user's checks of marketplace modules as runs (start, watch, log, report), and the badge
each catalogue entry shows: passed or failed by the latest report that still matches the module, else unchecked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError
from traitlets import Bool, Instance, Int, Type, Unicode, default

from ..catalog.models import ModuleEntry, slug
from ..catalog.service import CatalogService
from ..errors import BadRequest, Conflict, Forbidden, NotFound, ReefLabError
from ..profiles import ProfileCatalog
from ..runs.backend import RunBackend
from ..runs.models import RunRecord, RunRequest
from ..runs.service import RunService, now
from .backends import PAGE_FILE, LocalCheckBackend
from .catalogue import CatalogueClient
from .models import CheckReport
from .module import Module
from .page import render
from .shared import FOLDER as SHARED_FOLDER
from .shared import PLATFORM, SharedReports, report_name

PUBLISHED = "published"  # the name of the report a module was published with: '<module>@published'
UNCHECKED = {"state": "unchecked", "checked": None, "report": None, "failed": []}


class CheckRequest(RunRequest):
    """POST /reeflab/api/checks"""

    module: str = Field(min_length=1, description="Id of an installed marketplace module, e.g. 'yolo-detector'")


class CheckRun(RunRecord):
    """One check of a module: what was checked, and the report once the checks have run."""

    ENDED_AT: ClassVar[str] = "finished_at"

    module: str = Field(description="The marketplace module checked")
    version: str = Field("", description="A registered model's version checked (its weights)")
    source: str = Field(description="What the checks ran on: the installed module, then the folder they read")
    state: Literal["starting", "running", "completed", "failed", "cancelled"] = "starting"
    report: CheckReport | None = Field(None, description="Once completed: every check's result")
    finished_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        data = super().public()
        data["badge"] = self.report.badge() if self.report is not None else None
        return data


def published_report(entry: ModuleEntry) -> list[tuple[str, CheckReport]]:
    """The report a module of a remote index was published with, if it came with a readable one."""
    try:
        if entry.published_check:
            return [(report_name(entry.id, PUBLISHED), CheckReport.model_validate(entry.published_check))]
        return []
    except ValidationError:
        return []


def tree_digest(folder: Path) -> str:
    """The digest the check runner gives the module whose source tree is `folder` (a report's `source`)."""
    return Module(id="", entry_point="", package=folder, root=folder).digest()


class ModuleCheckService(RunService[CheckRun]):
    """One user's module checks; also the badges of catalogue entries (from their own checks, then shared ones)."""

    folder_name = "checks"
    record_class, record_file = CheckRun, "check.json"
    noun, api_path = "check", "/reeflab/api/checks"

    backend_class = Type(
        LocalCheckBackend,
        klass=RunBackend,
        config=True,
        help="Where checks run: reeflab.checks.backends.LocalCheckBackend (a process in the user's server)",
    )
    max_running = Int(2, config=True, help="Checks a user may run at once")
    catalogue_url = Unicode(
        config=True,
        help="The platform's catalogue service (reeflab.publishing): the index users publish checked modules to, "
        "read by every marketplace, and the platform's reports of installed modules. Default: "
        "$REEFLAB_CATALOGUE_URL (the hub sets it); empty: no publishing, badges from the user's own checks only",
    )
    catalogue_token = Unicode(
        config=True, help="Token for it: default $REEFLAB_CATALOGUE_TOKEN, else the server's hub token"
    )

    @default("catalogue_url")
    def _default_catalogue_url(self) -> str:
        return os.environ.get("REEFLAB_CATALOGUE_URL", "")

    @default("catalogue_token")
    def _default_catalogue_token(self) -> str:
        return os.environ.get("REEFLAB_CATALOGUE_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN", "")

    check_registrations = Bool(True, config=True, help="Check each newly registered version of a model")
    catalog = Instance(CatalogService)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.shared = SharedReports(Path(self.catalog.registry_dir) / SHARED_FOLDER)
        self.catalogue: CatalogueClient | None = None
        if self.catalogue_url:
            self.catalogue = CatalogueClient(self.catalogue_url, self.catalogue_token)
            self.catalog.add_remote(self.catalogue.index_url, self.catalogue.headers)
        # (module, folder checked) -> (the catalogue entry it was computed for, the folder's digest): computed
        # once per entry (the catalogue is rebuilt on refresh), never on every search
        self._digests: dict[tuple[str, str], tuple[ModuleEntry, str]] = {}

    # -- changes ---------------------------------------------------------------

    def _checkable(self, module_id: str) -> ModuleEntry:
        try:
            entry = self.catalog.get(module_id)
        except NotFound:
            raise BadRequest(
                f"No module '{module_id}' in the marketplace: give the id of an installed module "
                "(search the catalogue for it, or refresh it after installing yours)."
            ) from None
        if entry.entry_point is None:
            raise BadRequest(
                f"Module '{entry.id}' is not installed on this server ({entry.source}): only installed modules can "
                "be checked; install its package (pip install) and refresh the catalogue."
            )
        return entry

    async def submit(self, owner: str, groups: list[str], request: CheckRequest, profiles: ProfileCatalog) -> CheckRun:
        entry = self._checkable(request.module)
        profile = profiles.choose(request.profile, groups)
        running = self.active(owner)
        if len(running) >= self.max_running:
            raise Forbidden(f"You have {len(running)} checks running, the most allowed; wait or delete one.")
        record = CheckRun(
            id=secrets.token_hex(4),
            owner=owner,
            title=request.title or f"Checks of {entry.title}",
            profile=profile.slug,
            module=entry.id,
            version=entry.versions[-1] if entry.source == "registered" and entry.versions else "",
            source=slug(entry.entry_point or entry.id),  # a registered model: its base module, with its weights
            backend=self.backend.name,
            created=now(),
        )
        self._save(record)
        start = self.backend.start(record, self.folder(record), profile.cpu, env=entry.deploy_env)
        await self._launch(record, start)
        return record

    async def check(self, record: CheckRun) -> None:
        status = await self.backend.status(record, self.folder(record))
        if status["state"] == "running":
            if record.state != "running":
                record.state = "running"
                self._save(record)
            return
        report: CheckReport | None = status.get("report")
        if report is None:
            self._finish(record, "failed", status.get("reason"))
            return
        if record.version:  # a registered model, checked as its base module with its weights
            report = report.model_copy(update={"module": record.module, "version": record.version})
        record.report, record.source = report, report.source
        with contextlib.suppress(NotFound):  # what the runner just read is the module now
            self._digests[(record.module, report.source)] = (self.catalog.get(record.module), report.digest)
        if record.version:  # a registered version's report is the platform's, for everyone
            page = self.folder(record) / PAGE_FILE
            content = page.read_bytes() if page.is_file() else None
            await asyncio.to_thread(self.shared.save, report_name(record.module, record.version), report, content)
        failed = report.badge()["failed"]
        self._finish(record, "completed", f"failed: {', '.join(failed)}" if failed else "every check passed")

    async def check_registered(self, owner: str, groups: list[str], name: str, profiles: ProfileCatalog) -> None:
        """Check the newest version of a registered model (its base module with its weights) as a check of its
        owner; the report is kept for everyone too, and others may deploy the version once it passed. A check
        that cannot start now leaves the version unchecked (its owner can check it later): the model stays."""
        if not self.check_registrations:
            return
        try:
            await self.submit(owner, groups, CheckRequest(module=name), profiles)
        except ReefLabError as err:
            self.log.warning("the new version of %s is not checked: %s", name, err.message)

    def refusal(self, entry: ModuleEntry, user: str) -> str | None:
        """Why `user` may not deploy `entry`, if they may not: another user's registered version is deployed only
        once it passed the platform's checks."""
        if entry.source != "registered" or entry.owner in (None, user) or not entry.versions:
            return None
        version = entry.versions[-1]
        report = self.shared.get(report_name(entry.id, version))
        if report is None:
            return f"version {version} has not been checked yet; it can be deployed by others once it passed its checks"
        failed = [r for r in report.results if r.state == "failed"]
        if not failed:
            return None
        reasons = "; ".join(f"{r.name} ({r.title}): {r.reason}" for r in failed)
        return f"version {version} failed the platform's checks, {reasons}"

    def page(self, owner: str, name: str) -> bytes:
        """The readable report a badge names: one of the user's checks (once completed), a shared report, or the
        report a module of a remote index was published with ('<module>@published')."""
        try:
            record = self.get(owner, name)
        except NotFound:
            report = self._named_report(name)
            if report is None:
                raise
            if name.endswith(f"@{PLATFORM}"):
                return self.catalogue.page(name)
            stored = self.shared.page(name)
            return stored.read_bytes() if stored.is_file() else render(report).encode()
        path = self.folder(record) / PAGE_FILE
        if record.report is None or not path.is_file():
            raise Conflict(f"Check '{name}' is {record.state} and has no report; its log says why.")
        return path.read_bytes()

    def _named_report(self, name: str) -> CheckReport | None:
        module, _, key = name.rpartition("@")
        if key == PLATFORM:
            return next((r for n, r in self._platform_reports(module) if n == name), None)
        if key != PUBLISHED:
            return self.shared.get(name)
        with contextlib.suppress(NotFound):
            return next((report for _, report in published_report(self.catalog.get(module))), None)
        return None

    def _platform_reports(self, module: str) -> list[tuple[str, CheckReport]]:
        return self.catalogue.reports(module) if self.catalogue is not None else []

    # -- badges ------------------------------------------------------------------

    def badge(self, entry: ModuleEntry, owner: str) -> dict[str, Any]:
        """The entry's check state for `owner`: their latest completed check that matches the module as it is
        now, else the newest matching shared report, else the one it was published with, else unchecked. May
        read a module's files once per entry (run it off the event loop)."""
        latest = self.latest(entry, owner)
        if latest is None:
            return dict(UNCHECKED)
        name, report = latest
        return {**report.badge(), "report": name}

    def latest(self, entry: ModuleEntry, owner: str) -> tuple[str, CheckReport] | None:
        """(name, report) of the report that gives the entry its badge, if one does."""
        return next(((name, r) for name, r in self._reports(entry, owner) if self._current(entry, r)), None)

    def badges(self, entries: list[ModuleEntry], owner: str) -> list[dict[str, Any]]:
        return [self.badge(entry, owner) for entry in entries]

    def _reports(self, entry: ModuleEntry, owner: str) -> list[tuple[str, CheckReport]]:
        # badges are made off the event loop, which may add a run meanwhile: a copy (made at once, in C) to go through
        records = list(self._records.values())
        own = [r for r in records if r.owner == owner and r.module == entry.id and r.report is not None]
        own.sort(key=lambda r: r.report.checked, reverse=True)
        shared = self.shared.find(entry.id) + self._platform_reports(entry.id)
        return [(r.id, r.report) for r in own] + shared + published_report(entry)

    def _current(self, entry: ModuleEntry, report: CheckReport) -> bool:
        if entry.source == "registered":  # a registered version never changes: its report is its version's
            return bool(entry.versions) and report.version == entry.versions[-1]
        folder = Path(report.source)
        if not folder.is_dir():  # a module of a remote index comes with its report; an installed one moved
            return entry.source == "remote"
        key = (entry.id, report.source)
        cached = self._digests.get(key)
        if cached is None or cached[0] is not entry:
            cached = self._digests[key] = (entry, tree_digest(folder))
        return cached[1] == report.digest

    # -- publishing ----------------------------------------------------------------

    def _catalogue(self) -> CatalogueClient:
        if self.catalogue is None:
            raise BadRequest(
                "Publishing is off on this server: it needs the platform's catalogue service "
                "(ModuleCheckService.catalogue_url, set by the hub)."
            )
        return self.catalogue

    def published(self) -> list[dict[str, Any]]:
        return self._catalogue().published()

    def publish(self, owner: str, module_id: str) -> dict[str, Any]:
        """Put the module, with the report of its latest check, into the platform's index (it must have passed);
        the catalogue service records the publisher as the hub knows them."""
        catalogue = self._catalogue()
        entry = self.catalog.get(module_id)
        latest = self.latest(entry, owner)
        if latest is None or not latest[1].passed:
            why = "has not been checked as it is now" if latest is None else "failed its latest check"
            raise Conflict(
                f"'{entry.id}' {why}: check it (POST /reeflab/api/checks) and publish it once its checks pass."
            )
        return catalogue.publish(entry.id, entry.metadata, latest[1])

    def unpublish(self, module_id: str) -> None:
        self._catalogue().unpublish(module_id)
