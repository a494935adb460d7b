"""The Marketplace of the ReefLab side panel, in a real JupyterLab under a non-root base URL."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(60)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_search_as_you_type_finds_the_image_classifier(lab_page, theme):
    lab_page.open_lab(theme)
    lab_page.open_panel()
    expect(lab_page.card("Image classifier")).to_be_visible()
    before = len(lab_page.search_requests())

    lab_page.search("classifier")

    classifier = lab_page.card("Image classifier")
    expect(classifier).to_be_visible()
    expect(lab_page.card("Diatoms plankton classifier")).to_be_visible()
    expect(lab_page.card("YOLO object detector")).to_have_count(0)
    expect(lab_page.card("Whale call detector")).to_have_count(0)
    expect(classifier.locator(".jp-ReefLab-badge-tasks", has_text="Classification")).to_be_visible()
    expect(classifier.locator(".jp-ReefLab-badge-data-type", has_text="Image")).to_be_visible()
    expect(classifier.locator(".jp-ReefLab-badge-source")).to_have_text("built-in")
    expect(lab_page.panel.locator(".jp-ReefLab-status")).to_have_text(re.compile(r"^\d+ modules$"))

    # typing ten letters searched once or twice (debounced), under the base URL, never per keystroke
    searches = lab_page.search_requests()[before:]
    assert 1 <= len(searches) <= 2, searches
    endpoint = f"{lab_page.lab.base_url}reeflab/api/catalog/modules"
    assert all(urlsplit(url).path == endpoint for url in searches), searches
    assert query_of(searches[-1]) == {"q": ["classifier"], "per_page": ["20"]}
    classifier.scroll_into_view_if_needed()
    lab_page.screenshot("results")


def test_facet_filters_narrow_the_results_and_stay_visible(lab_page):
    lab_page.open_lab()
    lab_page.open_panel()
    panel = lab_page.panel
    status = panel.locator(".jp-ReefLab-status")
    lab_page.search("plankton")
    expect(lab_page.card("Image classifier")).to_be_visible()
    expect(lab_page.card("Copepods plankton classifier")).to_be_visible()

    panel.get_by_role("button", name="Filters").click()
    tags = panel.locator('.jp-ReefLab-facet[data-facet="tags"]')
    # the most common tags first; the rest behind "more"
    tags.get_by_role("button", name=re.compile(r"^\d+ more$")).click()
    species = tags.locator('[data-value="species"]')
    expect(species).to_have_attribute("aria-pressed", "false")
    species.click()

    expect(species).to_have_attribute("aria-pressed", "true")
    expect(lab_page.card("Image classifier")).to_be_visible()
    expect(lab_page.card("Copepods plankton classifier")).to_have_count(0)
    # a value of another facet: every facet must match, each sent as its own parameter
    panel.locator('.jp-ReefLab-facet[data-facet="data-type"] [data-value="Image"]').click()
    expect(panel.locator(".jp-ReefLab-selected .jp-ReefLab-chip")).to_have_count(2)
    expect(status).to_have_text(re.compile(r"^\d+ modules?$"))
    lab_page.screenshot("filters-open")
    last = query_of(lab_page.search_requests()[-1])
    assert last == {"q": ["plankton"], "data-type": ["Image"], "tags": ["species"], "per_page": ["20"]}, last

    # folded away, the filters in use stay on screen and can be removed there
    panel.get_by_role("button", name="Hide filters").click()
    expect(panel.locator(".jp-ReefLab-facets")).to_be_hidden()
    selected = panel.locator(".jp-ReefLab-selected")
    expect(selected.get_by_role("button", name="Remove the filter Tag: species")).to_be_visible()
    lab_page.screenshot("filters-folded")
    selected.get_by_role("button", name="Clear all").click()
    expect(panel.locator(".jp-ReefLab-selected")).to_have_count(0)
    expect(lab_page.card("Copepods plankton classifier")).to_be_visible()

    # two values of one facet: either matches, and the URL repeats the parameter
    panel.get_by_role("button", name="Filters").click()
    tags.locator('[data-value="diatoms"]').click()
    expect(status).to_have_text("1 module")
    tags.locator('[data-value="copepods"]').click()
    expect(status).to_have_text("2 modules")
    expect(lab_page.card("Diatoms plankton classifier")).to_be_visible()
    expect(lab_page.card("Copepods plankton classifier")).to_be_visible()
    assert query_of(lab_page.search_requests()[-1])["tags"] == ["diatoms", "copepods"]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_yolo_detector_detail_shows_its_description_and_hardware(lab_page, theme):
    lab_page.open_lab(theme)
    lab_page.open_panel()
    lab_page.search("yolo detector")
    lab_page.card("YOLO object detector").click()

    detail = lab_page.main.locator(".jp-ReefLab-detail")
    expect(detail.get_by_role("heading", name="YOLO object detector")).to_be_visible()
    # the markdown description, rendered by JupyterLab: bold, code and a link, no markdown syntax left
    description = detail.locator(".jp-ReefLab-markdown .jp-RenderedMarkdown")
    expect(description.locator("strong", has_text="Out of the box")).to_be_visible()
    expect(description.locator("code", has_text="yolov8n.yaml")).to_be_visible()
    expect(description.get_by_role("link", name="Ultralytics YOLO", exact=True)).to_have_attribute(
        "href", "https://docs.ultralytics.com"
    )
    assert "**" not in description.inner_text()
    actions = detail.locator(".jp-ReefLab-actions")
    # it ships no trained weights: it says so, and offers training instead of a try
    expect(detail.locator(".jp-ReefLab-badge-untrained")).to_have_text("not trained")
    expect(detail.locator(".jp-ReefLab-info[role='note']")).to_contain_text("No trained weights: train it first.")
    expect(actions.get_by_role("button", name="Try", exact=True)).to_have_count(0)
    for name in ("Train…", "Deploy"):
        expect(actions.get_by_role("button", name=name, exact=True)).to_be_enabled()
    serverless = actions.get_by_role("button", name="Make serverless…", exact=True)
    expect(serverless).to_be_disabled()
    # this lab server has no serverless engine: the button says so (tests/browser/test_serverless_panel.py has one)
    expect(serverless).to_have_attribute("title", re.compile(r"^Serverless is not set up on this server: "))
    lab_page.screenshot("detail-top")

    hardware = detail.locator(".jp-ReefLab-hardware")
    hardware.scroll_into_view_if_needed()
    expect(hardware).to_contain_text("Recommends for inference: 1 CPU · 2 GB memory")
    small = hardware.locator('[data-profile="cpu-small"]')
    expect(small.locator(".jp-ReefLab-fit")).to_have_text("fits")
    expect(small.locator(".jp-ReefLab-badge", has_text="default")).to_be_visible()
    expect(small).to_contain_text("Pre-filled: 1 CPU · 2 GB (max 2 CPU · 4 GB)")
    expect(detail).to_contain_text("Needs for training: 4 CPU · 8 GB memory · 1 GPU (4 GB GPU memory)")
    expect(detail.locator(".jp-ReefLab-links").get_by_role("link", name="Documentation")).to_have_attribute(
        "href", "https://docs.ultralytics.com/tasks/detect/"
    )
    lab_page.screenshot("detail-hardware")

    # the page is a main-area tab named after the module; the results stay in the panel as they were
    expect(lab_page.tabs.and_(lab_page.page.locator(".lm-mod-current"))).to_have_text("YOLO object detector")
    expect(lab_page.card("YOLO object detector")).to_be_visible()
    expect(lab_page.page.get_by_role("searchbox", name="Search modules")).to_have_value("yolo detector")
    # opening it again brings its tab forward, never a second one
    lab_page.card("YOLO object detector").click()
    expect(lab_page.tabs.filter(has_text="YOLO object detector")).to_have_count(1)


def test_module_no_hardware_fits_says_why(lab_page):
    lab_page.open_lab()
    lab_page.open_panel()
    lab_page.search("coral")
    lab_page.card("Coral cover segmenter").click()
    detail = lab_page.main.locator(".jp-ReefLab-detail")
    expect(detail.locator(".jp-ReefLab-badge-source")).to_have_text("remote")
    hardware = detail.locator(".jp-ReefLab-hardware")
    expect(hardware.locator(".jp-ReefLab-warning")).to_contain_text(
        "Coral cover segmenter recommends 2 CPU, 8 GB of memory, 1 GPU for inference, more than any hardware you "
        "may use; it can still be deployed on less"
    )
    expect(hardware.locator('[data-profile="cpu-small"] .jp-ReefLab-fit')).to_have_text("below recommendation")
    expect(hardware).to_contain_text("its code is not installed on this server")
    hardware.scroll_into_view_if_needed()
    lab_page.screenshot("no-fit")


def test_unsafe_invalid_module_is_shown_without_running_its_html(lab_page):
    lab_page.open_lab()
    lab_page.open_panel()
    lab_page.search("reef survey")
    card = lab_page.card("Reef survey tool")
    expect(card.locator(".jp-ReefLab-badge-invalid")).to_have_text("invalid metadata")
    card.click()

    detail = lab_page.main.locator(".jp-ReefLab-detail")
    problems = detail.locator(".jp-ReefLab-problems")
    expect(problems).to_contain_text("tasks: 'tasks' is a required property")
    expect(problems).to_contain_text("libraries › 0: 'NotALibrary' is not one of")
    description = detail.locator(".jp-RenderedMarkdown")
    expect(description.locator("strong", has_text="reef fish")).to_be_visible()
    expect(description.locator("script")).to_have_count(0)
    expect(description.locator("[onerror]")).to_have_count(0)
    expect(detail.locator('[href^="javascript"]')).to_have_count(0)
    links = detail.locator(".jp-ReefLab-links a")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://example.org/reef-survey")
    description.get_by_text("a harmless looking link").click()
    assert lab_page.page.evaluate(f"window.{lab_page.lab.xss_marker}") is None
    lab_page.screenshot("invalid")


def test_show_more_loads_the_next_page(lab_page):
    lab_page.open_lab()
    lab_page.open_panel()
    more = lab_page.panel.get_by_role("button", name="Show more")
    expect(more).to_be_visible()
    expect(lab_page.cards()).to_have_count(20)
    total = int(lab_page.panel.locator(".jp-ReefLab-status").inner_text().split()[0])
    assert total > 20
    more.click()
    expect(lab_page.cards()).to_have_count(total)
    expect(more).to_have_count(0)
    assert query_of(lab_page.search_requests()[-1]) == {"page": ["2"], "per_page": ["20"]}


def test_account_and_hardware_fold_open_below_the_marketplace(lab_page):
    lab_page.open_lab("dark")
    lab_page.open_panel()
    account = lab_page.panel.get_by_role("region", name="Account and hardware")
    toggle = account.get_by_role("button", name=re.compile("^Account and hardware"))
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(account).to_contain_text("Signed in as")
    expect(account.locator(".jp-ReefLab-profiles li").first).to_contain_text("Small · 2 CPU · 4 GB")
    account.scroll_into_view_if_needed()
    lab_page.screenshot("account")
