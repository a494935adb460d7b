"""Identities that cannot collide: hostile hub names against the real engine, SeaweedFS and MLflow.

Each name below is one a hostile user could pick to land in someone else's accounts: a prefix of
another (`ana` / `ana-lab`), two names whose old slugs met (`ana.b`, `ana-b`, and the old slug of
`ana.b` itself), the derived bucket of `ana.b` taken as a name, reserved names, the MLflow admin's,
and unicode look-alikes of `ana`. No bucket, key, IAM user, engine login or experiment may be shared.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import requests
from botocore.exceptions import ClientError
from reeflab.errors import Conflict, NotFound
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.storage.platform_s3 import iam_user, s3_client, user_bucket
from reeflab.testing.process import wait_until
from reeflab.training.accounts import AccountRefused, tracking_pre_spawn_hook
from reeflab.training.testing import MlflowProcess
from reeflab.training.tracking import TrackingService
from reeflab.training.tracking_server import ADMIN, admin_password

pytestmark = pytest.mark.timeout(600)

CYRILLIC_ANA = "\u0430na"  # а (Cyrillic) + "na": looks like "ana"
FULLWIDTH_ANA = "\uff41\uff4e\uff41"  # ａｎａ: NFKC would make it "ana"
OLD_SLUG_OF_ANA_B = "ana-b-" + hashlib.sha256(b"ana.b").hexdigest()[:6]  # the IAM user ana.b had before
NAMES = [
    "ana",
    "ana-lab",
    "ana.b",
    "ana-b",
    OLD_SLUG_OF_ANA_B,
    user_bucket("ana.b"),  # a name spelled like ana.b's bucket
    "admin",
    ADMIN,
    CYRILLIC_ANA,
    FULLWIDTH_ANA,
    "bob",
    "carol",  # the engine's admin in these tests
]
UPPER = '#!/bin/sh\ntr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/upper.txt"\n'


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("identities") / "state"
    with EngineProcess(state, users=NAMES, args=["--ServerlessApp.admin_users=carol"], s3=True) as server:
        yield server


@pytest.fixture(scope="module")
def configs(engine):
    """Every user's /system/config (their S3 key and engine login), asked once."""
    answers = {}
    for name in NAMES:
        answer = engine.request("GET", "/system/config", name)
        assert answer.ok, (name, answer.text)
        answers[name] = answer.json()
    return answers


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory):
    with MlflowProcess(tmp_path_factory.mktemp("identities-tracking") / "mlflow") as server:
        yield server


def s3_of(configs, name: str):
    provider = configs[name]["minio_provider"]
    return s3_client(provider["endpoint"], provider)


def denied(call) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def service(name: str, **extra) -> dict:
    return {"name": name, "image": "alpine", "cpu": "0.2", "memory": "128Mi", "script": UPPER, **extra}


def storage(inputs: str, outputs: str) -> dict:
    return {
        "input": [{"storage_provider": "minio.default", "path": inputs}],
        "output": [{"storage_provider": "minio.default", "path": outputs}],
    }


# -- what reaches ReefLab from JupyterHub ----------------------------------------------------


def test_jupyterhub_lowercases_names_and_nothing_more():
    """`ANA` logs in as ana (the same person); look-alikes stay other users, and no name holds '/'."""
    from jupyterhub.auth import Authenticator

    hub = Authenticator()
    assert hub.normalize_username("ANA") == "ana"
    assert hub.normalize_username(CYRILLIC_ANA) == CYRILLIC_ANA != "ana"
    assert hub.normalize_username(FULLWIDTH_ANA) == FULLWIDTH_ANA != "ana"
    assert not hub.validate_username("bob/default")  # so `<user>/...` names one user only


def test_names_map_to_distinct_buckets_and_iam_users():
    buckets = [user_bucket(name) for name in NAMES]
    iam_users = [iam_user(name) for name in NAMES + ["ANA"]]
    assert len(set(buckets)) == len(NAMES) and len(set(iam_users)) == len(NAMES) + 1
    assert user_bucket("ana") == "ana" and user_bucket("ana-lab") == "ana-lab"  # plain names stay as clients see them
    for name in ("admin", ADMIN, "ana.b", CYRILLIC_ANA, FULLWIDTH_ANA, "ANA"):
        assert "." in user_bucket(name), name  # reserved or not plain: derived, never a plain name
    assert all(u.startswith("reeflab-user-") and u not in NAMES for u in iam_users)  # no hub name is an IAM name


# -- SeaweedFS and the engine ----------------------------------------------------------------


def test_no_bucket_key_iam_user_or_login_is_shared(engine, configs):
    keys = {name: configs[name]["minio_provider"]["access_key"] for name in NAMES}
    logins = {name: configs[name]["oscar_cluster"]["auth_user"] for name in NAMES}
    assert len(set(keys.values())) == len(NAMES)
    assert logins == {name: name for name in NAMES}  # the exact hub name, which the hub keeps unique
    iam = engine.seaweed.client("iam")
    for name in NAMES:  # each key sits on its own user's IAM user, alone
        held = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=iam_user(name))["AccessKeyMetadata"]}
        assert held == {keys[name]}, name

    for name in NAMES:
        own = user_bucket(name)
        s3 = s3_of(configs, name)
        s3.put_object(Bucket=own, Key="secret.txt", Body=name.encode())
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [own], name
    for name in NAMES:
        s3 = s3_of(configs, name)
        for other in NAMES:
            if other == name:
                continue
            theirs = user_bucket(other)
            assert denied(lambda s3=s3, b=theirs: s3.get_object(Bucket=b, Key="secret.txt")), (name, other)
            assert denied(lambda s3=s3, b=theirs: s3.list_objects_v2(Bucket=b)), (name, other)
            assert denied(lambda s3=s3, b=theirs: s3.put_object(Bucket=b, Key="x", Body=b"x")), (name, other)


def test_basic_logins_are_per_exact_name(engine, configs):
    ana = configs["ana"]["oscar_cluster"]["auth_password"]
    for name in ("ANA", CYRILLIC_ANA, FULLWIDTH_ANA, "ana-lab", "ana "):
        answer = requests.get(engine.url + "/system/services", auth=(name.encode(), ana.encode()), timeout=10)
        assert answer.status_code == 401, name
    assert requests.get(engine.url + "/system/services", auth=("ana", ana), timeout=10).ok


@pytest.mark.parametrize(
    "path, why",
    [
        ("bob-x/in", "a future user's own bucket"),
        ("ana-lab/in", "user ana-lab's own bucket"),
        ("ana-b/in", "user ana-b's own bucket"),
        ("bob/in", "user bob's own bucket"),
        ("bob--x/in", "in bob's set"),
        ("ana--x--y/in", "not a plain name after '--'"),
        ("reeflab-jobs/in", "the platform's"),
        ("admin/in", "reserved"),
        ("ana.b/in", "a derived-looking name that is nobody's own"),
    ],
)
def test_ana_cannot_claim_a_bucket_named_as_someone_else_s(engine, path, why):
    answer = engine.request("POST", "/system/services", "ana", json=service("grab", **storage(path, "ana/out")))
    assert answer.status_code == 400, (path, why, answer.text)
    assert "is not yours" in answer.text and "'ana--<name>'" in answer.text


def test_more_buckets_are_recorded_as_their_maker_s_and_nobody_else_s(engine, configs):
    made = engine.request(
        "POST", "/system/services", "ana", json=service("ana-lab-photos", **storage("ana--lab/in", "ana--lab/out"))
    )
    assert made.status_code == 201, made.text
    ana, ana_lab, bob = s3_of(configs, "ana"), s3_of(configs, "ana-lab"), s3_of(configs, "bob")
    wait_until(lambda: "ana--lab" in [b["Name"] for b in ana.list_buckets()["Buckets"]], 10, "ana's new bucket")
    ana.put_object(Bucket="ana--lab", Key="in/note.txt", Body=b"ana's")
    for other in (ana_lab, bob):
        assert denied(lambda o=other: o.get_object(Bucket="ana--lab", Key="in/note.txt"))
        assert "ana--lab" not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    # ana-lab's own set is ana-lab--*: ana's ana--lab is not in it, and neither can take the other's
    taken = engine.request(
        "POST", "/system/services", "ana-lab", json=service("x", **storage("ana--lab/in", "ana--lab/out"))
    )
    assert taken.status_code == 400
    # buckets are made through the platform only: not with the user's own key, not even in their set
    assert denied(lambda: ana.create_bucket(Bucket="ana--by-hand"))
    assert denied(lambda: ana.create_bucket(Bucket="bob-x"))
    engine.request("DELETE", "/system/services/ana-lab-photos", "ana").raise_for_status()


def test_a_service_token_goes_to_its_owner_only(engine):
    created = engine.request("POST", "/system/services", "ana", json=service("ana-public", visibility="public"))
    assert created.status_code == 201, created.text
    real = engine.request("GET", "/system/services/ana-public", "ana").json()["token"]
    seen_by_bob = engine.request("GET", "/system/services/ana-public", "bob").json()
    listed_by_bob = [s for s in engine.request("GET", "/system/services", "bob").json() if s["name"] == "ana-public"]
    assert seen_by_bob["token"] != real and listed_by_bob[0]["token"] == seen_by_bob["token"]
    assert real not in json.dumps(seen_by_bob) + json.dumps(listed_by_bob)

    def run(token: str) -> requests.Response:
        return engine.request("POST", "/job/ana-public", headers={"Authorization": f"Bearer {token}"}, data=b"aGk=")

    # bob's token for ana's service acts as bob (his job, listed to him), not as ana
    job = run(seen_by_bob["token"])
    assert job.status_code == 201, job.text
    bobs = engine.request("GET", "/system/logs/ana-public", "bob").json()["jobs"]
    assert list(bobs) == [job.json()["jobName"]]
    # relabelled as someone else's, it is worthless
    _, _, mac = seen_by_bob["token"][len("rlu.") :].partition(".")
    forged = "rlu." + base64.urlsafe_b64encode(b"ana").decode().rstrip("=") + "." + mac
    assert run(forged).status_code == 401
    # once the service is private again, bob's token stops working
    engine.request("PUT", "/system/services/ana-public", "ana", json=service("ana-public")).raise_for_status()
    assert run(seen_by_bob["token"]).status_code == 404


def test_system_status_shows_the_callers_own_counts(engine):
    """ana-b runs a service; ana.b sends it one job and runs one of her own; ana-lab did nothing."""
    for owner, name in (("ana-b", "ana-b-upper"), ("ana.b", "ana-dot-b-upper")):
        made = engine.request("POST", "/system/services", owner, json=service(name, visibility="public"))
        assert made.status_code == 201, made.text
    sent = [
        engine.request("POST", "/job/ana-b-upper", "ana-b", data=b"aGk="),
        engine.request("POST", "/job/ana-b-upper", "ana-b", data=b"aGk="),
        engine.request("POST", "/job/ana-b-upper", "ana.b", data=b"aGk="),
        engine.request("POST", "/job/ana-dot-b-upper", "ana.b", data=b"aGk="),
    ]
    assert all(answer.status_code == 201 for answer in sent)

    def jobs(user: str) -> int:
        return engine.request("GET", "/system/status", user).json()["oscar"]["jobs_count"]

    assert (jobs("ana-b"), jobs("ana.b"), jobs("ana-lab")) == (3, 2, 0)
    status = engine.request("GET", "/system/status", "ana-lab").json()
    assert status["cluster"]["nodes"][0]["name"] == "reeflab-local" and status["oscar"]["pods"]["total"] == 0
    everything = engine.request("GET", "/system/status", "carol").json()
    assert everything["oscar"]["jobs_count"] >= 4 and everything["cluster"]["nodes"][0]["name"] == socket.gethostname()
    # what batches size themselves from stays there for everyone
    assert status["cluster"]["metrics"]["cpu"]["total_free_cores"] > 0


def test_the_cli_takes_tokens_from_the_environment_or_a_file_never_argv(engine, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REEFLAB_TOKEN", "JUPYTERHUB_API_TOKEN")}
    env["REEFLAB_SERVERLESS_URL"] = engine.url

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "reeflab.cli", "serverless", "list", *args]
        return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=60)

    on_argv = cli("--token", engine.tokens["ana"])
    assert on_argv.returncode == 2 and "REEFLAB_TOKEN" in on_argv.stderr and "--token-file" in on_argv.stderr
    neither = cli()
    assert neither.returncode == 2 and "no token" in neither.stderr
    token_file = tmp_path / "token"
    token_file.write_text(engine.tokens["ana"] + "\n")
    token_file.chmod(0o600)
    assert cli("--token-file", str(token_file)).returncode == 0
    assert cli(REEFLAB_TOKEN=engine.tokens["ana"]).returncode == 0
    missing = cli("--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


# -- MLflow ------------------------------------------------------------------------------------


def admin_api(mlflow, method: str, path: str, api: str = "/api/2.0/mlflow", **kwargs) -> requests.Response:
    auth = (ADMIN, admin_password(mlflow.state))
    return requests.request(method, mlflow.url + api + path, auth=auth, timeout=60, **kwargs)


def as_account(mlflow, name: str, method: str, path: str, **kwargs) -> requests.Response:
    """A call with the account the hub made for `name` (made once, before)."""
    env = mlflow.accounts.environment(name, create=False)
    auth = (env["MLFLOW_TRACKING_USERNAME"].encode(), env["MLFLOW_TRACKING_PASSWORD"].encode())
    return requests.request(method, f"{mlflow.url}/api/2.0/mlflow/{path}", auth=auth, timeout=60, **kwargs)


async def test_the_mlflow_admin_is_never_rekeyed(mlflow):
    assert admin_api(mlflow, "GET", "/users/get", params={"username": ADMIN}).ok
    with pytest.raises(AccountRefused):
        mlflow.accounts.ensure_user(ADMIN)
    spawner = SimpleNamespace(user=SimpleNamespace(name=ADMIN), environment={}, log=logging.getLogger("spawner"))
    await tracking_pre_spawn_hook(mlflow.url, mlflow.state)(spawner)
    assert "MLFLOW_TRACKING_PASSWORD" not in spawner.environment  # a hub user named so gets no MLflow at all
    # an account an operator made admin is not re-keyed either
    assert mlflow.account("olga")["MLFLOW_TRACKING_PASSWORD"]
    admin_api(mlflow, "PATCH", "/users/update-admin", json={"username": "olga", "is_admin": True}).raise_for_status()
    with pytest.raises(AccountRefused):
        mlflow.accounts.ensure_user("olga")
    assert admin_api(mlflow, "GET", "/users/get", params={"username": ADMIN}).ok  # the admin's password still works
    # a name that only looks like the admin's is its own, powerless account
    lookalike = "Reeflab-Admin"
    mlflow.account(lookalike)
    assert as_account(mlflow, lookalike, "GET", "experiments/search", params={"max_results": 10}).ok
    made = as_account(mlflow, lookalike, "POST", "users/create", json={"username": "eve", "password": "x" * 20})
    assert made.status_code == 403


def test_nobody_names_an_experiment_in_another_users_namespace(mlflow):
    for name in ("ana", "ana-lab", "bob", CYRILLIC_ANA):
        mlflow.account(name)
    for who, experiment in [
        ("ana", "bob/default"),
        ("ana", "bob/stolen"),
        ("ana", "ana-lab/x"),
        ("ana", "ANA/x"),
        ("ana-lab", "ana/x"),
        (CYRILLIC_ANA, "ana/x"),
    ]:
        answer = as_account(mlflow, who, "POST", "experiments/create", json={"name": experiment})
        assert answer.status_code == 403, (who, experiment, answer.text)
    own = as_account(mlflow, "ana", "POST", "experiments/create", json={"name": "ana/reef"})
    assert own.ok, own.text
    renamed = {"experiment_id": own.json()["experiment_id"], "new_name": "bob/reef"}
    assert as_account(mlflow, "ana", "POST", "experiments/update", json=renamed).status_code == 403
    # the admin (the platform) may; that is how users' default experiments are made
    assert admin_api(mlflow, "POST", "/experiments/create", json={"name": "zed/made-by-platform"}).ok


def test_each_default_experiment_is_made_by_the_platform_and_managed_by_its_user(mlflow):
    mlflow.account("ana")
    bob = mlflow.account("bob")
    default = as_account(mlflow, "bob", "GET", "experiments/get-by-name", params={"experiment_name": "bob/default"})
    assert default.ok and bob["MLFLOW_EXPERIMENT_NAME"] == "bob/default"
    experiment_id = default.json()["experiment"]["experiment_id"]
    assert experiment_id in mlflow.accounts.managed("bob")
    assert experiment_id not in mlflow.accounts.managed("ana")
    assert (
        as_account(mlflow, "ana", "GET", "experiments/get", params={"experiment_id": experiment_id}).status_code == 403
    )


def test_an_experiment_squatted_before_the_rule_is_moved_out_of_the_way(mlflow):
    """Before names were enforced, ana could make `dave/default` and let dave write into it."""
    mlflow.account("ana")
    squat = admin_api(mlflow, "POST", "/experiments/create", json={"name": "dave/default"}).json()["experiment_id"]
    grant = {"resource_type": "experiment", "resource_id": squat}
    api3 = "/api/3.0/mlflow"
    admin_api(
        mlflow, "POST", "/users/permissions/grant", api=api3, json={**grant, "username": "ana", "permission": "MANAGE"}
    )
    mlflow.account("dave")  # the hub makes dave's account (his first spawn)
    default = as_account(mlflow, "dave", "GET", "experiments/get-by-name", params={"experiment_name": "dave/default"})
    fresh = default.json()["experiment"]["experiment_id"]
    assert fresh != squat and fresh in mlflow.accounts.managed("dave")
    assert as_account(mlflow, "ana", "GET", "experiments/get", params={"experiment_id": fresh}).status_code == 403
    moved = as_account(mlflow, "ana", "GET", "experiments/get", params={"experiment_id": squat}).json()
    assert moved["experiment"]["name"] == f"reeflab-quarantine/{squat}"


def test_reeflab_lists_only_experiments_the_user_manages(mlflow, monkeypatch):
    def as_user(name: str) -> TrackingService:
        for key, value in mlflow.account(name).items():
            monkeypatch.setenv(key, value)
        return TrackingService(tracking_uri=mlflow.url)

    ana = as_user("ana")
    shared = ana.experiment("ana", "shared")
    run = ana.client().create_run(shared["id"])
    # ana lets bob read her experiment: readable is not owned
    grant = {"username": "bob", "resource_type": "experiment", "resource_id": shared["id"], "permission": "READ"}
    api3 = "/api/3.0/mlflow/users/permissions/grant"
    auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    assert requests.post(mlflow.url + api3, json=grant, auth=auth, timeout=60).ok

    bob = as_user("bob")
    assert {e.name for e in bob.experiments("bob")} == {"bob/default"}
    with pytest.raises(NotFound):
        bob.get_run("bob", run.info.run_id)
    assert bob.experiment("bob", "reef")["name"] == "bob/reef"
    ana_lab = as_user("ana-lab")
    assert {e.name for e in ana_lab.experiments("ana-lab")} == {"ana-lab/default"}
    # an experiment of that name made by someone else (the platform here) is refused, not adopted
    admin_api(mlflow, "POST", "/experiments/create", json={"name": "ana-lab/taken"}).raise_for_status()
    with pytest.raises(Conflict):
        ana_lab.experiment("ana-lab", "taken")
