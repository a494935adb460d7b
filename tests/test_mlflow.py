"""MLflow tracking: the hub's real MLflow server with per-user accounts, a real Ultralytics training
logged to it, seen through MLflow's REST API and ReefLab's, and registered as a deployable module."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import psutil
import pytest
import requests
from reeflab.files import free_port
from reeflab.hub.config import REPO
from reeflab.modules.fish_detector import synth
from reeflab.training.accounts import tracking_pre_spawn_hook
from reeflab.training.testing import MlflowProcess
from tornado.httpclient import HTTPClientError
from traitlets.config import PyFileConfigLoader

pytestmark = pytest.mark.timeout(600)

TRAIN = textwrap.dedent(
    """
    import sys
    from reeflab.modules.ultra import ultralytics_offline
    ultralytics_offline()
    from ultralytics import YOLO
    YOLO("yolov8n.yaml").train(data=sys.argv[1], project=sys.argv[2], name="fish", epochs=1, imgsz=64, batch=4,
                               workers=0, amp=False, plots=False, device="cpu", exist_ok=True, verbose=False)
    """
)


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory):
    with MlflowProcess(tmp_path_factory.mktemp("tracking") / "mlflow") as server:
        yield server


@pytest.fixture(scope="module")
def trained(mlflow, tmp_path_factory):
    """alice trains a tiny YOLO the way a job does: only MLflow's environment variables point it at the server."""
    work = tmp_path_factory.mktemp("training")
    data = synth.generate_dataset(work / "data", n_train=8, n_val=4, imgsz=64, seed=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST_"))}
    env.update(mlflow.account("alice"), MLFLOW_EXPERIMENT_NAME="alice/fish", YOLO_CONFIG_DIR=str(work / "yolo"))
    env.update(MLFLOW_DISABLE_TELEMETRY="true", YOLO_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, str(data), str(work / "runs")],
        env=env, cwd=work, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (work / "mlflow.db").exists()  # nothing tracked locally: all went to the server
    return SimpleNamespace(data=data, log=done.stderr)


def rest(mlflow, method: str, path: str, user: str | None = None, password: str | None = None, **kwargs):
    auth = (user, password or mlflow.account(user)["MLFLOW_TRACKING_PASSWORD"]) if user else None
    return requests.request(method, f"{mlflow.url}/api/2.0/mlflow/{path}", auth=auth, timeout=30, **kwargs)


def alice_run(mlflow) -> dict:
    experiment = rest(mlflow, "GET", "experiments/get-by-name", "alice", params={"experiment_name": "alice/fish"})
    assert experiment.ok, experiment.text
    experiment_id = experiment.json()["experiment"]["experiment_id"]
    runs = rest(mlflow, "POST", "runs/search", "alice", json={"experiment_ids": [experiment_id]}).json()["runs"]
    assert len(runs) == 1
    return runs[0]


def test_training_is_tracked_with_params_metrics_and_weights(mlflow, trained):
    run = alice_run(mlflow)
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["epochs"] == "1" and params["imgsz"] == "64" and params["data"] == str(trained.data)
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert {"metrics/mAP50B", "metrics/precisionB", "train/box_loss", "val/box_loss"} <= set(metrics)
    history = rest(
        mlflow, "GET", "metrics/get-history", "alice", params={"run_id": run["info"]["run_id"], "metric_key": "lr/pg0"}
    )
    assert history.ok and history.json()["metrics"]
    # the weights went to the server's artifact store (--serve-artifacts), downloadable by alice
    run_id = run["info"]["run_id"]
    listed = rest(mlflow, "GET", "artifacts/list", "alice", params={"run_id": run_id, "path": "weights"}).json()
    assert {"weights/best.pt", "weights/last.pt"} <= {f["path"] for f in listed["files"]}
    auth = ("alice", mlflow.account("alice")["MLFLOW_TRACKING_PASSWORD"])
    artifact_uri = run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    weights = requests.get(f"{mlflow.url}/api/2.0/mlflow-artifacts/artifacts/{artifact_uri}/weights/best.pt", auth=auth)
    assert weights.ok and len(weights.content) > 100_000


def test_mlflow_runs_lean(mlflow):
    # one server worker, no job runner (MLflow's huey consumers, a few hundred MB each) on a small machine
    processes = [" ".join(p.cmdline()) for p in psutil.Process(mlflow.proc.pid).children(recursive=True)]
    assert not [p for p in processes if "huey" in p or "_job_runner" in p], processes
    assert len([p for p in processes if "uvicorn" in p]) <= 1, processes


def test_other_users_and_anonymous_see_nothing(mlflow, trained):
    run_id = alice_run(mlflow)["info"]["run_id"]
    seen = rest(mlflow, "POST", "experiments/search", "bob", json={"max_results": 100}).json().get("experiments")
    assert [e["name"] for e in seen] == ["bob/default"]  # only the one the platform made for him
    assert rest(mlflow, "GET", "runs/get", "bob", params={"run_id": run_id}).status_code == 403
    assert rest(mlflow, "GET", "runs/get", params={"run_id": run_id}).status_code == 401
    assert rest(mlflow, "GET", "runs/get", "alice", "wrong-password", params={"run_id": run_id}).status_code == 401
    # nobody is an MLflow admin but ReefLab's own account
    assert (
        rest(mlflow, "POST", "users/create", "alice", json={"username": "eve", "password": "x" * 20}).status_code == 403
    )


async def test_pre_spawn_hook_gives_each_server_its_account(mlflow):
    spawner = SimpleNamespace(user=SimpleNamespace(name="carol"), environment={"KEEP": "1"}, log=None)
    called = []
    hook = tracking_pre_spawn_hook(mlflow.url, mlflow.state, previous=lambda s: called.append(s.user.name))
    await hook(spawner)
    env = spawner.environment
    assert called == ["carol"] and env["KEEP"] == "1"
    assert env["MLFLOW_TRACKING_URI"] == mlflow.url and env["MLFLOW_TRACKING_USERNAME"] == "carol"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "carol/default"
    password = env["MLFLOW_TRACKING_PASSWORD"]
    assert rest(mlflow, "POST", "experiments/create", "carol", password, json={"name": "carol/x"}).ok
    # ... and only in carol's own namespace (`<user>/`), which nobody else can name into
    assert rest(mlflow, "POST", "experiments/create", "carol", password, json={"name": "c/x"}).status_code == 403
    await hook(spawner)  # a later spawn: same account, same password
    assert spawner.environment["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_TRACKING_PASSWORD"]
    secrets = [mlflow.state / name for name in ("admin_password", "user_key", "flask_secret", "auth.ini")]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in secrets)
    assert oct(mlflow.state.stat().st_mode & 0o777) == "0o700"


async def test_a_spawn_does_not_wait_for_mlflow_to_start(tmp_path, caplog):
    """Right after the hub starts MLflow is not up yet: the server gets its environment at once."""
    url = f"http://127.0.0.1:{free_port()}"
    hook = tracking_pre_spawn_hook(url, tmp_path / "mlflow", wait=1)
    spawner = SimpleNamespace(user=SimpleNamespace(name="dan"), environment={}, log=logging.getLogger("spawner"))
    started = time.monotonic()
    await hook(spawner)
    assert time.monotonic() - started < 10
    assert spawner.environment["MLFLOW_TRACKING_URI"] == url and spawner.environment["MLFLOW_TRACKING_PASSWORD"]
    await asyncio.gather(*hook.pending)
    assert "MLflow account of dan not set up" in caplog.text
    assert spawner.environment["MLFLOW_TRACKING_PASSWORD"] not in caplog.text


def test_the_hub_runs_mlflow_as_a_local_service(monkeypatch, tmp_path):
    for key in [k for k in os.environ if k.startswith("REEFLAB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("REEFLAB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("REEFLAB_MLFLOW_PORT", "5099")
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(REPO / "hub_config")).load_config()
    service = next(s for s in c.JupyterHub.services if s["name"] == "reeflab-mlflow")
    assert "url" not in service, "MLflow is reached through each user's server, not the public proxy"
    assert f"--state-dir={tmp_path / 'mlflow'}" in service["command"] and "--port=5099" in service["command"]
    assert callable(c.Spawner.pre_spawn_hook)


# -- through ReefLab's API, as alice's server ------------------------------------------------------


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, mlflow):
    return {
        **jp_server_config,
        "HubIdentity": {"standalone_name": "alice"},
        "DeploymentService": {"root_dir": str(tmp_path / "deployments"), "poll_interval": 0.5},
        "CatalogService": {"cache_dir": str(tmp_path / "cache"), "registry_dir": str(tmp_path / "models")},
        "ModuleCheckService": {"check_registrations": False},  # test_module_checks_api.py checks them
        "TrackingService": {"tracking_uri": mlflow.url},
    }


@pytest.fixture
def as_user(monkeypatch, mlflow):
    """The MLflow account in the server's environment, as the hub sets it."""

    def switch(name: str) -> None:
        for key, value in mlflow.account(name).items():
            monkeypatch.setenv(key, value)

    return switch


async def api(jp_fetch, method: str, *path: str, body=None, **kwargs):
    data = json.dumps(body) if body is not None else ("" if method == "POST" else None)
    response = await jp_fetch("reeflab", "api", *path, method=method, body=data, request_timeout=120, **kwargs)
    return json.loads(response.body) if response.body else None


async def test_reeflab_lists_my_runs_and_registers_one_that_deploys(jp_fetch, mlflow, trained, as_user):
    as_user("alice")
    info = await api(jp_fetch, "GET", "training")
    assert info["account"] == "alice" and info["experiment_prefix"] == "alice/"
    assert "password" not in json.dumps(info).lower()
    runs = (await api(jp_fetch, "GET", "training", "runs"))["runs"]
    run = next(r for r in runs if r["experiment"] == "alice/fish")
    assert run["status"] == "FINISHED" and "metrics/mAP50B" in run["metrics"] and run["params"]["epochs"] == "1"
    assert run["path"] == f"reeflab/mlflow/#/experiments/{run['experiment_id']}/runs/{run['id']}"
    detail = await api(jp_fetch, "GET", "training", "runs", run["id"])
    assert "weights" in detail["artifacts"]
    # the run's link opens MLflow's UI through alice's server, logged in as alice
    page = await jp_fetch("reeflab", "mlflow/")
    assert b"<title>MLflow</title>" in page.body
    # lean: MLflow's assistant (agents run on the platform's machine) hidden and refused, no telemetry notice
    assert b"[data-assistant-ui]{display:none" in page.body and b"telemetry.info.alert.dismissed" in page.body
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("reeflab", "mlflow", "ajax-api/3.0/mlflow/assistant/config")
    assert err.value.code == 404
    seen = await jp_fetch(
        "reeflab", "mlflow", "ajax-api/2.0/mlflow/runs/search", method="POST",
        body=json.dumps({"experiment_ids": [run["experiment_id"]]}), headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert [r["info"]["run_id"] for r in json.loads(seen.body)["runs"]] == [run["id"]]
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "reeflab", "mlflow", "ajax-api/2.0/mlflow/experiments/create", method="POST", body='{"name": "x"}',
            headers={"Origin": "https://elsewhere.example.org"},
        )  # fmt: skip
    assert err.value.code == 403
    made = await api(jp_fetch, "POST", "training", "experiments", body={"name": "reef"})
    assert made["name"] == "alice/reef"
    names = [e["name"] for e in (await api(jp_fetch, "GET", "training", "experiments"))["experiments"]]
    assert {"alice/fish", "alice/reef"} <= set(names)

    body = {"name": "tiny-fish", "version": "0.1.0", "base_module": "yolo-detector", "run_id": run["id"]}
    model = await api(jp_fetch, "POST", "training", "models", body=body)
    version = model["versions"][0]
    assert version["run_id"] == run["id"] and version["training_data"] == str(trained.data)
    assert version["metrics"]["metrics/mAP50B"] == run["metrics"]["metrics/mAP50B"]
    entry = await api(jp_fetch, "GET", "catalog", "modules", "tiny-fish")
    assert entry["source"] == "registered" and entry["valid"] and entry["deployable"]
    assert str(trained.data) in entry["metadata"]["description"]

    deployment = await api(jp_fetch, "POST", "deployments", body={"module": "tiny-fish"})
    try:
        deadline = asyncio.get_running_loop().time() + 180
        while deployment["state"] in ("queued", "starting"):
            assert asyncio.get_running_loop().time() < deadline, deployment
            await asyncio.sleep(0.5)
            deployment = await api(jp_fetch, "GET", "deployments", deployment["id"])
        assert deployment["state"] == "ready", deployment["reason"]
        image = (trained.data.parent / "images" / "val" / "val_00000.jpg").read_bytes()
        boundary = "reeflabboundary"
        payload = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="val.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + image
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = await jp_fetch(
            "reeflab", "deployments", deployment["id"], "v2/models/yolo-detector/predict/",
            method="POST", body=payload, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            params={"imgsz": "64", "conf": "0.0001"}, request_timeout=120,
        )  # fmt: skip
        detections = json.loads(answer.body)["predictions"]["detections"]
        # the trained one-class network answers (the base module's own is an 80-class COCO layout)
        assert detections and {d["label"] for d in detections} == {"fish"}
    finally:
        await api(jp_fetch, "DELETE", "deployments", deployment["id"])

    # bob's server, with bob's account: alice's runs are not there, not even by id
    as_user("bob")
    assert (await api(jp_fetch, "GET", "training", "runs"))["runs"] == []
    with pytest.raises(HTTPClientError) as err:
        await api(jp_fetch, "GET", "training", "runs", run["id"])
    assert err.value.code == 404
