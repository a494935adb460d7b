"""OS accounts of hub users on one machine: one per user, so the kernel keeps people apart.

When the hub runs as root in local mode, each hub user gets a Unix account (the way The
Littlest JupyterHub gives each user `jupyter-<name>`); their server and everything it starts
run under it, and the serverless engine runs their jobs under it. The account's name derives
from the exact hub name (a readable part plus a hash), so two hub names never share an account.
Its GECOS comment records which incarnation of the hub user it belongs to (`ReefLab user <name>
<generation>`, see generations.py): a deleted user's account is retired before a namesake gets one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from . import generations

log = logging.getLogger(__name__)

PREFIX = "rl-"
SHELL = "/usr/sbin/nologin"
COMMENT = "ReefLab user "
_COMMENT = re.compile(rf"ReefLab user (?P<name>.*?)(?: (?P<generation>{generations.PATTERN}))?")
MAX_COMMENT_NAME = 150  # GECOS stays short; a longer name is still told apart by account_name's hash
DELETED = ".deleted-"  # a retired home is moved to <home>.deleted-<UTC time>


class StaleGeneration(RuntimeError):
    """The account belongs to a newer incarnation of the hub user than the caller's: the caller is out of date."""


@dataclass(frozen=True)
class SystemAccount:
    """A hub user's Unix account: what a process needs to run as them."""

    name: str
    uid: int
    gid: int
    home: str

    def env(self) -> dict[str, str]:
        """The identity variables a process of this account expects."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def account_name(hub_name: str) -> str:
    """`rl-<readable part>-<hash of the exact name>`: distinct hub names never map to one account.

    The readable part helps an operator reading `ps`; the hash makes `ana.b`, `ana-b` and `ANA`
    (if a login allowed it) three accounts. At most 24 characters (Unix allows 32).
    """
    readable = re.sub(r"[^a-z0-9]+", "-", hub_name.lower()).strip("-")[:12].strip("-") or "user"
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:8]
    return f"{PREFIX}{readable}-{digest}"


def isolation_available() -> bool:
    """Per-user accounts need root (to create accounts and switch to them) and `useradd`."""
    return os.geteuid() == 0 and shutil.which("useradd") is not None


def lookup(hub_name: str) -> SystemAccount | None:
    """The user's account if it exists."""
    try:
        entry = pwd.getpwnam(account_name(hub_name))
    except KeyError:
        return None
    return SystemAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def comment(hub_name: str, generation: str = "") -> str:
    """The GECOS comment of a hub user's account: who it is for, and which incarnation of them."""
    return f"{COMMENT}{hub_name[:MAX_COMMENT_NAME]}" + (f" {generation}" if generation else "")


def parse_comment(text: str) -> tuple[str, str] | None:
    """(hub name, generation or '') of a comment written by `comment`; None for any other text."""
    match = _COMMENT.fullmatch(text)
    return (match.group("name"), match.group("generation") or "") if match else None


def recorded_generation(hub_name: str) -> str | None:
    """The generation the user's account was made for ('' if it predates generations), None without an account."""
    try:
        entry = pwd.getpwnam(account_name(hub_name))
    except KeyError:
        return None
    match = _COMMENT.fullmatch(entry.pw_gecos)
    return (match.group("generation") or "") if match else ""


def ensure_account(hub_name: str, home: Path, generation: str = "") -> SystemAccount:
    """The user's account, created on first use with `home` as its private (0700) home.

    With the hub user's `generation`: an account recorded for an earlier incarnation (a deleted user of
    the same name) is retired first (processes killed, account deleted, home moved aside); one that
    predates generations is adopted; one of a later incarnation raises StaleGeneration.
    """
    name = account_name(hub_name)
    found = lookup(hub_name)
    if found is not None and generation:
        recorded = recorded_generation(hub_name) or ""
        if recorded and generations.older(recorded, generation):
            log.warning("OS account %s belongs to a deleted user %s (%s): retiring it", name, hub_name, recorded)
            retire_account(hub_name, home)
            found = None
        elif recorded and not generations.same(recorded, generation):
            raise StaleGeneration(
                f"the OS account {name} belongs to a newer user {hub_name} ({recorded}) than this one ({generation})"
            )
        else:  # adopted (made before generations, or for another home): this generation and home recorded
            if not recorded:
                _usermod(name, "--comment", comment(hub_name, generation))
            if not same_path(found.home, home):
                _usermod(name, "--home", str(home))  # refused while the account runs processes: kept as it was
    if found is None:
        done = subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", SHELL, "--user-group"]
            + ["--comment", comment(hub_name, generation), name],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 9):  # 9: made meanwhile by a concurrent spawn
            raise RuntimeError(f"could not create the OS account {name} for {hub_name}: {done.stderr.strip()}")
        found = lookup(hub_name)
        assert found is not None
    account = SystemAccount(found.name, found.uid, found.gid, str(home))  # the hub's home wins over passwd's
    make_private_dir(home, account)
    return account


def _usermod(name: str, option: str, value: str) -> None:
    """Change one field of an account; a refusal is logged, not raised (the account works as it is)."""
    done = subprocess.run(["usermod", option, value, name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.warning("could not set %s of OS account %s: %s", option, name, done.stderr.strip())


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same place (links resolved)."""
    return os.path.realpath(a) == os.path.realpath(b)


def make_private_dir(path: Path, account: SystemAccount) -> None:
    """`path` exists, belongs to `account` and only it may enter it (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chown(path, account.uid, account.gid)
    os.chmod(path, 0o700)


def remove_account(hub_name: str) -> bool:
    """Delete the user's account (their files stay, owned by a uid nobody has); True if there was one."""
    found = lookup(hub_name)
    if found is None:
        return False
    for attempt in range(5):
        kill_processes(found.uid)
        force = ["--force"] if attempt == 4 else []  # last try: even with a process not reaped yet
        done = subprocess.run(["userdel", *force, found.name], capture_output=True, text=True, check=False)
        if done.returncode != 8:  # 8: the account still runs a process (one that was exiting, or a zombie)
            break
        time.sleep(0.5)
    if done.returncode != 0:
        raise RuntimeError(f"could not delete the OS account {found.name}: {done.stderr.strip()}")
    return True


def kill_processes(uid: int, timeout: float = 10) -> int:
    """SIGKILL every process running as `uid` (real or effective), again until none is left; how many were killed.

    Repeated because a process may fork while its siblings die; `uid` 0 is never a user's.
    """
    if uid == 0:
        raise ValueError("refusing to kill root's processes")
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for process in psutil.process_iter(["uids", "status"]):
            uids = process.info["uids"]
            if uids and uid in (uids.real, uids.effective) and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        if not found:
            return len(killed)
        if time.monotonic() > deadline:
            log.warning("processes of uid %d still running after %.0f s: %s", uid, timeout, found)
            return len(killed)
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def move_aside(home: Path) -> Path | None:
    """Move a home out of the way (`<home>.deleted-<UTC time>`, root-only 0700), so a namesake starts empty.

    Links are not followed: only a real folder is moved; None if there was none.
    """
    home = Path(home)
    if not home.is_dir() or home.is_symlink():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = home.with_name(f"{home.name}{DELETED}{stamp}")
    for n in range(1, 100):
        if not os.path.lexists(target):
            break
        target = home.with_name(f"{home.name}{DELETED}{stamp}-{n}")
    os.rename(home, target)
    if os.geteuid() == 0:
        os.chown(target, 0, 0, follow_symlinks=False)
    os.chmod(target, 0o700)  # a real folder (checked above), renamed: no link to follow
    return target


def retire_account(hub_name: str, home: Path | None) -> list[Path]:
    """A deleted user's account goes: their processes are killed, the account deleted, their home moved aside.

    `home`: the user's home as this hub makes it (the machine's accounts are the platform's: one hub per
    machine). Returns where the home went ([] if there was none).
    """
    found = lookup(hub_name)
    if found is not None:
        remove_account(hub_name)
        log.info("deleted OS account %s of hub user %s", found.name, hub_name)
    target = move_aside(home) if home is not None else None
    if target is not None:
        log.info("moved the home of %s aside to %s", hub_name, target)
    return [target] if target else []


@dataclass(frozen=True)
class RecordedAccount:
    """An OS account ReefLab made: for which hub user, and which incarnation of them ('' if unknown)."""

    hub_name: str
    generation: str
    name: str
    uid: int
    home: str


def managed_accounts() -> Iterator[RecordedAccount]:
    """The accounts ReefLab made (name `rl-...`, its comment, and the hash of the name in it agreeing)."""
    for entry in pwd.getpwall():
        if not entry.pw_name.startswith(PREFIX):
            continue
        match = _COMMENT.fullmatch(entry.pw_gecos)
        if match and account_name(match.group("name")) == entry.pw_name:
            yield RecordedAccount(
                match.group("name"), match.group("generation") or "", entry.pw_name, entry.pw_uid, entry.pw_dir
            )


def unreachable_parent(path: Path) -> Path | None:
    """The first folder above `path` that other accounts cannot enter (no o+x), or None.

    User accounts run the platform's Python from the repository's venv and live in homes under
    the state folder: every folder on the way must be enterable by them.
    """
    lexical, real = Path(os.path.abspath(path)), Path(path).resolve()  # a venv's python links elsewhere
    for parent in [*reversed(lexical.parents), *reversed(real.parents)]:
        if not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def open_path(path: Path) -> list[Path]:
    """Let other accounts pass through (o+x, never list) every folder above `path`; the ones changed."""
    changed = []
    while (blocked := unreachable_parent(path)) is not None:
        blocked.chmod(os.stat(blocked).st_mode | 0o001)
        changed.append(blocked)
    return changed


if __name__ == "__main__":  # make: `python -m reeflab.accounts open-path DIR`
    import sys

    if len(sys.argv) < 2 or sys.argv[1] != "open-path":
        sys.exit("usage: python -m reeflab.accounts open-path [PATH ...]  (default: this Python and its library)")
    import sysconfig

    targets = sys.argv[2:] or [sys.executable, sysconfig.get_path("stdlib"), sysconfig.get_path("purelib")]
    for target in targets:
        for folder in open_path(Path(target)):
            print(f"note: {folder} is now o+x, so users' OS accounts can reach ReefLab's Python below it")
