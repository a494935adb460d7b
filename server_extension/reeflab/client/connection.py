"""Where the ReefLab API is and how to authenticate, from a notebook, a script or a test."""

from __future__ import annotations

import os
import time
from typing import Any, Self

import requests
from tqdm.auto import tqdm


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
        """`timeout=` (seconds, None: no limit) for a call that may take longer than the connection's timeout."""
        timeout = kwargs.pop("timeout", self.timeout)
        try:
            response = self.session.request(method, self.api_url(*path), timeout=timeout, **kwargs)
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
    listed_as = ""  # the key of the list that GET <collection> answers
    log_path = "log"

    def __init__(self, info: dict[str, Any], connection: Connection):
        self.info = info
        self.connection = connection

    @classmethod
    def create(cls, body: dict[str, Any], connection: Connection | None = None) -> Self:
        """POST a new one (fields left as None are the server's defaults)."""
        connection = connection or default_connection()
        return cls(connection.post(*cls.collection, json={k: v for k, v in body.items() if v is not None}), connection)

    @classmethod
    def all(cls, connection: Connection | None = None) -> list[Self]:
        connection = connection or default_connection()
        return [cls(info, connection) for info in connection.get(*cls.collection)[cls.listed_as]]

    @classmethod
    def fetch(cls, resource_id: str, connection: Connection | None = None) -> Self:
        connection = connection or default_connection()
        return cls(connection.get(*cls.collection, resource_id), connection)

    @property
    def id(self) -> str:
        return self.info["id"]

    @property
    def state(self) -> str:
        return self.info["state"]

    def refresh(self) -> Self:
        self.info = self.connection.get(*self.collection, self.id)
        return self

    def logs(self, tail: int = 200, **params: Any) -> list[str]:
        return self.connection.get(*self.collection, self.id, self.log_path, tail=tail, **params)["lines"]

    def delete(self) -> None:
        """Forget it, stopping it if it runs."""
        self.connection.request("DELETE", *self.collection, self.id)

    def wait_while(self, states: tuple[str, ...], timeout: float | None, interval: float = 1.0, tick=None) -> Self:
        """Refresh every `interval` seconds while its state is one of `states`, calling `tick()` after each
        refresh; TimeoutError after `timeout` seconds (None: no limit)."""
        deadline = time.monotonic() + timeout if timeout else None
        while self.refresh().state in states:
            if tick is not None:
                tick()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} still {self.state} after {timeout:.0f} s")
            time.sleep(interval)
        return self


class Run(Resource):
    """A job or pipeline run: it ends by itself (completed or failed) or is cancelled."""

    ACTIVE = ("starting", "running")
    unit = "step"  # of its progress bar
    failure: type[ReefLabClientError]  # raised by `wait` unless it completed

    def show_progress(self, bar) -> None:
        """Update the tqdm bar from `info` (subclasses)."""

    def wait(self, timeout: float | None = None, progress: bool = True, interval: float = 1.0) -> Self:
        """Block until it ends, showing its progress; raise `failure` unless it completed."""
        with tqdm(desc=self.info["title"], unit=self.unit, disable=not progress) as bar:
            self.wait_while(self.ACTIVE, timeout, interval, tick=lambda: self.show_progress(bar))
            self.show_progress(bar)
            bar.set_description(f"{self.info['title']}: {self.state}")
        if self.state != "completed":
            raise self.failure(self.info)
        return self

    def cancel(self) -> Self:
        self.info = self.connection.post(*self.collection, self.id, "cancel")
        return self


_default: Connection | None = None


def default_connection() -> Connection:
    global _default
    if _default is None:
        _default = Connection()
    return _default
