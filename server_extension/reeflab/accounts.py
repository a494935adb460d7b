"""OS accounts of hub users on one machine: one per user, so the kernel keeps people apart.

When the hub runs as root in local mode, each hub user gets a Unix account (the way The
Littlest JupyterHub gives each user `jupyter-<name>`); their server and everything it starts
run under it, and the serverless engine runs their jobs under it. The account's name derives
from the exact hub name (a readable part plus a hash), so two hub names never share an account.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PREFIX = "rl-"
SHELL = "/usr/sbin/nologin"


@dataclass(frozen=True)
class SystemAccount:
    """A hub user's Unix account: what a process needs to run as them."""

    name: str
    uid: int
    gid: int
    home: str

    def popen_kwargs(self) -> dict:
        """`subprocess.Popen` / `asyncio.create_subprocess_exec` arguments that run a child as this account."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

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


def ensure_account(hub_name: str, home: Path) -> SystemAccount:
    """The user's account, created on first use with `home` as its private (0700) home."""
    name = account_name(hub_name)
    found = lookup(hub_name)
    if found is None:
        done = subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", SHELL, "--user-group"]
            + ["--comment", f"ReefLab user {hub_name}"[:200], name],
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
    subprocess.run(["pkill", "-KILL", "-u", str(found.uid)], capture_output=True, check=False)
    done = subprocess.run(["userdel", found.name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"could not delete the OS account {found.name}: {done.stderr.strip()}")
    return True


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
