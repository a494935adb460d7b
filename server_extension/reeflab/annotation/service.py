"""Annotation projects over the user's images, in their own Label Studio (labelstudio.py).

A project is a Label Studio project whose tasks are the images of a workspace folder, read in place (Label
Studio's local-files storage; nothing is copied). A marketplace module fills in the labels and pre-annotates:
its predict runs over the images in its own process (predict.py, as serverless workers run modules) and
its boxes or labels become Label Studio predictions with their scores, which the annotator accepts or
corrects. Export: Label Studio's own YOLO export gives the labels; the images are copied beside them in a
train/val split with a data.yaml, as Ultralytics trains from.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import yaml
from jupyter_core.paths import jupyter_data_dir
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ..catalog.service import CatalogService
from ..errors import BadRequest, Conflict, NotFound
from ..pipelines.models import PipelineRequest
from ..training.registry import ModelRegistry
from .labelstudio import LabelStudio, LabelStudioAPI
from .models import ExportRequest, PreannotateRequest, ProjectRequest, TrainRequest

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TASKS = {"detection": "detect", "classification": "classify"}
MAX_IMAGES = 10000
RETRAIN_PIPELINE = "notebooks/retrain.pipeline"  # the shipped retraining pipeline, in the user's examples


def label_config(kind: str, labels: list[str]) -> str:
    """Label Studio's labelling interface: boxes or one choice an image, with these labels."""
    if kind == "detection":
        items = "".join(f"<Label value={quoteattr(label)}/>" for label in labels)
        control = f'<RectangleLabels name="label" toName="image">{items}</RectangleLabels>'
    else:
        items = "".join(f"<Choice value={quoteattr(label)}/>" for label in labels)
        control = f'<Choices name="label" toName="image" choice="single" showInline="true">{items}</Choices>'
    return f'<View><Image name="image" value="$image"/>{control}</View>'


class AnnotationService(LoggingConfigurable):
    """The user's annotation projects; their Label Studio starts with the first call that needs it."""

    root_dir = Unicode(config=True, help="The user's Label Studio (database, media, credentials 0600)")

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / "annotation")

    label_studio = Unicode(
        "", config=True, help="The label-studio program (default: $REEFLAB_LABEL_STUDIO, else .venv-labelstudio)"
    )
    predict_timeout = Float(1800, config=True, help="Seconds a pre-annotation may run")

    def __init__(self, catalog: CatalogService, workspace: str, **kwargs):
        super().__init__(**kwargs)
        self.catalog = catalog
        self.workspace = Path(workspace).resolve()
        self.server = LabelStudio(Path(self.root_dir), self.workspace, self.label_studio or None)

    async def _api(self) -> LabelStudioAPI:
        return await self.server.ensure()

    async def _call(self, method: str, path: str, **kwargs) -> Any:
        api = await self._api()
        return await asyncio.get_running_loop().run_in_executor(None, partial(api.call, method, path, **kwargs))

    async def stop(self) -> None:
        await self.server.stop()

    # -- folders --------------------------------------------------------------------------

    def _folder(self, folder: str, *, must_exist: bool = True) -> Path:
        path = (self.workspace / folder.strip().lstrip("/")).resolve()
        if path != self.workspace and self.workspace not in path.parents:
            raise BadRequest(f"'{folder}' is outside your workspace: give a folder of your files, e.g. 'data/images'")
        if must_exist and not path.is_dir():
            raise BadRequest(f"'{folder}' is not a folder of your workspace: create it, or check the name")
        return path

    def images(self, folder: str) -> list[Path]:
        """The images of a workspace folder (its top level, hidden files left out), each checked to be one."""
        from PIL import Image, UnidentifiedImageError

        path = self._folder(folder)
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        others = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            shown = ", ".join(f"'{name}'" for name in others[:5]) + (" ..." if len(others) > 5 else "")
            raise BadRequest(
                f"'{folder}' holds files that are not images ({shown}): a project takes a folder of JPEG, PNG, BMP, "
                "TIFF or WebP images only; move the others out"
            )
        if not files:
            raise BadRequest(f"'{folder}' holds no images: put JPEG or PNG files in it first")
        if len(files) > MAX_IMAGES:
            raise BadRequest(f"'{folder}' holds {len(files)} images, more than {MAX_IMAGES}: split it into projects")
        for file in files:
            try:
                with Image.open(file) as image:
                    image.verify()
            except (UnidentifiedImageError, OSError, SyntaxError):
                raise BadRequest(f"'{file.name}' in '{folder}' is not a readable image: remove or replace it") from None
        return files

    # -- modules --------------------------------------------------------------------------

    def _module(self, module_id: str) -> Any:
        entry = self.catalog.get(module_id)
        if not entry.deployable:
            raise BadRequest(
                f"'{module_id}' is not installed here, so it cannot run: pick a built-in or installed module"
            )
        return entry

    def _predict(self, entry: Any, files: list[Path], options: dict[str, Any], kind: str) -> dict[str, Any]:
        """Run the module's predict over `files` in its own process (predict.py); its answer."""
        with tempfile.TemporaryDirectory(prefix="reeflab-annotate-") as scratch:
            spec, result = Path(scratch) / "spec.json", Path(scratch) / "result.json"
            spec.write_text(
                json.dumps(
                    {
                        "module": entry.entry_point,
                        "files": [[str(f), f.name] for f in files],
                        "options": options,
                        "expect": TASKS[kind],
                    }
                )
            )
            log = Path(self.root_dir) / "preannotate.log"
            log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(log, "ab") as output:
                try:
                    done = subprocess.run(  # fixed argv
                        [sys.executable, "-m", "reeflab.annotation.predict", str(spec), str(result)],
                        env={**os.environ, **entry.deploy_env},
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        timeout=self.predict_timeout,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    raise BadRequest(
                        f"'{entry.id}' took more than {self.predict_timeout:.0f} s over {len(files)} images: "
                        "split the folder into smaller projects"
                    ) from None
            if not result.exists():
                raise BadRequest(f"'{entry.id}' failed to run (status {done.returncode}): see {log}")
            answer = json.loads(result.read_text())
        if answer.get("error"):
            raise BadRequest(f"'{entry.id}' could not be loaded: {answer['error']}")
        self._check_kind(entry, kind, answer["task"])
        return answer

    @staticmethod
    def _check_kind(entry: Any, kind: str, task: str | None) -> None:
        if task is not None and task != TASKS[kind]:
            want = "detector" if kind == "detection" else "classifier"
            raise BadRequest(
                f"'{entry.id}' is not a {want} (it is a {task} module): a {kind} project needs a {want}, "
                f"e.g. {'fish-detector' if kind == 'detection' else 'fish-classifier'}"
            )

    # -- projects -------------------------------------------------------------------------

    async def create(self, request: ProjectRequest) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        files = await loop.run_in_executor(None, self.images, request.folder)
        labels = [label.strip() for label in request.labels if label.strip()]
        if request.module:
            entry = await loop.run_in_executor(None, self._module, request.module)
            answer = await loop.run_in_executor(None, self._predict, entry, [], {}, request.kind)
            labels = labels or answer["labels"]
        if not labels:
            raise BadRequest("give the labels, or a module whose classes are the labels")
        body = {
            "title": request.title,
            "label_config": label_config(request.kind, list(dict.fromkeys(labels))),
            "description": json.dumps(
                {"reeflab": {"folder": request.folder, "kind": request.kind, "module": request.module}}
            ),
        }
        project = await self._call("POST", "/api/projects", json=body)
        try:
            folder = self._folder(request.folder)
            await self._call(
                "POST",
                "/api/storages/localfiles",
                json={"project": project["id"], "path": str(folder), "use_blob_urls": True, "title": request.folder},
            )
            tasks = []
            for file in files:
                relative = file.relative_to(self.workspace).as_posix()
                tasks.append({"image": f"/data/local-files/?d={quote(relative)}", "file": relative})
            await self._call("POST", f"/api/projects/{project['id']}/import", json=tasks)
        except BaseException:
            await self._call("DELETE", f"/api/projects/{project['id']}")
            raise
        return await self.get(project["id"])

    async def _tasks(self, project_id: int) -> list[dict[str, Any]]:
        tasks, page = [], 1
        while True:
            try:
                answer = await self._call(
                    "GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": 500}
                )
            except NotFound:  # past the last page
                break
            tasks += answer.get("tasks", [])
            if len(tasks) >= answer.get("total", 0) or not answer.get("tasks"):
                break
            page += 1
        return tasks

    @staticmethod
    def _about(project: dict[str, Any]) -> dict[str, Any]:
        """What ReefLab keeps in a project's description: its folder, kind and module."""
        try:
            return json.loads(project.get("description") or "{}").get("reeflab") or {}
        except (ValueError, AttributeError):
            return {}

    def _describe(self, project: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
        about = self._about(project)
        parsed = (project.get("parsed_label_config") or {}).get("label") or {}
        return {
            "id": project["id"],
            "title": project["title"],
            "kind": about.get("kind", "detection" if parsed.get("type") == "RectangleLabels" else "classification"),
            "folder": about.get("folder"),
            "module": about.get("module"),
            "labels": parsed.get("labels", []),
            "total": len(tasks),
            "labelled": sum(1 for t in tasks if t.get("total_annotations", 0) > 0),
            "preannotated": sum(1 for t in tasks if t.get("total_predictions", 0) > 0),
            "created": project.get("created_at"),
        }

    async def list(self) -> list[dict[str, Any]]:
        if not self.server.exists:  # never started: no projects, and no need to start it to say so
            return []
        answer = await self._call("GET", "/api/projects", params={"page_size": 1000})
        projects = answer.get("results", answer) if isinstance(answer, dict) else answer
        return [self._describe(p, await self._tasks(p["id"])) for p in projects]

    async def _project(self, project_id: int) -> dict[str, Any]:
        missing = f"You have no annotation project {project_id}: list yours at /reeflab/api/annotation/projects"
        if not self.server.exists:
            raise NotFound(missing)
        try:
            return await self._call("GET", f"/api/projects/{project_id}")
        except NotFound:
            raise NotFound(missing) from None

    async def get(self, project_id: int) -> dict[str, Any]:
        project = await self._project(project_id)
        return self._describe(project, await self._tasks(project_id))

    async def delete(self, project_id: int) -> None:
        await self._project(project_id)
        await self._call("DELETE", f"/api/projects/{project_id}")

    # -- pre-annotation -------------------------------------------------------------------

    async def preannotate(self, project_id: int, request: PreannotateRequest) -> dict[str, Any]:
        stored = await self._project(project_id)
        project = self._describe(stored, [])
        loop = asyncio.get_running_loop()
        entry = await loop.run_in_executor(None, self._module, request.module)
        tasks = await self._tasks(project_id)
        files = [self.workspace / t["data"]["file"] for t in tasks if t.get("data", {}).get("file")]
        options = {"conf": request.conf} if request.conf is not None and project["kind"] == "detection" else {}
        answer = await loop.run_in_executor(None, self._predict, entry, files, options, project["kind"])
        by_file = {t["data"]["file"]: t for t in tasks if t.get("data", {}).get("file")}
        predictions, failed = [], []
        for file, result in zip(files, answer["results"], strict=True):
            task = by_file[file.relative_to(self.workspace).as_posix()]
            if not result["ok"]:
                failed.append({"file": result["file"], "error": result["error"]})
                continue
            prediction = to_prediction(project["kind"], project["labels"], result["answer"])
            if prediction is None:
                want = "detector" if project["kind"] == "detection" else "classifier"
                raise BadRequest(f"'{entry.id}' does not answer as a {want} does: pick a {want} for this project")
            predictions.append({"task": task["id"], "model_version": entry.id, **prediction})
        # a new pre-annotation replaces the earlier ones (annotations are kept), in one import
        every = {"selectedItems": {"all": True, "excluded": []}}
        await self._call(
            "POST", "/api/dm/actions", params={"id": "delete_tasks_predictions", "project": project_id}, json=every
        )
        if predictions:
            await self._call("POST", f"/api/projects/{project_id}/import/predictions", json=predictions)
        about = {**self._about(stored), "module": entry.id}  # the module "Train on this project" continues from
        await self._call("PATCH", f"/api/projects/{project_id}", json={"description": json.dumps({"reeflab": about})})
        stored, boxes = len(predictions), sum(len(p["result"]) for p in predictions)
        return {
            "project": project_id,
            "module": entry.id,
            "images": len(files),
            "predicted": stored,
            "regions": boxes,
            "failed": failed,
        }

    # -- export ---------------------------------------------------------------------------

    async def export(self, project_id: int, request: ExportRequest) -> dict[str, Any]:
        project = self._describe(await self._project(project_id), [])
        target = self._folder(request.folder, must_exist=False)
        if target.exists() and any(target.iterdir()):
            raise Conflict(f"'{request.folder}' already exists and is not empty: export into a new folder")
        labelled = [t for t in await self._tasks(project_id) if t.get("total_annotations", 0) > 0]
        if not labelled:
            raise BadRequest("no image of this project is labelled yet: label (or accept pre-annotations) first")
        loop = asyncio.get_running_loop()
        if project["kind"] == "classification":
            exported = await self._call("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON"})
            exported = json.loads(exported) if isinstance(exported, bytes) else exported  # sent as a download
            return await loop.run_in_executor(None, self._write_folders, exported, target, request)
        archive = await self._call("GET", f"/api/projects/{project_id}/export", params={"exportType": "YOLO"})
        return await loop.run_in_executor(None, self._write_yolo, archive, labelled, target, request)

    # -- training -------------------------------------------------------------------------

    async def training(self, project_id: int, request: TrainRequest) -> tuple[dict[str, Any], PipelineRequest]:
        """Export the project's labelled images into a new dataset folder and make the request that runs the
        retraining pipeline on it from the module's current weights; (the export, the pipeline request)."""
        stored = await self._project(project_id)
        project = self._describe(stored, [])
        if project["kind"] != "detection":
            raise BadRequest(
                "the retraining pipeline trains detectors: export this classification project (image folders) and "
                "train a classifier on it in a notebook"
            )
        if not (self.workspace / RETRAIN_PIPELINE).is_file():
            raise BadRequest(
                f"no {RETRAIN_PIPELINE} in your files: Refresh examples (ReefLab panel) brings the shipped ones back"
            )
        labelled = [t for t in await self._tasks(project_id) if t.get("total_annotations", 0) > 0]
        if not labelled:
            raise BadRequest("no image of this project is labelled yet: label (or accept pre-annotations) first")
        module_id = request.module or project["module"]
        if not module_id:
            raise BadRequest("give the module to train on this project, e.g. 'fish-detector'")
        loop = asyncio.get_running_loop()
        entry = await loop.run_in_executor(None, self._module, module_id)
        answer = await loop.run_in_executor(None, self._predict, entry, [], {}, "detection")
        if not answer.get("weights") or answer.get("task") != "detect":
            raise BadRequest(
                f"'{entry.id}' cannot be retrained here: the retraining pipeline fine-tunes Ultralytics YOLO "
                "detectors (e.g. fish-detector, or a version you registered from it)"
            )
        if entry.source == "registered":  # a new version of the same model, served by the same code
            registry = ModelRegistry(self.catalog.registry_dir, self.workspace)
            model_name, base_module = entry.id, registry.get(entry.id).base_module
        else:
            model_name, base_module = f"{entry.id}-retrained", entry.id
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        folder = f"datasets/annotation-{project_id}-{stamp}"
        exported = await self.export(project_id, ExportRequest(folder=folder, val_fraction=request.val_fraction))
        data = str(self.workspace / exported["data"])
        count = exported["train"] + exported["val"]
        described = f"annotation project '{project['title']}' ({project_id}): {count} labelled images in {folder}"
        parameters: dict[str, str | int | float | bool] = {
            "DATA": data,
            "EVAL_DATA": data,  # its held-out images
            "BASE_WEIGHTS": answer["weights"],  # continue from what the module serves now
            "BASE_MODULE": base_module,
            "MODEL_NAME": model_name,
            "EPOCHS": request.epochs,
            "TRAINING_DATA": described[:500],
            "ANNOTATION_PROJECT": project_id,
            "LABELLED_IMAGES": count,
        }
        if answer.get("imgsz"):
            parameters["IMGSZ"] = answer["imgsz"]
        title = f"Train {entry.id} on '{project['title']}' ({count} labelled images)"[:120]
        pipeline = PipelineRequest(
            pipeline=RETRAIN_PIPELINE, parameters=parameters, profile=request.profile, title=title
        )
        return exported, pipeline

    def _write_folders(self, tasks: list[dict[str, Any]], target: Path, request: ExportRequest) -> dict[str, Any]:
        """An image-folder classification dataset (train/<label>/, val/<label>/), as Ultralytics classifies from:
        each labelled image under the label of its latest annotation."""
        chosen: dict[str, str] = {}
        for task in tasks:
            annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
            latest = max(annotations, key=lambda a: a.get("updated_at") or "", default=None)
            choices = [r["value"]["choices"][0] for r in (latest or {}).get("result", []) if r.get("type") == "choices"]
            if choices and task.get("data", {}).get("file"):
                chosen[task["data"]["file"]] = choices[0]
        if not chosen:
            raise BadRequest("no image of this project has a label yet: label (or accept pre-annotations) first")
        counts = {}
        for split, files in split_files(sorted(chosen), request).items():
            for relative in files:
                source = self.workspace / relative
                folder = target / split / chosen[relative]
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, folder / source.name)
            counts[split] = len(files)
        return {
            "folder": target.relative_to(self.workspace).as_posix(),
            "data": target.relative_to(self.workspace).as_posix(),
            "train": counts["train"],
            "val": counts["val"],
            "names": sorted(set(chosen.values())),
        }

    def _write_yolo(
        self, archive: bytes, tasks: list[dict[str, Any]], target: Path, request: ExportRequest
    ) -> dict[str, Any]:
        """Label Studio's YOLO labels with the images beside them, split into train/val, and a data.yaml."""
        with zipfile.ZipFile(io.BytesIO(archive)) as exported:
            names = [n.strip() for n in exported.read("classes.txt").decode().splitlines() if n.strip()]
            labels = {
                Path(n).stem: exported.read(n).decode()
                for n in exported.namelist()
                if n.startswith("labels/") and n.endswith(".txt")
            }
        files = sorted(t["data"]["file"] for t in tasks if t.get("data", {}).get("file"))
        counts = {}
        for split, chosen in split_files(files, request).items():
            (target / "images" / split).mkdir(parents=True, exist_ok=True)
            (target / "labels" / split).mkdir(parents=True, exist_ok=True)
            for relative in chosen:
                source = self.workspace / relative
                shutil.copyfile(source, target / "images" / split / source.name)
                (target / "labels" / split / f"{source.stem}.txt").write_text(labels.get(source.stem, ""))
            counts[split] = len(chosen)
        data = {
            "path": str(target),
            "train": "images/train",
            "val": "images/val" if counts["val"] else "images/train",
            "names": dict(enumerate(names)),
        }
        (target / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        return {
            "folder": target.relative_to(self.workspace).as_posix(),
            "data": (target / "data.yaml").relative_to(self.workspace).as_posix(),
            "train": counts["train"],
            "val": counts["val"],
            "names": names,
        }


def split_files(files: list[str], request: ExportRequest) -> dict[str, list[str]]:
    """{"train": ..., "val": ...}: a seeded shuffle, `val_fraction` held out (at least one image, if any is asked
    for and there are two or more)."""
    files = list(files)
    random.Random(request.seed).shuffle(files)
    n_val = round(len(files) * request.val_fraction)
    if request.val_fraction > 0 and len(files) > 1:
        n_val = min(max(n_val, 1), len(files) - 1)
    return {"train": files[n_val:], "val": files[:n_val]}


def to_prediction(kind: str, labels: list[str], answer: dict[str, Any]) -> dict[str, Any] | None:
    """A module's predict answer (ultra.py's `describe` JSON) as a Label Studio prediction; None if it has none
    of what the project needs. Labels the project does not have are left out."""
    if kind == "detection":
        if "detections" not in answer:
            return None
        width, height = answer["width"], answer["height"]
        regions = []
        for found in answer["detections"]:
            if found.get("label") not in labels:
                continue
            x1, y1, x2, y2 = found["box"]
            regions.append(
                {
                    "from_name": "label",
                    "to_name": "image",
                    "type": "rectanglelabels",
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "value": {
                        "x": 100 * x1 / width,
                        "y": 100 * y1 / height,
                        "width": 100 * (x2 - x1) / width,
                        "height": 100 * (y2 - y1) / height,
                        "rotation": 0,
                        "rectanglelabels": [found["label"]],
                    },
                    "score": found["confidence"],
                }
            )
        score = min((r["score"] for r in regions), default=1.0)
        return {"result": regions, "score": score}
    if "classes" not in answer:
        return None
    best = next((c for c in answer["classes"] if c.get("label") in labels), None)
    if best is None:
        return {"result": [], "score": 0.0}
    region = {
        "from_name": "label",
        "to_name": "image",
        "type": "choices",
        "value": {"choices": [best["label"]]},
        "score": best["probability"],
    }
    return {"result": [region], "score": best["probability"]}
