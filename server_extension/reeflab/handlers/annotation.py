"""Annotation: projects in the user's own Label Studio, pre-annotation with a module, export to a dataset."""

from __future__ import annotations

import json
from urllib.parse import unquote, urlparse

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from ..annotation.labelstudio import PROXY_ORIGIN
from ..annotation.models import DatasetRequest, ExportRequest, PreannotateRequest, ProjectRequest, TrainRequest
from ..annotation.service import AnnotationService
from .base import ReefLabHandler
from .proxy import AuthorizedProxyHandler

UI = "reeflab/annotation/ui"  # where the user's server serves their Label Studio's pages
SAFE = ("GET", "HEAD", "OPTIONS")
REFUSED = "Label Studio refused the session this server logged in with: see label-studio.log in its data folder"


class AnnotationBase(ReefLabHandler):
    auth_resource = "reeflab:annotation"

    @property
    def annotation(self) -> AnnotationService:
        return self.services.annotation


class ProjectsHandler(AnnotationBase):
    """GET: your projects with labelled / pre-annotated / total counts. POST: a project over a folder of your
    workspace, or of one of your S3 storage connections ('<connection>:<folder>')."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"projects": await self.annotation.list()})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(ProjectRequest, "annotation project")
        self.write_json(await self.annotation.create(request, self.username), status=201)


class ProjectHandler(AnnotationBase):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        self.write_json(await self.annotation.get(int(project_id)))

    @web.authenticated
    @authorized
    async def delete(self, project_id: str) -> None:
        await self.annotation.delete(int(project_id))
        self.set_status(204)
        self.finish()


class PreannotateHandler(AnnotationBase):
    """POST {module, conf?}: the module's boxes or labels on every image, stored as predictions with their scores,
    in the background: 202 with the progress document. GET: that document (state running / completed / failed /
    cancelled, done / total, predicted, regions, failed images, error)."""

    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        await self.annotation.get(int(project_id))  # 404 for a project that is not yours
        self.write_json(self.annotation.progress(int(project_id)))

    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        request = self.parse_body(PreannotateRequest, "pre-annotation")
        self.write_json(await self.annotation.preannotate(int(project_id), request, self.username), status=202)


class ExportHandler(AnnotationBase):
    """POST {folder}: the labelled images as a dataset in your files: Ultralytics YOLO (data.yaml, train/val) for
    detection, image folders (train/<label>, val/<label>) for classification."""

    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        request = self.parse_body(ExportRequest, "export")
        self.write_json(await self.annotation.export(int(project_id), request, self.username), status=201)


class DatasetsHandler(AnnotationBase):
    """POST {source, format?, folder, val_fraction?, seed?}: a detection dataset another tool exported (COCO, Pascal
    VOC, CVAT for images 1.1, YOLO) in a folder of your files, written into a new folder as an Ultralytics YOLO
    dataset (data.yaml, train/val): 201 with its format, classes and counts (images, boxes, dropped, missing)."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(DatasetRequest, "dataset conversion")
        self.write_json(await self.annotation.dataset(request), status=201)


class TrainHandler(AnnotationBase):
    """POST {module?, epochs?, profile?}: export the labelled images (YOLO) into a new dataset folder and start the
    retraining pipeline on them from the module's current weights; the pipeline run (201), with the project and
    the number of labelled images in its title and parameters."""

    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        request = self.parse_body(TrainRequest, "training request")
        self.services.profiles.catalog().choose(request.profile, self.groups)  # a wrong profile: before exporting
        exported, pipeline = await self.annotation.training(int(project_id), request, self.username)
        run = await self.services.pipelines.submit(
            self.username, self.groups, pipeline, self.services.profiles.catalog()
        )
        self.write_json({**run.public(), "dataset": exported}, status=201)


class LabelStudioProxyHandler(AuthorizedProxyHandler):
    """/reeflab/annotation/ui/...: the user's own Label Studio (its pages, static files, images and API), for the
    server's owner only, logged in as them by this server.

    Label Studio runs with its links under PROXY_ORIGIN + this route (labelstudio.py); here the browser's origin
    replaces PROXY_ORIGIN in pages, API answers and redirects, and what it still puts at the site root (a task's
    workspace image, /data/local-files/; its style sheet's fonts) gets this route's prefix. The browser's
    cookies and tokens are not passed on: this server adds the session it logged in with, and Django's CSRF
    token for writes (cross-site writes are refused before, as on every proxied route). Label Studio's cookies
    do not reach the browser.
    """

    auth_resource = "reeflab:annotation"
    what = "Label Studio"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.proxy_base = UI  # Label Studio's root-relative redirects land under this route
        self.rewrite_response = (lambda response: self._rewrite(response),)  # (it asks for arguments by name)

    async def prepare(self, *args, **kwargs):
        await super().prepare(*args, **kwargs)
        if self._finished:
            return
        if self.path_kwargs.get("path", "").startswith("user/logout"):  # Label Studio's Log out: the server's
            self.redirect(url_path_join(self.base_url, "logout"))  # (on a hub, the hub's): its session stays
            return
        server = self.settings["reeflab"].annotation.server
        self._fresh = not server.logged_in  # a login made for this request that Label Studio refuses: no retry
        self._studio, self._cookies = await server.page_session()  # starts it on the first visit (~30 s)

    async def open(self, path: str = "") -> None:
        raise web.HTTPError(400, "Label Studio has no websockets")

    def target(self) -> tuple[str, int]:
        host, port = self._studio.address
        self.host_allowlist = [host]
        return host, port

    def proxy_request_headers(self):
        headers = super().proxy_request_headers()
        for name in ("Cookie", "Authorization", "Origin", "Referer", "X-Xsrftoken", "X-Csrftoken"):
            headers.pop(name, None)
        host, port = self.target()
        headers["Host"] = f"{host}:{port}"
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self._cookies.items())
        if self.request.method not in SAFE:
            headers["X-CSRFToken"] = self._cookies["csrftoken"]
        return headers

    def _origin(self) -> str:
        """The browser's origin (the hub's proxy says which scheme it was asked with)."""
        scheme = self.request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() or self.request.protocol
        return f"{scheme}://{self.request.host}"

    def _rewrite(self, response) -> None:
        prefix = url_path_join(self.base_url, UI)  # as the browser writes it (a name's %-escapes kept)
        made = unquote(prefix)  # as Label Studio writes it
        origin = self._origin()
        response.headers.pop("Set-Cookie", None)
        if response.code == 401:  # an API call after the session ended: the next request logs in again
            self.settings["reeflab"].annotation.server.forget_session()
        location = response.headers.get("Location")
        if location:
            url = urlparse(location)
            if url.path.startswith("/user/login"):  # the session ended: log in again, and ask for the same page
                self.settings["reeflab"].annotation.server.forget_session()
                if self._fresh:
                    response.code, response.body = 502, json.dumps({"message": REFUSED}).encode()
                    response.headers["Content-Type"] = "application/json"
                    del response.headers["Location"]
                    return
                location = origin + self.request.uri
            elif location.startswith(PROXY_ORIGIN):
                location = origin + _escaped(location[len(PROXY_ORIGIN) :], made, prefix)
            elif location.startswith(made + "/") or location == made:
                location = origin + _escaped(location, made, prefix)
            response.headers["Location"] = location  # a root-relative other path: jupyter-server-proxy prefixes it
        kind = response.headers.get("Content-Type", "")
        if response.body and "text/css" in kind:  # its fonts, at the site root in its style sheet
            response.body = response.body.replace(b"url(/static/", f"url({prefix}/static/".encode())
        elif response.body and ("text/html" in kind or "application/json" in kind):
            body = response.body.replace((PROXY_ORIGIN + made).encode(), (origin + prefix).encode())
            body = body.replace(PROXY_ORIGIN.encode(), origin.encode())
            if "application/json" in kind:  # a workspace image's address, as ReefLab stores it in a task
                body = body.replace(b'"/data/local-files/', f'"{prefix}/data/local-files/'.encode())
            response.body = body


def _escaped(path: str, made: str, prefix: str) -> str:
    """A Label Studio path with its prefix as the browser writes it."""
    return prefix + path[len(made) :] if path.startswith(made) else path
