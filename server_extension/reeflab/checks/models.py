"""The report of a module's checks: one result per check, and the badge the marketplace shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

CheckState = Literal["passed", "failed", "skipped"]


class CheckResult(BaseModel):
    """What one check found."""

    name: str = Field(description="metadata, deepaas, tests, style, security, dockerfile, licence or resources")
    title: str = Field(description='What the check asserts, e.g. "ai4-metadata is valid"')
    state: CheckState = Field(description="skipped: the check cannot run here; the reason says why")
    reason: str = Field(description="One readable sentence: what failed and how to fix it, or what was measured")
    details: str = Field(default="", description="The tool's output, trimmed")
    seconds: float


class CheckReport(BaseModel):
    """All checks of one module, as checked from one source tree."""

    module: str = Field(description="Module id")
    version: str = Field(description='ai4-metadata version, or ""')
    digest: str = Field(description="sha256 of the module's source files: a changed module is checked again")
    source: str = Field(description="The folder or installed package checked")
    checked: datetime
    passed: bool = Field(description="No check failed (skipped ones do not fail it)")
    results: list[CheckResult]

    def badge(self) -> dict[str, Any]:
        """What a catalogue card shows: passed or failed, when, and which checks failed."""
        failed = [r.name for r in self.results if r.state == "failed"]
        return {"state": "passed" if self.passed else "failed", "checked": self.checked.isoformat(), "failed": failed}
