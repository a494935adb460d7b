"""Training: your MLflow experiments and runs, and your models registered in the marketplace."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import urlparse

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import ensure_async
from jupyter_server_proxy.handlers import ProxyHandler
from pydantic import ValidationError
from tornado import web

from ..errors import BadRequest
from ..training.registry import RegisterRequest
from .base import ReefLabHandler


def parse_register(body: bytes) -> RegisterRequest:
    try:
        return RegisterRequest.model_validate_json(body or b"{}")
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors(include_url=False)
        )
        raise BadRequest(f"Invalid registration: {problems}") from None


class TrainingBase(ReefLabHandler):
    auth_resource = "reeflab:training"

    @property
    def tracking(self):
        return self.services.tracking

    @property
    def publish(self):
        return self.services.publish


class TrackingInfoHandler(TrainingBase):
    """GET /reeflab/api/training: where runs are tracked, under which account (never its password)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(self.tracking.info(self.username))


class ExperimentsHandler(TrainingBase):
    """GET: your experiments. POST {"name"}: your experiment `<you>/<name>`, created if needed."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        found = await self.run_blocking(self.tracking.experiments, self.username)
        self.write_json({"experiments": [{"id": e.experiment_id, "name": e.name} for e in found]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            name = json.loads(self.request.body or b"{}").get("name")
        except (ValueError, AttributeError):
            name = None
        if not isinstance(name, str):
            raise BadRequest('Send {"name": "<experiment>"}.')
        self.write_json(await self.run_blocking(self.tracking.experiment, self.username, name), status=201)


class RunsHandler(TrainingBase):
    """GET ?experiment=&max_results=: your runs, newest first, with params, metrics and a UI link."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        value = self.get_argument("max_results", "100")
        if not value.isdigit() or not 1 <= int(value) <= 1000:
            raise BadRequest("max_results must be a whole number between 1 and 1000")
        runs = await self.run_blocking(
            self.tracking.runs, self.username, self.get_argument("experiment", None), int(value)
        )
        self.write_json({"runs": runs})


class RunHandler(TrainingBase):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.write_json(await self.run_blocking(self.tracking.run, self.username, run_id))


class ModelsHandler(TrainingBase):
    """GET: your registered models. POST: register weights (an MLflow run or a .pt) as a new version."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"models": [m.public() for m in self.publish.registry.list()]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = parse_register(self.request.body)
        model = await self.run_blocking(self.publish.register, self.username, request)
        self.write_json(model.public(), status=201)


class ModelHandler(TrainingBase):
    """GET: one registered model. DELETE: remove it (all versions) from the marketplace."""

    @web.authenticated
    @authorized
    async def get(self, model_name: str) -> None:
        self.write_json(self.publish.registry.get(model_name).public())

    @web.authenticated
    @authorized
    async def delete(self, model_name: str) -> None:
        await self.run_blocking(self.publish.delete, model_name)
        self.set_status(204)
        self.finish()


# MLflow's assistant: its API trusts any request from 127.0.0.1 (so every user, through this route) to configure
# and run coding agents on the platform's machine, and its UI opens a side panel for it whenever the page is
# served from localhost. Off here: the API answers 404, and the UI's assistant parts are hidden.
ASSISTANT_API = "ajax-api/3.0/mlflow/assistant"
# put at the top of MLflow's page: no assistant parts (MLflow marks them data-assistant-ui), its UI-telemetry
# notice already dismissed (MLflow runs with telemetry off), its assistant not opened on a first visit
LEAN_UI = (
    b"<style>[data-assistant-ui]{display:none!important}</style><script>try{["
    b"'mlflow.telemetry.info.alert.dismissed_v1','mlflow.assistant.fab.autoOpenedOnFirstLoad_v1'"
    b"].forEach(function(k){localStorage.setItem(k,'true')});localStorage.setItem('mlflow.assistant.panelOpen_v1',"
    b"'false')}catch(e){}</script>"
)


def lean_ui(response, path: str) -> None:
    """jupyter-server-proxy's rewrite_response: LEAN_UI into MLflow's HTML page."""
    if path.strip("/") in ("", "index.html") and "text/html" in response.headers.get("Content-Type", ""):
        response.body = response.body.replace(b"<head>", b"<head>" + LEAN_UI, 1)


class MlflowProxyHandler(ProxyHandler):
    """/reeflab/mlflow/...: the MLflow UI and API, for the server's owner, as their MLflow account.

    jupyter-server authenticates the request; the MLflow basic-auth login of this server (from
    the hub) replaces the user's token, so the browser never needs the MLflow password, and
    MLflow shows only the user's experiments. Jupyter cookies are not passed on. The UI comes
    without MLflow's assistant (see ASSISTANT_API).
    """

    auth_resource = "reeflab:training"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rewrite_response = (lean_ui,)

    async def proxy(self, host, port, proxied_path):
        if proxied_path.lstrip("/").startswith(ASSISTANT_API):
            raise web.HTTPError(404, "MLflow's assistant is off on ReefLab")
        return await super().proxy(host, port, proxied_path)

    async def prepare(self, *args, **kwargs):
        await super().prepare(*args, **kwargs)
        if self._finished:
            return
        if not await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", self.auth_resource)
        ):
            raise web.HTTPError(403, "not allowed to use MLflow")
        origin = self.request.headers.get("Origin")
        if self.request.method not in ("GET", "HEAD", "OPTIONS") and origin:
            # the proxy skips Jupyter's XSRF check (defers to the app): refuse cross-site writes here
            if urlparse(origin).netloc != self.request.host:
                raise web.HTTPError(403, "cross-origin requests to MLflow are refused")

    def _target(self) -> tuple[str, int]:
        uri = urlparse(self.settings["reeflab"].tracking.tracking_uri)
        if uri.scheme != "http" or uri.hostname not in ("127.0.0.1", "localhost") or not uri.port:
            raise web.HTTPError(404, "No local MLflow server: open MLFLOW_TRACKING_URI directly.")
        self.host_allowlist = [uri.hostname]
        return uri.hostname, uri.port

    def proxy_request_headers(self):
        headers = super().proxy_request_headers()
        for name in ("Cookie", "Origin", "Referer", "X-Xsrftoken"):
            headers.pop(name, None)
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
        host, port = self._target()
        headers["Host"] = f"{host}:{port}"  # MLflow's DNS-rebinding guard accepts its own address
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return headers

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": getattr(exc, "log_message", None) or self._reason}))

    @web.authenticated
    async def get(self, path: str = "") -> None:
        return await super().get(path)

    async def http_get(self, path: str = "") -> None:
        return await self.proxy(*self._target(), path)

    async def open(self, path: str = "") -> None:
        raise web.HTTPError(400, "MLflow has no websockets")

    @web.authenticated
    async def post(self, path: str = ""):
        return await self.proxy(*self._target(), path)

    @web.authenticated
    async def put(self, path: str = ""):
        return await self.proxy(*self._target(), path)

    @web.authenticated
    async def delete(self, path: str = ""):
        return await self.proxy(*self._target(), path)

    @web.authenticated
    async def patch(self, path: str = ""):
        return await self.proxy(*self._target(), path)

    @web.authenticated
    async def head(self, path: str = ""):
        return await self.proxy(*self._target(), path)

    @web.authenticated
    async def options(self, path: str = ""):
        return await self.proxy(*self._target(), path)
