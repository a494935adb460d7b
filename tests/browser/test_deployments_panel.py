"""Deploying, trying and deleting a module from the ReefLab panel, for real.

Each deployment is a DEEPaaS app on a Unix socket behind the authenticated route of the Jupyter server,
which runs under the base URL `/a%40b/`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import reeflab
from playwright.sync_api import expect
from reeflab.testing.hub import wait_until

pytestmark = pytest.mark.timeout(240)

SAMPLES = Path(reeflab.__file__).parent / "modules" / "fish_detector" / "samples"
# a module loads its model before it answers: it must be ready within this (ms)
READY_MS = 120_000


@pytest.fixture
def lab_clean(lab):
    """The lab server with no deployments before and after the test."""
    lab.delete_deployments()
    yield lab
    lab.delete_deployments()


def demo_module(lab) -> dict:
    """The fish detector once it is registered (it finds fish in the samples), else the generic YOLO detector."""
    fish = lab.api("GET", "catalog/modules/fish-detector")
    if fish.ok and fish.json()["deployable"]:
        return fish.json()
    return lab.api("GET", "catalog/modules/yolo-detector").json()


def open_module(lab_page, module: dict, theme: str = "light"):
    lab_page.open_lab(theme)
    lab_page.open_panel()
    lab_page.search(module["title"].lower())
    lab_page.card(module["title"]).click()
    detail = lab_page.main.locator(".jp-ReefLab-detail")
    expect(detail.get_by_role("heading", name=module["title"])).to_be_visible()
    return detail


def deployments_section(lab_page):
    return lab_page.panel.get_by_role("region", name="Deployments", exact=True)


def test_deploy_try_an_image_and_delete(lab_page, lab_clean):
    lab = lab_clean
    module = demo_module(lab)
    page = lab_page.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    detail = open_module(lab_page, module)
    expect(detail.get_by_role("button", name="Make serverless")).to_be_disabled()

    detail.get_by_role("button", name="Deploy", exact=True).click()
    form = detail.get_by_role("form", name=f"Deploy {module['title']}")
    # the default profile, pre-filled with what the module needs
    expect(form.get_by_role("combobox", name="Hardware")).to_have_value("cpu-small")
    expect(form.get_by_role("spinbutton", name="CPU")).to_have_value("1")
    needs_gb = module["metadata"]["resources"]["inference"]["memory_MB"] / 1000
    expect(form.get_by_role("spinbutton", name="Memory (GB)")).to_have_value(f"{needs_gb:g}")
    expect(form.get_by_role("spinbutton", name="GPU")).to_be_disabled()
    form.get_by_role("textbox", name="Title (optional)").fill("Reef survey, station 4")
    form.get_by_role("button", name="Add a variable").click()
    form.get_by_role("textbox", name="Name of variable 1").fill("SURVEY_SITE")
    form.get_by_role("textbox", name="Value of variable 1").fill("station-4-secret")
    lab_page.screenshot("deploy-form")
    form.get_by_role("button", name="Deploy", exact=True).click()
    expect(detail.get_by_role("status")).to_contain_text("is starting: follow it under Deployments")

    section = deployments_section(lab_page)
    row = section.locator(".jp-ReefLab-deployment", has_text="Reef survey, station 4")
    expect(row).to_have_count(1)
    row.scroll_into_view_if_needed()
    lab_page.screenshot("starting")
    expect(row.locator(".jp-ReefLab-state")).to_have_text("ready", timeout=READY_MS)
    deployment_id = row.get_attribute("data-deployment-id")
    # the variable's name is shown, its value never
    expect(row).to_contain_text("Environment: SURVEY_SITE (values hidden)")
    assert "station-4-secret" not in lab_page.panel.inner_text()

    # the address to call from code: the server's own URL, base URL included
    address = f"{lab.url}reeflab/deployments/{deployment_id}/"
    expect(row.locator(".jp-ReefLab-address code")).to_have_text(address)
    row.get_by_role("button", name="Copy the address").click()
    expect(row.get_by_role("status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == address

    row.get_by_role("button", name="Try", exact=True).click()
    trial = lab_page.main.get_by_role("region", name="Try Reef survey, station 4")
    trial.locator('input[type="file"]').set_input_files(SAMPLES / "fish_01.jpg")
    picture = trial.get_by_role("img", name="fish_01.jpg with what the module found drawn on it")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => img.complete && img.naturalWidth") > 0
    findings = trial.locator(".jp-ReefLab-findings")
    if module["id"] == "fish-detector":
        expect(findings).to_contain_text(re.compile(r"\d+ objects? found: \d+ fish"))
        expect(findings.get_by_role("cell", name="fish", exact=True).first).to_be_visible()
    else:  # random weights: usually nothing, but an answer all the same
        expect(findings).to_contain_text(re.compile(r"object|No objects found"))
    trial.get_by_text("Answer as JSON").click()
    expect(trial.locator(".jp-ReefLab-json pre")).to_contain_text('"detections"')
    predict = f"{lab.base_url}reeflab/deployments/{deployment_id}/v2/models/{module['entry_point']}/predict/"
    assert sum(predict in url for url in lab_page.requests) == 2, "one JSON and one PNG request"
    trial.scroll_into_view_if_needed()
    lab_page.screenshot("try-result")

    # not an image: the module's own words
    trial.locator('input[type="file"]').set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"dive log, not a photo"}]
    )
    expect(trial.get_by_role("alert")).to_contain_text("'notes.txt' is not an image this model can read")
    lab_page.screenshot("try-not-an-image")

    row.get_by_role("button", name="Logs").click()
    log = lab_page.main.get_by_role("region", name="Log of Reef survey, station 4")
    expect(log.locator("pre")).to_contain_text(re.compile(r"POST /\S*/v2/models/"))  # behind its base path
    log.scroll_into_view_if_needed()
    lab_page.screenshot("logs")

    row.get_by_role("button", name="Delete", exact=True).click()
    confirm = row.get_by_role("alertdialog", name="Delete Reef survey, station 4?")
    confirm.get_by_role("button", name="Delete it").click()
    expect(row).to_have_count(0)
    expect(section).to_contain_text("Nothing runs yet")
    assert lab.api("GET", "deployments").json()["deployments"] == []


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_refused_deployment_shows_the_servers_reason(lab_page, lab_clean, theme):
    detail = open_module(lab_page, lab_clean.api("GET", "catalog/modules/fish-detector").json(), theme)
    detail.get_by_role("button", name="Try", exact=True).click()
    form = detail.get_by_role("form", name="Try Fish detector (demo)")
    expect(form).to_contain_text("stops by itself after 10 minutes")

    # more than the profile has is lowered to its maximum
    cpu = form.get_by_role("spinbutton", name="CPU")
    cpu.fill("6")
    cpu.press("Tab")
    expect(cpu).to_have_value("2")
    expect(form.get_by_role("status")).to_have_text("Lowered to the most Small · 2 CPU · 4 GB allows.")

    # a variable ReefLab sets itself: the server refuses, and says why
    form.get_by_role("button", name="Add a variable").click()
    form.get_by_role("textbox", name="Name of variable 1").fill("PATH")
    form.get_by_role("textbox", name="Value of variable 1").fill("/tmp")
    form.get_by_role("button", name="Try", exact=True).click()
    expect(form.get_by_role("alert")).to_have_text(
        "Invalid deployment request: env: PATH is set by ReefLab and cannot be overridden"
    )
    form.scroll_into_view_if_needed()
    lab_page.screenshot("refused")
    assert lab_clean.api("GET", "deployments").json()["deployments"] == []

    # fixed, it goes through
    form.get_by_role("button", name="Remove variable 1").click()
    form.get_by_role("button", name="Try", exact=True).click()
    expect(form).to_have_count(0)
    row = deployments_section(lab_page).locator(".jp-ReefLab-deployment")
    expect(row).to_have_count(1)
    expect(row.locator(".jp-ReefLab-badge", has_text="try")).to_be_visible()


def test_deployments_list_shows_failures_and_counts_down_tries(lab_page, lab_clean):
    lab = lab_clean
    failing = lab.api(
        "POST",
        "deployments",
        json={"module": "yolo-detector", "title": "Starved detector", "hardware": {"cpu": 1, "memory_MB": 60}},
    )
    assert failing.status_code == 201, failing.text
    trial = lab.api("POST", "deployments", json={"module": "image-classifier", "kind": "try"})
    assert trial.status_code == 201, trial.text
    lab_page.open_lab("dark")
    lab_page.open_panel()
    section = deployments_section(lab_page)
    section.scroll_into_view_if_needed()

    starved = section.locator(".jp-ReefLab-deployment", has_text="Starved detector")
    expect(starved.locator(".jp-ReefLab-state")).to_have_text("failed", timeout=READY_MS)
    expect(starved.get_by_label("Why")).to_contain_text("stopped: out of memory, limit")
    expect(starved.get_by_role("button", name="Try", exact=True)).to_be_disabled()

    classifier = section.locator(".jp-ReefLab-deployment", has_text="Image classifier")
    expect(classifier.locator(".jp-ReefLab-state")).to_have_text("ready", timeout=READY_MS)
    clock = classifier.locator(".jp-ReefLab-countdown")
    expect(clock).to_have_text(re.compile(r"^[5-9]:\d\d left$|^10:00 left$"))
    first = clock.inner_text()
    expect(clock).not_to_have_text(first)  # it ticks without a reload

    classifier.get_by_role("button", name="Try", exact=True).click()
    trial = lab_page.main.get_by_role("region", name=re.compile("^Try Image classifier"))
    trial.locator('input[type="file"]').set_input_files(SAMPLES / "fish_02.jpg")
    expect(trial.get_by_role("table", name="Classes").get_by_role("row")).not_to_have_count(0)
    expect(trial.locator(".jp-ReefLab-findings")).to_contain_text(re.compile(r"^Most likely: .+ \(\d"))
    lab_page.screenshot("list-dark")

    # restart runs it again (and it fails again, for the same reason)
    path = f"deployments/{failing.json()['id']}"
    before = lab.api("GET", path).json()["started_at"]
    starved.get_by_role("button", name="Restart", exact=True).click()
    wait_until(lambda: lab.api("GET", path).json()["started_at"] != before, timeout=15, what="the restart")
    expect(starved.locator(".jp-ReefLab-state")).to_have_text("failed", timeout=READY_MS)
    starved.get_by_role("button", name="Logs").click()
    log = lab_page.main.get_by_role("region", name="Log of Starved detector")
    expect(log.locator("pre")).to_contain_text("ReefLab: stopped: out of memory")  # not only a signal
    starved.scroll_into_view_if_needed()
    lab_page.screenshot("failed-dark")

    # the fix is offered: twice its memory, and with it, it runs
    fix = starved.get_by_role("group", name="Suggested fix")
    expect(fix).to_contain_text("It ran out of memory with 60 MB.")
    fix.get_by_role("button", name="Restart with 1 GB").click()
    expect(starved.locator(".jp-ReefLab-state")).to_have_text("ready", timeout=READY_MS)
    expect(starved).to_contain_text("1 GB")
    assert lab.api("GET", path).json()["hardware"]["memory_MB"] == 1000
