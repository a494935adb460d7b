"""Annotation: projects in the user's own Label Studio, pre-annotation with a module, export to a dataset."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..annotation.models import ExportRequest, PreannotateRequest, ProjectRequest, TrainRequest
from ..annotation.service import AnnotationService
from .base import ReefLabHandler


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
