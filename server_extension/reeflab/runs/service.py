"""RunService: one user's runs of one kind, kept true by a watcher and bounded by the subclass's rules."""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from jupyter_core.paths import jupyter_data_dir
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import BadRequest, Conflict, NotFound
from ..profiles import ProfileCatalog
from .activity import HubActivity
from .backend import AbstractConfigurable, RunBackend
from .models import RunRecord
from .store import RecordStore

R = TypeVar("R", bound=RunRecord)


def now() -> datetime:
    return datetime.now(UTC)


def check_tail(tail: int) -> None:
    if not 1 <= tail <= 10000:
        raise BadRequest("tail must be between 1 and 10000 lines")


class RunService(LoggingConfigurable, Generic[R], metaclass=AbstractConfigurable):
    """Subclasses set the class attributes, a `backend_class` trait, and `check`."""

    folder_name: ClassVar[str]  # where its records are kept: <Jupyter data dir>/reeflab/<folder_name>
    record_class: ClassVar[type[RunRecord]]
    record_file: ClassVar[str]  # the record's file name in its folder
    noun: ClassVar[str]  # in messages: "deployment", "job", "pipeline run"
    api_path: ClassVar[str]  # where a user lists theirs (said when one is not found)
    stopped_state: ClassVar[str] = "cancelled"  # what `stop_all` leaves them in
    stop_ended_on_delete: ClassVar[bool] = False  # a backend that keeps objects after the end (pods, cgroups)
    keeps_server_alive: ClassVar[bool] = False  # report activity to the hub while one runs (no idle cull)

    backend_class: type[RunBackend]
    root_dir = Unicode(config=True, help="Where runs keep their state and logs (private to the user)")

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / self.folder_name)

    poll_interval = Float(1.0, config=True, help="Seconds between checks of active runs")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.backend = self.backend_class(parent=self)
        self.store: RecordStore[R] = RecordStore(self.root_dir, self.record_file, self.record_class)
        self.activity = HubActivity(parent=self) if self.keeps_server_alive else None
        self._records: dict[str, R] = {r.id: r for r in self.store.load_all()}
        self._watcher: asyncio.Task | None = None
        self._changed = asyncio.Event()  # a run to look at now (a new start), before the next poll
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, record_id: str) -> asyncio.Lock:
        """Held while a run is checked or changed: the watcher and a request may look at one run at the same
        time, and a check that began before a restart must not end the new run with the old one's verdict."""
        return self._locks.setdefault(record_id, asyncio.Lock())

    # -- queries -------------------------------------------------------------

    def list(self, owner: str) -> list[R]:
        return sorted((r for r in self._records.values() if r.owner == owner), key=lambda r: r.created)

    def get(self, owner: str, record_id: str) -> R:
        record = self._records.get(record_id)
        if record is None or record.owner != owner:  # another user's is as absent as a missing one
            raise NotFound(f"No {self.noun} '{record_id}'; list yours at {self.api_path}.")
        return record

    def active(self, owner: str | None = None) -> list[R]:
        return [r for r in self._records.values() if r.active and owner in (None, r.owner)]

    async def fresh(self, owner: str, record_id: str) -> R:
        """The run with its latest state from the backend."""
        async with self.lock(self.get(owner, record_id).id):
            record = self.get(owner, record_id)  # again: deleted while this waited, it is gone
            if record.active:
                await self.check(record)
        return record

    def folder(self, record: R) -> Path:
        return self.store.folder(record.id)

    async def logs(self, owner: str, record_id: str, tail: int = 200, **options: Any) -> list[str]:
        """Its log's last `tail` lines (`options`: what a kind's logs take besides, e.g. a pipeline's node)."""
        check_tail(tail)
        record = self.get(owner, record_id)
        return await self.backend.logs(record, self.folder(record), tail)

    # -- changes ---------------------------------------------------------------

    @abstractmethod
    async def submit(self, owner: str, groups: list[str], request: Any, profiles: ProfileCatalog) -> R:
        """Start a run of `request` for `owner` on a profile their `groups` allow."""

    async def cancel(self, owner: str, record_id: str) -> R:
        """Stop a run before it ends by itself; it stays listed, cancelled."""
        async with self.lock(self.get(owner, record_id).id):
            record = self.get(owner, record_id)
            if not record.active:
                noun = self.noun.capitalize()
                raise Conflict(f"{noun} '{record_id}' is {record.state}; only a running {self.noun} can be cancelled.")
            await self.backend.stop(record, self.folder(record))
            await self._cancelled(record)
            self._finish(record, "cancelled", "cancelled by you")
        return record

    async def _cancelled(self, record: R) -> None:
        """What a kind records about a run it has just stopped, before it is marked cancelled."""

    async def delete(self, owner: str, record_id: str) -> None:
        """Forget a run, stopping it if it runs; what it wrote into the user's folder stays."""
        async with self.lock(self.get(owner, record_id).id):
            record = self.get(owner, record_id)
            if record.active or self.stop_ended_on_delete:
                await self.backend.stop(record, self.folder(record))
            self._records.pop(record.id, None)
        self._locks.pop(record.id, None)
        await asyncio.get_running_loop().run_in_executor(None, self.store.remove, record.id)

    async def stop_all(self, reason: str = "stopped by the platform") -> list[R]:
        """Stop every active run at once (the platform stopping, tests, operators); their records stay."""
        active = self.active()
        outcomes = await asyncio.gather(*(self.backend.stop(r, self.folder(r)) for r in active), return_exceptions=True)
        for record, outcome in zip(active, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.log.error("stopping %s %s failed: %s", self.noun, record.id, outcome)
            self._finish(record, self.stopped_state, reason)
        return active

    async def _launch(self, record: R, start: Awaitable[dict]) -> None:
        """Start a run on its backend (`start`: the backend's start call) and watch it; a backend that cannot
        even start it fails it with the reason."""
        record.started_at = now()
        try:
            record.runtime = await start
        except Exception as err:
            self._finish(record, "failed", f"could not start: {err}")
            return
        self._save(record)
        self._changed.set()
        self.ensure_watching()

    def _save(self, record: R) -> None:
        self._records[record.id] = record
        self.store.save(record)

    def _finish(self, record: R, state: str, reason: str | None) -> None:
        record.state = state
        record.reason = reason
        if getattr(record, record.ENDED_AT) is None:
            setattr(record, record.ENDED_AT, now())
        self._save(record)

    # -- watching ----------------------------------------------------------------

    def ensure_watching(self) -> None:
        """Start the background check of active runs (after a restart too: re-attach)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop_watching(self) -> None:
        """Stop the watcher (the server stopping); the runs go on and the next start re-attaches to them."""
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    async def _watch(self) -> None:
        while self.active():
            await self.check_all()
            if self.activity is not None and self.active():
                await self.activity.report_if_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.poll_interval)
            self._changed.clear()

    async def check_all(self) -> None:
        for record in self.active():
            if self._records.get(record.id) is not record:
                continue  # deleted since the list was made
            async with self.lock(record.id):
                if self._records.get(record.id) is not record or not record.active:
                    continue  # deleted or ended while this waited: a check now would bring it back
                try:
                    await self.check(record)
                except Exception:
                    self.log.exception("checking %s %s failed", self.noun, record.id)

    @abstractmethod
    async def check(self, record: R) -> None:
        """Move one active run along from what its backend says."""
