"""MLflow accounts of hub users, made by the hub before each spawn (MLflow's basic-auth admin API).

Every user server gets MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD
in its environment: the MLflow client, Ultralytics' MLflow callback, papermill jobs and ReefLab's
API all pick them up, and MLflow lets each account see its own experiments only.

The MLflow account is the exact hub name (JupyterHub keeps those unique). The hub never touches an
MLflow admin's account: a hub user named like one gets no account (so cannot take over MLflow by
having the hub re-key it). Each user's default experiment `<user>/default` is made by the platform
(as MLflow's admin) and owned by the user through MLflow's MANAGE permission.

Accounts belong to one incarnation of a hub name (its generation, recorded in the account store and
part of the password): when the hub deletes a user, or a spawn comes from a namesake made since,
the old account is deleted and its experiments are moved out of the name's namespace (kept, for
MLflow's admin only).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import requests

from .. import generations
from .tracking_server import ADMIN, admin_password, record_generation, recorded_generations, user_password

log = logging.getLogger(__name__)

API = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
QUARANTINE = "reeflab-quarantine"  # where an experiment made in someone else's namespace is moved (a reserved name)


class AccountRefused(Exception):
    """This hub user cannot have an MLflow account under their name (it is, or would take over, an admin's)."""


def default_experiment(username: str) -> str:
    return f"{username}/default"


class TrackingAccounts:
    """Creates (or re-keys) the MLflow account of a hub user on the server at `url`, never an admin's."""

    def __init__(self, url: str, state: Path, timeout: float = 30):
        self.url = url.rstrip("/")
        self.state = Path(state)
        self.timeout = timeout

    def _admin(self, method: str, path: str, api: str = API, **kwargs) -> requests.Response:
        auth = (ADMIN, admin_password(self.state))
        return requests.request(method, self.url + api + path, auth=auth, timeout=self.timeout, **kwargs)

    def wait_ready(self, timeout: float, stop: threading.Event | None = None) -> None:
        """MLflow takes ~20 s to start with the hub: spawns right after a hub start wait for it
        (unless `stop` is set: the hub is stopping, and MLflow with it)."""
        deadline = time.monotonic() + timeout
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                if requests.get(self.url + "/health", timeout=5).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):  # starting, or slow while it starts
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the MLflow tracking server at {self.url} did not answer within {timeout:.0f} s")
            stop.wait(0.5)
        raise RuntimeError("the hub is stopping")

    @staticmethod
    def check_name(username: str) -> None:
        """Refuse names the hub must never make an account for: the admin's, and the platform's reserved ones."""
        if username == ADMIN or username.startswith("reeflab"):
            raise AccountRefused(f"hub user '{username}' gets no MLflow account: the name is reserved for the platform")

    def ensure_user(self, username: str, generation: str | None = None) -> str:
        """The user's account exists with its derived password, and so does their default experiment.

        With the hub user's `generation`: an account recorded for an earlier incarnation of the name is
        revoked first (a namesake never inherits it). Returns the password; AccountRefused if the name is
        reserved, MLflow has it as an admin, or the account belongs to a newer incarnation than this one.
        """
        self.check_name(username)
        if generation:
            recorded = recorded_generations(self.state).get(username)
            if recorded and not generations.same(recorded, generation):
                if not generations.older(recorded, generation):
                    raise AccountRefused(f"the MLflow account '{username}' belongs to a newer hub user of that name")
                log.warning("MLflow account %s belongs to a deleted user (%s): revoking it", username, recorded)
                self.revoke(username)
            if recorded != generation:
                record_generation(self.state, username, generation)
        password = user_password(self.state, username, generation or None)
        found = self._admin("GET", "/users/get", params={"username": username})
        if found.status_code == 404:
            answer = self._admin("POST", "/users/create", json={"username": username, "password": password})
        else:
            found.raise_for_status()
            if found.json().get("user", {}).get("is_admin"):
                raise AccountRefused(f"hub user '{username}' gets no MLflow account: MLflow has that name as an admin")
            answer = self._admin("PATCH", "/users/update-password", json={"username": username, "password": password})
        answer.raise_for_status()
        self.ensure_default_experiment(username)
        return password

    def revoke(self, username: str) -> list[str]:
        """A deleted hub user's MLflow account goes, with its permissions; the experiments it managed or named in
        its namespace move to `reeflab-quarantine/<id>` (kept, MLflow's admin only). Returns their ids."""
        self.check_name(username)
        found = self._admin("GET", "/users/get", params={"username": username})
        moved: list[str] = []
        if found.status_code != 404:
            found.raise_for_status()
            if found.json().get("user", {}).get("is_admin"):
                raise AccountRefused(f"'{username}' is an MLflow admin: the hub does not delete it")
            for experiment in self._experiments_of(username):
                moved.append(self._quarantine(experiment))
            answer = self._admin("DELETE", "/users/delete", json={"username": username})
            if answer.status_code != 404:
                answer.raise_for_status()
        else:  # no account (made by nobody, or deleted already): its namespace is still cleared
            moved = [self._quarantine(e) for e in self._experiments_of(username, managed=False)]
        record_generation(self.state, username, None)
        log.info("revoked MLflow account %s; %d experiments moved aside", username, len(moved))
        return moved

    def _experiments_of(self, username: str, managed: bool = True) -> list[dict]:
        """The experiments of a user: those they MANAGE and those named `<user>/...`, deleted ones too."""
        ids = self.managed(username) if managed else set()
        found: dict[str, dict] = {}
        body: dict = {"max_results": 1000, "view_type": "ALL"}
        if "'" not in username:
            body["filter"] = f"name LIKE '{username}/%'"
        token = None
        while True:
            answer = self._admin(
                "POST", "/experiments/search", json={**body, **({"page_token": token} if token else {})}
            )
            answer.raise_for_status()
            data = answer.json()
            for experiment in data.get("experiments") or []:
                if experiment["experiment_id"] in ids or experiment["name"].startswith(username + "/"):
                    found[experiment["experiment_id"]] = experiment
            token = data.get("next_page_token")
            if not token:
                break
        missing = ids - set(found)
        for experiment_id in sorted(missing):  # managed, but not listed (a search filter missed it)
            answer = self._admin("GET", "/experiments/get", params={"experiment_id": experiment_id})
            if answer.ok:
                found[experiment_id] = answer.json()["experiment"]
        return list(found.values())

    def _quarantine(self, experiment: dict) -> str:
        """Rename an experiment out of every user's namespace (a deleted one is restored to rename it, then deleted)."""
        experiment_id = experiment["experiment_id"]
        deleted = experiment.get("lifecycle_stage") == "deleted"
        if deleted:
            self._admin("POST", "/experiments/restore", json={"experiment_id": experiment_id}).raise_for_status()
        moved = {"experiment_id": experiment_id, "new_name": f"{QUARANTINE}/{experiment_id}"}
        self._admin("POST", "/experiments/update", json=moved).raise_for_status()
        if deleted:
            self._admin("POST", "/experiments/delete", json={"experiment_id": experiment_id}).raise_for_status()
        return experiment_id

    def ensure_default_experiment(self, username: str) -> str:
        """`<user>/default`, made by the platform and MANAGEd by the user; returns its id.

        One made in the user's name by someone else (possible before names were enforced) is moved
        out of the way first, so the user's runs never land in an experiment another account owns.
        """
        name = default_experiment(username)
        found = self._admin("GET", "/experiments/get-by-name", params={"experiment_name": name})
        if found.ok:
            experiment_id = found.json()["experiment"]["experiment_id"]
            if experiment_id in self.managed(username):
                return experiment_id
            moved = {"experiment_id": experiment_id, "new_name": f"{QUARANTINE}/{experiment_id}"}
            self._admin("POST", "/experiments/update", json=moved).raise_for_status()
        elif found.status_code != 404:
            found.raise_for_status()
        created = self._admin("POST", "/experiments/create", json={"name": name})
        created.raise_for_status()
        experiment_id = created.json()["experiment_id"]
        grant = {
            "username": username,
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": "MANAGE",
        }
        self._admin("POST", "/users/permissions/grant", api=API3, json=grant).raise_for_status()
        return experiment_id

    def managed(self, username: str) -> set[str]:
        """Ids of the experiments `username` holds MANAGE on (MLflow's record of who owns what)."""
        answer = self._admin("GET", "/users/permissions/list", api=API3, params={"username": username})
        answer.raise_for_status()
        return managed_experiments(answer.json())

    def environment(self, username: str, create: bool = True, generation: str | None = None) -> dict[str, str]:
        """What a user's server needs to track runs as `username` (account made unless create=False).

        `generation`: the hub user's (None: the one recorded for the account)."""
        self.check_name(username)
        password = self.ensure_user(username, generation) if create else user_password(self.state, username, generation)
        return {
            "MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_USERNAME": username,
            "MLFLOW_TRACKING_PASSWORD": password,
            # runs started without an experiment name land in the user's own, not a shared default
            "MLFLOW_EXPERIMENT_NAME": default_experiment(username),
        }


def managed_experiments(permissions: dict) -> set[str]:
    """The experiment ids with MANAGE in an answer of MLflow's users/permissions list."""
    return {
        str(row.get("resource_pattern"))
        for row in permissions.get("permissions") or []
        if row.get("resource_type") == "experiment" and row.get("permission") == "MANAGE"
    }


def tracking_pre_spawn_hook(url: str, state: Path, wait: float = 300, previous=None):
    """A Spawner.pre_spawn_hook giving the user's server its MLflow account (after `previous`).

    The password is derived, so the environment is known at once; a spawn never waits for MLflow
    (it takes ~20 s to start with the hub): if it is not up yet, the account is made once it is.
    A refused name (an admin's, a reserved one) spawns without MLflow, and the hub's log says why.
    """
    accounts = TrackingAccounts(url, state)
    pending: set[asyncio.Task] = set()

    def account(name: str, generation: str, timeout: float, stop: threading.Event | None = None) -> None:
        accounts.wait_ready(timeout, stop)
        accounts.ensure_user(name, generation)

    async def later(spawner, name: str, generation: str) -> None:
        stop = threading.Event()  # a stopping hub cancels this task: its thread must not keep the hub waiting
        try:
            await asyncio.to_thread(account, name, generation, wait, stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        except (RuntimeError, requests.RequestException, AccountRefused) as err:
            # the server runs on; only tracking is missing, and the hub's log says why
            spawner.log.error("MLflow account of %s not set up: %s", name, err)

    async def hook(spawner) -> None:
        if previous is not None:
            result = previous(spawner)
            if asyncio.iscoroutine(result):
                await result
        name = spawner.user.name
        generation = generations.generation(getattr(spawner.user, "created", None))  # this incarnation of the name
        try:
            await asyncio.to_thread(account, name, generation, 1)
        except AccountRefused as err:
            spawner.log.error("MLflow account of %s not set up: %s", name, err)
            return
        except (RuntimeError, requests.RequestException):
            task = asyncio.get_running_loop().create_task(later(spawner, name, generation))
            pending.add(task)
            task.add_done_callback(pending.discard)
        env = accounts.environment(name, create=False, generation=generation or None)
        spawner.environment = {**spawner.environment, **env}

    hook.pending = pending  # for tests: account creations still waiting for MLflow
    return hook
