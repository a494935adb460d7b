"""Deployments: REST lifecycle, logs, and the authenticated route to each DEEPaaS API."""

from __future__ import annotations

import asyncio
import json

from jupyter_server.auth.decorator import authorized
from jupyter_server_proxy.handlers import ProxyHandler
from tornado import web

from ..deployments.models import DeploymentRequest
from ..errors import NotFound, ReefLabError
from .base import ReefLabHandler, parse_body


class DeploymentsBase(ReefLabHandler):
    auth_resource = "reeflab:deployments"

    @property
    def deployments(self):
        return self.reeflab["deployments"]


class DeploymentsHandler(DeploymentsBase):
    """GET: your deployments. POST: deploy a module (or try it, with kind 'try')."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"deployments": [d.public() for d in self.deployments.list(self.username)]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = parse_body(DeploymentRequest, self.request.body, "deployment")
        groups = self.reeflab["identity"].groups(self.current_user)
        profiles = self.reeflab["profiles"].catalog()
        deployment = await self.deployments.create(self.username, groups, request, profiles)
        self.write_json(deployment.public(), status=201)


class DeploymentHandler(DeploymentsBase):
    """GET: one deployment. DELETE: stop it and remove it."""

    @web.authenticated
    @authorized
    async def get(self, deployment_id: str) -> None:
        self.write_json(self.deployments.get(self.username, deployment_id).public())

    @web.authenticated
    @authorized
    async def delete(self, deployment_id: str) -> None:
        await self.deployments.delete(self.username, deployment_id)
        self.set_status(204)
        self.finish()


class RestartHandler(DeploymentsBase):
    @web.authenticated
    @authorized
    async def post(self, deployment_id: str) -> None:
        self.write_json((await self.deployments.restart(self.username, deployment_id)).public())


class LogsHandler(DeploymentsBase):
    """GET ?tail=N: the last lines. GET ?follow=1: stream new lines until the deployment ends."""

    @web.authenticated
    @authorized
    async def get(self, deployment_id: str) -> None:
        tail = int(self.get_argument("tail", "200")) if self.get_argument("tail", "200").isdigit() else 0
        lines = await self.deployments.logs(self.username, deployment_id, tail)
        if self.get_argument("follow", "0") not in ("1", "true"):
            self.write_json({"lines": lines})
            return
        await self.follow(deployment_id, lines)

    async def follow(self, deployment_id: str, lines: list[str]) -> None:
        """Stream the log as it grows; ends when the deployment stops, is deleted, or the client goes."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        seen: list[str] = []
        while not self.request.connection.stream.closed():
            new = _new_lines(seen, lines)
            if new:
                self.write("".join(line + "\n" for line in new))
                await self.flush()
            seen = lines
            try:
                if not self.deployments.get(self.username, deployment_id).active:
                    break
                await asyncio.sleep(0.5)
                lines = await self.deployments.logs(self.username, deployment_id, 1000)
            except NotFound:  # deleted while followed
                break
        self.finish()


def _new_lines(before: list[str], after: list[str]) -> list[str]:
    """Lines of `after` that come after the end of `before` (both are tails of one growing log)."""
    if not before:
        return after
    for start in range(len(after), -1, -1):
        overlap = after[:start]
        if overlap and before[-len(overlap) :] == overlap:
            return after[start:]
    return after


class DeploymentProxyHandler(ProxyHandler):
    """/reeflab/deployments/<id>/...: the deployment's DEEPaaS API, for its owner only.

    jupyter-server-proxy authenticates the request (and handles websockets and streaming);
    this adds the authorization check and maps the deployment id to its endpoint: a Unix socket
    only its owner's processes may open (local), or a Service only their server may reach
    (Kubernetes). The user's Jupyter credentials are not passed on to the module.
    """

    auth_resource = "reeflab:deployments"

    async def prepare(self, *args, **kwargs):
        await super().prepare(*args, **kwargs)
        if self._finished:
            return
        if not self.authorizer.is_authorized(self, self.current_user, "execute", self.auth_resource):
            raise web.HTTPError(403, "not allowed to call deployments")

    def _target(self, deployment_id: str) -> tuple[str, int]:
        service = self.settings["reeflab"]["deployments"]
        try:
            owner = self.settings["reeflab"]["identity"].name(self.current_user)
            endpoint = service.endpoint(owner, deployment_id)
        except ReefLabError as err:
            raise web.HTTPError(err.status, err.message) from None
        self.unix_socket = endpoint.unix_socket  # jupyter-server-proxy connects there when set
        self.host_allowlist = [endpoint.host]
        self.proxy_base = f"reeflab/deployments/{deployment_id}"  # for rewriting redirects
        return endpoint.host, endpoint.port

    def proxy_request_headers(self):
        """The request's headers without the user's Jupyter token, cookies and XSRF token: module code gets none."""
        headers = super().proxy_request_headers()
        for name in ("Authorization", "Cookie", "X-Xsrftoken"):
            headers.pop(name, None)
        return headers

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": getattr(exc, "log_message", None) or self._reason}))

    # Authentication happens in prepare() for every method; the decorators make that visible
    # to jupyter-server's check of extension handlers (and to readers).
    @web.authenticated
    async def get(self, deployment_id: str, path: str = "") -> None:
        return await super().get(deployment_id, path)

    async def http_get(self, deployment_id: str, path: str = "") -> None:
        return await self.proxy(*self._target(deployment_id), path)

    async def open(self, deployment_id: str, path: str = "") -> None:
        host, port = self._target(deployment_id)
        return await self.proxy_open(host, port, path)

    @web.authenticated
    async def post(self, deployment_id: str, path: str = ""):
        return await self.proxy(*self._target(deployment_id), path)

    @web.authenticated
    async def put(self, deployment_id: str, path: str = ""):
        return await self.proxy(*self._target(deployment_id), path)

    @web.authenticated
    async def delete(self, deployment_id: str, path: str = ""):
        return await self.proxy(*self._target(deployment_id), path)

    @web.authenticated
    async def patch(self, deployment_id: str, path: str = ""):
        return await self.proxy(*self._target(deployment_id), path)

    @web.authenticated
    async def head(self, deployment_id: str, path: str = ""):
        return await self.proxy(*self._target(deployment_id), path)

    @web.authenticated
    async def options(self, deployment_id: str, path: str = ""):
        return await self.proxy(*self._target(deployment_id), path)
