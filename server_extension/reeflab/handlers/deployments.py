"""Deployments: REST lifecycle, logs, and the authenticated route to each DEEPaaS API."""

from __future__ import annotations

import asyncio
import json
import re

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import ensure_async, url_path_join
from jupyter_server_proxy.handlers import ProxyHandler, RewritableResponse
from tornado import web

from ..deployments.models import DeploymentRequest, RestartRequest
from ..errors import NotFound, ReefLabError
from .base import ReefLabHandler, parse_body


class DeploymentsBase(ReefLabHandler):
    auth_resource = "reeflab:deployments"

    @property
    def deployments(self):
        return self.services.deployments


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
        groups = self.services.identity.groups(self.current_user)
        profiles = self.services.profiles.catalog()
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
        request = parse_body(RestartRequest, self.request.body.strip(), "restart")
        self.write_json((await self.deployments.restart(self.username, deployment_id, request.hardware)).public())


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


# DEEPaaS 3 (FastAPI) URL forms -> DEEPaaS 2's: no trailing slash on the model routes, and /openapi.json.
# DEEPaaS 2's document is Swagger 2.0 (its own /swagger.json), not the OpenAPI 3 one DEEPaaS 3 serves.
_WITHOUT_SLASH = re.compile(r"^v2(/models(/[^/]+(/(predict|train))?)?)?$")
_DEEPAAS3_DOCUMENTS = {"openapi.json": "swagger.json"}


_TEXT_TYPES = ("text/", "application/json", "application/javascript")


def _requote(decoded: str, route: str, response: RewritableResponse) -> None:
    """Replace the decoded base path by the route's own spelling in a redirect and in pages, scripts and JSON."""
    location = response.headers.get("Location")
    if location and location.startswith(decoded):
        response.headers["Location"] = route + location[len(decoded) :]
    plain = not response.headers.get("Content-Encoding")  # a compressed body is passed on as it is
    if plain and response.headers.get("Content-Type", "").startswith(_TEXT_TYPES) and response.body:
        response.body = response.body.replace(decoded.encode(), route.encode())


def deepaas2_path(path: str) -> str:
    """The DEEPaaS 2 form of a path a DEEPaaS 3 client may use; DEEPaaS 2 paths are left as they are."""
    if path in _DEEPAAS3_DOCUMENTS:
        return _DEEPAAS3_DOCUMENTS[path]
    if _WITHOUT_SLASH.match(path):
        return path + "/"
    return path


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
        if not await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", self.auth_resource)
        ):
            raise web.HTTPError(403, "not allowed to call deployments")

    def _target(self, deployment_id: str) -> tuple[str, int]:
        service = self.settings["reeflab"].deployments
        try:
            owner = self.settings["reeflab"].identity.name(self.current_user)
            endpoint = service.endpoint(owner, deployment_id)
        except ReefLabError as err:
            raise web.HTTPError(err.status, err.message) from None
        self.unix_socket = endpoint.unix_socket  # jupyter-server-proxy connects there when set
        self.host_allowlist = [endpoint.host]
        self.proxy_base = f"reeflab/deployments/{deployment_id}"  # for rewriting redirects
        # DEEPaaS serving under the route's full path (--base-path) gets that full path, and its redirects
        # already name it; one serving at its root (older, Kubernetes) gets the path below the route
        self.deployment_base_path = endpoint.base_path
        self.absolute_url = bool(endpoint.base_path)
        # DEEPaaS names its decoded base path in its pages and redirects ('/user/a@b/...'); the browser must
        # get the path as this server routes it ('/user/a%40b/...')
        route = url_path_join(self.base_url, self.proxy_base)
        if endpoint.base_path and route != endpoint.base_path:
            decoded = endpoint.base_path

            def requote(response: RewritableResponse) -> None:  # jupyter-server-proxy reads its argument names
                _requote(decoded, route, response)

            self.rewrite_response = [requote]
        return endpoint.host, endpoint.port

    def _get_context_path(self, host, port):
        """Where the deployment serves: its own base path when it has one (jupyter-server-proxy puts the path
        forwarded below it when `absolute_url` is set)."""
        base = getattr(self, "deployment_base_path", "")
        return base or super()._get_context_path(host, port)

    def get_client_uri(self, protocol, host, port, proxied_path):
        """The URL at DEEPaaS, with DEEPaaS 3's URL forms mapped to DEEPaaS 2's."""
        # under a base path, "" gives the base path itself, where DEEPaaS lists its versions (no trailing slash)
        return super().get_client_uri(protocol, host, port, deepaas2_path(proxied_path.lstrip("/")))

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
