"""The index of published modules: a JSON file in the format the marketplace reads from remote indexes
(`{"modules": [{"id", "metadata", ...}]}`), each module with its publisher and the passing check report it was
published with. Only the catalogue service writes it (one writer, each change written whole: a rename)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import Forbidden, NotFound


class PublishedIndex:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()

    def modules(self) -> list[dict[str, Any]]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return list(document.get("modules", []))

    def publish(self, module: str, metadata: dict[str, Any], report: dict[str, Any], publisher: str) -> dict:
        """Add the module (or replace the publisher's earlier publication of it) with its report."""
        item = {
            "id": module,
            "metadata": metadata,
            "publisher": publisher,
            "published": datetime.now(UTC).isoformat(),
            "check": report,
        }
        with self._lock:
            modules = self.modules()
            self._own(modules, module, publisher, missing_ok=True)
            self._write([m for m in modules if m.get("id") != module] + [item])
        return item

    def unpublish(self, module: str, caller: str, admin: bool = False) -> None:
        """Take the module out; only its publisher (or a platform admin) may."""
        with self._lock:
            modules = self.modules()
            self._own(modules, module, None if admin else caller, missing_ok=False)
            self._write([m for m in modules if m.get("id") != module])

    @staticmethod
    def _own(modules: list[dict], module: str, publisher: str | None, missing_ok: bool) -> None:
        found = next((m for m in modules if m.get("id") == module), None)
        if found is None and not missing_ok:
            raise NotFound(f"'{module}' is not published.")
        if found is not None and publisher is not None and found.get("publisher") != publisher:
            raise Forbidden(f"'{module}' was published by another user; only they can change or remove it.")

    def _write(self, modules: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"modules": modules}, out, indent=1)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
