"""Runs queued async jobs on warm workers: oldest first, at most max_scale at once per service.

Each job lives in `<jobs>/<name>/`: `input/<file>`, `log` (all attempts) and, once it succeeded,
`output/`. An attempt runs in its own `attempt-N/` folder, so a retry never sees a half-written
output. A worker that dies puts the job back in the queue until `max_attempts` is reached;
a module or script error fails the job at once (the same input would fail again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .objects import JobStorage, TransferFailed
from .payload import describe_outputs
from .pool import InvocationTimeout, WorkerDied, WorkerPool, WorkerSpec, WorkerStartFailed
from .store import FAILED, SUCCEEDED, EngineStore, JobRecord

log = logging.getLogger(__name__)
GIVEN_NAME = "filename"  # in a job's folder: the caller's own name for its input file, if they gave one


def job_input(folder: Path) -> Path | None:
    """The job's input file (the only file in `input/`)."""
    files = sorted((folder / "input").glob("*")) if (folder / "input").is_dir() else []
    return files[0] if files else None


def given_name_of(folder: Path) -> str | None:
    """The caller's own name for the job's input (POST /job with a Content-Disposition filename), if any."""
    try:
        return (folder / GIVEN_NAME).read_text().strip() or None
    except OSError:
        return None


def append_log(folder: Path, text: str) -> None:
    if not folder.is_dir():
        return  # the job was deleted meanwhile
    with open(folder / "log", "a", encoding="utf-8", errors="replace") as out:
        out.write(text if text.endswith("\n") or not text else text + "\n")


def stamp(timestamp: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def note(folder: Path, message: str) -> None:
    """An engine line in the job log, timestamped like Kubernetes logs."""
    append_log(folder, f"[{stamp()}] {message}")


class JobDispatcher:
    """The background loop that claims pending jobs and runs them."""

    def __init__(
        self,
        store: EngineStore,
        pool: WorkerPool,
        jobs_dir: Path,
        spec_for: Callable[[str], WorkerSpec | None],
        storage: JobStorage,
        max_attempts: int,
        timeout: float,
        max_running: int,
    ):
        self.store, self.pool, self.jobs_dir, self.spec_for = store, pool, Path(jobs_dir), spec_for
        self.storage = storage
        self.max_attempts, self.timeout, self.max_running = max_attempts, timeout, max_running
        self.running: dict[str, tuple[asyncio.Task, str]] = {}
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        self._loop_task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop claiming jobs and cancel running ones (they stay Running; a restart requeues them)."""
        tasks = [task for task, _ in self.running.values()]
        if self._loop_task:
            tasks.append(self._loop_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wakeup.set()

    def cancel(self, job: str) -> None:
        """Stop a running job now (it is being deleted): its worker is killed, nothing is recorded."""
        entry = self.running.get(job)
        if entry:
            entry[0].cancel()

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                self._schedule()
            except Exception:
                log.exception("could not schedule jobs")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), 1.0)

    def _schedule(self) -> None:
        busy = Counter(service for _, service in self.running.values())
        for service in self.store.services_with_pending():
            spec = self.spec_for(service)
            free = min(spec.max_scale - busy[service], self.max_running - len(self.running)) if spec else 0
            if free <= 0:
                continue
            for job in self.store.pending(service, free):
                attempt = self.store.claim(job.name)
                if attempt is None:
                    continue
                task = asyncio.ensure_future(self._run(job, attempt, spec))
                self.running[job.name] = (task, service)
                task.add_done_callback(lambda _, name=job.name: self._finished(name))

    def _finished(self, name: str) -> None:
        self.running.pop(name, None)
        self.wake()

    async def _run(self, job: JobRecord, attempt: int, spec: WorkerSpec) -> None:
        folder = self.jobs_dir / job.name
        work = folder / f"attempt-{attempt}"
        try:
            shutil.rmtree(work, ignore_errors=True)
            (work / "input").mkdir(parents=True)
            (work / "output").mkdir()
            try:
                source = await self.storage.fetch(job, job_input(folder), work / "input")
            except TransferFailed as error:
                self._complete(folder, job, attempt, FAILED, error.message)
                return
            note(folder, f"attempt {attempt} of {self.max_attempts} started")
            request = {
                "id": job.name,
                "input": str(source),
                "name": given_name_of(folder) or source.name,
                "output_dir": str(work / "output"),
                "log": str(work / "log"),
                "workdir": str(work),
                "trusted": job.submitter == spec.owner,
            }
            await self._attempt(folder, work, job, attempt, spec, request)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _attempt(self, folder: Path, work: Path, job: JobRecord, attempt: int, spec: WorkerSpec, request) -> None:
        try:
            reply = await self.pool.invoke(spec, request, self.timeout)
        except WorkerDied as error:
            self._keep_log(folder, work)
            if attempt < self.max_attempts and self.store.requeue(job.name, attempt):
                note(folder, f"{error}; the job goes back to the queue")
                self.wake()
                return
            self._complete(folder, job, attempt, FAILED, f"{error}, on each of {attempt} attempts")
            return
        except (WorkerStartFailed, InvocationTimeout) as error:
            self._keep_log(folder, work)
            self._complete(folder, job, attempt, FAILED, error.message)
            return
        self._keep_log(folder, work)
        if not reply.get("ok"):
            self._complete(folder, job, attempt, FAILED, reply.get("error") or "the invocation failed")
            return
        try:
            written = await self.storage.deliver(job, work / "output")
        except TransferFailed as error:
            self._complete(folder, job, attempt, FAILED, error.message)
            return
        output = folder / "output"
        shutil.rmtree(output, ignore_errors=True)
        (work / "output").replace(output)
        outputs = describe_outputs(output)
        for out in outputs:  # where each went, for the panel's result preview
            out["stored"] = [path for name, path in written if name == out["name"]]
        if written:
            note(folder, "outputs written to " + ", ".join(path for _, path in written))
        self._complete(folder, job, attempt, SUCCEEDED, "", outputs)

    def _keep_log(self, folder: Path, work: Path) -> None:
        if (work / "log").exists():
            append_log(folder, (work / "log").read_text(errors="replace"))

    def _complete(
        self, folder: Path, job: JobRecord, attempt: int, status: str, error: str, outputs: list | None = None
    ) -> None:
        # the first outcome stands; the job log shows it from the record (see OscarEngine.job_log)
        self.store.complete(job.name, attempt, status, outputs or [], error)
