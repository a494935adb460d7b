"""Small local-machine helpers every part uses: private files, free ports, output to a log file."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def write_private(path: Path, content: str | bytes) -> None:
    """Write `content` atomically to `path` with mode 0600 (secrets, records: readers never see half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as out:
        out.write(content)
    tmp.replace(path)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    return free_port_at(0, host)


def free_port_at(port: int, host: str = "127.0.0.1") -> int:
    """`port` if nothing listens on it (0: any free port); OSError if it is taken."""
    with socket.socket() as s:
        s.bind((host, port))
        return s.getsockname()[1]


def output_to(log_file: Path) -> None:
    """Send this process's stdout and stderr (and so a program it execs) to `log_file` (0600, appended).

    For the platform's services (SeaweedFS, MLflow) that the hub starts: their own banners, INFO lines and
    deprecation warnings stay in their log instead of the terminal where `make up` runs.
    """
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(fd, stream.fileno())
    os.close(fd)
