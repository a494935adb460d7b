"""Serverless from the ReefLab panel, against the real OSCAR-compatible engine (and its SeaweedFS).

The first tests' lab server has its own engine (REEFLAB_SERVERLESS_URL + a token the engine gives this
user), as a user server under the hub has. The last one is a newcomer's path on the real hub as `make up`
starts it (engine, SeaweedFS and its upload events, the user's platform bucket): Make serverless with its
folders, upload an image into the input folder, see the job and its result drawn on the image, and a batch.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import reeflab
import requests
from playwright.sync_api import expect
from reeflab.modules.fish_detector.evaluate import greedy_match
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.storage.platform_s3 import user_bucket
from reeflab.testing.hub import HubProcess

pytestmark = pytest.mark.timeout(180)

USER = "ana"
# counts the bytes of the file it gets and answers JSON, as a module's script would
COUNT_SCRIPT = """\
#!/bin/sh
echo "counting $(basename "$INPUT_FILE_PATH")"
printf '{"file": "%s", "bytes": %s}' "$(basename "$INPUT_FILE_PATH")" "$(wc -c < "$INPUT_FILE_PATH")" \
  > "$TMP_OUTPUT_DIR/count.json"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with EngineProcess(tmp_path_factory.mktemp("engine") / "state", users=[USER], s3=True) as engine:
        yield engine


@pytest.fixture(scope="module")
def serverless_lab(tmp_path_factory, engine, lab):
    """A second lab server (the conftest's LabServer) that talks to the engine as user ana."""
    env = {"REEFLAB_SERVERLESS_URL": engine.url, "REEFLAB_SERVERLESS_TOKEN": engine.tokens[USER]}
    with type(lab)(tmp_path_factory.mktemp("serverless-lab"), env=env) as server:
        service = {"name": "counter", "image": "ghcr.io/example/alpine", "cpu": "0.5", "memory": "256Mi"}
        answer = server.api("POST", "serverless/oscar/system/services", json={**service, "script": COUNT_SCRIPT})
        assert answer.status_code in (200, 201), answer.text
        # one asynchronous job, so that the service has a job with a log to show
        job = server.api("POST", "serverless/oscar/job/counter", data=base64.b64encode(b"twelve bytes"))
        assert job.status_code == 201, job.text
        yield server


@pytest.fixture
def serverless_page(lab_page, serverless_lab):
    lab_page.lab = serverless_lab
    return lab_page


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_invoke_a_service_with_a_file_and_read_a_job_log(serverless_page, serverless_lab, tmp_path, theme):
    page = serverless_page
    page.open_lab(theme)
    page.open_panel()
    section = page.panel.get_by_role("region", name="Serverless", exact=True)
    section.get_by_role("button", name="Serverless", exact=True).click()
    row = section.get_by_role("listitem", name="counter", exact=True)
    expect(row).to_contain_text("0.5 CPU")

    sample = tmp_path / "reef-transect.txt"
    sample.write_bytes(b"0123456789" * 5)
    row.get_by_role("button", name="Invoke", exact=True).click()
    invoke = row.get_by_role("region", name="Invoke counter")
    invoke.get_by_label("File to send").set_input_files(sample)
    invoke.get_by_role("button", name="Invoke", exact=True).click()
    answer = invoke.get_by_role("region", name="Answer for reef-transect.txt")
    expect(answer).to_be_visible(timeout=60_000)  # a cold start of the worker
    # OSCAR names a sync call's input itself: the byte count proves the file went through
    assert json.loads(answer.locator("pre").inner_text())["bytes"] == 50
    answer.scroll_into_view_if_needed()
    page.screenshot("invoked")

    row.get_by_role("button", name="Jobs", exact=True).click()
    jobs = row.get_by_role("region", name="Jobs of counter")
    job = jobs.get_by_role("listitem").first
    expect(job).to_contain_text("done", timeout=60_000)
    job.get_by_role("button").click()
    expect(job.get_by_role("region")).to_contain_text("counting")
    page.screenshot("serverless")

    # what the engine counted: the sync call(s) above and the fixture's job, with their latencies
    row.get_by_role("button", name="Metrics", exact=True).click()
    metrics = row.get_by_role("region", name="Metrics", exact=True)
    expect(metrics).to_contain_text(re.compile(r"Sync: \d+ calls?, 0 errors · latency p50 \d+ ms"))
    expect(metrics).to_contain_text("Jobs: 1 finished, 0 errors · queued to done p50")
    expect(metrics.locator("[data-requests]").first).to_be_attached()
    metrics.scroll_into_view_if_needed()
    page.screenshot("serverless-metrics")


def test_make_serverless_from_the_marketplace(serverless_page, serverless_lab):
    page = serverless_page
    page.open_lab()
    page.open_panel()
    page.search("yolo object detector")
    page.card("YOLO object detector").click()
    detail = page.main.locator(".jp-ReefLab-detail")
    make = detail.get_by_role("button", name="Make serverless…")
    expect(make).to_be_enabled()
    make.click()
    form = detail.get_by_role("form", name="Make YOLO object detector serverless")
    expect(form.get_by_label("CPU")).to_have_value("1")
    expect(form.get_by_label("Memory (GB)")).to_have_value("2")  # the deploy form's unit
    expect(form.get_by_label("Output folder")).to_have_value("yolo-detector/out")
    # no input folder: allowed, and the form says what it means
    form.get_by_label("Input folder").fill("")
    expect(form.get_by_role("note")).to_contain_text("Without an input folder, uploads start no job")
    form.get_by_role("button", name="Make serverless", exact=True).click()
    made = detail.get_by_role("status").filter(has_text="Service yolo-detector is ready: invoke it under Serverless")
    expect(made).to_contain_text("results go to ana/yolo-detector/out")
    names = [s["name"] for s in serverless_lab.api("GET", "serverless/oscar/system/services").json()]
    assert "yolo-detector" in names
    section = page.panel.get_by_role("region", name="Serverless", exact=True)
    section.get_by_role("button", name="Serverless", exact=True).click()
    section.get_by_role("button", name="Refresh your services").click()
    made = section.get_by_role("listitem", name="yolo-detector", exact=True)
    expect(made).to_contain_text("No input folder: call it with Invoke, code or batches")
    # its jobs do not pretend that uploads start any
    made.get_by_role("button", name="Jobs", exact=True).click()
    expect(made.get_by_role("region", name="Jobs of yolo-detector")).to_contain_text("It has no input folder")
    expect(made).not_to_contain_text("uploads to its input folder")
    made.scroll_into_view_if_needed()
    page.screenshot("made-serverless")
    serverless_lab.api("DELETE", "serverless/oscar/system/services/yolo-detector")


# --- the newcomer's path on the real hub -------------------------------------------------------------

SAMPLES = Path(reeflab.__file__).parent / "modules" / "fish_detector" / "samples"
IMAGE = "fish_02.jpg"
HUB_USER = "coral"
PASSWORD = "Kelp-forest-77"
SPAWN_S = 180
# a cold worker loads the module before the first job runs (ms)
JOB_MS = 120_000
THEME_NAMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[HubProcess]:
    """The hub, with one user an admin added and whose server runs (started through the hub's API)."""
    with HubProcess(tmp_path_factory.mktemp("serverless-hub")) as hub:
        assert hub.api("POST", f"users/{HUB_USER}").status_code == 201
        server = hub.spawn(HUB_USER, timeout=SPAWN_S)
        yield hub, server
        hub.api("DELETE", f"users/{HUB_USER}/server")


def _user_api(hub: HubProcess, server: str, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {hub.user_token(HUB_USER)}"}
    return requests.request(method, f"{server.rstrip('/')}/{path}", headers=headers, timeout=60, **kwargs)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_make_serverless_with_folders_upload_and_see_the_job_and_its_result(hub_page, hub, theme):
    hub, server = hub
    page, browser = hub_page, hub_page.page
    bucket = user_bucket(HUB_USER)
    name = f"fish-{theme}"
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"][IMAGE]["boxes"]
    settings = "lab/api/settings/@jupyterlab/apputils-extension:themes"
    assert _user_api(hub, server, "PUT", settings, json={"raw": json.dumps({"theme": THEME_NAMES[theme]})}).ok

    # log in (the first login sets the password), then the lab of the server that runs already
    browser.goto(f"{hub.url}hub/login")
    browser.get_by_label("Username").fill(HUB_USER)
    browser.get_by_label("Password").fill(PASSWORD)
    browser.get_by_role("button", name="Sign in").click()
    browser.wait_for_url(re.compile(r"/hub/(home|spawn|user)|/user/"))
    browser.goto(f"{server.rstrip('/')}/lab?reset")
    browser.locator(f'body[data-jp-theme-name="{THEME_NAMES[theme]}"]').wait_for(state="attached", timeout=60_000)
    browser.locator("#jp-main-dock-panel .jp-Launcher").wait_for(timeout=60_000)

    # 1. the fish detector's page: Make serverless opens its form, pre-filled (GB, folders in the user's bucket)
    page.open_panel()
    page.search("fish")
    page.card("Fish detector (demo)").click()
    detail = page.main.locator(".jp-ReefLab-detail")
    detail.get_by_role("button", name="Make serverless…").click()
    form = detail.get_by_role("form", name="Make Fish detector (demo) serverless")
    expect(form).to_contain_text(f"Folders in your bucket {bucket} (made for you)")
    expect(form.get_by_label("Memory (GB)")).to_have_value(re.compile(r"^\d+(\.\d+)?$"))
    expect(form.get_by_label("Input folder")).to_have_value("fish-detector/in")
    form.get_by_label("Service name").fill(name)  # the folders follow the name
    expect(form.get_by_label("Input folder")).to_have_value(f"{name}/in")
    expect(form.get_by_label("Output folder")).to_have_value(f"{name}/out")
    form.scroll_into_view_if_needed()
    page.screenshot(f"1-form-{theme}")
    form.get_by_role("button", name="Make serverless", exact=True).click()
    made = detail.get_by_role("status").filter(has_text=f"Service {name} is ready")
    expect(made).to_contain_text(f"upload files to {bucket}/{name}/in to start a job each")
    expect(made).to_contain_text(f"results go to {bucket}/{name}/out")
    # both folders are in the user's bucket already, empty
    listing = _user_api(hub, server, "GET", "reeflab/api/storage/connections/reeflab/files", params={"path": name})
    assert {(i["name"], i["type"]) for i in listing.json()["items"]} == {("in", "directory"), ("out", "directory")}

    # 2. the service in the Serverless section, with its folders; its jobs: none yet, and how to start one
    section = page.panel.get_by_role("region", name="Serverless", exact=True)
    section.get_by_role("button", name="Serverless", exact=True).click()
    section.get_by_role("button", name="Refresh your services").click()
    row = section.get_by_role("listitem", name=name, exact=True)
    expect(row).to_contain_text(f"Each file uploaded to {bucket}/{name}/in starts a job")
    expect(row).to_contain_text(f"results go to {bucket}/{name}/out")
    row.get_by_role("button", name="Jobs", exact=True).click()
    jobs = row.get_by_role("region", name=f"Jobs of {name}")
    expect(jobs).to_contain_text(f"No jobs yet: each file uploaded to {bucket}/{name}/in starts one.")

    # 3. upload an image into the input folder: a job named after it runs, and its result is drawn on it
    jobs.get_by_label(f"Files to upload to {bucket}/{name}/in").set_input_files(SAMPLES / IMAGE)
    expect(jobs.get_by_role("status").filter(has_text=f"Uploaded {IMAGE}")).to_be_visible()
    job = jobs.locator(".jp-ReefLab-jobList li").filter(has_text=IMAGE)
    expect(job).to_have_count(1)
    row.scroll_into_view_if_needed()
    page.screenshot(f"2-job-{theme}")
    expect(job.locator(".jp-ReefLab-state")).to_have_text("done", timeout=JOB_MS)
    job.get_by_role("button").first.click()
    answer = job.get_by_role("region", name=f"Answer for {IMAGE}")
    picture = answer.get_by_role("img", name=f"{IMAGE} with what the module found drawn on it")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => img.complete && img.naturalWidth") > 0
    rows = answer.get_by_role("table", name="Objects found").locator("tbody tr")
    expect(rows.first).to_be_visible()
    expect(answer.locator("svg rect")).to_have_count(rows.count())  # one box drawn per object listed
    expect(job).to_contain_text(f"Result in {bucket}/{name}/out/{IMAGE.replace('.jpg', '.json')}")
    boxes = [
        [float(v) for v in re.findall(r"-?\d+", text)[:4]] for text in rows.locator("td:nth-child(3)").all_inner_texts()
    ]
    confidences = [float(t.rstrip(" %")) for t in rows.locator("td:nth-child(2)").all_inner_texts()]
    ious, _ = greedy_match(truth, boxes, confidences)
    assert None not in ious, (truth, boxes)  # every fish of the picture is one of the boxes drawn
    picture.scroll_into_view_if_needed()
    page.screenshot(f"3-result-{theme}")

    # 4. a batch: its output comes from the service; one over an empty folder fails and can be removed
    section.get_by_role("button", name="New batch").click()
    batch_form = section.get_by_role("form", name="Start a batch")
    batch_form.get_by_label("Service").select_option(name)
    expect(batch_form.get_by_label("Results to (bucket/folder)")).to_have_value(f"{bucket}/{name}/out")
    batch_form.get_by_label("Files in (bucket/folder)").fill(f"{bucket}/{name}-nothing-here")
    batch_form.get_by_role("button", name="Start the batch").click()
    batch = section.locator(".jp-ReefLab-batch").filter(has_text=f"{bucket}/{name}-nothing-here")
    expect(batch.locator(".jp-ReefLab-state")).to_have_text("failed", timeout=30_000)
    expect(batch).to_contain_text("no input files")
    batch.scroll_into_view_if_needed()
    page.screenshot(f"4-failed-batch-{theme}")
    batch.get_by_role("button", name="Remove").click()
    expect(batch).to_have_count(0)

    _user_api(hub, server, "DELETE", f"reeflab/api/serverless/oscar/system/services/{name}")
