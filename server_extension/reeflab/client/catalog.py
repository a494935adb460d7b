"""The marketplace from Python: `from reeflab.client import catalog; catalog.search("fish")`."""

from __future__ import annotations

from typing import Any

from .connection import Connection, default_connection

FACETS = ("tasks", "libraries", "categories", "data-type", "tags")


def search(
    query: str = "",
    *,
    sort: str = "relevance",
    page: int = 1,
    per_page: int = 20,
    connection: Connection | None = None,
    **filters: list[str] | str,
) -> dict[str, Any]:
    """Search modules; filters by facet, e.g. `tasks=["Classification"]`, `data_type="Image"`.

    Returns `{"total", "page", "per_page", "pages", "items": [cards], "facets": {facet: [{value, count}]}}`.
    """
    params: dict[str, Any] = {"q": query, "sort": sort, "page": page, "per_page": per_page}
    for name, values in filters.items():
        facet = name.replace("_", "-")
        params[facet] = [values] if isinstance(values, str) else list(values)
    return (connection or default_connection()).get("catalog", "modules", **params)


def get(module_id: str, connection: Connection | None = None) -> dict[str, Any]:
    """Everything known about a module: full ai4-metadata, source, validity and problems."""
    return (connection or default_connection()).get("catalog", "modules", module_id)


def form(module_id: str, connection: Connection | None = None) -> dict[str, Any]:
    """The hardware you may give this module, pre-filled from its needs, or why none fits."""
    return (connection or default_connection()).get("catalog", "modules", module_id, "form")


def refresh(connection: Connection | None = None) -> dict[str, Any]:
    """Reload installed modules and re-fetch remote catalogue indexes."""
    return (connection or default_connection()).post("catalog", "refresh")
