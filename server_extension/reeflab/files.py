"""Small local-machine helpers every part uses: private files and free ports."""

from __future__ import annotations

import os
import socket
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
