"""Runs queued async jobs on warm workers: oldest first, at most max_scale at once per service.

Each job lives in `<jobs>/<name>/`: `input/<file>`, `log` (all attempts) and, once it succeeded,
`output/`. An attempt runs in its own `attempt-N/` folder, so a retry never sees a half-written
output. A worker that dies puts the job back in the queue until `max_attempts` is reached;
a module or script error fails the job at once (the same input would fail again).

Uploads queued for a module's service faster than its workers take them go to a worker together, up to GROUP
at a time (their files in one tar, `.group-<id>/` beside the jobs' folders): the worker predicts them in forward
passes of several images, as batch slices do. Each stays a job of its own: its own claim and attempt count,
outcome, outputs and log (which says it ran in a group, and holds the group's output); a worker that dies puts
each back in the queue. A job alone in the queue (or a script service's, or one sent with POST /job) runs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .objects import JobStorage, TransferFailed
from .payload import describe_outputs
from .pool import InvocationTimeout, WorkerDied, WorkerPool, WorkerSpec, WorkerStartFailed
from .store import FAILED, SUCCEEDED, EngineStore, JobRecord

log = logging.getLogger(__name__)
GROUP = 8  # queued uploads of a module's service one worker takes together, at most
AHEAD = 1  # invocations of a module's service prepared (inputs fetched) beyond its workers, waiting for one
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
        self.holding: dict[asyncio.Task, str] = {}  # tasks fetching their inputs or invoking: they hold a worker
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
        """Stop a running job now (it is being deleted): its worker is killed, nothing is recorded. A job running
        in a group is left to finish with it, and nothing of it is recorded or delivered (see _run_group)."""
        entry = self.running.get(job)
        if entry and sum(task is entry[0] for task, _ in self.running.values()) == 1:
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
        busy = Counter(self.holding.values())  # a task settling its outputs holds no worker any more
        for service in self.store.services_with_pending():
            spec = self.spec_for(service)
            # a module's service gets one invocation more than its workers, fetched and ready when a worker frees
            if spec is None:
                continue
            ahead = AHEAD if spec.module else 0
            free = min(spec.max_scale + ahead - busy[service], self.max_running + ahead - len(self.holding))
            if free <= 0:
                continue
            waiting = self.store.pending(service, free * (GROUP if spec.module else 1))
            for group in self._groups(waiting, free, spec):
                attempts = self.store.claim_many([job.name for job in group])
                claimed = [(job, attempts[job.name]) for job in group if job.name in attempts]
                if not claimed:
                    continue
                if len(claimed) == 1:
                    task = asyncio.ensure_future(self._run(*claimed[0], spec))
                else:
                    task = asyncio.ensure_future(self._run_group(claimed, spec))
                self.holding[task] = service
                busy[service] += 1
                names = [job.name for job, _ in claimed]
                for name in names:
                    self.running[name] = (task, service)
                task.add_done_callback(lambda _, names=names: self._finished(names))

    @staticmethod
    def _groups(jobs: list[JobRecord], free: int, spec: WorkerSpec) -> list[list[JobRecord]]:
        """The oldest jobs in at most `free` invocations: alone, except uploads to a module's service when more wait
        than workers are free, which go together (one submitter's, at most GROUP, spread over the free workers)."""
        if not spec.module or len(jobs) <= free:
            return [[job] for job in jobs[:free]]
        size = min(GROUP, math.ceil(len(jobs) / free))
        groups: list[list[JobRecord]] = []
        for job in jobs:
            joined = next(
                (g for g in groups if len(g) < size and job.source and g[0].source and g[0].submitter == job.submitter),
                None,
            )
            if joined is not None:
                joined.append(job)
            elif len(groups) < free:
                groups.append([job])
        return groups

    def _finished(self, names: list[str]) -> None:
        for name in names:
            self.running.pop(name, None)
        for task in [task for task in self.holding if task.done()]:
            self.holding.pop(task)
        self.wake()

    async def _invoke(self, spec: WorkerSpec, request: dict) -> dict:
        """The pool's invocation; once it returns, the worker is free for the next one while this task delivers."""
        try:
            return await self.pool.invoke(spec, request, self.timeout)
        finally:
            self.holding.pop(asyncio.current_task(), None)
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
            reply = await self._invoke(spec, request)
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
        outcome = await self._settle(folder, job, reply, work / "output")
        if outcome is not None:
            self._complete(folder, job, attempt, *outcome)

    async def _run_group(self, claimed: list[tuple[JobRecord, int]], spec: WorkerSpec) -> None:
        """Several claimed jobs in one invocation; each is fetched, retried, failed and recorded on its own."""
        work = self.jobs_dir / f".group-{uuid.uuid4().hex}"  # no job's name: removed at the engine's next start
        try:
            (work / "output").mkdir(parents=True)
            for k in range(len(claimed)):
                (work / "input" / str(k)).mkdir(parents=True)
            fetched = await asyncio.gather(
                *(
                    self.storage.fetch(job, job_input(self.jobs_dir / job.name), work / "input" / str(k))
                    for k, (job, _) in enumerate(claimed)
                ),
                return_exceptions=True,
            )
            members = []
            for (job, attempt), source in zip(claimed, fetched, strict=True):
                if isinstance(source, TransferFailed):
                    self._complete(self.jobs_dir / job.name, job, attempt, FAILED, source.message)
                elif isinstance(source, BaseException):
                    raise source
                else:
                    members.append((job, attempt, source))
            if not members:
                return
            together = f", in one invocation with {len(members) - 1} other queued uploads" if len(members) > 1 else ""
            for job, attempt, _ in members:
                note(self.jobs_dir / job.name, f"attempt {attempt} of {self.max_attempts} started{together}")
            archive = work / "group.tar"
            await asyncio.to_thread(_pack, archive, [source for _, _, source in members])
            request = {
                "id": members[0][0].name,
                "input": str(archive),
                "name": archive.name,
                "output_dir": str(work / "output"),
                "log": str(work / "log"),
                "workdir": str(work),
                "trusted": all(job.submitter == spec.owner for job, _, _ in members),
                "group": [
                    {"job": job.name, "name": given_name_of(self.jobs_dir / job.name) or source.name}
                    for job, _, source in members
                ],
            }
            await self._attempt_group(work, members, spec, request)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _attempt_group(self, work: Path, members: list, spec: WorkerSpec, request: dict) -> None:
        try:
            reply = await self._invoke(spec, request)
        except WorkerDied as error:
            for job, attempt, _ in members:
                folder = self.jobs_dir / job.name
                self._keep_log(folder, work)
                if attempt < self.max_attempts and self.store.requeue(job.name, attempt):
                    note(folder, f"{error}; the job goes back to the queue")
                else:
                    self._complete(folder, job, attempt, FAILED, f"{error}, on each of {attempt} attempts")
            self.wake()
            return
        except (WorkerStartFailed, InvocationTimeout) as error:
            for job, attempt, _ in members:
                self._keep_log(self.jobs_dir / job.name, work)
                self._complete(self.jobs_dir / job.name, job, attempt, FAILED, error.message)
            return
        replies = reply.get("replies") if reply.get("ok") else None
        if not isinstance(replies, list) or len(replies) != len(members):
            failed = reply if not reply.get("ok") else {"ok": False, "error": "the worker did not answer for each job"}
            replies = [failed] * len(members)
        settling, settled = [], []
        for k, (job, attempt, _) in enumerate(members):
            if self.store.get_job(job.name) is None:
                continue  # deleted while it ran: nothing of it is recorded or delivered
            folder = self.jobs_dir / job.name
            self._keep_log(folder, work)
            (work / "output" / str(k)).mkdir(exist_ok=True)
            reply_k = replies[k] if isinstance(replies[k], dict) else {"ok": False, "error": "no answer for this job"}
            settling.append(self._settle(folder, job, reply_k, work / "output" / str(k)))
            settled.append((job, attempt))
        outcomes = await asyncio.gather(*settling)
        # every outcome of the group in one transaction (one synced write to the disk, not one a job)
        recorded = []
        for (job, attempt), outcome in zip(settled, outcomes, strict=True):
            if outcome is not None:
                status, error, outputs = outcome
                recorded.append((job.name, attempt, status, outputs, error))
        self.store.complete_many(recorded)

    async def _settle(
        self, folder: Path, job: JobRecord, reply: dict, produced: Path
    ) -> tuple[str, str, list[dict]] | None:
        """A job's outcome (status, error, outputs) from its worker's reply: on success its outputs (in `produced`)
        are delivered to the service's output paths, then kept in the job's folder. None: the job was deleted."""
        if not reply.get("ok"):
            return FAILED, reply.get("error") or "the invocation failed", []
        try:
            written = await self.storage.deliver(job, produced)
        except TransferFailed as error:
            return FAILED, error.message, []
        output = folder / "output"
        shutil.rmtree(output, ignore_errors=True)
        try:
            produced.replace(output)
        except FileNotFoundError:
            return None  # the job was deleted meanwhile
        outputs = describe_outputs(output)
        for out in outputs:  # where each went, for the panel's result preview
            out["stored"] = [path for name, path in written if name == out["name"]]
        if written:
            note(folder, "outputs written to " + ", ".join(path for _, path in written))
        return SUCCEEDED, "", outputs

    def _keep_log(self, folder: Path, work: Path) -> None:
        if (work / "log").exists():
            append_log(folder, (work / "log").read_text(errors="replace"))

    def _complete(
        self, folder: Path, job: JobRecord, attempt: int, status: str, error: str, outputs: list | None = None
    ) -> None:
        # the first outcome stands; the job log shows it from the record (see OscarEngine.job_log)
        self.store.complete(job.name, attempt, status, outputs or [], error)


def _pack(archive: Path, files: list[Path]) -> None:
    """The group's input: member `k` is the `k`-th job's file (uncompressed: images do not shrink)."""
    with tarfile.open(archive, "w") as tar:
        for k, path in enumerate(files):
            tar.add(path, arcname=str(k), recursive=False)
