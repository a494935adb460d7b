"""A real JupyterHub with ReefLab's configuration, for tests and benchmarks.

It runs hub_config/jupyterhub_config.py unchanged (plus a service token to drive the REST
API) on free 127.0.0.1 ports, with its state in a temporary folder, as `reeflab up` runs it
(reeflab.hub.app), and stops everything it and its users started, even after a failed test.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

import requests

from ..files import free_port
from ..hub import leftovers
from ..hub.config import REPO
from .process import ServerProcess, wait_until

SERVICE = "reeflab-test"


class HubProcess(ServerProcess):
    """`with HubProcess(tmp_path) as hub:` starts the hub; `hub.api(...)` calls its REST API."""

    what = "JupyterHub"

    def __init__(self, state: Path, env: dict[str, str] | None = None, extra_config: str = ""):
        self.state = Path(state)
        super().__init__(self.state / "jupyterhub.log", cwd=self.state)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.token = secrets.token_hex(16)
        self.extra_config = extra_config
        # homes outside pytest's private temp root (0700, and reset so by every pytest run):
        # users' OS accounts must be able to reach theirs
        self.homes = Path(tempfile.mkdtemp(prefix="reeflab-homes-"))
        self.homes.chmod(0o711)
        self.env = {
            **os.environ,
            "REEFLAB_STATE_DIR": str(self.state),
            "REEFLAB_HOMES": str(self.homes),
            "REEFLAB_PORT": str(self.port),
            "REEFLAB_HUB_API_PORT": str(free_port()),
            "REEFLAB_PROXY_API_PORT": str(free_port()),
            "REEFLAB_CULL_TIMEOUT": "0",
            "REEFLAB_SERVERLESS_PORT": str(free_port()),
            "REEFLAB_S3_PORT": str(free_port()),
            "REEFLAB_MLFLOW_PORT": str(free_port()),
            "REEFLAB_CATALOGUE_PORT": str(free_port()),
            "REEFLAB_USAGE_PORT": str(free_port()),
            # the catalogue service's own checks of the installed modules: tests/test_catalogue_service.py
            "REEFLAB_CHECK_INSTALLED_MODULES": "false",
            **(env or {}),
        }

    def _write_config(self) -> Path:
        path = self.state / "jupyterhub_test_config.py"
        path.write_text(
            f"load_subconfig({str(REPO / 'hub_config' / 'jupyterhub_config.py')!r})\n"
            "from reeflab.hub.config import add_service\n"
            f"add_service(c, {{'name': {SERVICE!r}, 'api_token': {self.token!r}}},\n"
            "    scopes=['admin:users', 'admin:servers', 'access:servers', 'tokens', 'admin:groups', 'list:users'])\n"
            f"{self.extra_config}\n"
        )
        return path

    def command(self) -> list[str]:
        self.state.mkdir(parents=True, exist_ok=True)
        return [sys.executable, "-m", "reeflab.hub.app", "-f", str(self._write_config())]

    def healthy(self) -> bool:
        return requests.get(self.url + "hub/api/", timeout=2).ok

    def stop(self, timeout: float = 60) -> None:
        """Stop the hub as Ctrl-C does (it stops what its users started, hub/app.py); then, even after a
        failed test or a hub that had to be killed, nothing of its users may be left (hub/leftovers.py)."""
        try:
            super().stop(timeout)
        finally:
            lines = leftovers.sweep(self.homes, self.state)  # users', and the services' (they run in the state)
            if lines:
                with open(self.log_path, "a") as log:
                    log.write("".join(f"[test harness] {line}\n" for line in lines))

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + "hub/api/" + path.lstrip("/"), headers=headers, timeout=30, **kwargs)

    def user_token(self, name: str) -> str:
        r = self.api("POST", f"users/{name}/tokens", json={"note": "test"})
        r.raise_for_status()
        return r.json()["token"]

    def spawn(self, name: str, timeout: float = 180, options: dict | None = None) -> str:
        """Start `name`'s server and wait until it is ready; returns its URL through the proxy."""
        r = self.api("POST", f"users/{name}/server", json=options or {})
        if r.status_code not in (201, 202):
            raise RuntimeError(f"spawn of {name} refused: {r.status_code} {r.text}")

        def ready():
            server = self.api("GET", f"users/{name}").json()["servers"].get("")
            if server and server.get("ready"):
                return server["url"]
            if not server:
                raise RuntimeError(f"server of {name} stopped while starting:\n{self.log_tail()}")
            return None

        path = wait_until(ready, timeout, f"the server of {name}", interval=0.2)
        return self.url.rstrip("/") + path

    def stop_server(self, name: str, timeout: float = 60) -> None:
        self.api("DELETE", f"users/{name}/server")
        wait_until(
            lambda: not self.api("GET", f"users/{name}").json()["servers"],
            timeout,
            f"the server of {name} to stop",
        )


def form_post(session: requests.Session, url: str, data: dict) -> requests.Response:
    """Submit a hub HTML form the way a browser does: GET it for the _xsrf token, then POST."""
    page = session.get(url, timeout=30)
    page.raise_for_status()
    match = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    xsrf = match.group(1) if match else session.cookies.get("_xsrf", "")
    return session.post(url, data={**data, "_xsrf": xsrf}, timeout=30)


def run_in_kernel(server_url: str, token: str, code: str, timeout: float = 60) -> str:
    """Run `code` in a new Python kernel of a user's server, as that user would from a notebook;
    returns what it printed (stdout, stderr and the traceback of an error)."""
    import json
    import uuid

    import websocket

    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(server_url + "api/kernels", json={"name": "python3"}, headers=headers, timeout=60)
    kernel.raise_for_status()
    kernel_id = kernel.json()["id"]
    ws_url = server_url.replace("http://", "ws://", 1) + f"api/kernels/{kernel_id}/channels"
    try:
        channel = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=timeout)
        msg_id = uuid.uuid4().hex
        channel.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "",
                        "session": msg_id,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                    },
                    "channel": "shell",
                }
            )
        )
        output = []
        while True:
            message = json.loads(channel.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                output.append(f"{content['ename']}: {content['evalue']}\n")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(output)
    finally:
        requests.delete(server_url + f"api/kernels/{kernel_id}", headers=headers, timeout=30)
