"""A real WebDAV server for tests and benchmarks: wsgidav serving a Nextcloud-style path with basic auth."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

import requests
import yaml

from ..testing.process import ServerProcess, free_port


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
