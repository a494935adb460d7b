"""A newcomer's first detection, on the real hub as `make up` starts it, driven through Chromium.

From the hub's login page to fish found on an underwater scene the test draws itself (three fish; not one
of the bundled samples), the way a scientist who never read the docs would go: log in (an admin added
them; their first login sets their password), wait for their server, open the reef icon, search "fish",
open the detector, Try, drop the image, read the result and zoom into it, delete the try. Screenshots of
each step go to test-artifacts/browser/.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from playwright.sync_api import Page, expect
from reeflab.modules.fish_detector.evaluate import greedy_match
from reeflab.modules.fish_detector.synth import render_scene
from reeflab.testing.hub import HubProcess

pytestmark = pytest.mark.timeout(480)

IMAGE = "my-reef-scene.jpg"
USER = "marina"
PASSWORD = "c0ral-Reef-42"
# a spawn takes 12-20 s on a 2-core machine, JupyterLab's first load a few more (ms)
SPAWN_MS = 90_000
# the module loads its model before it answers (ms)
READY_MS = 60_000
# the shipped pipeline, four notebooks one after another, on 2 shared cores (ms)
RUN_MS = 150_000
BOX = re.compile(r"^\((-?\d+), (-?\d+)\) – \((-?\d+), (-?\d+)\)$")


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[HubProcess]:
    """The hub with one user an admin added, who has never logged in (so has no password yet)."""
    with HubProcess(tmp_path_factory.mktemp("hub")) as hub:
        added = hub.api("POST", f"users/{USER}")
        assert added.status_code == 201, added.text
        yield hub
        hub.api("DELETE", f"users/{USER}/server")


def drop_file(page: Page, target, path: Path) -> None:
    """Drag a file from the desktop onto `target`: dragover then drop, with the file in the DataTransfer."""
    transfer = page.evaluate_handle(
        """([name, data]) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: 'image/jpeg' }));
            return transfer;
        }""",
        [path.name, base64.b64encode(path.read_bytes()).decode()],
    )
    target.dispatch_event("dragover", {"dataTransfer": transfer})
    expect(target).to_have_class(re.compile(r"\bjp-mod-dragging\b"))
    target.dispatch_event("drop", {"dataTransfer": transfer})


def draw_scene(folder: Path) -> tuple[Path, list[list[float]]]:
    """A three-fish underwater scene of the test's own (a seed no training set or sample uses)."""
    scene = render_scene(np.random.default_rng([20261205, 3]), 384, 288, n_fish=3)
    path = folder / IMAGE
    scene.image.save(path, quality=90)
    return path, scene.boxes


def test_a_new_user_logs_in_and_finds_the_fish_in_a_scene_it_drew(hub_page, hub: HubProcess, tmp_path):
    page = hub_page
    browser = page.page
    image, truth = draw_scene(tmp_path)
    assert len(truth) == 3

    # 1. the login page the hub's URL leads to; the first login of an added name sets its password
    browser.goto(hub.url)
    expect(browser).to_have_url(re.compile(r"/hub/login"))
    browser.get_by_label("Username").fill(USER)
    browser.get_by_label("Password").fill(PASSWORD)
    page.window_screenshot("1-login")
    browser.get_by_role("button", name="Sign in").click()

    # 2. the hub's home page offers one button, then the spawn page follows it until JupyterLab opens
    # (if the hub is ever set to spawn right after login, there is nothing to click: both are a newcomer's path)
    launcher = browser.locator("#jp-main-dock-panel .jp-Launcher")
    start = browser.get_by_role("button", name="Start My Server")
    expect(start.or_(launcher)).to_be_visible()
    if start.is_visible():
        page.window_screenshot("2-home")
        start.click()
        progress = browser.get_by_role("progressbar")
        expect(progress.or_(launcher)).to_be_visible()
        if progress.is_visible():
            page.window_screenshot("2-spawning")
    launcher.wait_for(timeout=SPAWN_MS)
    expect(browser).to_have_url(re.compile(rf"/user/{USER}/lab"))
    page.window_screenshot("3-lab")

    # 3. the reef icon in the left bar, then "fish" in the marketplace
    page.open_panel()
    with browser.expect_response(lambda r: "/reeflab/api/catalog/modules?q=fish" in r.url):
        page.search("fish")
    expect(page.panel.locator(".jp-ReefLab-status")).to_have_text(re.compile(r"^\d+ modules?$"))
    detector = page.card("Fish detector (demo)")
    expect(detector).to_be_visible()
    page.screenshot("3-search")
    detector.click()
    detail = page.main.locator(".jp-ReefLab-detail")
    expect(detail.get_by_role("heading", name="Fish detector (demo)")).to_be_visible()

    # 4. Try comes first among the actions; its form is pre-filled, so one more click starts it
    actions = detail.locator(".jp-ReefLab-actions").get_by_role("button")
    expect(actions.first).to_have_text("Try")
    actions.first.click()
    form = detail.get_by_role("form", name="Try Fish detector (demo)")
    expect(form).to_contain_text("stops by itself after 10 minutes")
    page.screenshot("4-try-form")
    form.get_by_role("button", name="Try", exact=True).click()
    expect(detail.get_by_role("status")).to_contain_text("is starting: follow it under Deployments")

    # 5. it shows under Deployments, starting then ready
    section = page.panel.get_by_role("region", name="Deployments", exact=True)
    row = section.locator(".jp-ReefLab-deployment")
    expect(row).to_have_count(1)
    expect(row.locator(".jp-ReefLab-badge", has_text="try")).to_be_visible()
    row.scroll_into_view_if_needed()
    page.screenshot("5-starting")
    expect(row.locator(".jp-ReefLab-state")).to_have_text("ready", timeout=READY_MS)
    title = row.get_attribute("aria-label")

    # 6. the try view opens by itself once it is ready, in a main-area tab of its own (room for the picture)
    trial = page.main.get_by_role("region", name=f"Try {title}")
    expect(trial).to_be_in_viewport()
    expect(page.tabs.and_(page.page.locator(".lm-mod-current")).filter(has_text=f"Try {title}")).to_be_visible()
    page.screenshot("6-try-open")
    # drop the image on it: the picture with the boxes, and the fish listed
    drop_file(browser, trial.locator(".jp-ReefLab-drop"), image)
    picture = trial.get_by_role("img", name=f"{IMAGE} with what the module found drawn on it")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => img.complete && img.naturalWidth") == 384
    findings = trial.locator(".jp-ReefLab-findings")
    n = len(truth)
    expect(findings.locator("strong")).to_have_text(f"{n} objects found: {n} fish.")
    rows = findings.get_by_role("table", name="Objects found").locator("tbody tr")
    expect(rows).to_have_count(n)
    # each fish of the ground truth is one of the boxes shown (IoU >= 0.5), as the table reads them
    boxes = [[int(v) for v in BOX.match(text).groups()] for text in rows.locator("td:nth-child(3)").all_inner_texts()]
    confidences = [float(t.rstrip(" %")) for t in rows.locator("td:nth-child(2)").all_inner_texts()]
    ious, false_alarms = greedy_match(truth, boxes, confidences)
    assert None not in ious and not false_alarms, (truth, boxes)
    picture.scroll_into_view_if_needed()
    page.screenshot("7-result")
    # a closer look: zoomed in twice, the picture is drawn twice as wide, and back to fit
    width = picture.evaluate("img => img.getBoundingClientRect().width")
    trial.get_by_role("button", name="Zoom in").click()
    trial.get_by_role("button", name="Zoom in").click()
    expect(trial.locator(".jp-ReefLab-zoomLevel")).to_have_text("2×")
    assert picture.evaluate("img => img.getBoundingClientRect().width") == pytest.approx(2 * width, rel=0.02)
    page.screenshot("7-zoomed")
    trial.get_by_role("button", name="Fit", exact=True).click()
    expect(trial.locator(".jp-ReefLab-zoomLevel")).to_have_text("Fit")
    findings.scroll_into_view_if_needed()
    page.screenshot("7-result-table")

    # 8. delete it: the list is empty again, and so is the server's
    row.get_by_role("button", name="Delete", exact=True).click()
    row.get_by_role("alertdialog", name=f"Delete {title}?").get_by_role("button", name="Delete it").click()
    expect(row).to_have_count(0)
    expect(section).to_contain_text("Nothing runs yet")
    expect(page.tabs.filter(has_text=f"Try {title}")).to_have_count(0)  # its Try tab went with it
    page.screenshot("8-deleted")
    mine = requests.get(
        f"{hub.url}user/{USER}/reeflab/api/deployments",
        headers={"Authorization": f"token {hub.user_token(USER)}"},
        timeout=30,
    )
    assert mine.json()["deployments"] == []

    # 9. the shipped pipeline, from the examples in the new home, with its defaults
    jobs = page.panel.get_by_role("region", name="Jobs", exact=True)
    jobs.get_by_role("button", name="Jobs", exact=True).click()
    jobs.get_by_role("button", name="Run pipeline").click()
    form = jobs.get_by_role("form", name="Run a pipeline")
    form.get_by_label("Pipeline file").fill("notebooks/detect_classify.pipeline")
    form.get_by_role("button", name="Run", exact=True).click()
    expect(form).to_have_count(0)
    run = jobs.get_by_role("list", name="Your pipeline runs").get_by_role("listitem").first
    run.scroll_into_view_if_needed()
    page.screenshot("9-pipeline-running")
    expect(run.locator(".jp-ReefLab-state")).to_have_text(re.compile("^(completed|failed)$"), timeout=RUN_MS)
    expect(run.get_by_label("Why")).to_have_count(0)  # else: which step failed, and why
    expect(run).to_contain_text("4 of 4 steps done")
    page.screenshot("9-pipeline-done")

    # 10. MLflow from the panel's header: a tab of its own, through their server, logged in as them
    page.panel.scroll_into_view_if_needed()
    with browser.context.expect_page() as opened:
        page.panel.get_by_role("link", name="MLflow").click()
    mlflow = opened.value
    expect(mlflow).to_have_url(re.compile(rf"/user/{USER}/reeflab/mlflow/"))
    expect(mlflow).to_have_title(re.compile("MLflow"))
    expect(mlflow.get_by_text("Experiments").first).to_be_visible(timeout=30_000)
    mlflow.screenshot(path=page.screenshot("10-panel").with_name(f"{page.name}-10-mlflow.png"))
