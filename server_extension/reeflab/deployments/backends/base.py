"""What every deployment backend provides to DeploymentService."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ...runs.backend import RunBackend
from ..models import Deployment


class BackendStatus:
    """A backend's view of one deployment: `state` is starting, ready, failed or stopped."""

    def __init__(self, state: str, reason: str | None = None, out_of_memory: bool = False):
        self.state = state
        self.reason = reason
        self.out_of_memory = out_of_memory  # stopped for its memory: a restart with more may help


@dataclass(frozen=True)
class Endpoint:
    """Where a deployment's DEEPaaS API answers: a host and port, or a Unix socket (host "localhost").

    jupyter-server-proxy connects to `unix_socket` when it is set, and then needs host "localhost".
    """

    host: str
    port: int
    unix_socket: str | None = None
    # the path DEEPaaS serves under (deepaas-run --base-path): the route's own full path, or "" for the root
    base_path: str = ""

    @classmethod
    def unix(cls, path: str, base_path: str = "") -> Endpoint:
        """A socket file; the port only fills the URL the proxy builds (nothing listens on it)."""
        return cls("localhost", 80, path, base_path)


class DeploymentBackend(RunBackend):
    """Starts, watches and stops DEEPaaS servers of modules. Subclasses: local, kubernetes."""

    @abstractmethod
    async def start(self, deployment: Deployment, folder: Path) -> dict:
        """Launch the module; return the runtime handle kept in `deployment.runtime`."""

    @abstractmethod
    async def status(self, deployment: Deployment, folder: Path | None = None) -> BackendStatus:
        """Where a started deployment stands now (also after a server restart)."""

    @abstractmethod
    async def stop(self, deployment: Deployment, folder: Path | None = None) -> None:
        """Stop it and free everything it holds; idempotent."""

    @abstractmethod
    def endpoint(self, deployment: Deployment) -> Endpoint:
        """Where its DEEPaaS API answers, for the authenticated proxy route (the only way to it)."""

    @abstractmethod
    async def logs(self, deployment: Deployment, folder: Path, tail: int) -> list[str]:
        """The last `tail` lines of its log."""
