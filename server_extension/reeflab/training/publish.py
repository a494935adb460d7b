"""Publish trained weights to the marketplace: from an MLflow run or a file, checked, then registered."""

from __future__ import annotations

import tempfile
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..catalog.service import CatalogService
from ..errors import BadRequest, Conflict, NotFound
from ..modules.contract import ENTRY_POINT_GROUP
from .registry import MLFLOW_WEIGHTS, ModelRegistry, RegisteredModel, RegisterRequest
from .tracking import TrackingService


class PublishService:
    """register(owner, request): the weights become a new version of a module in the user's catalogue."""

    def __init__(self, catalog: CatalogService, tracking: TrackingService, registry: ModelRegistry):
        self.catalog = catalog
        self.tracking = tracking
        self.registry = registry

    def register(self, owner: str, request: RegisterRequest) -> RegisteredModel:
        base = self.catalog.get(request.base_module)
        module = _ultralytics_module(base.entry_point) if base.valid and base.source != "registered" else None
        if module is None:
            raise BadRequest(
                f"'{base.id}' cannot serve new weights: register on an Ultralytics module "
                "(yolo-detector, image-classifier, fish-detector)."
            )
        try:
            taken = self.catalog.get(request.name)
        except NotFound:
            taken = None
        if taken is not None and taken.source != "registered":
            raise Conflict(f"'{request.name}' is already a marketplace module; choose another name.")
        with tempfile.TemporaryDirectory(prefix="reeflab-register-") as tmp:
            run = None
            if request.run_id:
                run = self.tracking.run(owner, request.run_id)
                if MLFLOW_WEIGHTS not in _artifact_files(self.tracking, owner, request.run_id):
                    raise BadRequest(
                        f"Run '{request.run_id}' has no {MLFLOW_WEIGHTS}: register a finished Ultralytics training run."
                    )
                weights = self.tracking.download(owner, request.run_id, MLFLOW_WEIGHTS, Path(tmp))
            else:
                weights = self.registry.source_file(request.weights)
            task = weights_task(weights)
            if task != module.task:
                raise BadRequest(f"These are {task} weights; '{base.id}' is a {module.task} module.")
            model = self.registry.register(owner, request, base, weights, task, run)
        self.catalog.reload()
        return model

    def delete(self, name: str) -> None:
        self.registry.delete(name)
        self.catalog.reload()


def _artifact_files(tracking: TrackingService, owner: str, run_id: str) -> list[str]:
    client = tracking.client()
    found = []
    for item in tracking._call(client.list_artifacts, run_id):
        if item.is_dir:
            found += [a.path for a in tracking._call(client.list_artifacts, run_id, item.path)]
        else:
            found.append(item.path)
    return found


def _ultralytics_module(entry_point: str | None) -> Any:
    from ..modules.ultra import UltralyticsModule

    for ep in entry_points(group=ENTRY_POINT_GROUP, name=entry_point or ""):
        obj = ep.load()
        return obj if isinstance(obj, UltralyticsModule) else None
    return None


def weights_task(path: Path) -> str:
    """The task of an Ultralytics checkpoint ('detect', 'classify' ...); 400 if it is not one."""
    from ..modules.ultra import ultralytics_offline

    ultralytics_offline()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch/ultralytics deprecations are not the user's problem
        from ultralytics import YOLO

        try:
            return YOLO(str(path)).task
        except Exception as err:  # any unreadable file: say so instead of failing later in a deployment
            raise BadRequest(f"'{path.name}' is not Ultralytics YOLO weights: {type(err).__name__}: {err}") from None
