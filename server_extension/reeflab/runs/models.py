"""What every run record has: who owns it, where it stands, and the backend's handle on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field


class RunRecord(BaseModel):
    """A run and what the platform keeps about it; subclasses narrow `state` to their own states."""

    ACTIVE_STATES: ClassVar[tuple[str, ...]] = ("starting", "running")
    ENDED_AT: ClassVar[str] = "finished_at"  # the field stamped when it ends

    id: str
    owner: str
    title: str
    profile: str
    state: str
    reason: str | None = None
    backend: str
    created: datetime
    started_at: datetime | None = None
    runtime: dict[str, Any] = Field(default_factory=dict, description="Backend's handle: pid, names...")

    @property
    def active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    def public(self) -> dict[str, Any]:
        """What the API returns: no runtime internals."""
        return self.model_dump(mode="json", exclude={"runtime"})
