"""REST for serverless, in the user's server: OSCAR routes forwarded, module -> service, batches."""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..errors import BadRequest
from ..serverless.gateway import ServerlessGateway
from .base import ReefLabHandler


class _Gateway(ReefLabHandler):
    @property
    def gateway(self) -> ServerlessGateway:
        return self.services.serverless

    async def relay(
        self, method: str, path: str, body: bytes | None, content_type: str = "", disposition: str = ""
    ) -> None:
        """Call the engine and answer with its status and body (errors as {"message"}); `disposition`
        (Content-Disposition) carries the caller's name for an input file."""
        target = self.gateway.target(path)
        headers = {"Authorization": f"Bearer {self.gateway.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        if disposition:
            headers["Content-Disposition"] = disposition
        try:
            answer = await AsyncHTTPClient().fetch(
                target, method=method, body=body, headers=headers, request_timeout=600, raise_error=False
            )
        except (OSError, HTTPClientError) as error:
            self.write_json({"message": f"the serverless engine did not answer: {error}"}, status=502)
            return
        self.set_status(answer.code)
        if answer.code >= 400:  # the panel reads {"message"} from every ReefLab error
            self.finish({"message": answer.body.decode(errors="replace").strip() or answer.reason})
            return
        self.set_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
        self.finish(answer.body)

    def body_json(self):
        try:
            return self.get_json_body()
        except web.HTTPError:
            raise BadRequest("send a JSON object") from None


class OscarProxyHandler(_Gateway):
    """`/reeflab/api/serverless/oscar/<OSCAR path>`: the engine's own answer, status and body."""

    async def _forward(self, path: str) -> None:
        if self.request.query:
            path += "?" + self.request.query
        body = self.request.body if self.request.method in ("POST", "PUT", "PATCH") else None
        headers = self.request.headers
        await self.relay(
            self.request.method, path, body, headers.get("Content-Type", ""), headers.get("Content-Disposition", "")
        )

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def put(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def delete(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def patch(self, path: str) -> None:  # exposed services may take it
        await self._forward(path)


class ServicesFromModulesHandler(_Gateway):
    """POST `{module, name?, inputs?, outputs?}`: a marketplace module as a serverless service."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.body_json()
        if not isinstance(request, dict) or not request.get("module"):
            raise BadRequest("give 'module': the id of a marketplace module, e.g. fish-detector")
        entry = self.services.catalog.get(request["module"])
        definition = self.gateway.from_module(request, entry.metadata)
        await self.relay("POST", "system/services", json.dumps(definition).encode(), "application/json")


class BatchesHandler(_Gateway):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(self.gateway.batches())

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.write_json(await self.run_blocking(self.gateway.start_batch, self.body_json()), status=201)


class BatchHandler(_Gateway):
    @web.authenticated
    @authorized
    def get(self, batch_id: str) -> None:
        self.write_json(self.gateway.batch(batch_id))

    @web.authenticated
    @authorized
    def delete(self, batch_id: str) -> None:
        """Forget a batch that ended (failed or not); its results stay in storage. 409 while it runs."""
        self.gateway.remove_batch(batch_id)
        self.set_status(204)
        self.finish()
