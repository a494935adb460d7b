"""Where a module's checks run: the check runner (`python -m reeflab.checks`) as a detached process of the user's
account, writing its report (JSON and a readable page) and its log into the run's folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..processes import cpu_set, running, spawn, stop_group, tail_lines
from ..runs.backend import RunBackend
from .models import CheckReport

REPORT_FILE = "report.json"
PAGE_FILE = "report.html"
LOG_FILE = "check.log"


def runner_command(module: str, report: Path, page: Path) -> list[str]:
    """The check runner on `module` (an installed module's id or a folder), writing its report and page."""
    return [sys.executable, "-m", "reeflab.checks", module, "--report", str(report), "--html", str(page)]


def read_report(path: Path) -> CheckReport | None:
    """The report the runner wrote, or None where it wrote none (it failed before the end)."""
    try:
        return CheckReport.model_validate_json(path.read_text())
    except (FileNotFoundError, ValueError, ValidationError):
        return None


class LocalCheckBackend(RunBackend):
    """The runner in its own session on the run's CPUs; it starts the module's API and tests as its children."""

    name = "local"

    async def start(self, record: Any, folder: Path, cpus: float, env: dict[str, str] | None = None) -> dict:
        command = runner_command(record.source, folder / REPORT_FILE, folder / PAGE_FILE)
        environment = {**os.environ, **(env or {})}
        return spawn(command, log=folder / LOG_FILE, cwd=folder, env=environment, cpus=cpu_set(cpus), cgroup=None)

    async def status(self, record: Any, folder: Path) -> dict[str, Any]:
        """running; completed with the report; or failed with the last lines of the log (no report)."""
        if running(record.runtime) is not None:
            return {"state": "running"}
        report = read_report(folder / REPORT_FILE)
        if report is not None:
            return {"state": "completed", "report": report}
        lines = "\n".join(tail_lines(folder / LOG_FILE, 15))
        return {"state": "failed", "reason": f"the checks ended without a report. Last lines of their log:\n{lines}"}

    async def stop(self, record: Any, folder: Path) -> None:
        process = running(record.runtime)
        if process is not None:
            await stop_group(process, grace=5)

    async def logs(self, record: Any, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / LOG_FILE, tail)
