"""Deleting a hub user revokes everything of theirs, and a new user of the same name inherits nothing.

A real hub as root (as `make up` runs it) with its engine, SeaweedFS and MLflow: ana keeps a file in
her home, a serverless service, objects in her bucket and an MLflow run; an admin deletes her; her
S3 key, engine login, MLflow account, OS account and processes must all be gone, and a new `ana`
starts empty with new credentials. Then the safety net: a user made anew while the hub was down is
caught by the generation check (the hub's `created`) at start, in the engine and at spawn.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
import threading
from datetime import datetime

import psutil
import pytest
import requests
from botocore.exceptions import BotoCoreError, ClientError
from reeflab import accounts, generations
from reeflab.errors import Conflict
from reeflab.hub.revoke import Targets, reconcile
from reeflab.oscar_engine.engine import EngineSettings, OscarEngine, Unauthorized
from reeflab.storage.platform_s3 import PlatformS3, iam_user, s3_client, user_bucket
from reeflab.storage.seaweedfs import read_key
from reeflab.storage.testing import SeaweedProcess
from reeflab.testing.hub import HubProcess, run_in_kernel
from reeflab.testing.process import wait_until
from reeflab.training.accounts import QUARANTINE, TrackingAccounts

pytestmark = [
    pytest.mark.skipif(
        not accounts.isolation_available(), reason="per-user OS accounts need root (CI and `make up` run as root)"
    ),
    pytest.mark.timeout(900),
]

UPPER = '#!/bin/sh\ntr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/upper.txt"\n'
SERVICE = {"name": "ana-upper", "image": "ghcr.io/example/alpine", "cpu": "0.5", "memory": "256Mi", "script": UPPER}
AS_ANA = r"""
import json, os, subprocess, requests
files = sorted(os.listdir("."))  # what her home held before this
open("diary.txt", "w").write("ana only")
subprocess.Popen(["sleep", "3600"], start_new_session=True)  # outlives her server, as a nohup'd job would
config = requests.get(
    os.environ["REEFLAB_SERVERLESS_URL"] + "system/config",
    headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]},
    timeout=60,
).json()
mlflow = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
print(json.dumps({"config": config, "mlflow": mlflow, "files": files}))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubProcess(tmp_path_factory.mktemp("deleted-users")) as hub:
        yield hub
        for user in ("ana", "bob"):
            hub.api("DELETE", f"users/{user}/server")


def engine_url(hub: HubProcess) -> str:
    return f"http://127.0.0.1:{hub.env['REEFLAB_SERVERLESS_PORT']}/services/reeflab-serverless"


def engine(hub: HubProcess, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.request(method, engine_url(hub) + path, headers=headers, timeout=120, **kwargs)


def as_ana(hub: HubProcess) -> dict:
    """Spawn ana, run AS_ANA in her kernel; her server URL, token, and what her kernel saw."""
    server, token = hub.spawn("ana"), hub.user_token("ana")
    printed = run_in_kernel(server, token, AS_ANA, timeout=120)
    return {"server": server, "token": token, **json.loads(printed.strip().splitlines()[-1])}


def mlflow_api(env: dict, method: str, path: str, **kwargs) -> requests.Response:
    auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    return requests.request(
        method, f"{env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/{path}", auth=auth, timeout=60, **kwargs
    )


def default_experiment(env: dict) -> str:
    """Her default experiment's id, once the hub made her MLflow account (MLflow may still be starting)."""

    def made():
        try:
            answer = mlflow_api(env, "GET", "experiments/get-by-name", params={"experiment_name": "ana/default"})
        except requests.ConnectionError:
            return None
        return answer.json()["experiment"]["experiment_id"] if answer.ok else None

    return wait_until(made, 240, "ana's MLflow account", interval=1)


def running_as(uid: int) -> list[str]:
    """Processes of `uid` that still run (a zombie has ended: only its parent has yet to reap it)."""
    found = []
    for process in psutil.process_iter(["uids", "status", "cmdline"]):
        if process.info["uids"] and process.info["uids"].real == uid and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{process.pid} {process.info['status']} {' '.join(process.info['cmdline'] or [])}")
    return found


def key_refused(provider: dict) -> bool:
    try:
        s3_client(provider["endpoint"], provider, retries={"max_attempts": 1}).list_objects_v2(Bucket="ana")
    except ClientError as error:
        return error.response["Error"]["Code"] in ("InvalidAccessKeyId", "AccessDenied", "SignatureDoesNotMatch")
    except BotoCoreError:
        return False
    return False


def test_a_deleted_user_loses_everything_and_a_namesake_inherits_nothing(hub):
    assert hub.api("POST", "users/ana").status_code == 201
    old = as_ana(hub)
    provider, login = old["config"]["minio_provider"], old["config"]["oscar_cluster"]
    # a service of hers, warm (its worker runs as her account), and objects in her bucket
    defined = {**SERVICE, "input": [{"storage_provider": "minio.default", "path": "ana/in"}]}
    assert engine(hub, "POST", "/system/services", old["token"], json=defined).status_code == 201
    ran = engine(hub, "POST", "/run/ana-upper", old["token"], data=base64.b64encode(b"hi"))
    assert ran.text == base64.b64encode(b"HI").decode(), ran.text
    s3 = s3_client(provider["endpoint"], provider)
    s3.put_object(Bucket=user_bucket("ana"), Key="keep/secret.txt", Body=b"ana's data")
    # an MLflow run in her default experiment, with the credentials the hub gave her server
    experiment = default_experiment(old["mlflow"])
    run = mlflow_api(old["mlflow"], "POST", "runs/create", json={"experiment_id": experiment}).json()["run"]
    account = accounts.lookup("ana")
    assert account is not None
    assert running_as(account.uid), "her processes run before"

    deleted = requests.delete(
        hub.url + "hub/api/users/ana", headers={"Authorization": f"token {hub.token}"}, timeout=300
    )
    assert deleted.status_code == 204, deleted.text

    # S3: her key is refused (SeaweedFS reloads its identities a moment later), her bucket is gone with its objects
    wait_until(lambda: key_refused(provider), 60, "ana's old S3 key to be refused", interval=0.5)
    admin = s3_client(provider["endpoint"], read_key(hub.state / "s3-admin-key.json"))
    assert user_bucket("ana") not in [b["Name"] for b in admin.list_buckets()["Buckets"]]
    # the engine: her basic-auth login and hub token are refused, her service and jobs are gone
    basic = (login["auth_user"], login["auth_password"])
    assert requests.get(engine_url(hub) + "/system/services", auth=basic, timeout=30).status_code == 401
    assert engine(hub, "GET", "/system/services", old["token"]).status_code == 401
    with sqlite3.connect(f"file:{hub.state / 'serverless' / 'engine.sqlite'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT name FROM services WHERE owner = 'ana'").fetchall() == []
        assert db.execute("SELECT name FROM users WHERE name = 'ana'").fetchall() == []
    # MLflow: her account is gone, her experiment moved out of her namespace (kept, for MLflow's admin)
    assert mlflow_api(old["mlflow"], "POST", "experiments/search", json={"max_results": 10}).status_code == 401
    tracking = TrackingAccounts(old["mlflow"]["MLFLOW_TRACKING_URI"], hub.state / "mlflow")
    kept = tracking._admin("GET", "/experiments/get", params={"experiment_id": experiment}).json()["experiment"]
    assert kept["name"] == f"{QUARANTINE}/{experiment}"
    # her OS account and every process of it are gone; her home is moved aside, root's only
    assert accounts.lookup("ana") is None
    assert running_as(account.uid) == [], "a process of hers survived"
    assert not (hub.homes / "ana").exists()
    [aside] = hub.homes.glob("ana.deleted-*")
    assert aside.stat().st_uid == 0 and aside.stat().st_mode & 0o777 == 0o700
    assert (aside / "diary.txt").read_text() == "ana only"

    # a new ana: nothing of the old one, new credentials everywhere
    assert hub.api("POST", "users/ana").status_code == 201
    new = as_ana(hub)
    assert "diary.txt" not in new["files"]
    new_provider, new_login = new["config"]["minio_provider"], new["config"]["oscar_cluster"]
    assert new_provider["access_key"] != provider["access_key"]
    assert new_login["auth_password"] != login["auth_password"]
    assert new["mlflow"]["MLFLOW_TRACKING_PASSWORD"] != old["mlflow"]["MLFLOW_TRACKING_PASSWORD"]
    assert engine(hub, "GET", "/system/services", new["token"]).json() == []
    listed = s3_client(new_provider["endpoint"], new_provider).list_objects_v2(Bucket=user_bucket("ana"))
    assert listed.get("KeyCount", 0) == 0
    assert key_refused(provider), "the old key stays refused"
    assert mlflow_api(old["mlflow"], "POST", "experiments/search", json={"max_results": 10}).status_code == 401
    new_experiment = default_experiment(new["mlflow"])
    assert new_experiment != experiment
    seen = mlflow_api(new["mlflow"], "POST", "experiments/search", json={"max_results": 100}).json()["experiments"]
    assert [e["name"] for e in seen] == ["ana/default"]
    assert not mlflow_api(new["mlflow"], "GET", "runs/get", params={"run_id": run["info"]["run_id"]}).ok
    assert accounts.lookup("ana").uid is not None and accounts.recorded_generation("ana")


def test_only_the_hub_or_a_user_admin_may_revoke_in_the_engine(hub):
    assert hub.api("POST", "users/bob").status_code in (201, 409)
    bob = hub.user_token("bob")
    assert engine(hub, "DELETE", "/system/users/ana", bob).status_code == 403
    assert engine(hub, "DELETE", "/system/users/ana").status_code == 403
    assert engine(hub, "GET", "/system/config", bob).ok  # bob himself is untouched


def test_a_user_made_anew_while_the_hub_was_down_is_revoked_at_start(hub, tmp_path):
    """The hub's start reconcile: an OS account and an MLflow account recorded for an older `created` go."""
    name = f"dan-{secrets.token_hex(3)}"
    homes = tmp_path / "homes"
    home = homes / name
    before, after = generations.generation(datetime(2024, 1, 1)), generations.generation(datetime(2025, 1, 1))
    tracking = TrackingAccounts(f"http://127.0.0.1:{hub.env['REEFLAB_MLFLOW_PORT']}", hub.state / "mlflow")
    tracking.wait_ready(240)
    try:
        accounts.ensure_account(name, home, before)
        (home / "old.txt").write_text("the deleted dan's")
        old_password = tracking.ensure_user(name, before)
        targets = Targets(
            tracking_url=tracking.url,
            tracking_state_dir=str(tracking.state),
            homes_dir=str(homes),
            os_accounts=True,
        )
        users = {u["name"]: generations.generation(u["created"]) for u in hub.api("GET", "users").json()}
        assert reconcile({**users, name: after}, targets) == {"os": [name], "mlflow": [name]}
        assert accounts.lookup(name) is None and not home.exists()
        assert len(list(homes.glob(f"{name}.deleted-*"))) == 1
        auth = (name, old_password)
        assert (
            requests.get(f"{tracking.url}/api/2.0/mlflow/experiments/search", auth=auth, timeout=30).status_code == 401
        )
        # the new dan starts clean, with a new password
        assert tracking.ensure_user(name, after) != old_password
        accounts.ensure_account(name, home, after)
        assert list(home.iterdir()) == []
        # nothing stale is left, so a second reconcile revokes nothing
        assert reconcile({**users, name: after}, targets) == {"os": [], "mlflow": []}
        # a spawn of a newer dan (made again while the hub was down) retires the account itself
        (home / "second.txt").write_text("the second dan's")
        newest = generations.generation(datetime(2026, 1, 1))
        fresh = accounts.ensure_account(name, home, newest)
        assert accounts.recorded_generation(name) == newest and list(home.iterdir()) == []
        with pytest.raises(accounts.StaleGeneration):  # an older incarnation may never take it back
            accounts.ensure_account(name, home, after)
        assert fresh.uid == accounts.lookup(name).uid
    finally:
        accounts.retire_account(name, home)
        tracking.revoke(name)


async def test_the_engine_revokes_an_older_incarnation_and_refuses_its_tokens(tmp_path):
    """A hub user's records in the engine belong to one generation: a newer namesake's first call revokes them."""
    engine = OscarEngine(EngineSettings(state_dir=tmp_path / "state", sandbox_dir=tmp_path / "sandboxes"))
    before, after = generations.generation(datetime(2024, 1, 1)), generations.generation(datetime(2025, 1, 1))
    try:
        engine.meet("dan", before)
        engine.store.add_service("dan-svc", "dan", {"name": "dan-svc"})
        engine.store.add_job("dan-svc-job", "dan-svc", "dan")
        password = engine.store.password("dan")
        engine.meet("dan", after)  # dan was deleted and made again while the hub could not tell the engine
        assert engine.store.get_service("dan-svc") is None and engine.store.get_job("dan-svc-job") is None
        assert not engine.store.check_password("dan", password)
        with pytest.raises(Unauthorized):  # a token of the deleted dan, still in a cache
            engine.meet("dan", before)
        # the periodic sweep: users the hub no longer has are revoked, after asking the hub once more
        engine.store.password("eve")
        engine.meet("eve", before)
        asked = []

        async def still_there(name: str) -> str | None:
            asked.append(name)
            return None

        assert await engine.sweep_users({"dan": after}, still_there) == ["eve"]
        assert asked == ["eve"] and engine.store.known_users() == {"dan"}
    finally:
        engine.store.close()


async def test_a_key_made_while_its_user_is_revoked_goes_with_them(tmp_path):
    """The engine makes S3 keys off its event loop: a user deleted meanwhile must not keep the key made for them."""
    entered, release = threading.Event(), threading.Event()

    class SlowIAM(PlatformS3):
        def user_key(self, *args, **kwargs):
            entered.set()
            release.wait(60)
            return super().user_key(*args, **kwargs)

    before = generations.generation(datetime(2024, 1, 1))
    with SeaweedProcess(tmp_path / "s3") as server:
        settings = EngineSettings(state_dir=tmp_path / "state", sandbox_dir=tmp_path / "sandboxes")
        settings.s3 = SlowIAM(server.endpoint, server.key)
        engine = OscarEngine(settings)
        try:
            engine.meet("dan", before)
            making = asyncio.create_task(engine.storage_key("dan"))
            assert await asyncio.to_thread(entered.wait, 60)
            engine.revoke_user("dan", before)  # the hub deletes dan while IAM makes his key
            release.set()
            with pytest.raises(Conflict):
                await making
            assert engine.store.s3_key("dan") is None and engine.store.s3_revocation("dan") is not None
            engine.meet("dan", generations.generation(datetime(2025, 1, 1)))  # a new dan: the old one's S3 goes first
            assert engine.store.s3_revocation("dan") is None
            assert PlatformS3._keys(server.client("iam"), iam_user("dan")) == []
        finally:
            release.set()
            engine.store.close()


def test_generations_tolerate_a_database_that_keeps_seconds_only():
    made = datetime(2025, 3, 1, 12, 0, 0, 600000)
    assert generations.generation(made) == "20250301T120000.600000Z"
    assert generations.generation("2025-03-01T12:00:00.600000Z") == generations.generation(made)
    assert generations.same(generations.generation(made), "20250301T120001Z")  # MySQL rounds
    assert generations.older("20250301T120000.600000Z", "20250301T120005Z")
    assert not generations.older("20250301T120005Z", "20250301T120000.600000Z")
    assert not generations.same("20250301T120000.600000Z", "20250301T120000.900000Z")  # made again at once
    assert generations.generation(None) == ""
