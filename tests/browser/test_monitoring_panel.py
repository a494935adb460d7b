"""A deployment's metrics and drift alert in the ReefLab panel, for real: the fish detector answers predicts
sent through its route, drift detection watches them against a folder of in-distribution scenes, and the
panel's Metrics shows the requests plot and the alert."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import expect
from reeflab.modules.fish_detector.synth import SAMPLE_SIZE, _rng, render_scene
from reeflab.testing.hub import wait_until

pytestmark = pytest.mark.timeout(300)

WINDOW = 20


def scene(index: int, split: str, seed: int, cast: bool = False) -> bytes:
    image = render_scene(_rng(seed, split, index), *SAMPLE_SIZE).image
    if cast:
        pixels = np.asarray(image).astype(float)
        pixels[..., 0] = pixels[..., 0] * 1.3 + 20
        pixels[..., 2] *= 0.85
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture
def monitored(lab):
    """A ready fish detector with drift on, after 20 colour-cast predicts and one bad request."""
    lab.delete_deployments()
    reference = lab.root / "notebooks" / "reference-scenes"
    reference.mkdir(parents=True, exist_ok=True)
    for i in range(40):
        (reference / f"scene_{i:02d}.jpg").write_bytes(scene(i, "val", 7))
    created = lab.api("POST", "deployments", json={"module": "fish-detector", "title": "Monitored reef"}).json()
    wait_until(lambda: lab.api("GET", f"deployments/{created['id']}").json()["state"] in ("ready", "failed"), 180, "it")
    deployment = lab.api("GET", f"deployments/{created['id']}").json()
    assert deployment["state"] == "ready", deployment
    body = {"enabled": True, "reference": "reference-scenes", "window": WINDOW}
    assert lab.api("PUT", f"deployments/{created['id']}/drift", json=body).ok
    predict = lab.url + f"{deployment['path']}v2/models/{deployment['entry_point']}/predict/"
    for i in range(WINDOW):
        files = {"files": ("scene.jpg", scene(i, "check", 12, cast=True), "image/jpeg")}
        assert requests.post(predict, files=files, headers=lab.headers, timeout=120).ok
    notes = {"files": ("notes.jpg", b"not an image", "image/jpeg")}
    assert not requests.post(predict, files=notes, headers=lab.headers, timeout=120).ok
    wait_until(lambda: lab.api("GET", f"deployments/{created['id']}/drift").json()["alert"], 60, "the drift alert")
    yield deployment
    lab.delete_deployments()


def test_metrics_plot_and_drift_alert_in_the_panel(lab_page, monitored):
    lab_page.open_lab()
    lab_page.open_panel()
    section = lab_page.panel.get_by_role("region", name="Deployments", exact=True)
    row = section.locator(".jp-ReefLab-deployment", has_text="Monitored reef")
    expect(row.locator(".jp-ReefLab-state")).to_have_text("ready")
    badge = row.get_by_role("button", name="Drift alert")  # on the row itself, its Metrics still closed
    expect(badge).to_be_visible()
    expect(row.get_by_role("button", name="Metrics")).to_have_attribute("aria-expanded", "false")
    badge.click()  # opens them
    expect(row.get_by_role("button", name="Metrics")).to_have_attribute("aria-expanded", "true")
    monitoring = row.get_by_role("region", name="Monitoring")
    expect(monitoring).to_contain_text(f"{WINDOW + 1} requests in the last hour · 1 error ·")
    expect(monitoring).to_contain_text(re.compile(r"latency p50 \d+ ms, p95 \d+ ms, p99 \d+ ms"))
    plot = monitoring.get_by_role("img", name=re.compile("Requests per 60 s"))
    expect(plot).to_be_visible()
    bars = plot.locator("[data-requests]").evaluate_all("gs => gs.map(g => Number(g.dataset.requests))")
    assert sum(bars) == WINDOW + 1, bars
    expect(monitoring.get_by_role("status")).to_have_text("Drift alert")
    expect(monitoring.get_by_role("img", name=re.compile("Drift p-value"))).to_be_visible()
    expect(monitoring).to_contain_text("drift detected: the last 20 inputs differ from the reference")
    monitoring.scroll_into_view_if_needed()
    lab_page.screenshot("metrics-and-drift-alert")
