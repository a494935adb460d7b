"""Jobs on disk: one private folder each (job.json, the runner's status.json and its log); runs.store keeps the
record, the runner writes the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
LOG_FILE = "job.log"


def now() -> str:
    """A status time stamp."""
    return datetime.now(UTC).isoformat()


def read_status(folder: Path, name: str = STATUS_FILE) -> dict[str, Any]:
    """The runner's latest status.json (or a rank's `name`), or {} before it wrote one."""
    try:
        return json.loads((folder / name).read_text())
    except (FileNotFoundError, ValueError):
        return {}
