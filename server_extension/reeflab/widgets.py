"""ipywidgets front-ends of the Python client, for notebooks: `MarketplaceBrowser()`."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import mistune

from .client import catalog
from .client.connection import Connection, ReefLabClientError

BADGE = "border:1px solid var(--jp-border-color2);border-radius:8px;padding:0 6px"
_markdown = mistune.create_markdown(escape=True, plugins=["table", "url"])


def markdown_html(text: str) -> str:
    """Module descriptions are markdown written by others: rendered with raw HTML escaped."""
    return _markdown(text or "")


def card_html(card: dict[str, Any]) -> str:
    badges = " ".join(f'<span style="{BADGE}">{html.escape(t)}</span>' for t in card["tasks"] + card["data-type"])
    warning = "" if card["valid"] else ' <b style="color:var(--jp-error-color1)">invalid metadata</b>'
    return (
        f"<b>{html.escape(card['title'])}</b> <code>{html.escape(card['id'])}</code>{warning}<br>"
        f"{html.escape(card['summary'])}<br>{badges}"
    )


def describe(needs: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in needs.items()) or "not stated"


class MarketplaceBrowser(widgets.VBox):
    """Search box, facet filters with counts, module cards and a detail view."""

    def __init__(self, connection: Connection | None = None, per_page: int = 10):
        self.connection = connection
        self.per_page = per_page
        self.search_box = widgets.Text(placeholder="Search modules, e.g. fish, plankton", continuous_update=False)
        self.filters = {
            facet: widgets.SelectMultiple(description=facet, rows=4, layout={"width": "auto"})
            for facet in catalog.FACETS
        }
        self.status = widgets.HTML()
        self.results = widgets.VBox()
        self.detail = widgets.HTML()
        self.search_box.observe(lambda _: self.refresh(), names="value")
        for selector in self.filters.values():
            selector.observe(lambda _: self.refresh(), names="value")
        super().__init__(
            [self.search_box, widgets.HBox(list(self.filters.values())), self.status, self.results, self.detail]
        )
        self._updating = False
        self.refresh()

    def selected(self) -> dict[str, list[str]]:
        return {facet.replace("-", "_"): list(s.value) for facet, s in self.filters.items() if s.value}

    def refresh(self) -> None:
        if self._updating:
            return
        try:
            data = catalog.search(
                self.search_box.value, per_page=self.per_page, connection=self.connection, **self.selected()
            )
        except ReefLabClientError as err:
            self.status.value = f'<span style="color:var(--jp-error-color1)">{html.escape(err.message)}</span>'
            return
        self._updating = True
        try:
            for facet, selector in self.filters.items():
                keep = selector.value
                selector.options = [(f"{f['value']} ({f['count']})", f["value"]) for f in data["facets"][facet]]
                selector.value = tuple(v for v in keep if v in {f["value"] for f in data["facets"][facet]})
        finally:
            self._updating = False
        shown = len(data["items"])
        self.status.value = f"{data['total']} module{'s' * (data['total'] != 1)} found" + (
            f", showing {shown}" if shown < data["total"] else ""
        )
        self.results.children = [self._card(item) for item in data["items"]]

    def _card(self, card: dict[str, Any]) -> widgets.Widget:
        button = widgets.Button(description="Details", tooltip=f"Show {card['title']}")
        button.on_click(lambda _: self.show(card["id"]))
        return widgets.HBox([widgets.HTML(card_html(card), layout={"flex": "1"}), button])

    def show(self, module_id: str) -> None:
        """Render a module's full description, needs and links below the results."""
        try:
            entry = catalog.get(module_id, connection=self.connection)
        except ReefLabClientError as err:
            self.detail.value = html.escape(err.message)
            return
        meta = entry["metadata"]
        needs = (meta.get("resources") or {}).get("inference") or {}
        links = "".join(
            f'<li><a href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(name)}</a></li>'
            for name, url in (meta.get("links") or {}).items()
            if isinstance(url, str) and url.startswith(("https://", "http://"))  # no javascript: links
        )
        problems = "".join(
            f"<li><code>{html.escape(p['field'])}</code>: {html.escape(p['message'])}</li>" for p in entry["problems"]
        )
        self.detail.value = (
            f"<h3>{html.escape(entry['title'])}</h3>{markdown_html(meta.get('description', ''))}"
            f"<p><b>Needs for inference:</b> {html.escape(describe(needs))}</p>"
            + (f"<ul>{links}</ul>" if links else "")
            + (f"<p><b>Metadata problems</b></p><ul>{problems}</ul>" if problems else "")
        )
