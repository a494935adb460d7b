"""The panel's Annotation section with a real Label Studio (the lab server's own): a project over a folder of
generated scenes made from the form, pre-annotated with the fish detector picked from the marketplace, the
counts as Label Studio keeps them, and the server's words when a step cannot be done; light and dark."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from reeflab.modules.fish_detector.synth import generate_samples

pytestmark = pytest.mark.timeout(300)

SCENES = 3
SLOW_MS = 150_000  # Label Studio's first start and the detector's load, on 2 shared cores


@pytest.fixture
def reef(lab):
    """Three generated scenes in the lab's folder 'reef' (images only); no project before or after."""
    truth = generate_samples(lab.root / "notebooks" / "reef", n=SCENES, seed=5)
    truth.unlink()  # a project takes a folder of images only

    def forget():
        for project in lab.api("GET", "annotation/projects").json()["projects"]:
            lab.api("DELETE", f"annotation/projects/{project['id']}")

    forget()
    yield lab
    forget()


def annotation_section(lab_page):
    section = lab_page.panel.get_by_role("region", name="Annotation", exact=True)
    section.get_by_role("button", name="Annotation", exact=True).click()  # folded at first
    return section


def test_a_project_from_the_panel_pre_annotated_with_a_module(lab_page, reef):
    lab_page.open_lab("light")
    lab_page.open_panel()
    section = annotation_section(lab_page)
    expect(section).to_contain_text("No annotation project yet")

    section.get_by_role("button", name="New project").click()
    form = section.get_by_role("form", name="New annotation project")
    form.get_by_label("Title").fill("Reef survey")
    form.get_by_label("Folder of images").fill("no-such-folder")
    form.get_by_label("Labels of a module").select_option("fish-detector")
    form.get_by_role("button", name="Create").click()
    expect(form.get_by_role("alert")).to_contain_text("'no-such-folder' is not a folder of your workspace")
    form.get_by_label("Folder of images").fill("reef")
    form.get_by_role("button", name="Create").click()
    expect(form).to_have_count(0, timeout=SLOW_MS)

    row = section.get_by_role("listitem", name="Reef survey")
    expect(row).to_contain_text(f"0 of {SCENES} labelled · 0 pre-annotated")
    expect(row).to_contain_text("fish")  # the detector's classes are the labels
    row.get_by_label("Module for Reef survey").select_option("fish-detector")
    row.get_by_role("button", name="Pre-annotate").click()
    expect(row).to_contain_text(f"pre-annotated {SCENES} of {SCENES} images", timeout=SLOW_MS)
    expect(row).to_contain_text(f"0 of {SCENES} labelled · {SCENES} pre-annotated")

    # this lab's folder lacks the shipped examples: training says what to do, in the server's words
    row.get_by_role("button", name="Train on this project").click()
    expect(row.get_by_role("alert")).to_contain_text("no notebooks/retrain.pipeline in your files: Refresh examples")
    lab_page.screenshot("light")

    project = reef.api("GET", "annotation/projects").json()["projects"][0]
    assert (project["title"], project["module"], project["preannotated"]) == ("Reef survey", "fish-detector", SCENES)

    lab_page.open_lab("dark")
    lab_page.open_panel()
    section = annotation_section(lab_page)
    row = section.get_by_role("listitem", name="Reef survey")
    expect(row).to_contain_text(f"0 of {SCENES} labelled · {SCENES} pre-annotated", timeout=60_000)
    lab_page.screenshot("dark")
