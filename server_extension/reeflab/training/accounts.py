"""MLflow accounts of hub users, made by the hub before each spawn (MLflow's basic-auth admin API).

Every user server gets MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD
in its environment: the MLflow client, Ultralytics' MLflow callback, papermill jobs and ReefLab's
API all pick them up, and MLflow lets each account see its own experiments only.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import requests

from .tracking_server import ADMIN, admin_password, user_password

API = "/api/2.0/mlflow/users"


class TrackingAccounts:
    """Creates (or re-keys) the MLflow account of a hub user on the server at `url`."""

    def __init__(self, url: str, state: Path, timeout: float = 10):
        self.url = url.rstrip("/")
        self.state = Path(state)
        self.timeout = timeout

    def _admin(self, method: str, path: str, **kwargs) -> requests.Response:
        auth = (ADMIN, admin_password(self.state))
        return requests.request(method, self.url + API + path, auth=auth, timeout=self.timeout, **kwargs)

    def wait_ready(self, timeout: float) -> None:
        """MLflow takes ~20 s to start with the hub: spawns right after a hub start wait for it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(self.url + "/health", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the MLflow tracking server at {self.url} did not answer within {timeout:.0f} s")
            time.sleep(0.5)

    def ensure_user(self, username: str) -> str:
        """The user's account exists with its derived password; returns that password."""
        password = user_password(self.state, username)
        found = self._admin("GET", "/get", params={"username": username})
        if found.status_code == 404:
            answer = self._admin("POST", "/create", json={"username": username, "password": password})
        else:
            found.raise_for_status()
            answer = self._admin("PATCH", "/update-password", json={"username": username, "password": password})
        answer.raise_for_status()
        return password

    def environment(self, username: str, create: bool = True) -> dict[str, str]:
        """What a user's server needs to track runs as `username` (account made unless create=False)."""
        return {
            "MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_USERNAME": username,
            "MLFLOW_TRACKING_PASSWORD": self.ensure_user(username) if create else user_password(self.state, username),
            # runs started without an experiment name land in the user's own, not a shared default
            "MLFLOW_EXPERIMENT_NAME": f"{username}/default",
        }


def tracking_pre_spawn_hook(url: str, state: Path, wait: float = 300, previous=None):
    """A Spawner.pre_spawn_hook giving the user's server its MLflow account (after `previous`).

    The password is derived, so the environment is known at once; a spawn never waits for MLflow
    (it takes ~20 s to start with the hub): if it is not up yet, the account is made once it is.
    """
    accounts = TrackingAccounts(url, state)
    pending: set[asyncio.Task] = set()

    def account(name: str, timeout: float) -> None:
        accounts.wait_ready(timeout)
        accounts.ensure_user(name)

    async def later(spawner, name: str) -> None:
        try:
            await asyncio.to_thread(account, name, wait)
        except (RuntimeError, requests.RequestException) as err:
            # the server runs on; only tracking is missing, and the hub's log says why
            spawner.log.error("MLflow account of %s not set up: %s", name, err)

    async def hook(spawner) -> None:
        if previous is not None:
            result = previous(spawner)
            if asyncio.iscoroutine(result):
                await result
        name = spawner.user.name
        try:
            await asyncio.to_thread(account, name, 1)
        except (RuntimeError, requests.RequestException):
            task = asyncio.get_running_loop().create_task(later(spawner, name))
            pending.add(task)
            task.add_done_callback(pending.discard)
        spawner.environment = {**spawner.environment, **accounts.environment(name, create=False)}

    hook.pending = pending  # for tests: account creations still waiting for MLflow
    return hook
