"""A module's checks in the ReefLab panel, in a real JupyterLab: its badge on the card and page, the Check button,
the run while it goes, the report and its readable page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

# a check runs the module's tests, linters, a security scan and its API: a minute or two on a busy machine
pytestmark = pytest.mark.timeout(420)
CHECK_MS = 360_000


def test_check_a_builtin_module_from_its_page(lab_page):
    lab = lab_page.lab
    for run in lab.api("GET", "checks").json()["checks"]:  # a check of an earlier test would give it a badge
        lab.api("DELETE", f"checks/{run['id']}")
    lab_page.open_lab()
    lab_page.open_panel()
    lab_page.search("image classifier")
    card = lab_page.card("Image classifier")
    expect(card.locator(".jp-ReefLab-badge-check")).to_have_text("not checked")

    card.click()
    detail = lab_page.main.locator(".jp-ReefLab-detail")
    expect(detail.get_by_role("heading", name="Image classifier")).to_be_visible()
    badge = detail.locator(".jp-ReefLab-detailHeader .jp-ReefLab-badge-check")
    expect(badge).to_have_text("not checked")

    check = detail.get_by_role("button", name="Check", exact=True)
    check.click()
    run = detail.locator(".jp-ReefLab-checkRun")
    state = run.locator(".jp-ReefLab-checkState")
    expect(state).to_have_text(re.compile(r"^(starting|checking)$"))
    expect(check).to_be_disabled()
    # its log shows while it runs
    expect(run.get_by_role("region", name="Log of the check")).to_be_visible()
    run.scroll_into_view_if_needed()
    lab_page.screenshot("checking")

    expect(state).to_have_text(re.compile(r"^(passed|failed)$"), timeout=CHECK_MS)
    results = run.locator(".jp-ReefLab-checkResult")
    if state.inner_text() == "failed":  # say which check failed and why, before failing
        failed = results.filter(has=lab_page.page.locator(".jp-ReefLab-state", has_text="failed"))
        pytest.fail(f"a built-in module failed its checks: {failed.all_inner_texts()}")
    expect(state).to_have_text("passed")
    expect(check).to_be_enabled()
    # every check with its state and reason; a built-in passes ai4-metadata
    expect(results.first).to_be_visible()
    metadata = run.locator('.jp-ReefLab-checkResult[data-check="metadata"]')
    expect(metadata.locator(".jp-ReefLab-state")).to_have_text("passed")
    expect(metadata.locator(".jp-ReefLab-checkReason")).not_to_be_empty()
    for result in results.all():
        expect(result.locator(".jp-ReefLab-state")).to_have_text(re.compile(r"^(passed|skipped)$"))
    # what a tool said is folded until asked for
    with_details = results.filter(has=lab_page.page.locator("details"))
    if with_details.count():
        output = with_details.first.locator("details pre")
        expect(output).to_be_hidden()
        with_details.first.locator("summary").click()
        expect(output).to_be_visible()
    run.scroll_into_view_if_needed()
    lab_page.screenshot("report")

    # the badge turned, on the page and on its card, and links to the readable report
    expect(badge).to_have_text("checked")
    expect(badge).to_have_attribute("title", re.compile(r"^Passed the platform's checks on \d{4}-\d{2}-\d{2}"))
    expect(card.locator(".jp-ReefLab-badge-check")).to_have_text("checked")
    (check_run,) = lab.api("GET", "checks").json()["checks"]
    report_path = f"{lab.base_url}reeflab/api/checks/{check_run['id']}/report.html"
    expect(badge).to_have_attribute("href", re.compile(re.escape(report_path) + "$"))

    open_report = run.get_by_role("link", name="Open report")
    expect(open_report).to_have_attribute("target", "_blank")
    with lab_page.page.expect_popup() as opened:
        open_report.click()
    page = opened.value
    page.wait_for_load_state()
    assert page.url.endswith(report_path), page.url
    expect(page.locator("body")).to_contain_text("image-classifier")
    expect(page.locator("body")).to_contain_text(metadata.locator("strong").inner_text())
    page.close()

    # shared with every user through the platform's catalogue, then taken out again
    sharing = detail.get_by_role("region", name="Sharing")
    sharing.get_by_role("button", name="Publish").click()
    expect(sharing).to_contain_text("In the platform's catalogue: published by ana on")
    assert [m["id"] for m in lab.api("GET", "catalog/published").json()["modules"]] == ["image-classifier"]
    sharing.scroll_into_view_if_needed()
    lab_page.screenshot("published")
    sharing.get_by_role("button", name="Unpublish").click()
    expect(sharing.get_by_role("button", name="Publish")).to_be_enabled()
    assert lab.api("GET", "catalog/published").json()["modules"] == []

    lab.api("DELETE", f"checks/{check_run['id']}")
