"""The catalogue index users publish checked modules to: a JSON file in the format the marketplace reads from
remote indexes (`{"modules": [{"id", "metadata", ...}]}`), each module with its publisher and its passing check
report. Other users' servers read it as one of their `CatalogService.remote_indexes` (its file:// URL)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..catalog.models import ModuleEntry
from ..errors import Forbidden, NotFound, ReefLabError
from .models import CheckReport


class PublishedIndex:
    """Changes to the index file, one writer at a time (a lock file beside it: several users' servers write it)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def modules(self) -> list[dict[str, Any]]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return list(document.get("modules", []))

    def publish(self, entry: ModuleEntry, report: CheckReport, publisher: str) -> dict[str, Any]:
        """Add the module (or replace the publisher's earlier publication of it) with its report."""
        item = {
            "id": entry.id,
            "metadata": entry.metadata,
            "publisher": publisher,
            "published": datetime.now(UTC).isoformat(),
            "check": report.model_dump(mode="json"),
        }
        with self._changing() as modules:
            self._own(modules, entry.id, publisher, missing_ok=True)
            modules[:] = [m for m in modules if m.get("id") != entry.id] + [item]
        return item

    def unpublish(self, module_id: str, publisher: str) -> None:
        with self._changing() as modules:
            self._own(modules, module_id, publisher, missing_ok=False)
            modules[:] = [m for m in modules if m.get("id") != module_id]

    @staticmethod
    def _own(modules: list[dict], module_id: str, publisher: str, missing_ok: bool) -> None:
        found = next((m for m in modules if m.get("id") == module_id), None)
        if found is None and not missing_ok:
            raise NotFound(f"'{module_id}' is not published; publish it with POST /reeflab/api/catalog/published.")
        if found is not None and found.get("publisher") != publisher:
            raise Forbidden(f"'{module_id}' was published by another user; only they can change or remove it.")

    @contextlib.contextmanager
    def _changing(self) -> Iterator[list[dict[str, Any]]]:
        """The index's modules to change in place, written back whole (a rename) once the block ends."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # read-only is enough to lock it: the lock file made by another user's server serves every user's
            fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as err:
            raise self._unwritable(err) from None
        with os.fdopen(fd) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            modules = self.modules()
            yield modules
            try:
                self._write({"modules": modules})
            except OSError as err:
                raise self._unwritable(err) from None

    def _unwritable(self, err: OSError) -> ReefLabError:
        return ReefLabError(
            f"The shared catalogue index {self.path} cannot be written ({err.strerror}): its folder must be writable "
            "by every user's account (group-writable, without the sticky bit); tell the platform's operator."
        )

    def _write(self, document: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(document, out, indent=1)
            os.chmod(tmp, 0o644)  # noqa: S103 (an index is read by every user's server)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
