"""Requests of the annotation API: make a project, pre-annotate it with a module, export it; read a dataset."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["detection", "classification"]


class ProjectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=3, max_length=50, description="The project's name in Label Studio")
    folder: str = Field(min_length=1, description="Folder of images in your workspace, e.g. 'surveys/reef-2026'")
    kind: Kind = Field("detection", description="'detection' (boxes) or 'classification' (one label an image)")
    labels: list[str] = Field(default_factory=list, description="The labels; empty: the module's classes")
    module: str | None = Field(None, description="A marketplace module whose classes are the labels")


class PreannotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    module: str = Field(min_length=1, description="A marketplace detector (detection) or classifier")
    conf: float | None = Field(None, ge=0, le=1, description="Detectors: confidence threshold (default: the module's)")
    restart: bool = Field(
        False, description="Redo every image; by default a run the server's restart interrupted continues where it was"
    )


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder: str = Field(min_length=1, description="New folder of your workspace for the dataset")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of the labelled images held out for validation")
    seed: int = Field(0, description="Seed of the train/val split")


class DatasetRequest(BaseModel):
    """Another tool's detection dataset in your workspace, read as training data (formats.py)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, description="Folder of your workspace holding the dataset, e.g. 'downloads/coco'")
    format: Literal["auto", "coco", "voc", "cvat", "yolo"] = Field(
        "auto", description="COCO, Pascal VOC, CVAT for images 1.1 or YOLO; 'auto': told apart by its files"
    )
    folder: str = Field(min_length=1, description="New folder of your workspace for the Ultralytics YOLO dataset")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of the images held out for validation")
    seed: int = Field(0, description="Seed of the train/val split")


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    module: str | None = Field(
        None, description="The module to continue training from; default: the one that pre-annotated the project"
    )
    epochs: int = Field(10, ge=1, le=1000, description="Training epochs")
    profile: str | None = Field(None, description="Hardware profile of the pipeline run; default: yours")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of the labelled images held out for evaluation")
    min_map50: float | None = Field(
        None, ge=0, le=1, description="Detection's quality gate: held-out mAP50 the new weights must reach"
    )
    min_top1: float | None = Field(
        None, ge=0, le=1, description="Classification's quality gate: held-out top-1 accuracy they must reach"
    )
