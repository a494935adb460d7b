"""Training: your MLflow experiments and runs, and your models registered in the marketplace."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import urlparse

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import BadRequest
from ..training.registry import RegisterRequest
from .base import ReefLabHandler
from .proxy import AuthorizedProxyHandler


class TrainingBase(ReefLabHandler):
    auth_resource = "reeflab:training"


class TrackingInfoHandler(TrainingBase):
    """GET /reeflab/api/training: where runs are tracked, under which account (never its password)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(self.services.tracking.info(self.username))


class ExperimentsHandler(TrainingBase):
    """GET: your experiments. POST {"name"}: your experiment `<you>/<name>`, created if needed."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        found = await self.run_blocking(self.services.tracking.experiments, self.username)
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
        self.write_json(await self.run_blocking(self.services.tracking.experiment, self.username, name), status=201)


class RunsHandler(TrainingBase):
    """GET ?experiment=&max_results=: your runs, newest first, with params, metrics and a UI link."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        experiment, count = self.get_argument("experiment", None), self.int_argument("max_results", 100, 1, 1000)
        runs = await self.run_blocking(self.services.tracking.runs, self.username, experiment, count)
        self.write_json({"runs": runs})


class RunHandler(TrainingBase):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.write_json(await self.run_blocking(self.services.tracking.run, self.username, run_id))


class ModelsHandler(TrainingBase):
    """GET: your registered models. POST: register weights (an MLflow run or a .pt) as a new version."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"models": [m.public() for m in self.services.publish.registry.list()]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(RegisterRequest, "registration")
        model = await self.run_blocking(self.services.publish.register, self.username, request)
        # checked before others may deploy it: the check runs on, as one of the user's checks
        await self.services.checks.check_registered(
            self.username, self.groups, model.name, self.services.profiles.catalog()
        )
        self.write_json(model.public(), status=201)


class ModelHandler(TrainingBase):
    """GET: one registered model. DELETE: remove it (all versions) from the marketplace."""

    @web.authenticated
    @authorized
    async def get(self, model_name: str) -> None:
        self.write_json(self.services.publish.registry.get(model_name).public())

    @web.authenticated
    @authorized
    async def delete(self, model_name: str) -> None:
        await self.run_blocking(self.services.publish.delete, model_name)
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


class MlflowProxyHandler(AuthorizedProxyHandler):
    """/reeflab/mlflow/...: the MLflow UI and API, for the server's owner, as their MLflow account.

    The MLflow basic-auth login of this server (from the hub) replaces the user's token, so the browser never
    needs the MLflow password, and MLflow shows only the user's experiments. Jupyter cookies are not passed on.
    The UI comes without MLflow's assistant (see ASSISTANT_API).
    """

    auth_resource = "reeflab:training"
    what = "MLflow"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rewrite_response = (lean_ui,)

    async def proxy(self, host, port, proxied_path):
        if proxied_path.lstrip("/").startswith(ASSISTANT_API):
            raise web.HTTPError(404, "MLflow's assistant is off on ReefLab")
        return await super().proxy(host, port, proxied_path)

    async def open(self, path: str = "") -> None:
        raise web.HTTPError(400, "MLflow has no websockets")

    def target(self) -> tuple[str, int]:
        uri = urlparse(self.services.tracking.tracking_uri)
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
        host, port = self.target()
        headers["Host"] = f"{host}:{port}"  # MLflow's DNS-rebinding guard accepts its own address
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return headers
