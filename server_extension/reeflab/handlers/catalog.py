"""Marketplace: search with facets, module detail, deployment form, refresh."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..catalog.index import MAX_PER_PAGE
from ..catalog.models import FACETS
from ..catalog.service import CatalogService
from ..errors import BadRequest
from .base import ReefLabHandler

SEARCH_PARAMETERS = ("q", "sort", "page", "per_page", *FACETS)


class CatalogHandler(ReefLabHandler):
    auth_resource = "reeflab:catalog"

    @property
    def catalog(self) -> CatalogService:
        return self.services.catalog


class ModulesHandler(CatalogHandler):
    """GET /reeflab/api/catalog/modules?q=&tasks=&libraries=&categories=&data-type=&tags=&sort=&page=&per_page=

    Each card carries its check badge ("check": passed, failed or unchecked)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        unknown = sorted(set(self.request.query_arguments) - set(SEARCH_PARAMETERS))
        if unknown:
            raise BadRequest(f"Unknown search parameter {', '.join(unknown)}; use {', '.join(SEARCH_PARAMETERS)}.")
        filters = {facet: self.get_arguments(facet) for facet in FACETS if self.get_arguments(facet)}
        result = self.catalog.search(
            self.get_argument("q", ""),
            filters,
            sort=self.get_argument("sort", "relevance"),
            page=self.int_argument("page", 1, 1),
            per_page=self.int_argument("per_page", 20, 1, MAX_PER_PAGE),
        )
        badges = await self.run_blocking(self.services.checks.badges, result.items, self.username)
        items = [{**entry.card(), "check": badge} for entry, badge in zip(result.items, badges, strict=True)]
        self.write_json({**result.model_dump(mode="json", exclude={"items"}), "items": items})


class ModuleHandler(CatalogHandler):
    """GET /reeflab/api/catalog/modules/<id>: the full metadata, and why it is invalid if it is."""

    @web.authenticated
    @authorized
    async def get(self, module_id: str) -> None:
        entry = self.catalog.get(module_id)
        badge = await self.run_blocking(self.services.checks.badge, entry, self.username)
        self.write_json({**entry.card(), **entry.model_dump(mode="json"), "check": badge})


class ModuleFormHandler(CatalogHandler):
    """GET /reeflab/api/catalog/modules/<id>/form: hardware choices for deploying it."""

    @web.authenticated
    @authorized
    async def get(self, module_id: str) -> None:
        self.write_json(self.catalog.deployment_form(module_id, self.services.profiles.catalog(), self.groups))


class RefreshHandler(CatalogHandler):
    """POST /reeflab/api/catalog/refresh: reload installed modules and re-fetch remote indexes."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.write_json(await self.run_blocking(self.catalog.refresh))
