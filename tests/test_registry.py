"""Registered models: trained weights become a marketplace module that deploys with those weights."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
from datetime import UTC, datetime

import pytest
from reeflab.modules.fish_detector import model as fish_model
from reeflab.modules.yolo_detector import model as yolo_model
from tornado.httpclient import HTTPClientError

FISH_WEIGHTS = fish_model.model_path()
SAMPLES = fish_model.model_path().rsplit("/weights/", 1)[0] + "/samples"


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {
        **jp_server_config,
        "DeploymentService": {"root_dir": str(tmp_path / "deployments"), "poll_interval": 0.5},
        "CatalogService": {"cache_dir": str(tmp_path / "cache"), "registry_dir": str(tmp_path / "models")},
        "ModuleCheckService": {"check_registrations": False},  # test_module_checks_api.py checks them
        "TrackingService": {"tracking_uri": ""},
    }


@pytest.fixture
def weights(jp_root_dir):
    """Trained detection weights in the user's folder (the fish detector's, trained by the project)."""
    (jp_root_dir / "runs").mkdir()
    shutil.copy(FISH_WEIGHTS, jp_root_dir / "runs" / "fish.pt")
    return "runs/fish.pt"


async def api(jp_fetch, method: str, *path: str, body=None, **kwargs):
    data = json.dumps(body) if body is not None else ("" if method == "POST" else None)
    response = await jp_fetch("reeflab", "api", *path, method=method, body=data, request_timeout=120, **kwargs)
    return json.loads(response.body) if response.body else None


async def refused(jp_fetch, method: str, *path: str, body=None) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as err:
        await api(jp_fetch, method, *path, body=body)
    return err.value.code, json.loads(err.value.response.body)["message"]


def register_body(weights: str, **changes) -> dict:
    body = {
        "name": "reef-fish",
        "version": "1.0.0",
        "base_module": "yolo-detector",
        "weights": weights,
        "training_data": "https://example.org/datasets/reef-scenes",
        "metrics": {"metrics/mAP50B": 0.97},
    }
    return {**body, **changes}


async def test_register_lists_in_catalogue_and_deploys_with_the_weights(jp_fetch, jp_serverapp, weights, tmp_path):
    model = await api(jp_fetch, "POST", "training", "models", body=register_body(weights))
    assert model["name"] == "reef-fish" and model["latest"] == "1.0.0" and model["task"] == "detect"
    version = model["versions"][0]
    assert version["metrics"] == {"metrics/mAP50B": 0.97} and version["source"] == "runs/fish.pt"

    # stored privately
    folder = tmp_path / "models" / "reef-fish"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("model.json", "1.0.0/weights.pt", "1.0.0/ai4-metadata.yml"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name

    # in the catalogue, valid and deployable, with dates, training data and metrics
    found = await api(jp_fetch, "GET", "catalog", "modules", params={"q": "reef-fish"})
    card = next(item for item in found["items"] if item["id"] == "reef-fish")
    assert card["source"] == "registered" and card["valid"] and card["deployable"]
    today = datetime.now(UTC).date().isoformat()
    assert card["updated"] == today and "retrained" in card["tags"]
    detail = await api(jp_fetch, "GET", "catalog", "modules", "reef-fish")
    assert detail["versions"] == ["1.0.0"] and detail["entry_point"] == "yolo-detector"
    metadata = detail["metadata"]
    assert metadata["dates"] == {"created": today, "updated": today}
    assert metadata["links"]["dataset"] == "https://example.org/datasets/reef-scenes"
    assert "reef-scenes" in metadata["description"] and "| metrics/mAP50B | 0.97 |" in metadata["description"]
    assert "deploy_env" not in detail and str(tmp_path) not in json.dumps(detail)

    # a second version adds to it; the newest is what deploys
    await api(jp_fetch, "POST", "training", "models", body=register_body(weights, version="1.1.0"))
    listed = await api(jp_fetch, "GET", "training", "models")
    assert [v["version"] for v in listed["models"][0]["versions"]] == ["1.0.0", "1.1.0"]
    detail = await api(jp_fetch, "GET", "catalog", "modules", "reef-fish")
    assert detail["versions"] == ["1.0.0", "1.1.0"] and detail["metadata"]["version"] == "1.1.0"

    # deploy it like any module: the base module's code serves the registered weights
    deployment = await api(jp_fetch, "POST", "deployments", body={"module": "reef-fish"})
    assert deployment["module"] == "reef-fish" and "REEFLAB_WEIGHTS" in deployment["env"]
    try:
        deadline = asyncio.get_running_loop().time() + 180
        while deployment["state"] in ("queued", "starting"):
            assert asyncio.get_running_loop().time() < deadline, deployment
            await asyncio.sleep(0.5)
            deployment = await api(jp_fetch, "GET", "deployments", deployment["id"])
        assert deployment["state"] == "ready", deployment["reason"]
        image = open(f"{SAMPLES}/fish_01.jpg", "rb").read()
        boundary = "reeflabboundary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="fish_01.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + image
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = await jp_fetch(
            "reeflab", "deployments", deployment["id"], "v2/models/yolo-detector/predict/",
            method="POST", body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            params={"imgsz": "256"}, request_timeout=120,
        )  # fmt: skip
        detections = json.loads(answer.body)["predictions"]["detections"]
        # the base yolo-detector is an untrained 80-class network: fish found means the weights were used
        assert detections and {d["label"] for d in detections} == {"fish"}
    finally:
        await api(jp_fetch, "DELETE", "deployments", deployment["id"])

    await api(jp_fetch, "DELETE", "training", "models", "reef-fish")
    assert not folder.exists()
    code, _ = await refused(jp_fetch, "GET", "catalog", "modules", "reef-fish")
    assert code == 404


async def test_bad_registrations_say_what_to_fix(jp_fetch, jp_root_dir, weights, tmp_path):
    (jp_root_dir / "notes.pt").write_text("not weights")
    await api(jp_fetch, "POST", "training", "models", body=register_body(weights))
    cases = [
        (register_body(weights), 409, "already has version 1.0.0"),
        (register_body(weights, version="2.0", base_module="fish-detector"), 409, "registered on 'yolo-detector'"),
        (register_body(weights, name="yolo-detector"), 409, "already a marketplace module"),
        (register_body("../../../etc/passwd", name="other"), 400, "outside your folder"),
        (register_body("missing.pt", name="other"), 400, "No file 'missing.pt'"),
        (register_body("notes.pt", name="other"), 400, "not Ultralytics YOLO weights"),
        (register_body(weights, name="other", base_module="image-classifier"), 400, "detect weights"),
        (register_body(weights, name="other", base_module="no-such"), 404, "No module 'no-such'"),
        (register_body(weights, name="other", run_id="abc"), 400, "either run_id"),
        (register_body(weights, name="Bad Name"), 400, "name"),
        (register_body(weights, name="other", version="1 0"), 400, "version"),
        ({**register_body(weights, name="other"), "weights": None, "run_id": "abc"}, 503, "MLFLOW_TRACKING_URI"),
        ({**register_body(weights, name="other"), "extra": 1}, 400, "extra"),
    ]
    for body, status, says in cases:
        code, message = await refused(jp_fetch, "POST", "training", "models", body=body)
        assert (code, says in message) == (status, True), (body, code, message)
    # nothing stored before was lost, nothing half-made was left
    listed = await api(jp_fetch, "GET", "training", "models")
    assert [(m["name"], len(m["versions"])) for m in listed["models"]] == [("reef-fish", 1)]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["reef-fish"]
    code, message = await refused(jp_fetch, "GET", "training", "models", "nothing")
    assert code == 404 and "No registered model" in message


def test_reeflab_weights_selects_the_weights_served(monkeypatch):
    assert yolo_model.model_path() == "yolov8n.yaml"
    monkeypatch.setenv("REEFLAB_WEIGHTS", FISH_WEIGHTS)
    assert yolo_model.model_path() == FISH_WEIGHTS
