"""Jobs on disk: one private folder each (job.json, the runner's status.json and its log); runs.store keeps the
record, the runner writes the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
LOG_FILE = "job.log"


def read_status(folder: Path) -> dict[str, Any]:
    """The runner's latest status.json, or {} before it wrote one."""
    try:
        return json.loads((folder / STATUS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
