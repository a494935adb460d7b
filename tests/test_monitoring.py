"""Monitoring a deployment on the real hub: its predict requests counted at the route, drift of its inputs.

One fish detector for the whole module. Drift: the reference is 200 generated in-distribution scenes uploaded
to alice's files; the detector evaluates tumbling windows of 50 inputs (MMD, permutation test, alpha 0.01), so
a shift that starts at a window's start raises its alert within that window: 50 inputs.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import psutil
import pytest
import requests
from PIL import Image, ImageFilter
from prometheus_client.parser import text_string_to_metric_families
from reeflab.client import Connection, ReefLabClientError, deploy, monitoring, training
from reeflab.client.deployments import list_deployments
from reeflab.modules.fish_detector.synth import SAMPLE_SIZE, _rng, render_scene

WINDOW = 50
REFERENCE = 200
IN_DISTRIBUTION = 200


def scene(index: int, split: str, seed: int) -> Image.Image:
    return render_scene(_rng(seed, split, index), *SAMPLE_SIZE).image


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def colour_cast(image: Image.Image) -> Image.Image:
    """A reddish cast, as from a different camera's white balance."""
    pixels = np.asarray(image).astype(float)
    pixels[..., 0] = pixels[..., 0] * 1.3 + 20
    pixels[..., 2] *= 0.85
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(2))


@pytest.fixture(scope="module")
def alice(servers) -> Connection:
    return Connection(*servers["alice"])


@pytest.fixture(scope="module")
def deployment(alice):
    deployment = deploy("fish-detector", title="Monitored", connection=alice)
    try:
        deployment.wait_ready(timeout=300, progress=False)
        yield deployment
    finally:
        deployment.delete()


@pytest.fixture(scope="module")
def reference_folder(alice) -> str:
    """200 in-distribution scenes in alice's files, uploaded as she would (the contents API)."""
    session, base = alice.session, alice.url + "api/contents/monitoring-reference"
    session.put(base, json={"type": "directory"}, timeout=30).raise_for_status()
    for index in range(REFERENCE):
        content = base64.b64encode(jpeg(scene(index, "val", seed=7))).decode()
        body = {"type": "file", "format": "base64", "content": content}
        session.put(f"{base}/scene_{index:03d}.jpg", json=body, timeout=30).raise_for_status()
    return "monitoring-reference"


class Receiver:
    """A real HTTP server on a free 127.0.0.1 port that keeps the JSON POSTed to it; it answers 503 to the next
    `failing` POSTs (a receiver that is down for a while), 204 afterwards."""

    def __init__(self):
        self.received: list[dict] = []
        self.failing = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.failing:
                    receiver.failing -= 1
                    self.send_response(503)
                else:
                    receiver.received.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/drift"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, count: int, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return [body["event"] for body in self.received]


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


def predict(deployment, data: bytes, name: str = "scene.jpg", model: str | None = None) -> int:
    url = f"{deployment.url}v2/models/{model or deployment.info['entry_point']}/predict/"
    response = deployment.connection.session.post(url, files={"files": (name, data, "image/jpeg")}, timeout=120)
    return response.status_code


def send(deployment, images) -> dict:
    """Predict on each image, then wait for the drift evaluations they are due (they run after the answers)."""
    for image in images:
        assert predict(deployment, jpeg(image)) == 200
    return settled(deployment)


def settled(deployment, timeout: float = 120) -> dict:
    """Drift once the inputs sent so far are looked at (features and evaluations run after the answers)."""
    deadline = time.monotonic() + timeout
    while True:
        drift = deployment.drift()
        if not drift["pending"]:
            return drift
        assert time.monotonic() < deadline, drift["evaluations"]
        time.sleep(0.2)


def test_drift_settings_are_checked_and_say_what_to_fix(deployment):
    for body, expected in (
        ({"enabled": True}, "reference"),
        ({"enabled": True, "reference": "../.."}, "outside your files"),
        ({"enabled": True, "reference": "no-such-folder"}, "no folder"),
        ({"enabled": True, "reference": "x", "window": 5}, "window"),
        ({"enabled": True, "reference": "x", "colour": 1}, "colour"),
        ({"enabled": True, "reference": "x", "webhook": "file:///etc/passwd"}, "http:// or https:// URL"),
        ({"enabled": True, "reference": "x", "webhook": "https://"}, "with a host"),
        ({"enabled": True, "reference": "x", "module_samples": True}, "not both"),
        # the fish detector ships 6 sample images: too few for a reference, and the answer says so
        ({"enabled": True, "module_samples": True}, "'fish-detector' ships 6 images in its samples folder"),
    ):
        with pytest.raises(ReefLabClientError) as err:
            deployment.monitor_drift(**body)
        assert err.value.status == 400 and expected in err.value.message, (body, err.value.message)


def test_requests_are_counted_and_drift_raises_an_alert_only_for_shifted_inputs(deployment, reference_folder, receiver):
    settings = deployment.monitor_drift(reference_folder, window=WINDOW, alpha=0.01, webhook=receiver.url)
    assert settings["settings"]["enabled"] and settings["settings"]["reference_images"] == REFERENCE
    assert settings["settings"]["webhook"] == receiver.url
    before = deployment.metrics()["total"]

    for i in range(IN_DISTRIBUTION):
        assert predict(deployment, jpeg(scene(i, "check", seed=11))) == 200
    bad = [
        predict(deployment, b"this is not an image", name="notes.jpg"),
        predict(deployment, b"", name="empty.jpg"),
        predict(deployment, jpeg(scene(0, "check", seed=11)), model="no-such-model"),
    ]
    assert all(code >= 400 for code in bad), bad

    drift = settled(deployment)
    assert len(drift["evaluations"]) == IN_DISTRIBUTION // WINDOW, drift["evaluations"]
    assert not drift["alert"] and not any(e["kind"] == "drift-alert" for e in drift["events"]), drift
    assert all(e["p_value"] >= 0.01 and e["size"] == WINDOW for e in drift["evaluations"])

    metrics = deployment.metrics(since=3600, step=60)
    sent = IN_DISTRIBUTION + len(bad)
    assert metrics["total"]["requests"] - before["requests"] == sent
    assert metrics["total"]["errors"] - before["errors"] == len(bad)
    assert metrics["window"]["requests"] == metrics["total"]["requests"]
    assert metrics["window"]["items"] == metrics["total"]["items"] >= sent
    latency = metrics["window"]["latency_s"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"], latency
    assert sum(b["requests"] for b in metrics["window"]["buckets"]) == metrics["window"]["requests"]

    assert receiver.received == []  # no alert, no webhook

    # a colour cast: the alert comes within one window of it, and to the webhook (its first try answered 503)
    receiver.failing = 1
    drift = send(deployment, (colour_cast(scene(i, "check", seed=12)) for i in range(WINDOW)))
    assert drift["alert"] and drift["last"]["p_value"] < 0.01, drift["last"]
    [alert] = [e for e in drift["events"] if e["kind"] == "drift-alert"]
    assert "drift detected" in alert["message"] and alert["data"]["window"] == WINDOW
    assert receiver.events(1) == ["drift-alert"]
    assert deployment.refresh().info["drift"] == {"enabled": True, "alert": True}  # the badge on its row
    hook = receiver.received[0]
    assert hook["deployment"] == deployment.id and hook["message"] == alert["message"]
    assert hook["p_value"] == drift["last"]["p_value"] and hook["window"] == WINDOW
    # back to normal, then blurred images: cleared, then a second alert within one window; the receiver is down
    # for the second alert: its failure is an event, predictions went on as ever
    assert not send(deployment, (scene(i, "check", seed=13) for i in range(WINDOW)))["alert"]
    assert list_deployments(connection=deployment.connection)[0].info["drift"] == {"enabled": True, "alert": False}
    assert receiver.events(2) == ["drift-alert", "drift-cleared"]
    receiver.failing = 3
    drift = send(deployment, (blur(scene(i, "check", seed=14)) for i in range(WINDOW)))
    kinds = [e["kind"] for e in drift["events"] if e["kind"] in ("drift-alert", "drift-cleared")]
    assert drift["alert"] and kinds == ["drift-alert", "drift-cleared", "drift-alert"], drift["events"]
    deadline = time.monotonic() + 30
    while not (failed := [e for e in deployment.drift()["events"] if e["kind"] == "webhook-failed"]):
        assert time.monotonic() < deadline, "no webhook-failed event"
        time.sleep(0.2)
    assert "drift-alert not delivered" in failed[0]["message"] and "HTTP 503" in failed[0]["message"]
    assert receiver.failing == 0 and receiver.events(2) == ["drift-alert", "drift-cleared"]
    # each change logged to alice's MLflow experiment (the hub runs MLflow), a run for the deployment
    [run] = training.runs("monitoring", connection=deployment.connection)
    assert run["id"] == drift["mlflow_run"] and run["metrics"]["drift_alert"] == 1.0, run
    assert run["metrics"]["drift_p_value"] == drift["last"]["p_value"]


def test_prometheus_text_matches_the_rest_figures(deployment, alice):
    metrics = deployment.metrics()
    response = alice.session.get(alice.api_url("metrics"), timeout=30)
    assert response.ok and response.headers["Content-Type"].startswith("text/plain")
    assert monitoring.prometheus_text(alice) == response.text
    samples = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.labels.get("deployment") == deployment.id
    }
    assert samples[("reeflab_deployment_requests_total", None)] == metrics["total"]["requests"]
    assert samples[("reeflab_deployment_errors_total", None)] == metrics["total"]["errors"]
    assert samples[("reeflab_deployment_request_duration_seconds_count", None)] == metrics["total"]["requests"]
    assert samples[("reeflab_deployment_request_duration_seconds_bucket", "+Inf")] == metrics["total"]["requests"]
    assert samples[("reeflab_deployment_drift_alert", None)] == float(metrics["drift"]["alert"])


def test_status_shows_what_the_user_runs_and_what_the_machine_has_free(deployment, alice, servers):
    status = monitoring.status(alice)
    [running] = status["running"]["deployments"]
    assert running["id"] == deployment.id and running["state"] == "ready"
    assert status["held"]["cpu"] == deployment.info["hardware"]["cpu"]
    assert status["held"]["memory_MB"] == deployment.info["hardware"]["memory_MB"]
    machine = status["machine"]
    assert 0 <= machine["cpu"]["free"] <= machine["cpu"]["count"] == psutil.cpu_count()
    assert 0 < machine["memory_MB"]["available"] <= machine["memory_MB"]["total"]
    assert monitoring.status(Connection(*servers["bob"]))["running"]["deployments"] == []


def test_another_user_cannot_read_them(deployment, servers):
    alice_url, _ = servers["alice"]
    bob_url, bob_token = servers["bob"]
    headers = {"Authorization": f"token {bob_token}"}
    for path in (f"deployments/{deployment.id}/metrics", f"deployments/{deployment.id}/drift", "metrics", "status"):
        on_alices = requests.get(f"{alice_url}reeflab/api/{path}", headers=headers, timeout=30, allow_redirects=False)
        assert on_alices.status_code in (302, 401, 403), (path, on_alices.status_code)
    as_bob = Connection(bob_url, bob_token)
    with pytest.raises(ReefLabClientError) as err:
        as_bob.get("deployments", deployment.id, "metrics")
    assert err.value.status == 404
    text = as_bob.session.get(as_bob.api_url("metrics"), timeout=30).text
    assert deployment.id not in text


def test_the_history_survives_a_restart_of_the_users_server(deployment, hub, servers):
    before_metrics, before_drift = deployment.metrics(), deployment.drift()
    hub.stop_server("alice")
    url = hub.spawn("alice")
    alice = Connection(url, servers["alice"][1])
    again = type(deployment).fetch(deployment.id, alice)
    assert again.state == "ready", again.info
    after = again.metrics()
    assert after["total"] == before_metrics["total"]
    assert after["window"]["latency_s"] == before_metrics["window"]["latency_s"]
    assert again.drift()["evaluations"] == before_drift["evaluations"]
    assert again.drift()["events"] == before_drift["events"]
    assert predict(again, jpeg(scene(0, "check", seed=15))) == 200
    assert again.metrics()["total"]["requests"] == before_metrics["total"]["requests"] + 1
