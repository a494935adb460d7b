"""A private network for the ranks of a distributed job on one machine: a 127.0.0.1 of their own, with the
platform's services forwarded in.

torchrun's rendezvous store and the ranks' gloo/NCCL connections are TCP ports without authentication (PyTorch has
none). So on one machine the job's launcher (`python -m reeflab.jobs.distributed`: torchrun's agent and its ranks)
runs in a network namespace of its own, made by bubblewrap (`--unshare-net`; an unprivileged user gets it through a
user namespace): its loopback is theirs alone, and no other account, nor another job, reaches those ports.

What the job needs on the host's loopback, the services its environment names by URL (the Jupyter server and hub
API, MLflow, the platform's S3, the serverless engine, a WebDAV...), is forwarded in, with no socket file and no
extra process: first thing inside, the launcher binds 127.0.0.1:PORT (and [::1]:PORT) for each of those ports and
hands the listening sockets to the runner outside over an inherited socket pair (SCM_RIGHTS); the runner, still in
the host's network, accepts on them and relays each connection to the same port of the host's loopback, with the
serverless engine's bridge relay (reeflab.oscar_engine.bridge). Nothing else is reachable from inside: no other
local port, and no other host (the namespace has a loopback only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..oscar_engine.bridge import relay_to_port
from ..oscar_engine.sandbox import find_bwrap

CHANNEL = "REEFLAB_NETNS_FD"  # inside: the socket pair's end the listeners go back through
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PORTS = {"http": 80, "https": 443}


def forwarded_ports(env: Mapping[str, str]) -> list[int]:
    """The ports of the host's loopback that `env` names in URLs (`http://127.0.0.1:5000/...`, `localhost`, `[::1]`):
    what a job reaches the platform's services by."""
    found = set()
    for value in env.values():
        if "://" not in value:
            continue
        try:
            url = urlsplit(value.strip())
            port = url.port or DEFAULT_PORTS.get(url.scheme)
        except ValueError:  # not a URL after all
            continue
        if url.hostname in LOOPBACK and port:
            found.add(port)
    return sorted(found)


def hand_over() -> None:
    """Inside the private network (a no-op elsewhere): listen on each forwarded port of its loopback and send the
    listening sockets to the runner outside, which relays what connects to them."""
    fd = os.environ.pop(CHANNEL, None)
    if fd is None:
        return
    listeners: list[socket.socket] = []
    with socket.socket(fileno=int(fd)) as channel:
        try:
            ports = []
            for port in forwarded_ports(os.environ):
                for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                    listener = socket.socket(family, socket.SOCK_STREAM)
                    try:
                        listener.bind((host, port))
                    except PermissionError:  # below 1024: only root may, and the launcher has no capability
                        listener.close()
                        if family == socket.AF_INET:
                            print(f"[reeflab] port {port} is not forwarded: a port below 1024", flush=True)
                        continue
                    except OSError:
                        listener.close()
                        if family == socket.AF_INET:
                            raise
                        continue  # no IPv6 loopback here
                    listener.listen(128)
                    listeners.append(listener)
                    ports.append(port)
            message = json.dumps({"pid": os.getpid(), "ports": ports}).encode()
            socket.send_fds(channel, [message], [s.fileno() for s in listeners])
        finally:
            for listener in listeners:
                listener.close()


class PrivateNetwork:
    """One program in a network namespace of its own, and the relay of its forwarded ports while it runs."""

    def __init__(self, bwrap: str):
        self.bwrap = bwrap
        self.pid: int | None = None  # the program's (same pid namespace: bwrap does not unshare it)
        self._pending: int | None = None  # a signal that came before the program said its pid
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def available(cls) -> PrivateNetwork | None:
        bwrap = find_bwrap()
        return cls(bwrap) if bwrap else None

    def run(self, program: list[str], env: Mapping[str, str]) -> int:
        """Run `program` (which calls `hand_over()` first) until it exits; its exit status. SIGTERM to this
        process meanwhile goes to the program (a cancel: torchrun stops the ranks)."""
        ours, theirs = socket.socketpair()
        command = [self.bwrap, "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--", *program]
        with ours:
            with theirs:
                inherited = {**env, CHANNEL: str(theirs.fileno())}
                process = subprocess.Popen(command, env=inherited, pass_fds=[theirs.fileno()])
            previous = signal.signal(signal.SIGTERM, self._forward)
            try:
                message, fds, _flags, _address = socket.recv_fds(ours, 2**16, 1024)
                if message:  # else bwrap (or the program) ended before: its status says how
                    found = json.loads(message)
                    self.pid = found["pid"]
                    if self._pending is not None:
                        self._forward(self._pending, None)
                    self._start_relay(list(zip(found["ports"], fds, strict=True)))
                return process.wait()
            finally:
                signal.signal(signal.SIGTERM, previous)
                self._stop_relay()
                with contextlib.suppress(ProcessLookupError):
                    if process.poll() is None:
                        process.kill()
                        process.wait()

    def _forward(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.pid is None:
            self._pending = signum
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def _start_relay(self, listeners: list[tuple[int, int]]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve() -> None:
            for port, fd in listeners:
                await asyncio.start_server(
                    lambda r, w, port=port: relay_to_port(port, r, w), sock=socket.socket(fileno=fd)
                )
            started.set()

        def relay() -> None:
            loop.run_until_complete(serve())
            loop.run_forever()

        threading.Thread(target=relay, name="reeflab-netns-relay", daemon=True).start()
        started.wait(10)

    def _stop_relay(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
