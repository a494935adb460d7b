"""A folder of check reports, read again only when it changed (the catalogue asks for them on every search): the
reports of a user's registered versions (`<CatalogService.registry_dir>/checks/<module>@<version>.json`), and the
catalogue service's reports of installed modules (`<module>@platform`, reeflab.publishing)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

from .models import CheckReport

PLATFORM = "platform"  # the platform's report of an installed module: '<module>@platform' (reeflab.publishing)
FOLDER = "checks"  # under CatalogService.registry_dir, beside the registered models (a name they may not take)


def report_name(module: str, key: str) -> str:
    """A shared report's name: the module and what it was checked as (a version, or its digest's start)."""
    return f"{module}@{key}"


class SharedReports:
    """The folder of shared reports; `find(module)` lists a module's, newest first."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._seen: int | None = None  # the folder's mtime when last read
        self._by_module: dict[str, list[tuple[str, CheckReport]]] = {}

    def path(self, name: str) -> Path:
        if "/" in name or name.startswith(".") or "@" not in name:
            raise ValueError(f"'{name}' is not a report name")
        return self.folder / f"{name}.json"

    def page(self, name: str) -> Path:
        """Its readable page."""
        return self.path(name).with_suffix(".html")

    def save(self, name: str, report: CheckReport, page: bytes | None = None) -> None:
        """The report (and its page), each written whole or not at all; the report last (a rename: the folder's
        mtime tells readers)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if page is not None:
            self._write(self.page(name), page)
        self._write(self.path(name), report.model_dump_json(indent=1).encode())

    def _write(self, path: Path, content: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".new-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.chmod(tmp, 0o644)  # noqa: S103 (a report is public: it is shown on the module's card)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def get(self, name: str) -> CheckReport | None:
        try:
            return CheckReport.model_validate_json(self.path(name).read_text())
        except (OSError, ValueError):  # none of that name (or not a report's name)
            return None

    def find(self, module: str) -> list[tuple[str, CheckReport]]:
        """(name, report) of `module`'s shared reports, newest first."""
        try:
            mtime = self.folder.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        with self._lock:
            if mtime != self._seen:
                self._by_module = self._read()
                self._seen = mtime
            return self._by_module.get(module, [])

    def _read(self) -> dict[str, list[tuple[str, CheckReport]]]:
        found: dict[str, list[tuple[str, CheckReport]]] = defaultdict(list)
        for path in self.folder.glob("*.json"):
            report = self.get(path.stem)
            if report is not None:
                found[report.module].append((path.stem, report))
        for reports in found.values():
            reports.sort(key=lambda item: item[1].checked, reverse=True)
        return dict(found)
