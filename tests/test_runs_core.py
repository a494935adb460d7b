"""The run-lifecycle core: a new kind of long-running thing is one record, one backend and one service subclass.

The kind built here ("sleeper": a real process that sleeps, then exits with a code) gets from the core alone
what deployments, jobs and pipelines have: records private to their owner that survive a restart of the
server (re-attached by a new service), a watcher that ends them, logs, stop_all and delete.
"""

from __future__ import annotations

import asyncio
import stat
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from reeflab.errors import BadRequest, NotFound
from reeflab.processes import cpu_set, running, spawn, stop_group, tail_lines
from reeflab.runs.backend import RunBackend
from reeflab.runs.models import RunRecord
from reeflab.runs.service import RunService, now
from traitlets import Type


class Sleeper(RunRecord):
    ACTIVE_STATES: ClassVar[tuple[str, ...]] = ("running",)

    seconds: float
    code: int = 0
    state: str = "running"
    finished_at: Any = None


class SleeperBackend(RunBackend):
    name = "local"

    async def start(self, record: Sleeper, folder: Path) -> dict:
        script = (
            f"import sys, time; print('sleeping', flush=True); time.sleep({record.seconds}); sys.exit({record.code})"
        )
        log = folder / "sleeper.log"
        return spawn([sys.executable, "-c", script], log=log, cwd=folder, env={}, cpus=cpu_set(1), cgroup=None)

    async def status(self, record: Sleeper, folder: Path) -> str:
        process = running(record.runtime)
        if process is not None:
            return "running"
        return "completed" if record.code == 0 else "failed"

    async def stop(self, record: Sleeper, folder: Path) -> None:
        process = running(record.runtime)
        if process is not None:
            await stop_group(process, grace=1)

    async def logs(self, record: Sleeper, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / "sleeper.log", tail)


class SleeperService(RunService[Sleeper]):
    folder_name, record_class, record_file = "sleepers", Sleeper, "sleeper.json"
    noun, api_path = "sleeper", "/reeflab/api/sleepers"
    backend_class = Type(SleeperBackend, klass=RunBackend)

    async def submit(self, owner: str, seconds: float, code: int = 0) -> Sleeper:
        record = Sleeper(
            id=f"s{len(self._records)}", owner=owner, title="nap", profile="cpu", seconds=seconds, code=code,
            backend=self.backend.name, created=now(),
        )  # fmt: skip
        self._save(record)
        await self._launch(record, self.backend.start(record, self.folder(record)))
        return record

    async def check(self, record: Sleeper) -> None:
        state = await self.backend.status(record, self.folder(record))
        if state != "running":
            self._finish(record, state, f"exited with {record.code}")


async def ended(service: SleeperService, record: Sleeper, seconds: float = 20) -> Sleeper:
    for _ in range(int(seconds / 0.1)):
        if not record.active:
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"{record.id} still {record.state}")


def test_a_new_kind_gets_the_whole_lifecycle_from_the_core(tmp_path):
    async def scenario() -> None:
        service = SleeperService(root_dir=str(tmp_path), poll_interval=0.1)
        quick = await service.submit("ana", 0.2)
        failing = await service.submit("ana", 0.2, code=3)
        long = await service.submit("bob", 60)
        assert [r.id for r in service.list("ana")] == [quick.id, failing.id]
        with pytest.raises(NotFound, match="No sleeper 's2'; list yours at /reeflab/api/sleepers"):
            service.get("ana", long.id)  # another user's is as absent as a missing one

        # the watcher ends them with the state the subclass's check gives, and stamps the end
        assert (await ended(service, quick)).state == "completed"
        assert (await ended(service, failing)).state == "failed" and failing.reason == "exited with 3"
        assert failing.finished_at is not None and long.active
        assert await service.logs("ana", quick.id, tail=5) == ["sleeping"]
        with pytest.raises(BadRequest, match="tail must be between 1 and 10000"):
            await service.logs("ana", quick.id, tail=0)

        # records are private files and survive the server: a new service re-attaches to the running one
        record_file = tmp_path / long.id / "sleeper.json"
        assert stat.S_IMODE(record_file.stat().st_mode) == 0o600
        await service.stop_watching()
        again = SleeperService(root_dir=str(tmp_path), poll_interval=0.1)
        assert [r.id for r in again.list("bob")] == [long.id] and again.get("bob", long.id).active
        again.ensure_watching()
        process = running(long.runtime)
        assert process is not None

        # stop_all ends every active one in the kind's stopped state; delete forgets it and its folder
        stopped = await again.stop_all("the platform stops")
        assert [r.id for r in stopped] == [long.id] and running(long.runtime) is None
        assert again.get("bob", long.id).state == "cancelled"
        await again.delete("bob", long.id)
        assert again.list("bob") == [] and not (tmp_path / long.id).exists()
        await again.stop_watching()

    asyncio.run(scenario())


class GatedBackend(SleeperBackend):
    """Its status waits for a gate: a check in flight while a request changes the same run."""

    gate: asyncio.Event

    async def status(self, record: Sleeper, folder: Path) -> str:
        await self.gate.wait()
        return "failed"


def test_a_check_in_flight_never_overrides_a_later_change(tmp_path):
    async def scenario() -> None:
        service = SleeperService(root_dir=str(tmp_path), poll_interval=60, backend_class=GatedBackend)
        service.backend.gate = asyncio.Event()
        record = await service.submit("ana", 60)
        await service.stop_watching()
        looking = asyncio.create_task(service.fresh("ana", record.id))  # a GET, waiting on the backend
        await asyncio.sleep(0.1)
        deleting = asyncio.create_task(service.delete("ana", record.id))
        watching = asyncio.create_task(service.check_all())  # the watcher's look, made before the delete
        await asyncio.wait([deleting], timeout=2)  # unhindered, stopping the sleeper takes well under that
        assert not deleting.done(), "the delete waits for the check in flight"
        service.backend.gate.set()
        assert (await looking).state == "failed"
        await asyncio.gather(deleting, watching)
        assert service.list("ana") == [] and not (tmp_path / record.id).exists(), "nothing brought it back"
        await service.backend.stop(record, tmp_path)  # the sleeper this backend said had failed

    asyncio.run(scenario())
