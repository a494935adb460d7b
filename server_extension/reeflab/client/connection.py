"""Where the ReefLab API is and how to authenticate, from a notebook, a script or a test."""

from __future__ import annotations

import os
from typing import Any

import requests


class ReefLabClientError(Exception):
    """The server refused a request; `message` says why in words meant for people."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


def _running_server() -> tuple[str, str] | None:
    """URL and token of the Jupyter server this kernel belongs to, outside JupyterHub."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return None
    for server in list_running_servers():
        return server["url"], server.get("token", "")
    return None


class Connection:
    """A session with one user's Jupyter server: `<url>/reeflab/api/...` with a token.

    Found in this order: the arguments; REEFLAB_URL + REEFLAB_TOKEN; inside JupyterHub, the
    server's own URL and token (JUPYTERHUB_SERVICE_URL, JUPYTERHUB_API_TOKEN); the local
    Jupyter server this kernel runs in.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60):
        url = url or os.environ.get("REEFLAB_URL") or os.environ.get("JUPYTERHUB_SERVICE_URL")
        token = token or os.environ.get("REEFLAB_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not url:
            found = _running_server()
            if not found:
                raise ReefLabClientError(0, "No ReefLab server found: set REEFLAB_URL and REEFLAB_TOKEN")
            url, token = found[0], token or found[1]
        self.url = url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"token {token}"

    def api_url(self, *path: str) -> str:
        return self.url + "reeflab/api/" + "/".join(p.strip("/") for p in path)

    def request(self, method: str, *path: str, **kwargs) -> Any:
        try:
            response = self.session.request(method, self.api_url(*path), timeout=self.timeout, **kwargs)
        except requests.ConnectionError as err:
            raise ReefLabClientError(0, f"Cannot reach {self.url}: {err}") from None
        if not response.ok:
            try:
                message = response.json().get("message") or response.reason
            except ValueError:
                message = response.text[:300] or response.reason
            raise ReefLabClientError(response.status_code, message)
        return response.json() if response.content else None

    def get(self, *path: str, **params) -> Any:
        return self.request("GET", *path, params=params or None)

    def post(self, *path: str, json: Any = None) -> Any:
        return self.request("POST", *path, json=json)


class Resource:
    """A handle on one thing of yours on the server (deployment, job, run ...); `info` is its latest state."""

    collection: tuple[str, ...] = ()  # its REST path under /reeflab/api/, e.g. ("jobs",)

    def __init__(self, info: dict[str, Any], connection: Connection):
        self.info = info
        self.connection = connection

    @property
    def id(self) -> str:
        return self.info["id"]

    @property
    def state(self) -> str:
        return self.info["state"]

    def refresh(self):
        self.info = self.connection.get(*self.collection, self.id)
        return self


_default: Connection | None = None


def default_connection() -> Connection:
    global _default
    if _default is None:
        _default = Connection()
    return _default
