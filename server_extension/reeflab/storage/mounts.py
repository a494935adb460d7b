"""FUSE mounts of connections with `rclone mount`, one process each, outliving the Jupyter server.

Each mount runs in its own session, so a restart of the user's server leaves it in place; the
pid file lets the next server re-attach to it (or clean up a dead one and mount again). The
state a user sees is the truth of the moment: the mount point is mounted and its rclone alive,
or an error with rclone's own reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..errors import Conflict, ReefLabError
from . import rclone
from .models import StorageConnection


class FuseUnavailable(ReefLabError):
    status = 501


@dataclass
class MountStatus:
    state: str  # unmounted | mounted | error
    path: str
    reason: str | None = None

    def public(self) -> dict:
        return {"state": self.state, "path": self.path, "reason": self.reason}


def fuse_problem() -> str | None:
    """Why FUSE mounts cannot work here, or None when they can."""
    if not os.path.exists("/dev/fuse"):
        return "this server has no /dev/fuse (containers need it passed in, e.g. --device /dev/fuse)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK) and os.geteuid() != 0:
        return "this account may not open /dev/fuse"
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "fusermount3 is not installed (Debian/Ubuntu: apt-get install fuse3)"
    return None


def _fusermount() -> str:
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"


def fuse_unmount(mountpoint: Path) -> None:
    """Unmount a FUSE mount (one whose process died too); lazily if a file in it is still open."""
    done = subprocess.run([_fusermount(), "-u", str(mountpoint)], capture_output=True, timeout=30)
    if done.returncode != 0:  # busy: detach now, finish when the last file closes
        subprocess.run([_fusermount(), "-uz", str(mountpoint)], capture_output=True, timeout=30)


def _is_mount(path: Path) -> bool:
    return os.path.ismount(path)


def _stale(path: Path) -> bool:
    """A mount point whose FUSE process died: stat fails with 'Transport endpoint is not connected'."""
    try:
        os.stat(path)
    except OSError as err:
        return err.errno == 107  # ENOTCONN
    return False


class MountManager:
    """rclone mounts of one server's users, with their state kept in `state_dir`."""

    def __init__(self, state_dir: Path, mount_timeout: float = 20):
        self.state_dir = Path(state_dir)
        self.mount_timeout = mount_timeout
        self._procs: dict[int, subprocess.Popen] = {}
        self._errors: dict[str, str] = {}

    def _files(self, connection: StorageConnection) -> tuple[Path, Path, Path]:
        folder = self.state_dir / "mounts"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = connection.name
        return folder / f"{name}.pid", folder / f"{name}.log", self.state_dir / "cache" / name

    def _alive(self, pid: int | None, mountpoint: Path) -> bool:
        if not pid:
            return False
        proc = self._procs.get(pid)
        if proc is not None:
            return proc.poll() is None
        try:
            process = psutil.Process(pid)
            return process.status() != psutil.STATUS_ZOMBIE and str(mountpoint) in process.cmdline()
        except psutil.Error:
            return False

    def _pid(self, connection: StorageConnection) -> int | None:
        pid_file = self._files(connection)[0]
        try:
            return int(pid_file.read_text())
        except (OSError, ValueError):
            return None

    def status(self, connection: StorageConnection, mountpoint: Path) -> MountStatus:
        if _is_mount(mountpoint) and self._alive(self._pid(connection), mountpoint):
            return MountStatus("mounted", str(mountpoint))
        if connection.mounted:
            reason = self._errors.get(connection.name) or self._last_error(connection) or "rclone mount stopped"
            return MountStatus("error", str(mountpoint), reason)
        return MountStatus("unmounted", str(mountpoint))

    def mount(self, connection: StorageConnection, mountpoint: Path, config_file: Path) -> MountStatus:
        """Mount and wait until the kernel shows it; raises with rclone's reason if it cannot."""
        problem = fuse_problem()
        if problem:
            raise FuseUnavailable(
                f"Cannot mount '{connection.name}': FUSE is not available ({problem}). "
                "Copy or sync the files into your workspace instead (storage transfers)."
            )
        pid_file, log_file, cache = self._files(connection)
        if _is_mount(mountpoint) and self._alive(self._pid(connection), mountpoint):
            return MountStatus("mounted", str(mountpoint))
        if _stale(mountpoint) or _is_mount(mountpoint):
            fuse_unmount(mountpoint)
        mountpoint.mkdir(parents=True, exist_ok=True)
        if any(mountpoint.iterdir()):
            raise Conflict(f"{mountpoint} is not empty: move its files elsewhere before mounting '{connection.name}'.")
        self._errors.pop(connection.name, None)
        log_file.write_bytes(b"")
        command = [
            rclone.rclone_binary(),
            "mount",
            rclone.remote_path(connection),
            str(mountpoint),
            "--vfs-cache-mode", "writes",
            "--vfs-write-back", "1s",
            "--dir-cache-time", "5s",
            "--poll-interval", "0",
            "--cache-dir", str(cache),
            "--use-json-log",
            "--log-level", "NOTICE",
            *rclone.FAST_FAIL,
        ]  # fmt: skip
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                command,
                env=rclone.child_env(connection, config_file),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs[proc.pid] = proc
        pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + self.mount_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                reason = self._last_error(connection) or f"rclone mount exited with {proc.returncode}"
                self._errors[connection.name] = reason
                raise ReefLabError(f"Mounting '{connection.name}' failed: {reason}")
            if _is_mount(mountpoint):
                return MountStatus("mounted", str(mountpoint))
            time.sleep(0.1)
        self._stop(proc.pid, mountpoint)
        self._errors[connection.name] = f"not mounted after {self.mount_timeout:g} s"
        raise ReefLabError(f"Mounting '{connection.name}' failed: not mounted after {self.mount_timeout:g} s")

    def unmount(self, connection: StorageConnection, mountpoint: Path) -> bool:
        """Unmount (lazily if a notebook still has a file open), stop rclone, remove the empty folder.
        True if it was mounted (or its rclone still ran)."""
        pid = self._pid(connection)
        mounted = _is_mount(mountpoint) or _stale(mountpoint)
        running = bool(pid) and self._alive(pid, mountpoint)
        if mounted:
            fuse_unmount(mountpoint)
        if pid:
            self._stop(pid, mountpoint)
        self._files(connection)[0].unlink(missing_ok=True)
        self._errors.pop(connection.name, None)
        try:
            mountpoint.rmdir()
        except OSError:
            pass  # not empty, or already gone
        return mounted or running

    def _stop(self, pid: int, mountpoint: Path) -> None:
        proc = self._procs.pop(pid, None)
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            return
        if self._alive(pid, mountpoint):  # a mount made before this server started: ours, checked by cmdline
            os.kill(pid, signal.SIGTERM)
            # not psutil's wait(): an orphan's zombie lasts until its new parent reaps it
            deadline = time.monotonic() + 15
            while self._alive(pid, mountpoint) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._alive(pid, mountpoint):
                os.kill(pid, signal.SIGKILL)

    def _last_error(self, connection: StorageConnection) -> str | None:
        """rclone's last error or critical message in the mount's log (it never logs secrets)."""
        log_file = self._files(connection)[1]
        try:
            lines = log_file.read_text(errors="replace").splitlines()[-50:]
        except OSError:
            return None
        for line in reversed(lines):
            entry = rclone.parse_log_line(line)
            if entry.get("level") in ("error", "critical", "fatal") or "level" not in entry and entry["msg"]:
                return rclone.scrub(entry["msg"].strip(), connection.secrets())[:500]
        return None
