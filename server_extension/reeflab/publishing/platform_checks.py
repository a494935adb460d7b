"""The platform's own checks of the modules installed with it (ReefLab's built-ins and what the operator installed):
each checked once, in the background, one at a time, and again only when its files changed. Every user's
marketplace shows these reports as the modules' badges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
from pathlib import Path

from ..catalog.sources import installed_entries
from ..checks.backends import read_report, runner_command
from ..checks.module import find_module
from ..checks.shared import PLATFORM, SharedReports, report_name

log = logging.getLogger(__name__)


class PlatformChecks:
    def __init__(self, folder: Path, timeout: float = 900):
        self.reports = SharedReports(folder)
        self.timeout = timeout

    def listing(self) -> list[dict]:
        """[{"name", "report"}] of every module checked, for users' servers."""
        names = sorted(path.stem for path in self.reports.folder.glob(f"*@{PLATFORM}.json"))
        found = ((name, self.reports.get(name)) for name in names)
        return [{"name": name, "report": report.model_dump(mode="json")} for name, report in found if report]

    async def run(self) -> None:
        """Check every installed module whose files changed since its report (none at the first start)."""
        entries = await asyncio.to_thread(installed_entries)
        checked = 0
        for entry in entries:
            if entry.entry_point is None:
                continue
            try:
                module = await asyncio.to_thread(find_module, entry.id)
                digest = await asyncio.to_thread(module.digest)
            except Exception as err:  # a module that cannot be found or read: its check would say so, not the service
                log.warning("module %s cannot be read for its check: %s", entry.id, err)
                continue
            name = report_name(entry.id, PLATFORM)
            known = self.reports.get(name)
            if known is None or known.digest != digest:
                await self._check(entry.id, name)
                checked += 1
        log.info("installed modules: %d checked now, %d unchanged since their check", checked, len(entries) - checked)

    async def _check(self, module: str, name: str) -> None:
        with tempfile.TemporaryDirectory(prefix="reeflab-check-") as scratch:
            report_file, page_file = Path(scratch) / "report.json", Path(scratch) / "report.html"
            command = runner_command(module, report_file, page_file)
            log.info("checking module %s", module)
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=scratch,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                preexec_fn=lambda: os.nice(10),  # users' work comes first
                start_new_session=True,
            )
            try:
                await asyncio.wait_for(process.wait(), self.timeout)
            except TimeoutError:
                log.warning("the check of module %s took more than %d s: stopped", module, self.timeout)
                return
            finally:  # also when the service stops meanwhile
                await _stop(process)
            report = read_report(report_file)
            if report is None:
                log.warning("the check of module %s ended without a report (exit %s)", module, process.returncode)
                return
            page = page_file.read_bytes() if page_file.is_file() else None
            await asyncio.to_thread(self.reports.save, name, report, page)
            log.info("module %s: %s", module, "passed" if report.passed else "failed")


async def _stop(process: asyncio.subprocess.Process, grace: float = 10) -> None:
    """SIGTERM first: the runner then stops the module's API it started (in a session of its own); then SIGKILL."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
