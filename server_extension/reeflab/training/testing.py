"""A real MLflow tracking server (the hub's, with its basic-auth accounts) for tests and benchmarks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from ..files import free_port
from ..testing.process import ServerProcess
from .accounts import TrackingAccounts


class MlflowProcess(ServerProcess):
    """`with MlflowProcess(tmp / "mlflow") as mlflow:` starts it; `mlflow.account("alice")` gives an env."""

    what = "the MLflow tracking server"

    def __init__(self, state: Path, port: int | None = None):
        self.state = Path(state)
        super().__init__(self.state.parent / f"{self.state.name}-mlflow.log")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.accounts = TrackingAccounts(self.url, self.state)

    def command(self) -> list[str]:
        module = "reeflab.training.tracking_server"
        return [sys.executable, "-m", module, f"--state-dir={self.state}", f"--port={self.port}"]

    def healthy(self) -> bool:
        return requests.get(self.url + "/health", timeout=2).ok

    def start(self, timeout: float = 180):
        return super().start(timeout)

    def account(self, username: str) -> dict[str, str]:
        """The environment a user's server gets from the hub (the account is created if needed)."""
        return self.accounts.environment(username)

    def stop(self, timeout: float = 30) -> None:
        # `mlflow server` runs uvicorn and a job runner as children: stop the whole session
        if self.proc and self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
        super().stop(timeout)
