"""What every run record has: who owns it, where it stands, and the backend's handle on it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifiers(names: Iterable[str], what: str) -> None:
    """ValueError naming the first of `names` that is not `what` (a variable name: letters, digits, '_')."""
    for name in names:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"'{name}' is not {what} (letters, digits, '_')")


def relative_file(value: str, suffix: str, what: str, kind: str) -> str:
    """A path inside the user's Jupyter root (no absolute path, no '..') ending in `suffix`."""
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"give the {what}'s path relative to your Jupyter root folder, without '..'")
    if path.suffix != suffix:
        raise ValueError(f"'{value}' is not {kind}")
    return str(path)


class RunRequest(BaseModel):
    """What every request to start a run may say (POST /reeflab/api/<kind>); unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    profile: str | None = Field(None, description="Hardware profile slug; default: your default profile")
    title: str | None = Field(None, max_length=120)


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
