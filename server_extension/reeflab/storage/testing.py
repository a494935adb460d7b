"""Real storage servers for tests and benchmarks: SeaweedFS (the platform's own S3) on free ports, and
wsgidav serving a Nextcloud-style WebDAV path with basic auth."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

import requests
import yaml

from ..files import free_port, write_private
from ..testing.process import ServerProcess
from .seaweedfs import new_admin_key


class WebDAVProcess(ServerProcess):
    """`with WebDAVProcess(tmp, user="ana") as dav:` serves `dav.root` at `dav.url` (…/remote.php/dav/files/ana).

    Like a Nextcloud: one user, an app password (`dav.password`), basic auth only.
    """

    what = "the WebDAV server (wsgidav)"

    def __init__(self, state: Path, user: str = "ana", password: str | None = None):
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        super().__init__(self.state / "wsgidav.log")
        self.user = user
        self.password = password or secrets.token_urlsafe(16)
        self.root = self.state / "files"
        self.root.mkdir(exist_ok=True)
        self.port = free_port()
        self.mount_path = f"/remote.php/dav/files/{user}"
        self.url = f"http://127.0.0.1:{self.port}{self.mount_path}"

    def command(self) -> list[str]:
        config = {
            "host": "127.0.0.1",
            "port": self.port,
            "server": "uvicorn",  # installed with the stack (MLflow); wsgiref and ext-wsgiutils hang on PUT
            "verbose": 2,
            "provider_mapping": {self.mount_path: str(self.root)},
            "http_authenticator": {
                "domain_controller": None,
                "accept_basic": True,
                "accept_digest": False,
                "default_to_digest": False,
            },
            "simple_dc": {"user_mapping": {"*": {self.user: {"password": self.password}}}},
        }
        path = self.state / "wsgidav.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(config, out)
        here = Path(sys.executable).parent
        wsgidav = shutil.which("wsgidav", path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
        return [wsgidav or "wsgidav", "--config", str(path)]

    def healthy(self) -> bool:
        answer = requests.request(
            "PROPFIND", self.url + "/", auth=(self.user, self.password), headers={"Depth": "0"}, timeout=2
        )
        return answer.status_code == 207


class SeaweedProcess(ServerProcess):
    """A real SeaweedFS on free ports, for tests and benchmarks: `with SeaweedProcess(tmp) as s3:`."""

    what = "SeaweedFS"

    def __init__(self, state: Path, webhook_url: str = "", webhook_token: str = "", port: int | None = None):
        self.state = Path(state)
        super().__init__(self.state.parent / f"{self.state.name}-seaweedfs.log")
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.key_file = self.state.parent / f"{self.state.name}-admin-key.json"
        self.key = new_admin_key(self.key_file)
        self.webhook_url, self.webhook_token = webhook_url, webhook_token

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "reeflab.storage.seaweedfs", f"--dir={self.state}"]
        command += [f"--s3-port={self.port}", f"--admin-key-file={self.key_file}"]
        if self.webhook_url:
            token_file = self.state.parent / f"{self.state.name}-webhook-token"
            write_private(token_file, self.webhook_token)
            command += [f"--webhook-url={self.webhook_url}", f"--webhook-token-file={token_file}"]
        return command

    def client(self, service: str = "s3", key: dict[str, str] | None = None, **config):
        from .platform_s3 import s3_client

        return s3_client(self.endpoint, key or self.key, service, **config)

    def healthy(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client(connect_timeout=2, retries={"max_attempts": 1}).list_buckets()
        except (BotoCoreError, ClientError):
            return False
        return True
