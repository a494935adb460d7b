"""The shipped retraining pipeline (train -> evaluate -> gate -> register -> deploy) through the REST API.

Real everything: Elyra parses the pipeline, each node runs as a notebook job, the train node fine-tunes
the fish detector with Ultralytics on generated scenes, register and deploy call this server's REST
API from inside the nodes (as they do in a user's server), and the deployment is a real `deepaas-run`.
"""

from __future__ import annotations

import json
import shutil

import pytest
from reeflab.hub.config import REPO
from test_pipelines import call, watch

NOTEBOOKS = REPO / "notebooks"
MODEL = "reef-fish-retrained"


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(REPO / "hub_config" / "profiles.yaml")},
        "PipelineService": {"root_dir": str(tmp_path / "pipeline-runs"), "poll_interval": 0.3},
        "DeploymentService": {"root_dir": str(tmp_path / "deployments"), "poll_interval": 0.5},
        "CatalogService": {"cache_dir": str(tmp_path / "cache"), "registry_dir": str(tmp_path / "models")},
        "ModuleCheckService": {"check_registrations": False},  # test_module_checks_api.py checks them
        "TrackingService": {"tracking_uri": ""},
    }


@pytest.fixture
def retrain(jp_serverapp, jp_base_url, jp_root_dir, http_server, monkeypatch):
    """The shipped pipeline in the user's folder; nodes reach this server as a user's notebooks do."""
    shutil.copytree(NOTEBOOKS / "pipelines", jp_root_dir / "pipelines")
    shutil.copy(NOTEBOOKS / "retrain.pipeline", jp_root_dir / "retrain.pipeline")
    monkeypatch.setenv("REEFLAB_URL", f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}")
    monkeypatch.setenv("REEFLAB_TOKEN", jp_serverapp.identity_provider.token)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(jp_root_dir / ".yolo"))
    return jp_root_dir / "pipelines" / "work"


@pytest.fixture(autouse=True)
def nothing_left_running(jp_serverapp, jp_asyncio_loop):
    yield
    services = jp_serverapp.web_app.settings["reeflab"]
    jp_asyncio_loop.run_until_complete(services.pipelines.stop_all())
    jp_asyncio_loop.run_until_complete(services.deployments.stop_all())


async def api(jp_fetch, method: str, *path: str, **kwargs):
    response = await jp_fetch("reeflab", "api", *path, method=method, request_timeout=60, **kwargs)
    return json.loads(response.body) if response.body else None


def parameters(**changes) -> dict:
    # imgsz 128: the fish detector's scenes still show fish there (at 64 even its shipped weights score ~0.1)
    return {"IMGSZ": 128, "EPOCHS": 1, "TRAIN_IMAGES": 8, "EVAL_IMAGES": 6, "MODEL_NAME": MODEL, **changes}


async def test_retraining_passes_the_gate_registers_and_deploys(jp_fetch, retrain):
    # as "Train on this project" (annotation) starts it: the project and its new images go into the lineage
    lineage = {"ANNOTATION_PROJECT": 7, "LABELLED_IMAGES": 8, "NEW_IMAGES": 5}
    body = {"pipeline": "retrain.pipeline", "parameters": parameters(MIN_MAP50=0.3, **lineage)}
    run = await call(jp_fetch, "POST", body=body)
    assert [n["id"] for n in run["nodes"]] == ["train", "evaluate", "gate", "register", "deploy"]
    run, _seen = await watch(jp_fetch, run["id"], timeout=400)
    assert run["state"] == "completed", (run["reason"], await call(jp_fetch, "GET", run["id"], "log"))
    assert [n["state"] for n in run["nodes"]] == ["completed"] * 5
    work = retrain / run["run_name"]  # each run in a folder of its own

    metrics = json.loads((work / "metrics.json").read_text())
    assert metrics["map50"] >= 0.3 and 0 <= metrics["map50_95"] <= metrics["map50"] <= 1
    gate = json.loads((work / "gate.json").read_text())
    assert gate == {"metric": "map50", "value": metrics["map50"], "threshold": 0.3, "passed": True}

    # a new module of the marketplace, with the evaluation in its metadata
    detail = await api(jp_fetch, "GET", "catalog", "modules", MODEL)
    assert detail["source"] == "registered" and detail["valid"] and detail["versions"] == ["1.0.0"]
    assert detail["entry_point"] == "fish-detector" and "retrained" in detail["metadata"]["tags"]
    assert f"| map50 | {metrics['map50']:.4g} |" in detail["metadata"]["description"]
    assert "generated underwater fish scenes" in detail["metadata"]["description"]
    models = await api(jp_fetch, "GET", "training", "models")
    version = models["models"][0]["versions"][0]
    assert version["metrics"]["map50"] == pytest.approx(metrics["map50"])
    # the metrics before (the weights it continued from, on the same evaluation data) and after
    before = metrics["before"]
    assert {k: version["metrics"][f"{k}_before"] for k in before} == pytest.approx(before)
    assert 0 <= before["map50_95"] <= before["map50"] <= 1
    assert version["lineage"] == {
        "base_weights": "fish-yolo.pt",
        "epochs": 1,
        "annotation_project": 7,
        "labelled_images": 8,
        "new_images": 5,
    }
    assert "**Lineage**: base weights fish-yolo.pt, epochs 1, annotation project 7" in detail["metadata"]["description"]
    assert f"| map50_before | {before['map50']:.4g} |" in detail["metadata"]["description"]
    assert version["source"] == f"pipelines/work/{run['run_name']}/model.pt"  # a later run cannot overwrite it

    # the deployment answered the sample image with the registered weights, then was deleted
    deployed = json.loads((work / "deployment.json").read_text())
    assert deployed["name"] == MODEL and deployed["version"] == "1.0.0" and deployed["kept"] is False
    assert deployed["image"] == "fish_01.jpg" and isinstance(deployed["answer"]["detections"], list)
    assert {d["label"] for d in deployed["answer"]["detections"]} <= {"fish"}
    listed = await api(jp_fetch, "GET", "deployments")
    assert not [d for d in listed["deployments"] if d["state"] not in ("stopped", "failed")], listed
    log = await call(jp_fetch, "GET", run["id"], "log", params={"node": "gate"})
    assert any("quality gate passed: map50" in line for line in log["lines"]), log["lines"]


async def test_a_model_below_the_threshold_stops_at_the_gate_and_is_not_registered(jp_fetch, retrain):
    body = {"pipeline": "retrain.pipeline", "parameters": parameters(MIN_MAP50=1.01)}
    run = await call(jp_fetch, "POST", body=body)
    run, _seen = await watch(jp_fetch, run["id"], timeout=300)
    assert run["state"] == "failed"
    assert "node 'gate' failed" in run["reason"] and "map50" in run["reason"] and "1.01" in run["reason"], run
    by_id = {n["id"]: n for n in run["nodes"]}
    assert [by_id[n]["state"] for n in ("train", "evaluate")] == ["completed", "completed"]
    assert by_id["gate"]["state"] == "failed" and by_id["gate"]["error"]["ename"] == "QualityGateFailed"
    assert by_id["register"]["state"] == "skipped" and by_id["deploy"]["state"] == "skipped"
    work = retrain / run["run_name"]
    assert (work / "metrics.json").is_file() and not (work / "registered.json").exists()
    assert (await api(jp_fetch, "GET", "training", "models"))["models"] == []
    found = await api(jp_fetch, "GET", "catalog", "modules", params={"q": MODEL})
    assert MODEL not in [item["id"] for item in found["items"]]


def test_gate_and_version_helpers_of_the_nodes(monkeypatch, tmp_path):
    from reeflab.pipelines import nodes

    assert nodes.quality_gate({"map50": 0.62}, "map50", 0.5) == 0.62
    with pytest.raises(nodes.QualityGateFailed, match=r"map50 0\.4000 is below the threshold 0\.5"):
        nodes.quality_gate({"map50": 0.4}, "map50", 0.5)
    with pytest.raises(KeyError, match="it has map50"):
        nodes.quality_gate({"map50": 0.4}, "recall", 0.5)
    assert nodes.next_version([]) == "1.0.0"
    assert nodes.next_version(["1.0.0", "1.0.9", "1.0.10", "2024-rc"]) == "1.0.11"
    monkeypatch.setenv("REEFLAB_ROOT_DIR", str(tmp_path))
    assert nodes.root_relative(tmp_path / "pipelines" / "work" / "model.pt") == "pipelines/work/model.pt"
    with pytest.raises(ValueError, match="outside your Jupyter root folder"):
        nodes.root_relative("/etc/passwd")
