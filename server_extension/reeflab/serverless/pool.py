"""Warm worker processes: started on demand up to a service's max_scale, reused, stopped when idle.

A worker serves one invocation at a time. A worker that dies, times out or is cancelled in the
middle of a call is killed and forgotten; the caller decides whether to retry (async jobs do).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ReefLabError

log = logging.getLogger(__name__)


class WorkerDied(Exception):
    """The worker process exited in the middle of a call."""

    def __init__(self, returncode: int | None):
        how = f"was killed by signal {-returncode}" if returncode and returncode < 0 else f"exited ({returncode})"
        super().__init__(f"the worker process {how} while serving the invocation")


class WorkerStartFailed(ReefLabError):
    status = 500


class InvocationTimeout(ReefLabError):
    status = 504


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker runs and how the pool scales it; `version` changes with the service definition."""

    service: str
    version: str
    owner: str = ""
    module: str = ""
    script: str = ""
    predict_args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    min_scale: int = 0
    max_scale: int = 1
    idle_seconds: float = 300.0
    cpu_millicores: int = 200
    memory_bytes: int = 256 * 2**20

    def wire(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "module": self.module,
            "script": self.script,
            "predict_args": self.predict_args,
        }


class Worker:
    """One `python -m reeflab.serverless.worker` process in its own session (scripts die with it)."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None
        self.busy = True  # a new worker belongs to whoever starts it
        self.retired = False
        self.last_used = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, python: str, env: dict[str, str], home: Path, timeout: float) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(home / "worker.log", "ab") as worker_log:
            self.proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                "reeflab.serverless.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=worker_log,
                env=env,
                cwd=home,
                start_new_session=True,
                limit=2**20,
            )
        try:
            ready = await self._exchange(self.spec.wire(), timeout)
        except WorkerDied:
            if self.proc.returncode is not None and self.proc.returncode < 0:
                raise  # killed from outside while loading (not the module's fault): the caller may retry
            ready = {"error": f"it exited while loading; see {home / 'worker.log'}"}
        except TimeoutError:
            ready = {"error": f"it did not start within {timeout:.0f} s; see {home / 'worker.log'}"}
        if not ready.get("ready"):
            self.kill()
            raise WorkerStartFailed(f"service '{self.spec.service}' could not start: {ready.get('error')}")

    async def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            return await self._exchange(request, timeout)
        except TimeoutError:
            raise InvocationTimeout(
                f"the invocation took longer than {timeout:.0f} s and was stopped: "
                "send smaller inputs or ask for a longer invocation timeout"
            ) from None

    async def _exchange(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Write one JSON line and wait for the reply line, the process's exit, or the timeout."""
        assert self.proc and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise WorkerDied(await self.proc.wait()) from None
        read = asyncio.ensure_future(self.proc.stdout.readline())
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            done, _ = await asyncio.wait({read, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if read in done and read.result():
                return json.loads(read.result())
            if not done:
                raise TimeoutError
            raise WorkerDied(await asyncio.wait_for(self.proc.wait(), 10))
        finally:
            read.cancel()
            exited.cancel()

    def kill(self) -> None:
        """SIGKILL the worker's whole session (its script too); asyncio reaps the process."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class WorkerPool:
    """All warm workers of the engine, at most `max_workers` at a time across services."""

    def __init__(self, home: Path, base_env: dict[str, str], max_workers: int, start_timeout: float, python: str = ""):
        self.home = Path(home)
        self.base_env = base_env
        self.max_workers = max_workers
        self.start_timeout = start_timeout
        self.python = python or sys.executable
        self.workers: list[Worker] = []
        self._event = asyncio.Event()
        self._failed_starts: dict[str, float] = {}
        self._prewarming: set[asyncio.Task] = set()

    # -- invocations ----------------------------------------------------------------------

    async def invoke(self, spec: WorkerSpec, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one invocation on a free warm worker of `spec` (starting one if allowed)."""
        worker = await self._acquire(spec)
        try:
            reply = await worker.call(request, timeout)
        except BaseException:
            self._drop(worker)  # dead, stuck or cancelled mid-call: its state is unknown
            raise
        self._release(worker)
        return reply

    async def _acquire(self, spec: WorkerSpec) -> Worker:
        while True:
            worker = self._idle(spec)
            if worker:
                worker.busy = True
                return worker
            if self._can_grow(spec):
                return await self._start(spec)
            victim = self._evictable(spec)
            if victim:
                self._drop(victim)
                continue
            await self._changed()

    async def _start(self, spec: WorkerSpec) -> Worker:
        worker = Worker(spec)
        self.workers.append(worker)
        env = {**self.base_env, **spec.env, "REEFLAB_ENGINE_PID": str(os.getpid())}
        try:
            await worker.start(self.python, env, self.home / spec.service, self.start_timeout)
        except BaseException:
            self._drop(worker)
            self._failed_starts[spec.version] = time.monotonic()
            raise
        log.info("started worker %s for service %s", worker.pid, spec.service)
        return worker

    def _idle(self, spec: WorkerSpec) -> Worker | None:
        idle = [w for w in self._of(spec) if not w.busy and w.alive]
        return max(idle, key=lambda w: w.last_used) if idle else None

    def _of(self, spec: WorkerSpec) -> list[Worker]:
        return [w for w in self.workers if w.spec.version == spec.version and not w.retired]

    def _can_grow(self, spec: WorkerSpec) -> bool:
        return len(self._of(spec)) < spec.max_scale and len(self.workers) < self.max_workers

    def _evictable(self, spec: WorkerSpec) -> Worker | None:
        """An idle worker of another service, stopped to make room when the engine is full."""
        if len(self._of(spec)) >= spec.max_scale:
            return None
        others = [w for w in self.workers if not w.busy and w.spec.version != spec.version]
        return min(others, key=lambda w: w.last_used) if others else None

    async def _changed(self) -> None:
        await self._event.wait()

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def _release(self, worker: Worker) -> None:
        if worker.retired or not worker.alive:
            self._drop(worker)
            return
        worker.busy = False
        worker.last_used = time.monotonic()
        self._wake()

    def _drop(self, worker: Worker) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
            log.info("stopping worker %s of service %s", worker.pid, worker.spec.service)
        worker.kill()
        self._wake()

    # -- scaling --------------------------------------------------------------------------

    def retire(self, service: str) -> None:
        """Stop the workers of a service (deleted or changed): idle ones now, busy ones after their call."""
        for worker in [w for w in self.workers if w.spec.service == service]:
            self._retire_one(worker)

    def maintain(self, specs: dict[str, WorkerSpec]) -> None:
        """Periodic: stop idle workers above min_scale, retire stale ones, start up to min_scale."""
        now = time.monotonic()
        for worker in list(self.workers):
            current = specs.get(worker.spec.service)
            if current is None or current.version != worker.spec.version:
                self._retire_one(worker)
        for spec in specs.values():
            idle = sorted((w for w in self._of(spec) if not w.busy), key=lambda w: w.last_used)
            surplus = len(self._of(spec)) - spec.min_scale
            for worker in idle[: max(0, surplus)]:
                if now - worker.last_used > spec.idle_seconds:
                    self._drop(worker)
            missing = min(spec.min_scale - len(self._of(spec)), self.max_workers - len(self.workers))
            if now - self._failed_starts.get(spec.version, -1e9) < 30:
                continue  # its last start failed: do not retry in a tight loop
            for _ in range(max(0, missing)):
                task = asyncio.ensure_future(self._prewarm(spec))
                self._prewarming.add(task)
                task.add_done_callback(self._prewarming.discard)

    def _retire_one(self, worker: Worker) -> None:
        if worker.busy:
            worker.retired = True
        else:
            self._drop(worker)

    async def _prewarm(self, spec: WorkerSpec) -> None:
        if len(self._of(spec)) >= spec.min_scale or not self._can_grow(spec):
            return  # another task or an invocation got there first
        try:
            worker = await self._start(spec)
        except Exception as error:
            log.warning("could not keep a warm worker for service %s: %s", spec.service, error)
            return
        self._release(worker)

    def live(self) -> list[Worker]:
        return list(self.workers)

    def close(self) -> None:
        for worker in list(self.workers):
            self._drop(worker)
