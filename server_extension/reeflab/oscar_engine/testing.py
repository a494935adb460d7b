"""A real engine process on a free 127.0.0.1 port, for tests and benchmarks.

Users log in with static tokens (the engine's dev/test mode); `client(user)` gives the
oscar-python basic-auth Client a user builds from GET /system/config.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import requests

from ..files import free_port
from ..storage.testing import SeaweedProcess
from ..testing.process import ServerProcess


class EngineProcess(ServerProcess):
    """`with EngineProcess(state_dir, users=["alice"]) as engine:` starts it; stops it on exit."""

    what = "the serverless engine"

    def __init__(
        self, state: Path, users: list[str] = (), args: list[str] = (), port: int | None = None, s3: bool = False
    ):
        self.state = Path(state)
        super().__init__(self.state.parent / f"{self.state.name}-engine.log")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens = {user: secrets.token_hex(16) for user in users}
        self.args = list(args)
        self.seaweed: SeaweedProcess | None = None
        if s3:  # a real SeaweedFS whose upload events come to this engine, as under the hub
            events_token = secrets.token_hex(16)
            self.seaweed = SeaweedProcess(
                self.state.parent / f"{self.state.name}-s3", self.url + "/system/storage-events", events_token
            )
            token_file = self.state.parent / f"{self.state.name}-events-token"
            token_file.write_text(events_token)
            self.args += [
                f"--ServerlessApp.s3_endpoint={self.seaweed.endpoint}",
                f"--ServerlessApp.s3_admin_key_file={self.seaweed.key_file}",
                f"--ServerlessApp.events_token_file={token_file}",
            ]

    def start(self, timeout: float = 90):
        if self.seaweed and not (self.seaweed.proc and self.seaweed.proc.poll() is None):
            self.seaweed.start()
        return super().start(timeout)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        if self.seaweed:
            self.seaweed.stop()

    def s3(self, user: str):
        """A boto3 S3 client with `user`'s own key, as oscar-python's minio provider gets it."""
        from ..storage.platform_s3 import s3_client

        provider = self.request("GET", "/system/config", user).json()["minio_provider"]
        return s3_client(provider["endpoint"], provider)

    def command(self) -> list[str]:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        tokens = self.state.parent / f"{self.state.name}-tokens.json"
        tokens.write_text(json.dumps({token: user for user, token in self.tokens.items()}))
        command = [sys.executable, "-m", "reeflab.oscar_engine", f"--port={self.port}", f"--state-dir={self.state}"]
        return [*command, f"--ServerlessApp.static_tokens_file={tokens}", *self.args]

    def healthy(self) -> bool:
        return requests.get(self.url + "/health", timeout=2).ok

    def request(self, method: str, path: str, user: str | None = None, **kwargs) -> requests.Response:
        """A raw API call, authenticated with `user`'s token if given."""
        headers = dict(kwargs.pop("headers", {}))
        if user:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return requests.request(method, self.url + path, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def login(self, user: str) -> dict:
        """The user's OSCAR cluster entry (endpoint, auth_user, auth_password) from /system/config."""
        answer = self.request("GET", "/system/config", user)
        answer.raise_for_status()
        return answer.json()["oscar_cluster"]

    def client(self, user: str):
        """oscar-python's Client with the basic-auth login the engine gave `user`."""
        from oscar_python.client import Client

        login = self.login(user)
        return Client(
            {
                "cluster_id": "reeflab",
                "endpoint": login["endpoint"],
                "user": login["auth_user"],
                "password": login["auth_password"],
                "ssl": False,
            }
        )
