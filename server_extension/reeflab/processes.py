"""What the local backends share: detached processes (their own session, cgroup and CPUs), found again by pid
*and* start time and stopped by process group; the last lines of their logs; private Unix socket paths."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import stat
import subprocess
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import psutil

from .limits import Cgroup

SOCKET_FILE = "api.sock"
MAX_SOCKET_PATH = 107  # bytes: sun_path holds 108, with the terminating NUL


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a log file; none if it does not exist (yet)."""
    if not path.exists():
        return []
    with open(path, errors="replace") as log:
        return [line.rstrip("\n") for line in deque(log, maxlen=count)]


def cpu_set(cpus: float) -> set[int]:
    """The first ceil(cpus) CPUs this process may use: a detached process's CPU affinity."""
    available = sorted(os.sched_getaffinity(0))
    return set(available[: max(1, min(len(available), math.ceil(cpus)))])


def socket_path(folder: Path, name: str) -> Path:
    """`<folder>/api.sock`; where that path is too long for a socket, `<tmp>/reeflab-<uid>/<name>.sock`,
    in a folder checked to be this account's own, mode 0700 and not a link."""
    path = folder / SOCKET_FILE
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    private = Path(tempfile.gettempdir()) / f"reeflab-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        private.mkdir(mode=0o700)
    found = private.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        shorter = "or set a shorter DeploymentService.root_dir"
        raise RuntimeError(f"{private} is not a private folder of this account: remove it, {shorter}")
    return private / f"{name}.sock"


def spawn(
    command: list[str], *, log: Path, cwd: Path | str, env: dict[str, str], cpus: set[int], cgroup: Cgroup | None
) -> dict[str, Any]:
    """`command` detached in its own session (it survives a restart of the Jupyter server and is stopped by
    group), appending its output to `log`, on `cpus` and in `cgroup` (entered first, so that every process it
    starts is inside too; removed if it cannot start). Its pid and start time: what `running` finds it by."""

    def preexec() -> None:
        if cgroup is not None:
            cgroup.enter()
        os.sched_setaffinity(0, cpus)

    try:
        with open(log, "ab") as output:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=preexec,
            )
    except BaseException:
        if cgroup is not None:
            cgroup.remove()
        raise
    return {"pid": process.pid, "started": psutil.Process(process.pid).create_time()}


def running(runtime: dict[str, Any]) -> psutil.Process | None:
    """The process of `runtime` (its "pid" and "started") if it still runs: same pid *and* start time (pids
    are reused); an exited child of ours is reaped."""
    try:
        process = psutil.Process(runtime["pid"])
        if abs(process.create_time() - runtime["started"]) > 1:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            process.wait(0)  # reap our exited child
            return None
        return process
    except (KeyError, psutil.NoSuchProcess, psutil.TimeoutExpired):
        return None


def exited(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def stop_group(process: psutil.Process, grace: float) -> None:
    """SIGTERM to its main process, SIGKILL to its process group once it has exited or `grace` seconds have
    passed, and reap it. (The main process stops what it started itself; DEEPaaS, with the whole group sent
    SIGTERM, would wait for ever on its dead worker pool.)"""
    group = os.getpgid(process.pid)
    with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    for _ in range(int(grace / 0.1)):
        if exited(process):
            break
        await asyncio.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing of its session may stay behind
        os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(psutil.Error, ChildProcessError):
        if process.ppid() == os.getpid():  # reap our child (an orphan's zombie is its new parent's to reap)
            await asyncio.get_running_loop().run_in_executor(None, process.wait, 5)


def cgroup_of(runtime: dict[str, Any]) -> Cgroup | None:
    """The cgroup named in `runtime` (found again by name after a restart of the Jupyter server), or None."""
    name = runtime.get("cgroup")
    return Cgroup.find(name) if name else None
