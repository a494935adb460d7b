"""reeflab.client and the notebook widget against a real jupyter-server with the extension."""

from __future__ import annotations

import asyncio

import pytest
from reeflab.client import Connection, ReefLabClientError, catalog
from reeflab.widgets import MarketplaceBrowser, markdown_html


async def off_loop(func, *args, **kwargs):
    """The client is synchronous: call it from a thread while the test's loop serves the requests."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


async def test_search_get_and_form(connection):
    found = await off_loop(catalog.search, "classifier", connection=connection)
    assert sorted(item["id"] for item in found["items"]) == ["fish-classifier", "image-classifier"]
    by_facet = await off_loop(catalog.search, data_type="Image", libraries=["PyTorch"], connection=connection)
    assert {"yolo-detector", "image-classifier"} <= {item["id"] for item in by_facet["items"]}
    detail = await off_loop(catalog.get, "yolo-detector", connection=connection)
    assert detail["metadata"]["title"] == "YOLO object detector"
    form = await off_loop(catalog.form, "yolo-detector", connection=connection)
    assert form["default"]


async def test_errors_carry_the_servers_message(connection):
    with pytest.raises(ReefLabClientError) as err:
        await off_loop(catalog.get, "nope", connection=connection)
    assert err.value.status == 404 and "nope" in err.value.message
    with pytest.raises(ReefLabClientError) as err:
        await off_loop(catalog.search, page=0, connection=connection)
    assert err.value.status == 400


async def test_a_wrong_token_is_refused(server_url):
    bad = Connection(server_url, "not-the-token")
    with pytest.raises(ReefLabClientError) as err:
        await off_loop(catalog.search, connection=bad)
    assert err.value.status in (401, 403)


async def test_marketplace_browser_searches_filters_and_shows_details(connection):
    browser = await off_loop(MarketplaceBrowser, connection=connection)
    titles = [card.children[0].value for card in browser.results.children]
    assert any("YOLO object detector" in t for t in titles)
    assert "found" in browser.status.value

    libraries = dict((value, label) for label, value in browser.filters["libraries"].options)
    assert "PyTorch" in libraries and libraries["PyTorch"].startswith("PyTorch (")

    await off_loop(setattr, browser.search_box, "value", "classifier")
    titles = {card.children[0].value: card for card in browser.results.children}
    assert len(titles) == 2 and any("Fish classifier" in t for t in titles)
    image_classifier = next(card for title, card in titles.items() if "Image classifier" in title)

    await off_loop(image_classifier.children[1].click)
    assert "<h3>Image classifier</h3>" in browser.detail.value and "top_k" in browser.detail.value


def test_descriptions_are_rendered_without_raw_html():
    rendered = markdown_html("**bold** <script>alert(1)</script>")
    assert "<strong>bold</strong>" in rendered and "<script>" not in rendered
