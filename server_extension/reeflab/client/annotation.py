"""Annotation from Python: label a folder of images in your own Label Studio, with a module's help.

from reeflab.client import annotation
project = annotation.create("Reef survey", "surveys/reef-2026", module="fish-detector")  # labels: the module's
annotation.create("Reef survey", "reeflab:surveys/reef-2026", ...)  # a folder of a storage connection, read there
project.preannotate("fish-detector")        # its boxes, with scores, for you to accept or correct (waits)
project.preannotate("fish-detector", wait=False); project.progress()  # {"state", "done", "total", ...}
project.refresh().info                      # {"total": 120, "preannotated": 120, "labelled": 14, ...}
project.export("datasets/reef-2026")        # an Ultralytics YOLO dataset: data.yaml, images/, labels/
run = project.train(epochs=10)              # the retraining pipeline on the labels, from the module's weights
annotation.convert("downloads/coco", "datasets/coco-yolo")  # another tool's COCO / VOC / CVAT / YOLO dataset as YOLO
"""

from __future__ import annotations

import time
from typing import Any

from .connection import Connection, ReefLabClientError, Resource, default_connection
from .pipelines import PipelineRun

# the first call of a session starts your Label Studio (~30 s); a pre-annotation runs the module over every image
SLOW = 3600


class Project(Resource):
    """One of your annotation projects; `info` has its labels and labelled / pre-annotated / total counts."""

    collection = ("annotation", "projects")
    listed_as = "projects"

    def __repr__(self) -> str:
        info = self.info
        return f"<Project {info['id']} '{info['title']}': {info['labelled']}/{info['total']} labelled>"

    @property
    def page_url(self) -> str:
        """Its labelling page in your Label Studio, through your server (open it in the browser where you are
        logged in to the hub: your server logs you in to Label Studio)."""
        return f"{self.connection.url}reeflab/annotation/ui/projects/{self.id}/data?labeling=1"

    def refresh(self) -> Project:
        self.info = self.connection.request("GET", *self.collection, str(self.id), timeout=SLOW)
        return self

    def delete(self) -> None:
        self.connection.request("DELETE", *self.collection, str(self.id), timeout=SLOW)

    def preannotate(
        self, module: str, conf: float | None = None, wait: bool = True, timeout: float = SLOW, restart: bool = False
    ) -> dict[str, Any]:
        """Run `module` over every image and store its answers as predictions, in the background; its progress
        document, at its end if `wait` ({"state": "completed", "predicted", "regions", "failed": [...]}; a
        pre-annotation that failed raises ReefLabClientError with the reason). After a run your server's restart
        interrupted, the same module continues with the images not predicted yet (`restart`: redo them all)."""
        body = {
            "module": module,
            **({"conf": conf} if conf is not None else {}),
            **({"restart": True} if restart else {}),
        }
        progress = self.connection.request(
            "POST", *self.collection, str(self.id), "preannotate", json=body, timeout=SLOW
        )
        deadline = time.monotonic() + timeout
        while wait and progress["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
            progress = self.progress()
        if wait and progress["state"] != "completed":
            raise ReefLabClientError(400, progress.get("error") or f"pre-annotation still {progress['state']}")
        return progress

    def progress(self) -> dict[str, Any]:
        """The latest pre-annotation's progress: state, done / total, predicted, regions, failed images."""
        return self.connection.request("GET", *self.collection, str(self.id), "preannotate", timeout=SLOW)

    def export(self, folder: str, val_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
        """The labelled images as a dataset in a new folder of your files (YOLO with a data.yaml for detection, image
        folders for classification); where it is and its counts."""
        body = {"folder": folder, "val_fraction": val_fraction, "seed": seed}
        return self.connection.request("POST", *self.collection, str(self.id), "export", json=body, timeout=SLOW)

    def train(
        self,
        module: str | None = None,
        epochs: int = 10,
        profile: str | None = None,
        val_fraction: float = 0.2,
        min_map50: float | None = None,
        min_top1: float | None = None,
    ) -> PipelineRun:
        """Export the labelled images to a new dataset and run the retraining pipeline on them, continuing from
        `module`'s current weights (default: the module that pre-annotated the project); the pipeline run
        (`run.wait()`; its `info["dataset"]` is the export). It registers a new version when the held-out mAP50
        (a classification project: top-1 accuracy) reaches `min_map50` (`min_top1`; default: the pipeline's 0.5),
        with the project, its new images and the metrics before and after in the version's lineage and metrics."""
        body = {"module": module, "epochs": epochs, "profile": profile, "val_fraction": val_fraction}
        body.update(min_map50=min_map50, min_top1=min_top1)
        body = {k: v for k, v in body.items() if v is not None}
        info = self.connection.request("POST", *self.collection, str(self.id), "train", json=body, timeout=SLOW)
        return PipelineRun(info, self.connection)


def create(
    title: str,
    folder: str,
    kind: str = "detection",
    labels: list[str] | None = None,
    module: str | None = None,
    connection: Connection | None = None,
) -> Project:
    """A project over a folder of images of your workspace, or of one of your storage connections (S3 or WebDAV)
    written '<connection>:<folder>' (the platform bucket's is 'reeflab'); labels given, or a module's classes."""
    connection = connection or default_connection()
    body = {"title": title, "folder": folder, "kind": kind, "labels": labels, "module": module}
    body = {k: v for k, v in body.items() if v is not None}
    return Project(connection.request("POST", *Project.collection, json=body, timeout=SLOW), connection)


def projects(connection: Connection | None = None) -> list[Project]:
    connection = connection or default_connection()
    listed = connection.request("GET", *Project.collection, timeout=SLOW)[Project.listed_as]
    return [Project(info, connection) for info in listed]


def get(project_id: int, connection: Connection | None = None) -> Project:
    connection = connection or default_connection()
    return Project(connection.request("GET", *Project.collection, str(project_id), timeout=SLOW), connection)


def convert(
    source: str,
    folder: str,
    format: str = "auto",
    val_fraction: float = 0.2,
    seed: int = 0,
    connection: Connection | None = None,
) -> dict[str, Any]:
    """A detection dataset another tool exported into a folder of your files (COCO, Pascal VOC, CVAT for images 1.1
    or YOLO: `format`, or "auto") written into the new `folder` as an Ultralytics YOLO dataset (data.yaml, train/val
    split as `export` makes); its format, classes and counts (images, boxes, background, dropped, missing)."""
    connection = connection or default_connection()
    body = {"source": source, "format": format, "folder": folder, "val_fraction": val_fraction, "seed": seed}
    return connection.request("POST", "annotation", "datasets", json=body, timeout=SLOW)
