"""A zygote: loads and warms a service's module once, never serves, and forks serving workers that share it.

The engine starts `python -m reeflab.oscar_engine.zygote` exactly as it starts a worker (its sandbox, its
owner's account, its cgroup), with a Unix socket as stdin. The first line there is the service spec (as a
worker's); the zygote loads the module, runs one predict on a generated image (so that what a first predict
builds is built before the fork and shared too), freezes the garbage collector's objects and answers
`{"ready": true}`. Then each `{"fork": id}` line carries, as SCM_RIGHTS, one end of a socket pair the engine
made: the zygote forks a child that serves invocations over it exactly as a worker does over its pipes, and
answers `{"forked": id, "pid": <its pid here>}`. When a child exits, `{"exited": pid, "returncode": n}`
follows. A child dies with the zygote (PR_SET_PDEATHSIG), and the zygote with the engine.

Forking is safe because the zygote runs one thread: it loads with OMP_NUM_THREADS=1 (no OpenMP team exists
at the fork), and each child sets the service's thread count (REEFLAB_WORKER_THREADS) for itself.
"""

from __future__ import annotations

import array
import contextlib
import gc
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from .worker import ModuleRunner, die_with_parent, give_freed_memory_back, load, serve

THREADS = "REEFLAB_WORKER_THREADS"  # JSON: the thread variables the forked workers get (the zygote runs one)


def warm_up(runner: ModuleRunner) -> None:
    """One predict on a generated JPEG, its answer thrown away; a module that refuses it is warmed less."""
    try:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="reeflab-warm-") as scratch:
            image = Path(scratch) / "warm.jpg"
            Image.effect_noise((640, 480), 64).convert("RGB").save(image, quality=90)
            runner.predict_file(image, image.name, Path(scratch) / "output")
    except Exception:  # nothing depends on it
        traceback.print_exc()


def child_threads() -> None:
    """In a forked worker: the service's thread count, for torch and for what the module starts."""
    wanted = json.loads(os.environ.pop(THREADS, "{}") or "{}")
    os.environ.update(wanted)
    torch = sys.modules.get("torch")
    if torch is not None and wanted.get("OMP_NUM_THREADS", "").isdigit():
        with contextlib.suppress(Exception):
            torch.set_num_threads(int(wanted["OMP_NUM_THREADS"]))


def send(control: socket.socket, message: dict[str, Any]) -> None:
    control.sendall(json.dumps(message).encode() + b"\n")


def fork_worker(channel: int, runner: ModuleRunner, zygotes: list[int]) -> int:
    """A serving worker over `channel`; returns its pid (in the parent). `zygotes`: the zygote's own file
    descriptors (control socket, wake-up pipe, selector), closed in the child."""
    pid = os.fork()
    if pid:
        os.close(channel)
        return pid
    code = 1
    try:  # the child: nothing of the zygote's control stays open here
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in zygotes:
            os.close(fd)
        die_with_parent()
        os.setsid()  # its own process group: the engine kills it and whatever it started
        child_threads()  # the zygote's objects stay frozen: a collection here would write to every page of them
        with socket.socket(fileno=channel) as sock, sock.makefile("r") as requests, sock.makefile("w") as replies:
            code = serve(requests, replies, runner=runner)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def reap(control: socket.socket) -> None:
    """Report every child that exited."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send(control, {"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


def zygote(control: socket.socket) -> int:
    """Load the module, then fork workers on request until the engine closes the socket."""
    with control.makefile("r") as first:  # the spec line alone: nothing else comes before the answer
        spec = json.loads(first.readline() or "{}")
    runner, problem = load(spec) if spec.get("module") else (None, "a zygote serves modules only")
    if not isinstance(runner, ModuleRunner):
        send(control, {"ready": False, "error": problem})
        return 1
    warm_up(runner)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # a forked child cannot use the parent's CUDA context
        send(control, {"ready": False, "unforkable": True, "error": "the module holds a CUDA context"})
        return 1
    threads = threading.active_count()
    if threads > 1:
        print(f"zygote: {threads} threads after loading: forked workers get only the calling one", file=sys.stderr)
    gc.collect()
    gc.freeze()  # loaded objects out of the collector's sight: its passes write no page the workers share
    give_freed_memory_back()  # what loading freed goes back to the system, not into each fork
    send(control, {"ready": True, "pid": os.getpid()})

    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(read_end, selectors.EVENT_READ)
    own = [control.fileno(), read_end, write_end, selector.fileno()]
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fileobj == read_end:
                with contextlib.suppress(BlockingIOError):
                    os.read(read_end, 4096)
                reap(control)
                continue
            fds = array.array("i")
            data, ancillary, _, _ = control.recvmsg(4096, socket.CMSG_SPACE(16 * fds.itemsize))
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            if not data:
                return 0  # the engine is gone or done with us: the workers die with this process
            pending += data
            channels = list(fds)
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                if "fork" in request and channels:
                    pid = fork_worker(channels.pop(0), runner, own)
                    send(control, {"forked": request["fork"], "pid": pid})
                elif "fork" in request:  # answered all the same: the engine waits for it
                    send(control, {"forked": request["fork"], "error": "no socket came with the request"})
            for extra in channels:
                os.close(extra)


def main() -> int:
    die_with_parent()
    if os.getppid() != int(os.environ.get("REEFLAB_ENGINE_PID", os.getppid())):
        return 1  # the engine died before we could ask to follow it
    control = socket.socket(fileno=os.dup(0))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # stray prints (imports, warm) go to the worker log
    return zygote(control)


if __name__ == "__main__":
    sys.exit(main())
