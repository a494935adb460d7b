"""Where a serverless worker runs: a bubblewrap sandbox, under its owner's OS account when the engine is root.

Inside, the system is read-only, /tmp is private, /proc and /dev are the sandbox's own and the
engine's state is hidden. The one folder the worker shares with the engine is its own, seen at
/tmp/job: each invocation gets a fresh sub-folder there, the engine copies the input in and the
log and outputs back out, and never follows a link the job made (it runs as root, the job not).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import accounts

log = logging.getLogger(__name__)

INSIDE = "/tmp/job"  # the worker's folder as the sandbox sees it (under the private /tmp, as OSCAR's are)
BWRAP = "/usr/bin/bwrap"
# what workers take from the engine's own environment: settings, never credentials
PASSED_THROUGH = ("LANG", "LC_ALL", "TZ", "YOLO_OFFLINE", "MLFLOW_DISABLE_TELEMETRY", "CUDA_VISIBLE_DEVICES")
ROOT_RECORD = "sandbox-root"  # in the state folder: the temporary root of the last run, removed at the next
TEMPORARY_PREFIX = "reeflab-sandboxes-"
MAX_DEPTH = 32
_WORKER_FOLDER = re.compile(r"^[a-z0-9][-a-z0-9]*-[A-Za-z0-9_]{8}$")  # tempfile.mkdtemp(prefix="<service>-")


def find_bwrap() -> str | None:
    return shutil.which("bwrap") or (BWRAP if os.access(BWRAP, os.X_OK) else None)


def choose_root(state_dir: Path, wanted: Path | None) -> tuple[Path, bool]:
    """Where workers' folders go, and whether it is a temporary folder of this run.

    As root, workers' accounts must reach their folder by path (bwrap resolves it as them), and the
    state folder stays 0700: a sibling of it if the accounts can pass through its parents, else a new
    folder in /var/tmp. Otherwise inside the state folder.
    """
    if wanted is not None:
        return Path(wanted), False
    if not accounts.isolation_available():
        return state_dir / "sandboxes", False
    sibling = state_dir.parent / f"{state_dir.name}-sandboxes"
    if accounts.unreachable_parent(sibling) is None:
        return sibling, False
    base = "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()
    made = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, dir=base))
    made.chmod(0o711)  # accounts pass through to their worker's folder, never list
    return made, True


class SandboxPolicy:
    """How every worker of one engine is confined; `prepare` makes one worker's folder and account."""

    def __init__(
        self,
        state_dir: Path,
        root: Path | None = None,
        homes_dir: Path | None = None,
        secret_files: tuple[Path, ...] = (),
        allow_unsandboxed: bool = False,
        python: str = "",
        bwrap: str = "",
    ):
        self.state_dir = Path(state_dir)
        self.root, self.temporary = choose_root(self.state_dir, root)
        self.homes_dir = Path(homes_dir) if homes_dir else None
        self.secret_files = tuple(Path(f) for f in secret_files)
        self.allow_unsandboxed = allow_unsandboxed
        self.python = python or sys.executable
        self.bwrap = (bwrap if os.access(bwrap, os.X_OK) else None) if bwrap else find_bwrap()
        self.isolate = accounts.isolation_available()
        self._lock = threading.Lock()  # useradd refuses to run twice at once

    @property
    def sandboxed(self) -> bool:
        return self.bwrap is not None

    def describe(self) -> str:
        if self.problem():
            return f"workers cannot start: {self.problem()}"
        who = "their owners' OS accounts" if self.isolate else "the engine's account"
        how = "in a bubblewrap sandbox" if self.sandboxed else "WITHOUT a sandbox (allow_unsandboxed)"
        return f"workers run {how} as {who}"

    def problem(self) -> str | None:
        """Why no worker may start on this machine (None: they may), in words an operator can act on."""
        root = os.geteuid() == 0
        if root and not self.isolate:
            return (
                "the engine runs as root but cannot create users' OS accounts (useradd is missing), "
                "and it runs no service code as root"
            )
        if not self.sandboxed and (root or not self.allow_unsandboxed):
            unless = "" if root else ", or start the engine with --ServerlessApp.allow_unsandboxed=True"
            return (
                "bubblewrap (bwrap) is not installed on the engine's machine, and service code runs only in its "
                f"sandbox: install it (apt-get install bubblewrap; `make up` does as root){unless}"
            )
        if self.isolate:
            python = Path(self.python)
            blocked = next(
                filter(None, map(accounts.unreachable_parent, (python, python.parent / "-", self.root / "-"))), None
            )
            if blocked is not None:
                return (
                    f"users' accounts cannot pass through {blocked}, on the way to ReefLab's Python or to the "
                    f"workers' folders: allow them (chmod o+x {blocked}) or set ServerlessApp.sandbox_dir"
                )
        return None

    def reset(self) -> None:
        """Remove what workers of an earlier run left (they died with it), and note this run's root."""
        record = self.state_dir / ROOT_RECORD
        with contextlib.suppress(OSError, ValueError):
            previous = Path(record.read_text().strip() or ".")
            if previous.is_absolute() and previous.name.startswith(TEMPORARY_PREFIX) and previous != self.root:
                info = os.lstat(previous)
                if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
                    shutil.rmtree(previous, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o711 if self.isolate else 0o700)  # accounts pass through, never list
        for entry in list(self.root.iterdir()):  # only workers' folders: sandbox_dir may be shared
            info = entry.lstat()
            if _WORKER_FOLDER.match(entry.name) and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
                shutil.rmtree(entry, ignore_errors=True)
        record.write_text(str(self.root) if self.temporary else "")

    def close(self) -> None:
        for _ in range(3):  # a worker's folder may be going away at the same time
            if not self.temporary or not self.root.exists():
                return
            shutil.rmtree(self.root, ignore_errors=True)

    def account(self, owner: str, generation: str = "") -> accounts.SystemAccount | None:
        """As root: the owner's OS account, made on first use with the hub's home for them (or a private one).

        With the owner's `generation`: an account of a newer incarnation of the name is refused (the
        service belongs to a deleted user), one of an older one is retired first (accounts.ensure_account).
        """
        if not self.isolate:
            return None
        found = accounts.lookup(owner)
        if found is not None and (not generation or accounts.recorded_generation(owner) == generation):
            return found
        if self.homes_dir and owner not in (".", "..") and "/" not in owner:
            home = self.homes_dir / owner
        else:
            home = self.state_dir / "homes" / accounts.account_name(owner)
        with self._lock:
            try:
                return accounts.ensure_account(owner, home, generation)
            except accounts.StaleGeneration as error:
                raise PermissionError(f"not running a deleted user's service: {error}") from None

    def prepare(self, service: str, owner: str, generation: str = "") -> WorkerBox:
        """A new worker's own folder (with its home), as its account will use it. Blocking: run in a thread."""
        account = self.account(owner, generation)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = Path(tempfile.mkdtemp(prefix=f"{service}-", dir=self.root))
        home = folder / "home"
        home.mkdir(mode=0o700)
        if account is not None:
            os.chmod(folder, 0o711)  # root's: the job cannot rename what the engine later reads
            os.chown(home, account.uid, account.gid)
        return WorkerBox(self, folder, account, owner)


def python_folders(python: str) -> list[Path]:
    """What a worker's Python reads: its venv and base installation, and the source folders of packages
    installed editable (ReefLab itself, modules under development). Looked up at each worker start, since
    a module may have been installed since the engine started."""
    found = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(python)).parent}
    for dist in importlib.metadata.distributions():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            origin = json.loads(dist.read_text("direct_url.json") or "{}")
            if origin.get("dir_info", {}).get("editable") and origin["url"].startswith("file://"):
                found.add(Path(urllib.parse.unquote(urllib.parse.urlparse(origin["url"]).path)))
    ordered = sorted(p.resolve() for p in found if p.is_dir())
    return [p for i, p in enumerate(ordered) if not any(p.is_relative_to(q) for q in ordered[:i])]


class WorkerBox:
    """One worker's sandbox: its command line, environment, identity and the files it exchanges."""

    def __init__(self, policy: SandboxPolicy, folder: Path, account: accounts.SystemAccount | None, owner: str):
        self.policy, self.folder, self.account, self.owner = policy, folder, account, owner

    @property
    def sandboxed(self) -> bool:
        return self.policy.sandboxed

    @property
    def home(self) -> str:
        return f"{INSIDE}/home" if self.sandboxed else str(self.folder / "home")

    def owner_home(self) -> Path | None:
        if self.policy.homes_dir and self.owner not in (".", "..") and "/" not in self.owner:
            return self.policy.homes_dir / self.owner
        return None

    def command(self, program: list[str], own_network: bool = False, low_ports: bool = False) -> list[str]:
        """`program` inside bubblewrap, or as it is where the operator allowed unsandboxed workers.

        `own_network`: in a network namespace of its own, with only a loopback (an exposed service: reached
        through the socket its bridge inherits); `low_ports`: it may listen on ports below 1024 there, as root
        of a user namespace of its own holding that one capability (it stays its owner's account outside).
        """
        if not self.sandboxed:
            return program
        args = [self.policy.bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        # ReefLab's Python and the modules installed from folders may live under /tmp (a clone in a temp
        # folder): seen again, read-only, before the platform's own folders are hidden on top
        shown = [p for p in python_folders(self.policy.python) if p.is_relative_to("/tmp") and self._reachable(p)]
        for path in shown:
            args += ["--ro-bind", str(path), str(path)]
        hidden = [Path("/tmp")]
        for path in (self.policy.state_dir, self.policy.root, self.policy.homes_dir):
            if path is not None and self._can_cover(path, hidden, shown):
                args += ["--tmpfs", str(path.resolve())]
                hidden.append(path.resolve())
        home = self.owner_home()
        if home is not None and home.is_dir() and self._reachable(home):
            args += ["--ro-bind", str(home.resolve()), str(home.resolve())]  # their files (weights), read-only
        for secret in self.policy.secret_files:
            if self._can_cover(secret, hidden, shown):
                args += ["--ro-bind", "/dev/null", str(secret.resolve())]
        args += ["--bind", str(self.folder), INSIDE, "--chdir", INSIDE]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "reeflab-job"]
        # otherwise the network namespace is kept on purpose: workers reach the platform's S3 on 127.0.0.1
        # with their owner's key (batch slices, user scripts), as OSCAR's pods reach MinIO
        if own_network:
            args += ["--unshare-net"]
        if own_network and low_ports:
            args += ["--unshare-user", "--uid", "0", "--gid", "0", "--cap-add", "CAP_NET_BIND_SERVICE"]
        args += ["--die-with-parent", "--new-session", "--", *program]
        return args

    def _can_cover(self, path: Path, hidden: list[Path], shown: list[Path]) -> bool:
        """Whether to mount over `path`: it exists, the sandbox's user can reach it, and nothing hides it yet."""
        real = path.resolve()
        if not os.path.lexists(real):
            return False
        if any(real.is_relative_to(h) for h in hidden) and not any(real.is_relative_to(s) for s in shown):
            return False
        python = Path(self.policy.python)
        if python.absolute().is_relative_to(real) or python.resolve().is_relative_to(real):
            log.warning("not hiding %s from workers: ReefLab's Python is inside it", real)
            return False
        return self._reachable(real)

    def _reachable(self, path: Path) -> bool:
        # as another account, bwrap cannot even resolve a path behind a folder it may not enter (then it is
        # unreadable anyway); the engine's own account reaches whatever the engine does
        return self.account is None or accounts.unreachable_parent(path) is None

    def environment(self, given: dict[str, str]) -> dict[str, str]:
        """The worker's whole environment: `given` (engine settings, the service's variables) and its identity."""
        fixed = {
            "PATH": os.pathsep.join([str(Path(self.policy.python).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": self.home,
            "TMPDIR": "/tmp",
        }
        if self.account is not None:
            fixed.update(USER=self.account.name, LOGNAME=self.account.name)
        return {**given, **fixed}

    def preexec(self, enter_cgroup: Callable[[], None] | None) -> Callable[[], None] | None:
        """What the child runs before bwrap: into its cgroup (needs root), then down to the owner's account."""
        account = self.account
        if account is None and enter_cgroup is None:
            return None

        def become() -> None:
            if enter_cgroup is not None:
                enter_cgroup()
            if account is not None:
                os.setgroups([])
                os.setresgid(account.gid, account.gid, account.gid)
                os.setresuid(account.uid, account.uid, account.uid)

        return become

    # -- files in and out -----------------------------------------------------------

    def enter(self, request: dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
        """The invocation as the sandbox sees it: its input copied into a fresh folder of the worker's."""
        if not self.sandboxed:
            return request, None
        name = uuid.uuid4().hex
        place = self.folder / name
        source = Path(request["input"])
        place.mkdir(mode=0o700)
        for sub in ("input", "output"):
            (place / sub).mkdir(mode=0o700)
        shutil.copyfile(source, place / "input" / source.name)
        if self.account is not None:
            for path in (place, place / "input", place / "input" / source.name, place / "output"):
                os.chown(path, self.account.uid, self.account.gid, follow_symlinks=False)
        inside = f"{INSIDE}/{name}"
        mapped = {
            **request,
            "input": f"{inside}/input/{source.name}",
            "output_dir": f"{inside}/output",
            "log": f"{inside}/log",
            "workdir": inside,
        }
        return mapped, place

    def leave(self, request: dict[str, Any], place: Path | None) -> None:
        """Copy the invocation's log and outputs back to the engine's folders; links and devices stay behind."""
        if place is None:
            return
        try:
            fd = os.open(place, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                copy_out(fd, "log", Path(request["log"]))
                copy_out(fd, "output", Path(request["output_dir"]))
            finally:
                os.close(fd)
        finally:
            self.discard(place)

    @staticmethod
    def discard(place: Path | None) -> None:
        if place is not None:
            shutil.rmtree(place, ignore_errors=True)  # fd-based on Linux: links inside are not followed

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def copy_out(dir_fd: int, name: str, target: Path, depth: int = 0) -> None:
    """Copy `name` (below the open folder `dir_fd`) to `target`: regular files and folders only, no links."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return  # absent, or a symbolic link the job made (ELOOP): never followed
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode) and depth < MAX_DEPTH:
            target.mkdir(exist_ok=True)
            for entry in os.listdir(fd):
                copy_out(fd, entry, target / entry, depth + 1)
        elif stat.S_ISREG(info.st_mode):
            with open(fd, "rb", closefd=False) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 2**20)
    finally:
        os.close(fd)
