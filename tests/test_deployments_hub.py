"""From a notebook's point of view on the real hub: deploy, predict through the route, delete; others shut out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import psutil
import pytest
import requests
from PIL import Image
from reeflab.client import Connection, ReefLabClientError, deploy
from reeflab.client.deployments import list_deployments
from reeflab.modules.fish_detector import model as fish
from reeflab.modules.fish_detector.evaluate import greedy_match

SAMPLES = Path(fish.model_path()).parents[1] / "samples"


def test_a_user_deploys_the_demo_module_gets_correct_predictions_and_deletes_it(servers):
    url, token = servers["alice"]
    alice = Connection(url, token)
    image = SAMPLES / "fish_04.jpg"
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"]["fish_04.jpg"]["boxes"]

    deployment = deploy("fish-detector", title="Reef survey", connection=alice)
    deployment.wait_ready(timeout=180, progress=False)
    assert deployment.url == f"{url}reeflab/deployments/{deployment.id}/"
    [result] = deployment.predict(files=[image])
    boxes = [d["box"] for d in result["detections"]]
    ious, _ = greedy_match(truth, boxes, [d["confidence"] for d in result["detections"]])
    assert result["file"] == "fish_04.jpg" and all(v is not None for v in ious), (truth, boxes)
    [png] = deployment.predict(files=image, accept="image/png")
    assert Image.open(io.BytesIO(png)).size == (384, 288)
    assert any("predict" in line for line in deployment.logs())

    pid = _deepaas_pid(deployment.info["id"])
    deployment.delete()
    assert pid is None or not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert list_deployments(connection=alice) == []


def test_another_user_can_neither_see_nor_call_nor_delete_it(servers):
    alice_url, alice_token = servers["alice"]
    _, bob_token = servers["bob"]
    deployment = deploy("image-classifier", connection=Connection(alice_url, alice_token))
    try:
        as_bob = Connection(alice_url, bob_token)
        for action in (
            lambda: list_deployments(connection=as_bob),
            lambda: as_bob.get("deployments", deployment.id),
            lambda: as_bob.request("DELETE", "deployments", deployment.id),
        ):
            with pytest.raises(ReefLabClientError) as err:
                action()
            assert err.value.status in (401, 403)
        route = requests.get(
            f"{alice_url}reeflab/deployments/{deployment.id}/v2/models/",
            headers={"Authorization": f"token {bob_token}"},
            allow_redirects=False,
            timeout=30,
        )
        assert route.status_code in (302, 401, 403)
        assert deployment.refresh().state in ("starting", "ready"), deployment.info
    finally:
        deployment.delete()


def _deepaas_pid(deployment_id: str) -> int | None:
    for process in psutil.process_iter(["cmdline", "cwd"]):
        if process.info["cwd"] and deployment_id in process.info["cwd"]:
            return process.pid
    return None


def test_a_deployment_survives_a_restart_of_the_users_server(hub, servers, tmp_path):
    url, token = servers["alice"]
    deployment = deploy("image-classifier", connection=Connection(url, token))
    deployment.wait_ready(timeout=180, progress=False)
    pid = _deepaas_pid(deployment.id)

    hub.stop_server("alice")
    url = hub.spawn("alice")  # a new server process: it must find the deployment and re-attach
    alice = Connection(url, token)
    [again] = list_deployments(connection=alice)
    assert again.id == deployment.id and again.state == "ready" and _deepaas_pid(deployment.id) == pid
    image = tmp_path / "plankton.png"
    Image.new("RGB", (32, 32), (200, 220, 90)).save(image)
    [result] = again.predict(files=[image])
    assert result["classes"]

    again.delete()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
