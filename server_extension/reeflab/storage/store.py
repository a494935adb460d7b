"""Connections on disk: `<root>/<owner>/<name>.json`, folders 0700 and files 0600 (they hold secrets)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..files import write_private
from .models import StorageConnection


def _owner_dir(owner: str) -> str:
    """A folder name for any user name (hub names may hold characters no file name should)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in owner)[:40]
    return f"{safe}-{hashlib.sha256(owner.encode()).hexdigest()[:8]}"


class ConnectionStore:
    """Survives server restarts; written atomically so a crash never leaves half a secret file."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, owner: str) -> Path:
        return self.root / _owner_dir(owner)

    def save(self, connection: StorageConnection) -> None:
        folder = self.folder(connection.owner)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        write_private(folder / f"{connection.name}.json", connection.dump())

    def delete(self, owner: str, name: str) -> None:
        (self.folder(owner) / f"{name}.json").unlink(missing_ok=True)

    def load(self, owner: str) -> dict[str, StorageConnection]:
        folder = self.folder(owner)
        found = {}
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            connection = StorageConnection.model_validate_json(path.read_text())
            if connection.owner == owner:
                found[connection.name] = connection
        return found
