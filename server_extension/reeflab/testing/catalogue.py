"""The catalogue service (reeflab.publishing) as a process for tests: its own state, a free port, and static tokens
standing for the hub's (one per user name given)."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import httpx

from ..files import free_port
from .process import ServerProcess


class CatalogueProcess(ServerProcess):
    what = "the catalogue service"

    def __init__(self, state: Path, users: list[str], check_installed: bool = False):
        self.state = Path(state)
        super().__init__(self.state / "catalogue.log", cwd=self.state)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tokens = {user: secrets.token_hex(16) for user in users}
        self.check_installed = check_installed

    def command(self) -> list[str]:
        self.state.mkdir(parents=True, exist_ok=True)
        tokens = self.state / "tokens.json"
        tokens.write_text(json.dumps({token: user for user, token in self.tokens.items()}))
        return [
            sys.executable,
            "-m",
            "reeflab.publishing",
            f"--port={self.port}",
            f"--state-dir={self.state / 'service'}",
            f"--CatalogueApp.static_tokens_file={tokens}",
            f"--CatalogueApp.check_installed={self.check_installed}",
        ]

    def healthy(self) -> bool:
        token = next(iter(self.tokens.values()))
        try:
            answer = httpx.get(f"{self.url}index.json", headers={"Authorization": f"token {token}"}, timeout=2)
        except httpx.TransportError:  # not listening yet
            return False
        return answer.is_success
