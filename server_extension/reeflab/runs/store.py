"""Run records on disk: one private folder a run (its record, and whatever its backend writes there)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Generic, TypeVar

from ..files import write_private
from .models import RunRecord

R = TypeVar("R", bound=RunRecord)


class RecordStore(Generic[R]):
    """`<root>/<id>/<filename>`, written atomically; survives server restarts."""

    def __init__(self, root: str | os.PathLike, filename: str, model: type[R]):
        self.root, self.filename, self.model = Path(root), filename, model

    def folder(self, record_id: str) -> Path:
        return self.root / record_id

    def save(self, record: R) -> None:
        folder = self.folder(record.id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(folder / self.filename, record.model_dump_json(indent=1))

    def load_all(self) -> list[R]:
        if not self.root.exists():
            return []
        return [self.model.model_validate_json(p.read_text()) for p in sorted(self.root.glob(f"*/{self.filename}"))]

    def remove(self, record_id: str) -> None:
        """The record first (a removal cut short never brings it back), then its folder."""
        folder = self.folder(record_id)
        (folder / self.filename).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
