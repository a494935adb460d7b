"""What every run backend provides to its service: how a kind's runs are started is its own (`start`)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from pathlib import Path
from typing import Any

from traitlets.config import LoggingConfigurable


class AbstractConfigurable(type(LoggingConfigurable), ABCMeta):
    pass


class RunBackend(LoggingConfigurable, metaclass=AbstractConfigurable):
    """Runs one kind of record somewhere. `name` is kept in each record (`backend`)."""

    name = "base"

    @abstractmethod
    async def status(self, record: Any, folder: Path) -> Any:
        """Where a started run stands now (also after a restart of the user's server)."""

    @abstractmethod
    async def stop(self, record: Any, folder: Path) -> None:
        """Stop it and free everything it holds; idempotent."""

    @abstractmethod
    async def logs(self, record: Any, folder: Path, tail: int) -> list[str]:
        """The last `tail` lines of its log."""
