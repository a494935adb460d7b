"""CPU and memory limits that the kernel enforces: one cgroup per deployment or job (v2, or v1 where the
host has that), and a proportional-set-size watchdog for where no cgroup can be made.

Never a sum of RSS: pages shared between processes (libraries, a model forked into workers) would count
once per process, and a module that fits would be stopped.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import signal
import time
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PREFIX = "reeflab-"
PERIOD_US = 100_000
HEADROOM = 1.5  # a module's memory_MB is what it needs; its hard limit is this much more ...
MIN_HEADROOM_MB = 256  # ... and at least this many MB more
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_UNLIMITED = 2**62  # v1 reports "no limit" as a huge, page-rounded number


def memory_limit_for(memory_MB: int) -> int:
    """The hard limit, in bytes, of a module that *needs* memory_MB: 1.5 x that, and at least 256 MB more.

    The headroom covers what memory_MB leaves out: the interpreter and shared libraries, page cache charged
    to the cgroup, and the peak of a prediction on a large input (1000 MB -> 1.5 GB; 100 MB -> 356 MB).
    """
    return max(math.ceil(memory_MB * HEADROOM), memory_MB + MIN_HEADROOM_MB) * 10**6


def size_text(size: int) -> str:
    """Bytes as people read them in a reason: '1.5 GB', '356 MB'."""
    megabytes = round(size / 1e6)  # v1 rounds limits down to pages: 999,997,440 bytes is "1 GB"
    return f"{megabytes / 1000:.3g} GB" if megabytes >= 1000 else f"{megabytes} MB"


def out_of_memory(limit: int | None, advice: str) -> str:
    """The reason users see when the kernel (or the watchdog) stopped their process for its memory."""
    where = f", limit {size_text(limit)}" if limit else ""
    return f"stopped: out of memory{where} ({advice})"


def pss_of(pid: int) -> int:
    """Proportional set size of a process and all its descendants: shared pages count once in total."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        with contextlib.suppress(psutil.Error):
            total += member.memory_full_info().pss
    return total


def _mounts() -> list[tuple[str, Path, str, set[str]]]:
    """cgroup mounts from /proc/self/mountinfo: (root inside the hierarchy, mount point, fs type, options)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[3], Path(fields[4]), tail[0], set(tail[2].split(","))))
    return found


def _inside(mount_point: Path, mount_root: str, own: str) -> Path:
    """Where cgroup `own` (a path in /proc/self/cgroup) is under a mount of the hierarchy's `mount_root`."""
    relative = os.path.relpath(own, mount_root) if own.startswith(mount_root) else own.lstrip("/")
    return (mount_point / relative).resolve() if relative != "." else mount_point


def _own_v1() -> dict[str, Path]:
    """v1: this process's own cgroup folder in the memory and cpu hierarchies that are mounted."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller] = path
    mounts = _mounts()
    folders = {}
    for controller in ("memory", "cpu"):
        for root, point, kind, options in mounts:
            if kind == "cgroup" and controller in options and controller in own:
                folders[controller] = _inside(point, root, own[controller])
                break
    return folders


def _own_v2() -> Path:
    """v2: this process's own cgroup folder (the `0::` line of /proc/self/cgroup)."""
    path = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
    root = next((r for r, point, kind, _ in _mounts() if kind == "cgroup2" and point == ROOT), "/")
    return _inside(ROOT, root, path)


def unified() -> bool:
    """True where the host has cgroup v2 alone (unified); False: v1, perhaps with an empty v2 beside it."""
    return (ROOT / "cgroup.controllers").exists()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)


class Cgroup:
    """A kernel cgroup for one workload, under this process's own cgroup: a memory and a CPU limit.

    v2: one folder with both controllers. v1: a folder per controller (memory, cpu) of the same name.
    """

    def __init__(self, name: str, version: int, folders: dict[str, Path], limit: int | None = None):
        self.name = name
        self.version = version
        self.folders = folders
        self._limit = limit

    def __repr__(self) -> str:
        return f"Cgroup({self.name!r}, v{self.version}, {sorted(str(f) for f in self.folders.values())})"

    # -- finding and making ----------------------------------------------------

    @staticmethod
    def full_name(name: str) -> str:
        """reeflab-<name>; refused unless a plain folder name (it comes from ids, never from paths)."""
        if not _NAME.match(name) or name in (".", ".."):
            raise ValueError(f"'{name}' is not a cgroup name: letters, digits, '_', '.', '-'")
        return name if name.startswith(PREFIX) else PREFIX + name

    @classmethod
    def _parents(cls) -> tuple[int, list[dict[str, Path]]]:
        """The version, and the folders a workload's cgroup may be in, best first."""
        if unified():
            own = _own_v2()
            # v2's "no internal processes" rule: a cgroup holding processes (this server) cannot enable
            # controllers for children. Then, as systemd does with leaf units, the workload goes in a
            # *sibling* leaf under our parent (whose subtree_control gave us these controllers).
            candidates = [own] if own == ROOT else [own, own.parent]
            return 2, [{"unified": folder} for folder in candidates]
        return 1, [_own_v1()]

    @classmethod
    def find(cls, name: str) -> Cgroup | None:
        """The cgroup made earlier under this name (after a restart of the Jupyter server), or None."""
        name = cls.full_name(name)
        try:
            version, candidates = cls._parents()
        except (OSError, StopIteration, ValueError):
            return None
        for parents in candidates:
            folders = {c: p / name for c, p in parents.items() if (p / name).is_dir()}
            if folders:
                return cls(name, version, folders)
        return None

    @classmethod
    def create(
        cls, name: str, memory_bytes: int | None, cpus: float | None, *, oom_group: bool = False
    ) -> Cgroup | None:
        """A new cgroup with these limits, or None where none can be made (not root, read-only, no
        controller): callers then watch the workload's PSS instead. `oom_group` (v2): an OOM kill takes
        every process of it at once, as a deployment cannot work with half its processes.
        """
        name = cls.full_name(name)
        leftover = cls.find(name)  # of an earlier run under this name: its OOM count would be taken for ours
        if leftover is not None:
            leftover.remove()
        try:
            version, candidates = cls._parents()
        except (OSError, StopIteration, ValueError) as err:
            log.warning("no cgroup for %s: cannot find this process's own cgroup (%s)", name, err)
            return None
        if version == 1:
            return cls._create_v1(name, candidates[0], memory_bytes, cpus)
        for parent in candidates:
            made = cls._create_v2(name, parent["unified"], memory_bytes, cpus, oom_group)
            if made is not None:
                return made
        return None

    @classmethod
    def _create_v1(cls, name: str, own: dict[str, Path], memory_bytes: int | None, cpus: float | None) -> Cgroup | None:
        if memory_bytes is not None and "memory" not in own:
            log.warning("no cgroup for %s: the memory controller is not mounted (cgroup v1)", name)
            return None
        if cpus is not None and "cpu" not in own:  # CPU affinity still bounds it; memory is what matters
            log.warning("cgroup %s without a CPU quota: the cpu controller is not mounted", name)
            cpus = None
        needed = (["memory"] if memory_bytes is not None else []) + (["cpu"] if cpus is not None else [])
        made = cls(name, 1, {}, memory_bytes)
        try:
            for controller in needed:
                folder = own[controller] / name
                folder.mkdir(exist_ok=True)
                made.folders[controller] = folder
            if memory_bytes is not None:
                memory = made.folders["memory"]
                _write(memory / "memory.limit_in_bytes", str(memory_bytes))
                if (memory / "memory.memsw.limit_in_bytes").exists():  # no way around it through swap
                    _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
            if cpus is not None:
                cpu = made.folders["cpu"]
                try:
                    _write(cpu / "cpu.cfs_period_us", str(PERIOD_US))
                    _write(cpu / "cpu.cfs_quota_us", str(max(1000, round(cpus * PERIOD_US))))
                except OSError as err:
                    if err.errno != errno.EINVAL:
                        raise
                    # v1 refuses a quota above an ancestor's (a user's server's cgroup): that one bounds it
                    log.warning("cgroup %s: %g CPUs is more than its parent's quota, which applies", name, cpus)
        except OSError as err:
            log.warning("no cgroup for %s: %s", name, err)
            made.remove()
            return None
        return made

    @classmethod
    def _create_v2(
        cls, name: str, parent: Path, memory_bytes: int | None, cpus: float | None, oom_group: bool
    ) -> Cgroup | None:
        try:
            available = (parent / "cgroup.controllers").read_text().split()
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            if memory_bytes is not None and "memory" not in available:
                log.warning("no cgroup for %s under %s: the memory controller is not delegated", name, parent)
                return None
            if cpus is not None and "cpu" not in available:  # CPU affinity still bounds it
                log.warning("cgroup %s without a CPU quota: the cpu controller is not delegated", name)
                cpus = None
            wanted = (["memory"] if memory_bytes is not None else []) + (["cpu"] if cpus is not None else [])
            todo = [c for c in wanted if c not in enabled]
            if todo:
                _write(parent / "cgroup.subtree_control", " ".join("+" + c for c in todo))
        except OSError as err:
            if err.errno != errno.EBUSY:  # EBUSY: it holds processes; the caller tries its parent next
                log.warning("no cgroup for %s under %s: %s", name, parent, err)
            return None
        folder = parent / name
        made = cls(name, 2, {"unified": folder}, memory_bytes)
        try:
            folder.mkdir(exist_ok=True)
            if memory_bytes is not None:
                _write(folder / "memory.max", str(memory_bytes))
                if (folder / "memory.swap.max").exists():  # no way around it through swap
                    _write(folder / "memory.swap.max", "0")
                if oom_group:
                    _write(folder / "memory.oom.group", "1")
            if cpus is not None:
                _write(folder / "cpu.max", f"{max(1000, round(cpus * PERIOD_US))} {PERIOD_US}")
        except OSError as err:
            log.warning("no cgroup for %s: %s", name, err)
            made.remove()
            return None
        return made

    # -- using -------------------------------------------------------------------

    def enter(self) -> None:
        """Move the calling process in (from `preexec_fn`: everything the child starts is inside too)."""
        self.add(os.getpid())

    def add(self, pid: int) -> None:
        """Move process `pid` in (its later children start inside)."""
        for folder in self.folders.values():
            _write(folder / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        """Processes in it now."""
        found: set[int] = set()
        for folder in self.folders.values():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
        return found

    def _memory(self) -> Path | None:
        return self.folders.get("unified") or self.folders.get("memory")

    @property
    def memory_limit(self) -> int | None:
        """The memory limit in bytes (None: none)."""
        if self._limit is None and (folder := self._memory()) is not None:
            name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
            with contextlib.suppress(OSError, ValueError):
                value = (folder / name).read_text().strip()
                self._limit = None if value == "max" or int(value) >= _UNLIMITED else int(value)
        return self._limit

    @property
    def memory_current(self) -> int:
        """Bytes of memory charged to it now (its processes' own pages and page cache they brought in)."""
        folder = self._memory()
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        try:
            return int((folder / name).read_text()) if folder else 0
        except (OSError, ValueError):
            return 0

    def cpu_quota(self) -> float | None:
        """CPUs it may use (quota / period), None: no quota."""
        folder = self.folders.get("unified") or self.folders.get("cpu")
        try:
            if self.version == 2:
                quota, period = (folder / "cpu.max").read_text().split()
            else:
                quota = (folder / "cpu.cfs_quota_us").read_text().strip()
                period = (folder / "cpu.cfs_period_us").read_text().strip()
        except (OSError, TypeError, ValueError):
            return None
        return None if quota in ("max", "-1") else int(quota) / int(period)

    def oom_killed(self, returncode: int | None = None) -> bool:
        """Whether the kernel killed a process of it for its memory limit.

        v2: memory.events' oom_kill; v1: memory.oom_control's oom_kill (kernels >= 4.13), before that the
        limit was hit (memory.failcnt) and the process died by SIGKILL (`returncode`, when known).
        """
        folder = self._memory()
        if folder is None:
            return False
        try:
            if self.version == 2:
                return _counter(folder / "memory.events", "oom_kill") > 0
            control = (folder / "memory.oom_control").read_text()
            if "oom_kill " in control:
                return _counter(folder / "memory.oom_control", "oom_kill") > 0
            hit = int((folder / "memory.failcnt").read_text()) > 0
            return hit and returncode in (None, -signal.SIGKILL)
        except (OSError, ValueError):
            return False

    def remove(self, timeout: float = 5) -> None:
        """Kill whatever is left in it and delete it; idempotent."""
        deadline = time.monotonic() + timeout
        kill = self.folders.get("unified", Path("/nonexistent")) / "cgroup.kill"
        while (pids := self.pids()) and time.monotonic() < deadline:
            if kill.exists():
                with contextlib.suppress(OSError):
                    _write(kill, "1")
            else:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        for folder in self.folders.values():
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as err:  # EBUSY: the last killed ones are still exiting
                    if time.monotonic() >= deadline:
                        log.warning("could not remove cgroup %s: %s", folder, err)
                        break
                    time.sleep(0.02)

    # -- a user's own subtree ------------------------------------------------------

    @classmethod
    def ensure(cls, name: str, memory_bytes: int | None, cpus: float | None) -> Cgroup | None:
        """The cgroup `name` as it is (what runs in it keeps running), else a new one; limits (re)applied."""
        found = cls.find(name)
        if found is None:
            return cls.create(name, memory_bytes, cpus)
        for controller, folder in found.folders.items():
            with contextlib.suppress(OSError):
                if controller in ("unified", "memory") and found.version == 2:
                    _write(folder / "memory.max", "max" if memory_bytes is None else str(memory_bytes))
                elif controller == "memory":
                    _write(folder / "memory.limit_in_bytes", "-1" if memory_bytes is None else str(memory_bytes))
                if controller in ("unified", "cpu") and found.version == 2:
                    _write(
                        folder / "cpu.max",
                        "max" if cpus is None else f"{max(1000, round(cpus * PERIOD_US))} {PERIOD_US}",
                    )
                elif controller == "cpu":
                    _write(
                        folder / "cpu.cfs_quota_us", "-1" if cpus is None else str(max(1000, round(cpus * PERIOD_US)))
                    )
        found._limit = memory_bytes
        return found

    def delegate(self, uid: int, gid: int) -> Cgroup:
        """Let account `uid` make cgroups under this one for what it runs (its deployments, jobs), bounded
        by this one's limits, which stay the owner's (root's): the kernel's cgroup delegation.

        v2 forbids processes in a cgroup whose children have controllers: the delegating process puts its
        workload in the leaf `<name>/server` (returned), so that children can be its siblings.
        """
        for folder in self.folders.values():
            os.chown(folder, uid, gid)
            for name in ("cgroup.procs", "tasks", "cgroup.subtree_control", "cgroup.threads"):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(folder / name, uid, gid)
        if self.version == 1:
            return self
        leaf = self.folders["unified"] / "server"
        leaf.mkdir(exist_ok=True)
        for path in (leaf, leaf / "cgroup.procs", leaf / "cgroup.subtree_control", leaf / "cgroup.threads"):
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, uid, gid)
        with contextlib.suppress(OSError):  # the children's controllers: what this one has
            wanted = [
                c
                for c in ("memory", "cpu")
                if c in (self.folders["unified"] / "cgroup.controllers").read_text().split()
            ]
            _write(self.folders["unified"] / "cgroup.subtree_control", " ".join("+" + c for c in wanted))
        return Cgroup(self.name + "/server", 2, {"unified": leaf}, self._limit)


def _counter(path: Path, key: str) -> int:
    """A `key value` line of a cgroup file such as memory.events."""
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0
