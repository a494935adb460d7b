"""Federated learning: REST for a user's federations (Flower SuperLinks running a Flower App) and site tokens."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..training.federated_models import ServerRequest, TokenRequest
from .base import ReefLabHandler


class FederatedBase(ReefLabHandler):
    auth_resource = "reeflab:federated"


class ServersHandler(FederatedBase):
    """GET: your federated servers. POST: start one (strategy, rounds, min_clients...)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        servers = await self.run_blocking(self.services.federated.list, self.username)
        self.write_json({"servers": [s.public() for s in servers]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(ServerRequest, "federated server request")
        server = await self.run_blocking(self.services.federated.start, self.username, request)
        await self.run_blocking(self.services.federated.wait_listening, server)
        self.write_json(server.public(), status=201)


class ServerHandler(FederatedBase):
    """GET: one server with its history (rounds, contributors, aggregated metrics). DELETE: stop and remove."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json(await self.run_blocking(self.services.federated.describe, self.username, server_id))

    @web.authenticated
    @authorized
    async def delete(self, server_id: str) -> None:
        await self.run_blocking(self.services.federated.delete, self.username, server_id)
        self.set_status(204)
        self.finish()


class StopHandler(FederatedBase):
    @web.authenticated
    @authorized
    async def post(self, server_id: str) -> None:
        server = await self.run_blocking(self.services.federated.stop, self.username, server_id)
        self.write_json(server.public())


class ServerLogsHandler(FederatedBase):
    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json({"lines": self.services.federated.logs(self.username, server_id, self.tail_argument())})


class TokensHandler(FederatedBase):
    """GET: your tokens (ids, names, dates; never values). POST {name}: a new token, its value shown this once."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"tokens": self.services.federated.list_tokens(self.username)})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(TokenRequest, "token request")
        self.set_header("Cache-Control", "no-store")
        self.write_json(self.services.federated.create_token(self.username, request.name), status=201)


class TokenHandler(FederatedBase):
    """DELETE: revoke a token; servers refuse it from the next connection on."""

    @web.authenticated
    @authorized
    async def delete(self, token_id: str) -> None:
        self.services.federated.revoke_token(self.username, token_id)
        self.set_status(204)
        self.finish()
