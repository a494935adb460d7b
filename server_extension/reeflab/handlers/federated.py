"""Federated learning: REST for a user's Flower servers and the tokens their clients authenticate with."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from pydantic import BaseModel, ValidationError
from tornado import web

from ..errors import BadRequest
from ..training.federated_models import ServerRequest, TokenRequest
from .base import ReefLabHandler


def parse(model: type[BaseModel], body: bytes, what: str):
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors(include_url=False)
        )
        raise BadRequest(f"Invalid {what}: {problems}") from None


class FederatedBase(ReefLabHandler):
    auth_resource = "reeflab:federated"

    @property
    def federated(self):
        return self.services.federated


class ServersHandler(FederatedBase):
    """GET: your federated servers. POST: start one (strategy, rounds, min_clients...)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        servers = await self.run_blocking(self.federated.list, self.username)
        self.write_json({"servers": [s.public() for s in servers]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = parse(ServerRequest, self.request.body, "federated server request")
        server = await self.run_blocking(self.federated.start, self.username, request)
        await self.run_blocking(self.federated.wait_listening, server)
        self.write_json(server.public(), status=201)


class ServerHandler(FederatedBase):
    """GET: one server with its history (rounds, contributors, aggregated metrics). DELETE: stop and remove."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json(await self.run_blocking(self.federated.describe, self.username, server_id))

    @web.authenticated
    @authorized
    async def delete(self, server_id: str) -> None:
        await self.run_blocking(self.federated.delete, self.username, server_id)
        self.set_status(204)
        self.finish()


class StopHandler(FederatedBase):
    @web.authenticated
    @authorized
    async def post(self, server_id: str) -> None:
        server = await self.run_blocking(self.federated.stop, self.username, server_id)
        self.write_json(server.public())


class ServerLogsHandler(FederatedBase):
    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        tail = self.get_argument("tail", "200")
        lines = self.federated.logs(self.username, server_id, int(tail) if tail.isdigit() else 0)
        self.write_json({"lines": lines})


class TokensHandler(FederatedBase):
    """GET: your tokens (ids, names, dates; never values). POST {name}: a new token, its value shown this once."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"tokens": self.federated.list_tokens(self.username)})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = parse(TokenRequest, self.request.body, "token request")
        self.set_header("Cache-Control", "no-store")
        self.write_json(self.federated.create_token(self.username, request.name), status=201)


class TokenHandler(FederatedBase):
    """DELETE: revoke a token; servers refuse it from the next connection on."""

    @web.authenticated
    @authorized
    async def delete(self, token_id: str) -> None:
        self.federated.revoke_token(self.username, token_id)
        self.set_status(204)
        self.finish()
