"""The last step of stopping a hub: nothing of its users may be left running or mounted.

After each user's own stop (reeflab.workloads) has ended what they started, whatever is still there
is a leftover: a process that escaped its record (a crashed server's kernel, a deployment started
while its record was being written), or a FUSE mount whose rclone died ("Input/output error").
A process belongs to this hub's users when its HOME or its working folder is in the hub's homes
folder. That, not the user's account or cgroup, is what marks it: on a machine shared by several
hubs (tests run side by side), one user name's account and cgroup serve every hub that has the name.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import psutil

from ..storage.mounts import fuse_unmount


def _inside(path: str | None, folder: Path) -> bool:
    return bool(path) and (path == str(folder) or path.startswith(str(folder) + os.sep))


def processes(*folders: Path) -> list[psutil.Process]:
    """Processes whose HOME or working folder is in one of `folders` (never this one or its ancestors)."""
    folders = tuple(Path(os.path.realpath(f)) for f in folders)
    own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for process in psutil.process_iter():
        if process.pid in own:
            continue
        try:  # (a process that is exiting may fail with OSError rather than psutil's NoSuchProcess)
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            places = [process.cwd(), os.path.realpath(process.environ().get("HOME") or "/")]
        except (psutil.Error, OSError):
            continue
        if any(_inside(place, folder) for place in places for folder in folders):
            found.append(process)
    return found


def fuse_mounts(*folders: Path) -> list[Path]:
    """FUSE mount points in one of `folders` (/proc/mounts, deepest first)."""
    folders = tuple(Path(os.path.realpath(f)) for f in folders)
    found = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 3 and fields[2].split(".")[0] in ("fuse", "fuseblk"):
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])  # \040: a space
                if any(_inside(point, folder) for folder in folders):
                    found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def sweep(*folders: Path, timeout: float = 5) -> list[str]:
    """Kill what is left in `folders` (the users' homes) and unmount FUSE mounts there; one line for each."""
    lines = []
    left = processes(*folders)
    for process in left:
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())[:100]
            process.kill()
            lines.append(f"killed leftover process {process.pid} ({command})")
    psutil.wait_procs(left, timeout=timeout)
    for point in fuse_mounts(*folders):
        fuse_unmount(point)
        lines.append(f"unmounted leftover FUSE mount {point}")
    return lines
