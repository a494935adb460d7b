"""Deployments: REST lifecycle, logs, and the authenticated route to each DEEPaaS API."""

from __future__ import annotations

import re
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import RewritableResponse
from tornado import httputil, web

from ..deployments.models import DeploymentRequest, RestartRequest
from ..deployments.service import DeploymentService
from ..errors import ReefLabError
from .proxy import AuthorizedProxyHandler
from .runs import RunHandler, RunLogHandler, RunsBase, RunsHandler


class DeploymentsBase(RunsBase):
    auth_resource = "reeflab:deployments"

    @property
    def runs(self) -> DeploymentService:
        return self.services.deployments

    def describe(self, record: Any) -> dict[str, Any]:
        """With its drift state ({enabled, alert}) for the badge on its row; null where monitoring is off."""
        return {**record.public(), "drift": self.services.monitoring.badge(record.owner, record.id)}


class DeploymentsHandler(DeploymentsBase, RunsHandler):
    """GET: your deployments. POST: deploy a module (or try it, with kind 'try')."""

    request_model, what, listed_as = DeploymentRequest, "deployment request", "deployments"


class DeploymentHandler(DeploymentsBase, RunHandler):
    """GET: one deployment. DELETE: stop it and remove it."""


class RestartHandler(DeploymentsBase):
    @web.authenticated
    @authorized
    async def post(self, deployment_id: str) -> None:
        request = self.parse_body(RestartRequest, "restart request")
        deployment = await self.runs.restart(self.username, deployment_id, request.hardware)
        self.write_json(self.describe(deployment))


class LogsHandler(DeploymentsBase, RunLogHandler):
    pass


# DEEPaaS 3 (FastAPI) URL forms -> DEEPaaS 2's: no trailing slash on the model routes, and /openapi.json.
# DEEPaaS 2's document is Swagger 2.0 (its own /swagger.json), not the OpenAPI 3 one DEEPaaS 3 serves.
_WITHOUT_SLASH = re.compile(r"^v2(/models(/[^/]+(/(predict|train))?)?)?$")
_DEEPAAS3_DOCUMENTS = {"openapi.json": "swagger.json"}


_TEXT_TYPES = ("text/", "application/json", "application/javascript")
_PREDICT = re.compile(r"^/?v2/models/[^/]+/predict/?$")  # the requests monitoring counts


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


class DeploymentProxyHandler(AuthorizedProxyHandler):
    """/reeflab/deployments/<id>/...: the deployment's DEEPaaS API, for its owner only.

    Maps the deployment id to its endpoint: a Unix socket only its owner's processes may open (local), or a
    Service only their server may reach (Kubernetes). The user's Jupyter credentials are not passed on to the
    module.
    """

    auth_resource = "reeflab:deployments"
    what = "deployments"

    def target(self) -> tuple[str, int]:
        deployment_id = self.path_kwargs["deployment_id"]
        try:
            owner = self.services.identity.name(self.current_user)
            self.services.deployments.get(owner, deployment_id)  # its owner's: from here its predicts are counted
            if self.request.method == "POST" and _PREDICT.match(self.path_kwargs.get("path", "")):
                self.monitored = (owner, deployment_id)
            endpoint = self.services.deployments.endpoint(owner, deployment_id)
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

    def on_finish(self) -> None:
        """Count a predict request of the owner's (answered, refused or failed) with its latency and files."""
        super().on_finish()
        monitored = getattr(self, "monitored", None)
        if monitored is None or not self.services.monitoring.enabled:
            return
        arguments: dict = {}
        files: dict[str, list[httputil.HTTPFile]] = {}
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            httputil.parse_body_arguments(content_type, self.request.body, arguments, files)
        uploads = [f.body for parts in files.values() for f in parts]
        try:
            self.services.monitoring.record(*monitored, self.get_status(), self.request.request_time(), uploads)
        except ReefLabError:
            pass  # deleted while it answered: nothing to count it in

    def proxy_request_headers(self):
        """The request's headers without the user's Jupyter token, cookies and XSRF token: module code gets none."""
        headers = super().proxy_request_headers()
        for name in ("Authorization", "Cookie", "X-Xsrftoken"):
            headers.pop(name, None)
        return headers
