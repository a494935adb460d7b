"""Warm worker processes: started on demand up to a service's max_scale, reused, stopped when idle.

A worker serves one invocation at a time. A worker that dies, times out or is cancelled in the
middle of a call is killed and forgotten; the caller decides whether to retry (async jobs do).
Each worker runs in its sandbox (sandbox.py) and, where the kernel lets the engine make one, in a
cgroup with its service's CPU and memory: a worker the kernel stops for its memory fails the
invocation with that reason, and is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..errors import ReefLabError
from ..limits import Cgroup, memory_limit_for, out_of_memory
from .sandbox import SandboxPolicy, WorkerBox
from .zygote import THREADS

log = logging.getLogger(__name__)


class WorkerDied(Exception):
    """The worker process exited in the middle of a call."""

    def __init__(self, returncode: int | None):
        if returncode and returncode > 128:  # bwrap exits 128 + N when its sandboxed worker got signal N
            returncode = 128 - returncode
        how = f"was killed by signal {-returncode}" if returncode and returncode < 0 else f"exited ({returncode})"
        super().__init__(f"the worker process {how} while serving the invocation")


class WorkerStartFailed(ReefLabError):
    status = 500


class Unforkable(WorkerStartFailed):
    """The zygote's module holds what a fork cannot share (a CUDA context): its workers each load it."""


class InvocationTimeout(ReefLabError):
    status = 504


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker runs and how the pool scales it; `version` changes with the service definition."""

    service: str
    version: str
    owner: str = ""
    owner_generation: str = ""  # which incarnation of the owner (their OS account must be of it)
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
    """One `python -m reeflab.oscar_engine.worker` process in its own session (scripts die with it)."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.id = uuid.uuid4().hex[:8]
        self.proc: asyncio.subprocess.Process | None = None
        self.box: WorkerBox | None = None
        self.cgroup: Cgroup | None = None
        self.cgroup_name = ""
        self.busy = True  # a new worker belongs to whoever starts it
        self.retired = False
        self.last_used = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    entry = "reeflab.oscar_engine.worker"  # the module it runs (python -m)

    async def start(self, python: str, env: dict[str, str], home: Path, timeout: float) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        program = [python, "-m", self.entry]
        enter = self.cgroup.enter if self.cgroup else None
        stdio = self._stdio()
        with open(home / "worker.log", "ab") as worker_log:
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *(self.box.command(program) if self.box else program),
                    stdin=stdio,
                    stdout=stdio,
                    stderr=worker_log,
                    env=env,
                    cwd=home,
                    start_new_session=True,
                    preexec_fn=self.box.preexec(enter) if self.box else None,
                    limit=2**20,
                )
            except (OSError, subprocess.SubprocessError) as error:
                raise WorkerStartFailed(
                    f"service '{self.spec.service}' could not start: its worker process did not start ({error})"
                ) from None
            finally:
                self._started()
        wire = {**self.spec.wire(), "sandboxed": bool(self.box and self.box.sandboxed)}
        try:
            ready = await self._exchange(wire, timeout)
        except WorkerDied:
            if self.oom_reason():
                ready = {"error": self.oom_reason()}  # loading the module alone is more than its memory
            elif self.proc.returncode is not None and (self.proc.returncode < 0 or self.proc.returncode > 128):
                raise  # killed from outside while loading (not the module's fault; bwrap: 128 + N): may retry
            else:
                ready = {"error": f"it exited while loading{self._sandbox_error(home)}; see {home / 'worker.log'}"}
        except TimeoutError:
            ready = {"error": f"it did not start within {timeout:.0f} s; see {home / 'worker.log'}"}
        if not ready.get("ready"):
            self.kill()
            failed = Unforkable if ready.get("unforkable") else WorkerStartFailed
            raise failed(f"service '{self.spec.service}' could not start: {ready.get('error')}")

    def _stdio(self) -> int:
        return asyncio.subprocess.PIPE

    def _started(self) -> None:
        """Once the process started (or failed to): what the engine held for it only may go."""

    @staticmethod
    def _sandbox_error(home: Path) -> str:
        """bwrap's own complaint, if the sandbox could not be made (the end of the worker log)."""
        with contextlib.suppress(OSError), open(home / "worker.log", "rb") as worker_log:
            worker_log.seek(max(0, worker_log.seek(0, os.SEEK_END) - 4096))
            lines = worker_log.read().decode(errors="replace").splitlines()
            found = [line for line in lines if line.startswith("bwrap: ")]
            if found:
                return f": its sandbox could not be made ({found[-1]})"
        return ""

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
            if read in done and read.exception() is None and read.result():  # a reset socket: died too
                return json.loads(read.result())
            if not done:
                raise TimeoutError
            raise WorkerDied(await asyncio.wait_for(self.proc.wait(), 10))
        finally:
            read.cancel()
            exited.cancel()

    def oom_reason(self) -> str | None:
        """The reason to give when the kernel killed one of this worker's processes for its memory limit."""
        if self.cgroup is None or not self.cgroup.oom_killed(self.proc.returncode if self.proc else None):
            return None
        advice = "give the service more memory in its definition, or send smaller inputs"
        return out_of_memory(self.cgroup.memory_limit, advice)

    def kill(self) -> None:
        """SIGKILL the worker's whole session (bwrap takes its sandbox along); asyncio reaps the process."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def release(self) -> None:
        """Once it is dead: its cgroup (and anything left in it) and its folder go. Blocking."""
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.box is not None:
            self.box.remove()


class ForkedProcess:
    """What the pool sees of a worker forked by a zygote, shaped like the asyncio process of a started one:
    `stdin`/`stdout` its end of the socket pair, `pid` its pid on the engine's side, `wait()` until the
    zygote reports its exit (or dies, taking its workers along)."""

    def __init__(self, pid: int, sock: socket.socket, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader):
        self.pid, self.stdin, self.stdout, self._sock = pid, stdin, stdout, sock
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        try:  # signals go to this very process even if its pid were reused after it exits
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:
            self._pidfd = None

    @property
    def gone(self) -> bool:
        """Its end of the socket closed: it died, even if the zygote has not said so yet (nor the loop seen it)."""
        if self.returncode is not None or self.stdout.at_eof() or self.stdout.exception() is not None:
            return True
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def kill(self) -> None:
        if self.returncode is None and self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def exited(self, returncode: int) -> None:
        if self.returncode is not None:
            return
        self.returncode = returncode
        self._exited.set()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self.stdin.close()

    async def wait(self) -> int:
        await self._exited.wait()
        return self.returncode


class Zygote(Worker):
    """A service version's zygote (zygote.py): started as a worker is (sandbox, account, cgroup), it loads and
    warms the module once and never serves; `fork` makes a serving worker of it, sharing its memory."""

    entry = "reeflab.oscar_engine.zygote"

    def __init__(self, spec: WorkerSpec):
        super().__init__(spec)
        self.busy = False
        self.children: dict[int, ForkedProcess] = {}  # by their pid in the zygote's (sandbox's) namespace
        self._sock: socket.socket | None = None
        self._theirs: socket.socket | None = None
        self._replies: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._forking = asyncio.Lock()

    def _stdio(self) -> int:
        self._sock, self._theirs = socket.socketpair()
        return self._theirs.fileno()

    def _started(self) -> None:
        self._theirs.close()

    async def _exchange(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one line (with a file descriptor to hand over), wait for the zygote's answer line."""
        if self._reader is None:
            self._lines, self._writer = await asyncio.open_unix_connection(sock=self._sock, limit=2**20)
            self._reader = asyncio.ensure_future(self._read())
        data, fds = json.dumps({k: v for k, v in message.items() if k != "fd"}).encode() + b"\n", message.get("fd")
        try:
            socket.send_fds(self._sock, [data], [fds]) if fds is not None else self._sock.sendall(data)
        except OSError:
            raise WorkerDied(await self.proc.wait()) from None
        answer = asyncio.ensure_future(self._replies.get())
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            done, _ = await asyncio.wait({answer, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if answer in done and answer.result() is not None:
                return answer.result()
            if not done:
                raise TimeoutError
            raise WorkerDied(await asyncio.wait_for(self.proc.wait(), 10))
        finally:
            answer.cancel()
            exited.cancel()

    async def _read(self) -> None:
        """The zygote's lines: one answer per request, and the exits of its workers whenever they come. It runs
        the owner's code: anything else (an answer nobody asked for, a line that is no such message) ends it."""
        try:
            while line := await self._lines.readline():
                message = json.loads(line)
                if not isinstance(message, dict) or self._replies.qsize() > 0 and "exited" not in message:
                    raise ValueError(f"unexpected: {line[:200]!r}")
                if "exited" in message:
                    child = self.children.pop(message["exited"], None)
                    if child is not None:
                        child.exited(int(message.get("returncode", -signal.SIGKILL)))
                else:
                    self._replies.put_nowait(message)
        except Exception as error:
            log.warning("the zygote of service %s said something unreadable: %s", self.spec.service, error)
            self.kill()
        finally:
            self._replies.put_nowait(None)
            for child in self.children.values():  # they die with it (PR_SET_PDEATHSIG)
                child.exited(-signal.SIGKILL)
            self.children.clear()
            self._writer.close()

    async def fork(self, timeout: float) -> ForkedProcess:
        """A new serving worker: its own socket pair, one end handed to the zygote, which forks."""
        ours, theirs = socket.socketpair()
        try:
            async with self._forking:
                answer = await self._exchange({"fork": uuid.uuid4().hex[:8], "fd": theirs.fileno()}, timeout)
            inside = answer.get("pid")
            pid = await asyncio.to_thread(self._engine_pid, inside) if isinstance(inside, int) else None
            if pid is None:
                raise WorkerStartFailed(f"service '{self.spec.service}' could not start: its forked worker vanished")
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=2**20)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        child = ForkedProcess(pid, ours, writer, reader)
        self.children[inside] = child
        return child

    def _engine_pid(self, inside: int) -> int | None:
        """The forked worker's pid as the engine sees it (the zygote's sandbox has a pid namespace of its own)."""
        if not (self.box and self.box.sandboxed):
            return inside
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(OSError, ValueError):
                    status = Path(f"/proc/{process.pid}/status").read_text()
                    line = next(line for line in status.splitlines() if line.startswith("NSpid:"))
                    pids = [int(p) for p in line.split()[1:]]
                    if len(pids) > 1 and pids[-1] == inside:
                        return process.pid
        return None


class ForkedWorker(Worker):
    """A serving worker forked from its service's zygote: the zygote's sandbox and account, a cgroup of its own
    (the pages it shares stay charged to the zygote's); it starts in milliseconds, without loading anything."""

    zygote: Zygote | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and not self.proc.gone

    def adopt(self, zygote: Zygote) -> None:
        self.zygote, self.box = zygote, zygote.box

    async def start(self, python: str, env: dict[str, str], home: Path, timeout: float) -> None:
        self.proc = await self.zygote.fork(timeout)
        if self.cgroup is not None:
            try:
                await asyncio.to_thread(self.cgroup.add, self.proc.pid)
            except OSError as error:
                self.kill()
                raise WorkerStartFailed(
                    f"service '{self.spec.service}' could not start: its worker's cgroup refused it ({error})"
                ) from None
        try:
            ready = await self._ready(timeout)
        except TimeoutError:
            ready = {"error": f"its forked worker did not answer within {timeout:.0f} s"}
        if not ready.get("ready"):
            self.kill()
            raise WorkerStartFailed(f"service '{self.spec.service}' could not start: {ready.get('error')}")

    async def _ready(self, timeout: float) -> dict[str, Any]:
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise WorkerDied(await asyncio.wait_for(self.proc.wait(), 10))
        return json.loads(line)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def release(self) -> None:
        """Its cgroup goes; its folder is the zygote's."""
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None


class WorkerPool:
    """All warm workers of the engine, at most `max_workers` at a time across services."""

    def __init__(
        self,
        home: Path,
        base_env: dict[str, str],
        max_workers: int,
        start_timeout: float,
        sandbox: SandboxPolicy,
        python: str = "",
        fork: bool = True,
    ):
        self.home = Path(home)
        self.fork = fork  # module services: workers forked from a zygote per service version
        self.zygotes: dict[str, asyncio.Task] = {}  # service version -> the start of its zygote
        self._unforkable: set[str] = set()  # versions whose zygote said its module cannot be forked
        self.base_env = base_env
        self.max_workers = max_workers
        self.start_timeout = start_timeout
        self.sandbox = sandbox
        self.python = python or sys.executable
        self.workers: list[Worker] = []
        self._event = asyncio.Event()
        self._failed_starts: dict[str, float] = {}
        self.stopped: set[str] = set()  # services stopped through the API: no warm workers kept
        self._prewarming: set[asyncio.Task] = set()
        self._releasing: set[asyncio.Task] = set()
        self._unreleased: set[Worker] = set()  # stopped, their cgroup or folder not yet removed
        self._cgroups = True  # until one could not be made: then none can
        self._cgroup_names: set[str] = set()
        self._remove_leftover_cgroups()

    def _remove_leftover_cgroups(self) -> None:
        """Cgroups of workers of an engine that was killed (their processes died with it) go now."""
        record = self.home / "cgroups"
        with contextlib.suppress(OSError):
            for name in record.read_text().split():
                with contextlib.suppress(ValueError):
                    leftover = Cgroup.find(name)
                    if leftover is not None:
                        leftover.remove()
        self._record_cgroups()

    def _record_cgroups(self) -> None:
        with contextlib.suppress(OSError):
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.home / "cgroups").write_text("".join(f"{name}\n" for name in sorted(self._cgroup_names)))

    # -- invocations ----------------------------------------------------------------------

    async def invoke(self, spec: WorkerSpec, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one invocation on a free warm worker of `spec` (starting one if allowed).

        The reply is the worker's, except when the kernel stopped a process of it for its memory:
        then the invocation failed with that reason (the same input would fail again).
        """
        worker = await self._acquire(spec)
        place = None
        try:
            inner, place = await self._enter(worker, request)
            reply = await worker.call(inner, timeout)
        except asyncio.CancelledError:
            self._drop(worker)
            if worker.box:
                worker.box.discard(place)
            raise
        except BaseException as error:
            oom = worker.oom_reason()  # before the worker's cgroup goes
            worker.kill()  # dead, stuck or failed to prepare: its state is unknown
            await self._leave(worker, request, place)
            self._drop(worker)
            if oom and isinstance(error, WorkerDied):
                return {"ok": False, "kind": "failure", "error": oom}
            raise
        oom = worker.oom_reason()
        await self._leave(worker, request, place)
        if oom:
            self._drop(worker)  # its cgroup remembers the kill: a fresh worker for the next call
            return reply if reply.get("ok") else {**reply, "kind": "failure", "error": oom}
        self._release(worker)
        return reply

    @staticmethod
    async def _enter(worker: Worker, request: dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
        """The request as the worker's sandbox sees it, its input copied in."""
        if worker.box is None:
            return request, None
        try:
            return await asyncio.to_thread(worker.box.enter, request)
        except OSError as error:
            raise WorkerStartFailed(f"could not give the input to service '{worker.spec.service}': {error}") from None

    @staticmethod
    async def _leave(worker: Worker, request: dict[str, Any], place: Path | None) -> None:
        if worker.box is not None and place is not None:
            try:
                await asyncio.to_thread(worker.box.leave, request, place)
            except OSError as error:  # e.g. the job was deleted meanwhile, its folder with it
                log.warning("could not take the log and outputs of %s back: %s", request.get("id"), error)

    async def _acquire(self, spec: WorkerSpec) -> Worker:
        while True:
            self._forget_dead()
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
        forked = self.fork and bool(spec.module) and spec.version not in self._unforkable
        worker = ForkedWorker(spec) if forked else Worker(spec)
        self.workers.append(worker)
        try:
            if forked:
                try:
                    worker.adopt(await self._zygote(spec))
                except Unforkable as why:
                    log.info("%s; its workers load it each", why)
                    self._unforkable.add(spec.version)
                    self.workers.remove(worker)
                    return await self._start(spec)
                self._give_cgroup(worker, await asyncio.to_thread(self._cgroup, spec, worker))
                env = {}
            else:
                env = await self.prepare(worker)
            await worker.start(self.python, env, self.home / spec.service, self.start_timeout)
        except BaseException:
            self._drop(worker)
            self._failed_starts[spec.version] = time.monotonic()
            raise
        log.info("started worker %s for service %s", worker.pid, spec.service)
        return worker

    async def prepare(self, worker: Worker) -> dict[str, str]:
        """A new worker's (or exposed service's) sandbox folder and account, and its cgroup (recorded, so that
        a killed engine's are removed at the next start); returns its environment. `discard` undoes it."""
        spec = worker.spec
        problem = self.sandbox.problem()
        if problem:
            raise WorkerStartFailed(f"service '{spec.service}' could not start: {problem}")
        worker.box = await asyncio.to_thread(self.sandbox.prepare, spec.service, spec.owner, spec.owner_generation)
        self._give_cgroup(worker, await asyncio.to_thread(self._cgroup, spec, worker))
        env = worker.box.environment({**self.base_env, **spec.env})
        if not worker.box.sandboxed:  # a sandboxed worker's parent is bwrap, which dies with the engine
            env["REEFLAB_ENGINE_PID"] = str(os.getpid())
        return env

    def _give_cgroup(self, worker: Worker, cgroup: Cgroup | None) -> None:
        worker.cgroup = cgroup
        if cgroup is not None:
            worker.cgroup_name = cgroup.name
            self._cgroup_names.add(cgroup.name)
            self._record_cgroups()

    async def _zygote(self, spec: WorkerSpec) -> Zygote:
        """The zygote of this version of the service, started (its module loaded) if none is."""
        task = self.zygotes.get(spec.version)
        if task is not None and task.done() and (task.cancelled() or task.exception() or not task.result().alive):
            task = None  # its start failed, or it died since: a new one
        if task is None:
            task = asyncio.ensure_future(self._start_zygote(spec))
            self.zygotes[spec.version] = task
        return await asyncio.shield(task)

    async def _start_zygote(self, spec: WorkerSpec) -> Zygote:
        zygote = Zygote(spec)
        try:
            env = await self.prepare(zygote)
            threads = {name: value for name, value in env.items() if name.endswith("_NUM_THREADS")}
            env = {**env, **dict.fromkeys(threads, "1"), THREADS: json.dumps(threads)}  # one thread until forked
            await zygote.start(self.python, env, self.home / spec.service, self.start_timeout)
        except BaseException:
            self._failed_starts[spec.version] = time.monotonic()
            self._drop(zygote)
            raise
        log.info("started the zygote %s of service %s", zygote.pid, spec.service)
        watch = asyncio.ensure_future(self._watch(zygote))
        self._releasing.add(watch)
        watch.add_done_callback(self._releasing.discard)
        return zygote

    async def _watch(self, zygote: Zygote) -> None:
        """A zygote that exits (killed, out of memory) takes its workers along; its sandbox and cgroup go."""
        await zygote.proc.wait()
        self._drop_zygote(zygote)

    def _drop_zygote(self, zygote: Zygote) -> None:
        task = self.zygotes.get(zygote.spec.version)
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            if task.result() is zygote:
                del self.zygotes[zygote.spec.version]
        self._drop(zygote)

    def _started_zygotes(self) -> list[Zygote]:
        return [t.result() for t in self.zygotes.values() if t.done() and not t.cancelled() and not t.exception()]

    def discard(self, worker: Worker) -> None:
        """Kill a worker (or an exposed service's process) now; its cgroup and folder go once it is dead."""
        self._drop(worker)

    def _cgroup(self, spec: WorkerSpec, worker: Worker) -> Cgroup | None:
        """The worker's cgroup: the service's CPUs, and its memory with the headroom modules get."""
        if not self._cgroups:
            return None
        memory = memory_limit_for(math.ceil(spec.memory_bytes / 10**6))
        made = Cgroup.create(f"serverless-{spec.service}-{worker.id}", memory, spec.cpu_millicores / 1000)
        if made is None:
            self._cgroups = False
            log.warning("workers run without CPU and memory limits: the engine cannot make cgroups here")
        return made

    def _forget_cgroup(self, worker: Worker) -> None:
        if worker.cgroup_name in self._cgroup_names:
            self._cgroup_names.discard(worker.cgroup_name)
            self._record_cgroups()

    def _forget_dead(self) -> None:
        """Workers that died while idle (killed, crashed) give their place up now, not once idle for too long."""
        for worker in [w for w in self.workers if not w.busy and w.proc is not None and not w.alive]:
            self._drop(worker)

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
        if (worker.cgroup is not None or worker.box is not None) and worker not in self._unreleased:
            self._unreleased.add(worker)
            task = asyncio.ensure_future(self._release_later(worker))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        self._wake()

    async def _release_later(self, worker: Worker) -> None:
        if worker.proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.proc.wait(), 10)
        await asyncio.to_thread(worker.release)
        self._unreleased.discard(worker)
        self._forget_cgroup(worker)

    # -- scaling --------------------------------------------------------------------------

    def retire(self, service: str) -> None:
        """Stop the workers of a service (deleted or changed): idle ones now, busy ones after their call."""
        for worker in [w for w in self.workers if w.spec.service == service]:
            self._retire_one(worker)

    def stop_service(self, service: str) -> None:
        """Kill every worker of a service now, busy ones too (its owner was deleted: nothing of theirs runs on)."""
        for worker in [w for w in self.workers if w.spec.service == service]:
            self._drop(worker)
        for zygote in [z for z in self._started_zygotes() if z.spec.service == service]:
            self._drop_zygote(zygote)

    def maintain(self, specs: dict[str, WorkerSpec]) -> None:
        """Periodic: stop idle workers above min_scale, retire stale ones, start up to min_scale."""
        now = time.monotonic()
        self._forget_dead()
        for worker in list(self.workers):
            current = specs.get(worker.spec.service)
            if current is None or current.version != worker.spec.version:
                self._retire_one(worker)
        self.stopped &= set(specs)  # a deleted service is stopped no more (nor is a new one of its name)
        for spec in specs.values():
            floor = 0 if spec.service in self.stopped else spec.min_scale
            idle = sorted((w for w in self._of(spec) if not w.busy), key=lambda w: w.last_used)
            surplus = len(self._of(spec)) - floor
            for worker in idle[: max(0, surplus)]:
                if now - worker.last_used > spec.idle_seconds:
                    self._drop(worker)
            missing = min(floor - len(self._of(spec)), self.max_workers - len(self.workers))
            if now - self._failed_starts.get(spec.version, -1e9) < 30:
                continue  # its last start failed: do not retry in a tight loop
            for _ in range(max(0, missing)):
                task = asyncio.ensure_future(self._prewarm(spec))
                self._prewarming.add(task)
                task.add_done_callback(self._prewarming.discard)
        for version, task in list(self.zygotes.items()):  # failed starts are forgotten
            if task.done() and (task.cancelled() or task.exception()):
                del self.zygotes[version]
        for zygote in self._started_zygotes():  # one with no worker left goes, unless min_scale wants more
            spec = specs.get(zygote.spec.service)
            wanted = spec is not None and spec.version == zygote.spec.version and spec.service not in self.stopped
            if not any(w.spec.version == zygote.spec.version for w in self.workers) and not (
                wanted and spec.min_scale > 0
            ):
                self._drop_zygote(zygote)

    def failed_start(self, spec: WorkerSpec) -> float | None:
        """When (time.monotonic) a worker of this version of the service last failed to start, if ever."""
        return self._failed_starts.get(spec.version)

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
        """Stop every worker now, and remove their cgroups and folders before returning."""
        for worker in list(self.workers):
            self._drop(worker)
        for zygote in self._started_zygotes():
            self._drop_zygote(zygote)
        for task in self.zygotes.values():
            task.cancel()
        for task in self._releasing:
            task.cancel()
        for worker in list(self._unreleased):
            worker.release()
            self._forget_cgroup(worker)
        self._unreleased.clear()
