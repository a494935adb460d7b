"""Serverless from the ReefLab panel, against the real OSCAR-compatible engine (and its SeaweedFS).

This lab server has its own engine (REEFLAB_SERVERLESS_URL + a token the engine gives this user),
as a user server under the hub has.
"""

from __future__ import annotations

import base64
import json

import pytest
from playwright.sync_api import expect
from reeflab.serverless.testing import EngineProcess

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


def test_make_serverless_from_the_marketplace(serverless_page, serverless_lab):
    page = serverless_page
    page.open_lab()
    page.open_panel()
    page.search("yolo object detector")
    page.card("YOLO object detector").click()
    detail = page.panel.locator(".jp-ReefLab-detail")
    make = detail.get_by_role("button", name="Make serverless")
    expect(make).to_be_enabled()
    make.click()
    expect(detail.get_by_role("status").filter(has_text="Service yolo-detector is ready")).to_be_visible()
    names = [s["name"] for s in serverless_lab.api("GET", "serverless/oscar/system/services").json()]
    assert "yolo-detector" in names
    section = page.panel.get_by_role("region", name="Serverless", exact=True)
    section.get_by_role("button", name="Serverless", exact=True).click()
    section.get_by_role("button", name="Refresh your services").click()
    made = section.get_by_role("listitem", name="yolo-detector", exact=True)
    expect(made).to_contain_text("yolo-detector")
    made.scroll_into_view_if_needed()
    page.screenshot("made-serverless")
    serverless_lab.api("DELETE", "serverless/oscar/system/services/yolo-detector")
