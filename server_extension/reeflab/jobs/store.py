"""Jobs on disk: one private folder each (job.json, the runner's status.json and its log)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..files import write_private
from .models import Job

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
LOG_FILE = "job.log"


def read_status(folder: Path) -> dict[str, Any]:
    """The runner's latest status.json, or {} before it wrote one."""
    try:
        return json.loads((folder / STATUS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


class JobStore:
    """`<root>/<id>/job.json`, written atomically; survives server restarts."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def save(self, job: Job) -> None:
        folder = self.folder(job.id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(folder / JOB_FILE, job.model_dump_json(indent=1))

    def load_all(self) -> list[Job]:
        if not self.root.exists():
            return []
        return [Job.model_validate_json(path.read_text()) for path in sorted(self.root.glob(f"*/{JOB_FILE}"))]
