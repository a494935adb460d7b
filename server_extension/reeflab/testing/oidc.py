"""A real OIDC provider for tests: oidc-provider-mock, run from its own venv (.venv-oidc, made by
`make install-test`). It accepts any client id and secret; a user's claims are set with `PUT /users/{sub}`."""

from __future__ import annotations

from pathlib import Path

import requests

from ..files import free_port
from ..hub.config import REPO
from .process import ServerProcess

MOCK_PYTHON = REPO / ".venv-oidc" / "bin" / "python"


class OIDCProviderProcess(ServerProcess):
    """`with OIDCProviderProcess(log_path) as provider:` serves on a free port; `provider.issuer` is its URL."""

    what = "oidc-provider-mock"

    def __init__(self, log_path: Path):
        super().__init__(log_path)
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(MOCK_PYTHON), "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(self.port)]

    def healthy(self) -> bool:
        return requests.get(self.issuer + "/.well-known/openid-configuration", timeout=2).ok
