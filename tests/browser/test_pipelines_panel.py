"""Running Elyra pipelines from the ReefLab panel's Jobs section, with the real pipeline runner.

The shipped detect -> crop -> classify -> report pipeline runs on three sample photos with its modules
in the node's own kernel (VIA=local), typed into the "Run pipeline" form as a user would; the panel shows
each step's state as it goes, a step's log, and a failed step's cell and error in a second (tiny) pipeline.
"""

from __future__ import annotations

import json
import re
import shutil

import nbformat
import pytest
from playwright.sync_api import expect
from reeflab.hub.config import REPO

pytestmark = pytest.mark.timeout(150)

NOTEBOOKS = REPO / "notebooks"
SAMPLES = REPO / "server_extension" / "reeflab" / "modules" / "fish_detector" / "samples"
RUN_MS = 100_000  # the whole shipped pipeline, four notebooks one after another, on 2 shared cores


@pytest.fixture
def lab_pipelines(lab):
    """The shipped pipeline and three photos in the lab's files; no run of the test's own before or after."""
    root = lab.root / "notebooks"
    shutil.copytree(NOTEBOOKS / "pipelines", root / "pipelines", dirs_exist_ok=True)
    shutil.copy(NOTEBOOKS / "detect_classify.pipeline", root / "detect_classify.pipeline")
    (root / "photos").mkdir(exist_ok=True)
    for name in ("fish_01.jpg", "fish_02.jpg", "fish_04.jpg"):
        shutil.copy(SAMPLES / name, root / "photos" / name)

    def forget():
        for run in lab.api("GET", "pipelines").json()["runs"]:
            lab.api("DELETE", f"pipelines/{run['id']}")

    forget()
    yield lab
    forget()


def broken_pipeline(root) -> str:
    """A one-step pipeline whose notebook raises in its second cell, as a scientist's typo would."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("depth = 12"), nbformat.v4.new_code_cell("print(dept)")]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "pipelines" / "typo.ipynb")
    pipeline = json.loads((NOTEBOOKS / "detect_classify.pipeline").read_text())
    node = pipeline["pipelines"][0]["nodes"][0]
    node["id"] = "survey"
    node["app_data"]["label"] = node["app_data"]["ui_data"]["label"] = "survey"
    node["app_data"]["component_parameters"].update(filename="pipelines/typo.ipynb", outputs=[], env_vars=[])
    node["inputs"][0].pop("links", None)
    pipeline["pipelines"][0]["nodes"] = [node]
    (root / "typo.pipeline").write_text(json.dumps(pipeline))
    return "typo.pipeline"


def jobs_section(lab_page):
    section = lab_page.panel.get_by_role("region", name="Jobs", exact=True)
    section.get_by_role("button", name="Jobs", exact=True).click()  # folded at first
    return section


def run_from_form(section, pipeline: str, parameters: str = "") -> None:
    section.get_by_role("button", name="Run pipeline").click()
    form = section.get_by_role("form", name="Run a pipeline")
    form.get_by_label("Pipeline file").fill(pipeline)
    form.get_by_label("Parameters").fill(parameters)
    form.get_by_role("button", name="Run", exact=True).click()
    expect(form).to_have_count(0)


def test_run_the_shipped_pipeline_and_watch_its_steps(lab_page, lab_pipelines):
    lab_page.open_lab("light")
    lab_page.open_panel()
    section = jobs_section(lab_page)
    expect(section).to_contain_text("No pipeline runs yet")

    # a typo in the path is refused in words, before anything runs
    section.get_by_role("button", name="Run pipeline").click()
    form = section.get_by_role("form", name="Run a pipeline")
    form.get_by_label("Pipeline file").fill("detect_clasify.pipeline")
    form.get_by_role("button", name="Run", exact=True).click()
    expect(form.get_by_role("alert")).to_contain_text("detect_clasify.pipeline")
    form.get_by_role("button", name="Cancel").click()

    run_from_form(section, "detect_classify.pipeline", "IMAGES_DIR=../photos\nVIA=local\nMIN_CONFIDENCE=0.3")
    runs = section.get_by_role("list", name="Your pipeline runs")
    row = runs.get_by_role("listitem").first
    steps = row.locator(".jp-ReefLab-nodes")
    expect(steps.get_by_role("listitem")).to_have_count(4)
    # the steps in the pipeline's order, each on its way
    detect = steps.get_by_role("listitem", name="detect", exact=True)
    finished = re.compile(r"^(done|failed.*|skipped)$")
    expect(detect.locator(".jp-ReefLab-nodeState")).to_have_text(finished, timeout=RUN_MS)
    lab_page.screenshot("running")
    report = steps.get_by_role("listitem", name="report", exact=True)
    expect(report.locator(".jp-ReefLab-nodeState")).to_have_text(finished, timeout=RUN_MS)
    expect(row.get_by_label("Why")).to_have_count(0)  # else it says which step failed and why
    expect(row.locator(".jp-ReefLab-state")).to_have_text("completed")
    expect(row).to_contain_text("4 of 4 steps done")
    for step in ("detect", "crop", "classify"):
        expect(steps.get_by_role("listitem", name=step, exact=True).locator(".jp-ReefLab-nodeState")).to_have_text(
            "done"
        )

    # a step's own log: what its cells printed
    detect.get_by_role("button").click()
    log = row.get_by_role("region", name="Log of step detect")
    expect(log).to_contain_text("fish_02.jpg")
    lab_page.screenshot("done")

    run = lab_pipelines.api("GET", "pipelines").json()["runs"][0]
    assert run["state"] == "completed" and run["parameters"]["VIA"] == "local"

    row.get_by_role("button", name="Remove").click()
    expect(runs).to_have_count(0)
    assert lab_pipelines.api("GET", "pipelines").json()["runs"] == []


def test_a_failed_step_says_which_cell_and_why(lab_page, lab_pipelines):
    pipeline = broken_pipeline(lab_pipelines.root / "notebooks")
    lab_page.open_lab("dark")
    lab_page.open_panel()
    section = jobs_section(lab_page)
    run_from_form(section, pipeline)
    row = section.get_by_role("list", name="Your pipeline runs").get_by_role("listitem").first
    survey = row.get_by_role("listitem", name="survey", exact=True)
    expect(survey.locator(".jp-ReefLab-nodeState")).to_have_text("failed in cell 2", timeout=60_000)
    expect(row.locator(".jp-ReefLab-state")).to_have_text("failed")
    expect(row.get_by_label("Why")).to_contain_text("NameError: name 'dept' is not defined")
    lab_page.screenshot("failed-step")
