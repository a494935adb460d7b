"""The example notebooks and pipelines in your files."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import ReefLabHandler


class ExamplesHandler(ReefLabHandler):
    """GET: where the examples are in your files. POST: refresh them (new and untouched files replaced by the
    latest, deleted ones back, your edits kept): what was added, updated, kept."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        examples = self.services.examples
        self.write_json({"folder": examples.folder, "files": examples.files()})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.write_json(await self.run_blocking(self.services.examples.sync, True))
