"""Annotation projects over the user's images, in their own Label Studio (labelstudio.py).

A project is a Label Studio project whose tasks are the images of a workspace folder or of a folder of one of
the user's S3 storage connections (the platform bucket, any S3), read in place: nothing is copied first. A
workspace folder is Label Studio's local-files storage; a connection's folder is Label Studio's own S3 import
storage with the connection's endpoint and keys and presigned URLs off, so that Label Studio reads each image
and hands it to the annotator's browser itself (the storage's endpoint and keys never reach the browser, and a
private endpoint works). ReefLab lists and checks the objects and imports one task an object (`s3://` URLs that
this storage resolves), so a project's tasks are exactly the images checked.

A marketplace module fills in the labels and pre-annotates: its predict runs over the images in its own process
(predict.py, as serverless workers run modules; a connection's objects read with its keys a chunk at a time) and
its boxes or labels become Label Studio predictions with their scores, which the annotator accepts or corrects.
It runs in the background, each chunk's predictions stored as it ends; its progress (done / total / failed, the
end state) is kept for the project. Export: each labelled image's latest annotation (Label Studio's JSON export)
becomes YOLO labels; the images are copied beside them (read from the connection where they are there) in a
train/val split with a data.yaml, as Ultralytics trains from. Datasets other tools exported (COCO, Pascal VOC,
CVAT XML, YOLO) in a workspace folder are read and written the same way (formats.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.utils import url_path_join
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ..catalog.service import CatalogService
from ..errors import BadRequest, Conflict, NotFound
from ..pipelines.models import PipelineRequest
from ..serverless.gateway import ServerlessGateway
from ..storage.paths import join, remote_path
from ..storage.platform_s3 import s3_client
from ..storage.service import StorageService
from ..training.registry import ModelRegistry
from . import formats, sources
from .engine import WarmService
from .formats import IMAGE_SUFFIXES, MAX_IMAGES, split_files, write_yolo
from .labelstudio import LabelStudio, LabelStudioAPI
from .models import DatasetRequest, ExportRequest, PreannotateRequest, ProjectRequest, TrainRequest

TASKS = {"detection": "detect", "classification": "classify"}
STORE_AT_MOST = 500  # predictions sent to Label Studio in one request
STORE_EVERY = 1.0  # seconds between two requests storing predictions
RETRAIN_PIPELINE = "notebooks/retrain.pipeline"  # the shipped retraining pipeline, in the user's examples
SOURCE = re.compile(r"^([a-z][a-z0-9_-]{0,31}):(.*)$")  # '<connection>:<folder>', as storage references are written


def on_connection(folder: str) -> tuple[str, str] | None:
    """(connection, folder in it) for a storage reference ('reeflab:surveys/2026'); None for a workspace folder."""
    found = SOURCE.match(folder.strip())
    return (found.group(1), remote_path(found.group(2))) if found else None


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
    label_studio_database = Unicode(
        config=True,
        help="The user's Label Studio database on PostgreSQL, postgresql://user:password@host:port/name (made on first "
        "start if the role may); default $REEFLAB_LABEL_STUDIO_DATABASE; empty: SQLite in root_dir",
    )

    @default("label_studio_database")
    def _default_label_studio_database(self) -> str:
        return os.environ.get("REEFLAB_LABEL_STUDIO_DATABASE", "")

    predict_timeout = Float(1800, config=True, help="Seconds a pre-annotation may run")
    warm_seconds = Float(
        600, config=True, help="Seconds the serverless engine keeps a module's pre-annotation workers warm when idle"
    )
    base_url = Unicode("/", help="The user's server's base URL (its routes serve a WebDAV project's images)")

    def __init__(
        self,
        catalog: CatalogService,
        workspace: str,
        storage: StorageService | None = None,
        serverless: ServerlessGateway | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.catalog = catalog
        self.storage = storage
        self.serverless = serverless  # where it has an engine, pre-annotation runs on its warm workers
        self.workspace = Path(workspace).resolve()
        database = self.label_studio_database  # PostgreSQL at scale; empty: SQLite in root_dir
        self.server = LabelStudio(Path(self.root_dir), self.workspace, self.label_studio or None, database=database)
        # project id -> its latest pre-annotation's progress, kept in the root folder across restarts of the server
        self._progress: dict[int, dict[str, Any]] = self._load_progress()
        self._running: dict[int, asyncio.Task] = {}
        self._clearing: dict[int, asyncio.Future] = {}  # project id -> its earlier predictions being deleted
        self._run_folders: set[str] = set()  # the platform bucket's run folders (engine.py) this server's runs use
        self._probes: dict[tuple[str, str], dict[str, Any]] = {}  # (module, its environment) -> its task, labels

    async def _api(self) -> LabelStudioAPI:
        return await self.server.ensure()

    async def _call(self, method: str, path: str, **kwargs) -> Any:
        api = await self._api()
        return await asyncio.get_running_loop().run_in_executor(None, partial(api.call, method, path, **kwargs))

    # -- pre-annotations' progress, kept across restarts ---------------------------------------

    def _progress_dir(self) -> Path:
        return Path(self.root_dir) / "preannotation"

    def _save(self, progress: dict[str, Any]) -> None:
        """The progress document in the root folder (written whole, then moved in: never half a file)."""
        folder = self._progress_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        kept = folder / f"{progress['project']}.json"
        partial = kept.with_suffix(".json.partial")
        partial.write_text(json.dumps(progress))
        os.replace(partial, kept)

    def _load_progress(self) -> dict[int, dict[str, Any]]:
        """The documents kept by earlier runs of the server; one still `running` was cut off by the server stopping
        without saying so (killed): `interrupted`, with what was done."""
        found: dict[int, dict[str, Any]] = {}
        for kept in sorted(self._progress_dir().glob("*.json")) if self._progress_dir().is_dir() else []:
            try:
                progress = json.loads(kept.read_text())
                project_id = int(progress["project"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if progress.get("state") == "running":
                ended = datetime.fromtimestamp(kept.stat().st_mtime, UTC).isoformat()
                progress.update(state="interrupted", error=interrupted(progress), ended=ended)
                self._save(progress)
            found[project_id] = progress
        return found

    async def stop(self) -> None:
        for running in list(self._running.values()):
            running.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        await self.server.stop()

    # -- folders --------------------------------------------------------------------------

    def _folder(self, folder: str, *, must_exist: bool = True) -> Path:
        path = (self.workspace / folder.strip().lstrip("/")).resolve()
        if path != self.workspace and self.workspace not in path.parents:
            raise BadRequest(f"'{folder}' is outside your workspace: give a folder of your files, e.g. 'data/images'")
        if must_exist and not path.is_dir():
            raise BadRequest(f"'{folder}' is not a folder of your workspace: create it, or check the name")
        return path

    def _new_folder(self, folder: str, verb: str) -> Path:
        """A workspace folder to write into: absent or empty (else a 409 saying to `verb` into a new one)."""
        target = self._folder(folder, must_exist=False)
        if target.exists() and any(target.iterdir()):
            raise Conflict(f"'{folder}' already exists and is not empty: {verb} into a new folder")
        return target

    def images(self, folder: str) -> list[Path]:
        """The images of a workspace folder (its top level, hidden files left out), each checked to be one."""
        from PIL import Image, UnidentifiedImageError

        path = self._folder(folder)
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        self._check_names(folder, [p.name for p in files])
        for file in files:
            try:
                with Image.open(file) as image:
                    image.verify()
            except (UnidentifiedImageError, OSError, SyntaxError):
                raise BadRequest(f"'{file.name}' in '{folder}' is not a readable image: remove or replace it") from None
        return files

    def _connection(self, owner: str, name: str) -> Any:
        """The user's storage connection `name` (S3 or WebDAV); a clear 400 otherwise."""
        if self.storage is None:
            raise BadRequest("storage connections are not available on this server: give a workspace folder")
        try:
            connection = self.storage.get(owner, name)
        except NotFound:
            raise BadRequest(
                f"you have no storage connection '{name}': give one of yours (Storage in the ReefLab panel) as "
                "'<connection>:<folder>', or a folder of your workspace"
            ) from None
        return connection

    def image_url(self, name: str, path: str) -> str:
        """Where the annotator's page reads an image of WebDAV connection `name`: the user's own server's download
        route (storage handlers: authenticated, the server's owner only, streamed from WebDAV with the connection's
        password, which never reaches the browser), under the same origin as the Label Studio pages it serves."""
        return url_path_join(self.base_url, "reeflab/api/storage/connections", name, "file") + "?path=" + quote(path)

    def remote_images(self, owner: str, folder: str) -> list[tuple[str, str]]:
        """The images of a connection's folder (its top level, hidden files left out), by suffix (reading every
        object to check it would copy them all first; one that is not an image fails on its own at pre-annotation):
        [(what the task shows: an s3:// URL Label Studio resolves, or image_url's, 'connection:folder/name')]."""
        name, path = on_connection(folder)
        spec = self._connection(owner, name).spec
        files, page = [], None
        while True:
            try:
                listed = self.storage.ls(owner, name, path, limit=1000, page=page)
            except NotFound:  # (WebDAV: S3 lists an absent folder as an empty one)
                raise BadRequest(f"'{folder}' holds no images: {name} has no folder '{path}'") from None
            files += [i["name"] for i in listed["items"] if i["type"] == "file" and not i["name"].startswith(".")]
            page = listed["next_page"]
            if not page or len(files) > MAX_IMAGES:
                break
        self._check_names(folder, sorted(files))
        if spec.kind == "webdav":
            return [(self.image_url(name, join(path, f)), f"{name}:{join(path, f)}") for f in sorted(files)]
        return [(f"s3://{spec.bucket}/{join(spec.prefix, path, f)}", f"{name}:{join(path, f)}") for f in sorted(files)]

    @staticmethod
    def _check_names(folder: str, names: list[str]) -> None:
        others = [n for n in names if Path(n).suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            shown = ", ".join(f"'{name}'" for name in others[:5]) + (" ..." if len(others) > 5 else "")
            raise BadRequest(
                f"'{folder}' holds files that are not images ({shown}): a project takes a folder of JPEG, PNG, BMP, "
                "TIFF or WebP images only; move the others out"
            )
        if not names:
            raise BadRequest(f"'{folder}' holds no images: put JPEG or PNG files in it first")
        if len(names) > MAX_IMAGES:
            raise BadRequest(f"'{folder}' holds {len(names)} images, more than {MAX_IMAGES}: split it into projects")

    def _local(self, file: str) -> Path:
        return self.workspace / file

    def _copy(self, owner: str, file: str, target: Path) -> None:
        """An image of a project (a workspace path, or 'connection:path') copied to `target`."""
        remote = on_connection(file)
        if remote is None:
            shutil.copyfile(self._local(file), target)
            return
        with open(target, "wb") as out:
            for chunk in self.storage.download(owner, *remote):
                out.write(chunk)

    def _readable(self, owner: str, file: str) -> tuple[str, dict[str, str]]:
        """(where predict.py reads a project's image, the environment that lets it)."""
        remote = on_connection(file)
        if remote is None:
            return str(self._local(file)), {}
        name, path = remote
        spec = self._connection(owner, name).spec
        url = f"{sources.WEBDAV}{path}" if spec.kind == "webdav" else f"s3://{spec.bucket}/{join(spec.prefix, path)}"
        return url, self.storage.credentials_env(owner, name)

    # -- modules --------------------------------------------------------------------------

    def _module(self, module_id: str) -> Any:
        entry = self.catalog.get(module_id)
        if not entry.deployable:
            raise BadRequest(
                f"'{module_id}' is not installed here, so it cannot run: pick a built-in or installed module"
            )
        return entry

    def _spec(
        self, scratch: Path, entry: Any, files: list[tuple[str, str]], options: dict[str, Any], kind: str
    ) -> Path:
        spec = scratch / "spec.json"
        body = {"module": entry.entry_point, "files": files, "options": options, "expect": TASKS[kind]}
        spec.write_text(json.dumps(body))
        return spec

    def _log(self) -> Path:
        log = Path(self.root_dir) / "preannotate.log"
        log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return log

    def _probe(self, entry: Any, kind: str) -> dict[str, Any]:
        """What the module is ({"task", "labels", "weights", "imgsz"}), loading it in its own process (predict.py)
        once for this server and this entry's environment; 400 if it fails to load or is not what `kind` needs."""
        key = (entry.id, json.dumps(entry.deploy_env, sort_keys=True))
        if key not in self._probes:
            with tempfile.TemporaryDirectory(prefix="reeflab-annotate-") as scratch:
                spec, result = self._spec(Path(scratch), entry, [], {}, kind), Path(scratch) / "result.jsonl"
                with open(self._log(), "ab") as output:
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
                        raise BadRequest(f"'{entry.id}' took more than {self.predict_timeout:.0f} s to load") from None
                lines = result.read_text().splitlines() if result.exists() else []
                if not lines:
                    raise BadRequest(f"'{entry.id}' failed to run (status {done.returncode}): see {self._log()}")
                answer = json.loads(lines[0])
            if answer.get("error"):
                raise BadRequest(f"'{entry.id}' could not be loaded: {answer['error']}")
            self._probes[key] = answer
        answer = self._probes[key]
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

    async def create(self, request: ProjectRequest, owner: str = "") -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        remote = on_connection(request.folder)
        if remote is None:
            files = await loop.run_in_executor(None, self.images, request.folder)
        else:
            objects = await loop.run_in_executor(None, self.remote_images, owner, request.folder)
        labels = [label.strip() for label in request.labels if label.strip()]
        if request.module:
            entry = await loop.run_in_executor(None, self._module, request.module)
            answer = await loop.run_in_executor(None, self._probe, entry, request.kind)
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
            if remote is None:
                folder = self._folder(request.folder)
                storage = {"path": str(folder), "use_blob_urls": True, "title": request.folder}
                await self._call("POST", "/api/storages/localfiles", json={"project": project["id"], **storage})
                tasks = []
                for file in files:
                    relative = file.relative_to(self.workspace).as_posix()
                    tasks.append({"image": f"/data/local-files/?d={quote(relative)}", "file": relative})
            else:
                spec = self._connection(owner, remote[0]).spec
                if spec.kind == "s3":  # Label Studio's own S3 storage resolves the tasks' s3:// URLs
                    storage = {
                        "title": request.folder[:2048],
                        "bucket": spec.bucket,
                        "prefix": join(spec.prefix, remote[1]),
                        "s3_endpoint": spec.endpoint,
                        "region_name": spec.region,
                        "aws_access_key_id": spec.access_key,
                        "aws_secret_access_key": spec.secret_key.get_secret_value(),
                        "presign": False,  # Label Studio reads the objects and serves them to the browser itself
                        "use_blob_urls": True,
                    }
                    await self._call("POST", "/api/storages/s3", json={"project": project["id"], **storage})
                # (WebDAV, which Label Studio cannot read: the page reads each image through the server, image_url)
                tasks = [{"image": url, "file": file} for url, file in objects]
            await self._call("POST", f"/api/projects/{project['id']}/import", json=tasks)
        except BaseException:
            await self._call("DELETE", f"/api/projects/{project['id']}")
            raise
        return await self.get(project["id"])

    async def _tasks(self, project_id: int, include: str = "") -> list[dict[str, Any]]:
        """The project's tasks; `include`: only these fields of each (e.g. "id,data": a third of the time)."""
        tasks, page = [], 1
        while True:
            try:
                params = {
                    "project": project_id,
                    "page": page,
                    "page_size": 500,
                    **({"include": include} if include else {}),
                }
                answer = await self._call("GET", "/api/tasks", params=params)
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
            "preannotation": dict(self._progress[project["id"]]) if project["id"] in self._progress else None,
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
        running = self._running.get(project_id)
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        self._progress.pop(project_id, None)
        (self._progress_dir() / f"{project_id}.json").unlink(missing_ok=True)
        await self._call("DELETE", f"/api/projects/{project_id}")

    # -- pre-annotation -------------------------------------------------------------------

    async def preannotate(self, project_id: int, request: PreannotateRequest, owner: str = "") -> dict[str, Any]:
        """Start the module over every image of the project, in the background; its progress document (202). The
        module is checked first (404 unknown, 400 not what the project needs); one pre-annotation at a time."""
        if project_id in self._running:
            raise Conflict(
                f"project {project_id} is being pre-annotated: wait for it to end "
                f"(GET /reeflab/api/annotation/projects/{project_id}/preannotate)"
            )
        if not self.server.exists:
            await self._project(project_id)  # 404, without starting a Label Studio to list its tasks
        loop = asyncio.get_running_loop()
        stored, entry, listed = await asyncio.gather(  # together: each waits on another process
            self._project(project_id),
            loop.run_in_executor(None, self._module, request.module),
            self._tasks(project_id, include="id,data,total_predictions"),  # (none: no such project, said above)
        )
        project = self._describe(stored, [])
        await loop.run_in_executor(None, self._probe, entry, project["kind"])
        tasks = [t for t in listed if t.get("data", {}).get("file")]
        earlier = self._progress.get(project_id) or {}
        resume = earlier.get("state") == "interrupted" and earlier.get("module") == entry.id and not request.restart
        kept = [t for t in tasks if resume and t.get("total_predictions", 0) > 0]  # predicted before the cut
        tasks = kept + [t for t in tasks if not (resume and t.get("total_predictions", 0) > 0)]  # counted on from
        todo = [task["data"]["file"] for task in tasks[len(kept) :]]
        files, env = await loop.run_in_executor(None, self._readables, owner, todo)
        options = {"conf": request.conf} if request.conf is not None and project["kind"] == "detection" else {}
        # a new pre-annotation replaces the earlier ones (annotations are kept): removed while the first images
        # are predicted, before any new one is stored (_store)
        clear = not resume and any(t.get("total_predictions", 0) > 0 for t in tasks)
        progress = self._progress[project_id] = {
            "project": project_id,
            "module": entry.id,
            "state": "running",
            "total": len(tasks),
            "done": len(kept),
            "predicted": len(kept),
            "regions": earlier.get("regions", 0) if resume else 0,
            "continued": len(kept),  # images an interrupted run had predicted, kept (0: all predicted here)
            "failed": [],
            "error": None,
            "service": None,  # the serverless engine's service that runs it (None: a process of this server)
            "started": datetime.now(UTC).isoformat(),
            "ended": None,
        }
        self._save(progress)
        if clear:
            every = {"selectedItems": {"all": True, "excluded": []}}
            params = {"id": "delete_tasks_predictions", "project": project_id}
            self._clearing[project_id] = asyncio.ensure_future(
                self._call("POST", "/api/dm/actions", params=params, json=every)
            )
        run = self._preannotation(stored, project, entry, tasks, files, options, env, progress, owner)
        self._running[project_id] = asyncio.create_task(run)
        self._running[project_id].add_done_callback(lambda _: self._running.pop(project_id, None))
        return dict(progress)

    def _readables(self, owner: str, files: list[str]) -> tuple[list[list[str]], dict[str, str]]:
        """[where predict.py reads each image, its name] and the environment that lets it (_readable) where this
        server has no serverless engine; else each connection checked only (the engine's workers, or this server,
        read the images: _through_engine)."""
        if self.serverless is not None and self.serverless.url:
            for name in {remote[0] for remote in map(on_connection, files) if remote is not None}:
                self._connection(owner, name)
            return [], {}
        found, env = [], {}
        for file in files:
            where, needs = self._readable(owner, file)
            found.append([where, Path(file).name])
            env.update(needs)
        return found, env

    def progress(self, project_id: int) -> dict[str, Any]:
        if project_id not in self._progress:
            raise NotFound(f"project {project_id} was never pre-annotated: POST a module to pre-annotate it")
        return dict(self._progress[project_id])

    async def wait_preannotation(self, project_id: int) -> None:
        """Until the project's pre-annotation ends (tests, bench)."""
        running = self._running.get(project_id)
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)

    async def _preannotation(
        self,
        stored: dict[str, Any],
        project: dict[str, Any],
        entry: Any,
        tasks: list[dict[str, Any]],
        files: list[list[str]],
        options: dict[str, Any],
        env: dict[str, str],
        progress: dict[str, Any],
        owner: str = "",
    ) -> None:
        """The module over the images: on the serverless engine's warm workers where this server has an engine
        (_through_engine), else in a process of its own (_in_process); each chunk's answers stored as predictions as
        soon as they come."""
        project_id = project["id"]
        try:
            if self.serverless is not None and self.serverless.url:
                await self._through_engine(project, entry, tasks, options, progress, owner)
            else:
                await self._in_process(project, entry, tasks, files, options, env, progress)
            await self._cleared(project_id)  # (every image failed: nothing stored waited for it)
            about = {**self._about(stored), "module": entry.id}  # the module "Train on this project" continues from
            if about != self._about(stored):  # (a project made with this module, or run with it before, says it)
                description = json.dumps({"reeflab": about})
                await self._call("PATCH", f"/api/projects/{project_id}", json={"description": description})
            progress["state"] = "completed"
        except asyncio.CancelledError:  # the server stops (or the project is deleted)
            progress.update(state="interrupted", error=interrupted(progress))
            raise
        except Exception as error:  # said in the progress document, which is how the user learns it
            progress.update(state="failed", error=getattr(error, "message", None) or f"{type(error).__name__}: {error}")
            self.log.warning("pre-annotation of project %s failed: %s", project_id, progress["error"])
        finally:
            clearing = self._clearing.pop(project_id, None)
            if clearing is not None:  # the run failed first
                clearing.cancel()
                await asyncio.gather(clearing, return_exceptions=True)
            progress["ended"] = datetime.now(UTC).isoformat()
            self._save(progress)

    async def _cleared(self, project_id: int) -> None:
        """Until the project's earlier predictions are deleted (at the start of a new pre-annotation)."""
        clearing = self._clearing.get(project_id)
        if clearing is not None:
            await clearing
            self._clearing.pop(project_id, None)

    async def _in_process(
        self,
        project: dict[str, Any],
        entry: Any,
        tasks: list[dict[str, Any]],
        files: list[list[str]],
        options: dict[str, Any],
        env: dict[str, str],
        progress: dict[str, Any],
    ) -> None:
        """predict.py over the images, the module loaded for this run (a server with no serverless engine)."""
        with tempfile.TemporaryDirectory(prefix="reeflab-annotate-") as scratch:
            spec = self._spec(Path(scratch), entry, files, options, project["kind"])
            result = Path(scratch) / "result.jsonl"
            with open(self._log(), "ab") as output:
                process = await asyncio.create_subprocess_exec(  # fixed argv
                    sys.executable,
                    "-m",
                    "reeflab.annotation.predict",
                    str(spec),
                    str(result),
                    env={**os.environ, **entry.deploy_env, **env},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            deadline = time.monotonic() + self.predict_timeout
            read = 0
            try:
                while True:
                    ended = process.returncode is not None
                    lines = result.read_text().splitlines(keepends=True) if result.exists() else []
                    for line in lines[read:]:
                        if not line.endswith("\n"):
                            break  # being written
                        read += 1
                        await self._store(json.loads(line), project, entry, tasks, progress)
                    if ended:
                        break
                    if time.monotonic() > deadline:
                        raise BadRequest(
                            f"'{entry.id}' took more than {self.predict_timeout:.0f} s over {len(files)} images: "
                            "split the folder into smaller projects"
                        )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), 0.25)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            if progress["done"] < progress["total"]:
                raise BadRequest(
                    f"'{entry.id}' stopped after {progress['done']} of {progress['total']} images "
                    f"(status {process.returncode}): see {self._log()}"
                )

    async def _through_engine(
        self,
        project: dict[str, Any],
        entry: Any,
        tasks: list[dict[str, Any]],
        options: dict[str, Any],
        progress: dict[str, Any],
        owner: str,
    ) -> None:
        """The images still to predict through the user's service for the module on the serverless engine (made on
        first use, its workers kept warm across runs: engine.py): objects of the user's platform bucket in slices the
        workers read themselves, as `reeflab batch` does; any other image fed by this server, a few at a time. The
        answers are stored in order, those of about a second together."""
        loop = asyncio.get_running_loop()
        service = WarmService(self.serverless.engine(), entry, options, self.warm_seconds)
        todo = tasks[progress["done"] :]  # (those an interrupted run predicted are kept)
        progress["service"], direct = await asyncio.gather(
            loop.run_in_executor(None, service.ensure),
            loop.run_in_executor(None, self._on_platform, owner, service, todo),
        )
        deadline = time.monotonic() + self.predict_timeout
        pool = ThreadPoolExecutor(service.parallel + 2, thread_name_prefix="preannotate")  # reading: no idle worker
        remove = None
        try:
            if direct is not None:
                submitted, remove = await loop.run_in_executor(
                    None, service.submit_slices, pool, *direct, self.predict_timeout, self._run_folders
                )
            else:
                items = [(self._reader(owner, t["data"]["file"]), Path(t["data"]["file"]).name) for t in todo]
                submitted = service.submit(pool, items, self.predict_timeout)
            progress["slices"] = len(submitted) if direct is not None else 0  # 0: fed image by image
            futures = [asyncio.wrap_future(f) for f in submitted]
            start = 0
            while start < len(futures):
                stored = time.monotonic()
                try:
                    await asyncio.wait_for(asyncio.shield(futures[start]), max(deadline - stored, 0.1))
                except TimeoutError:
                    raise BadRequest(
                        f"'{entry.id}' took more than {self.predict_timeout:.0f} s over {len(todo)} images: "
                        "split the folder into smaller projects"
                    ) from None
                # the answers of about a second, in order, in one request: Label Studio takes ~0.1 s a request,
                # whatever its size, which would cost more than the predictions themselves 8 at a time
                window = futures[start : start + STORE_AT_MOST]
                await asyncio.wait(window, timeout=max(0.0, stored + STORE_EVERY - time.monotonic()))
                end = start + next((i for i, future in enumerate(window) if not future.done()), len(window))
                results = [reply for future in futures[start:end] for reply in future.result()]
                await self._store({"results": results}, project, entry, tasks, progress)
                start = end
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if remove is not None:  # the run's index and answers go, meanwhile
                loop.run_in_executor(None, remove).add_done_callback(self._removed)

    def _removed(self, done: asyncio.Future) -> None:
        if not done.cancelled() and done.exception() is not None:
            self.log.warning("a pre-annotation's slices were left in the platform bucket: %s", done.exception())

    def _on_platform(self, owner: str, service: WarmService, tasks: list[dict[str, Any]]) -> tuple | None:
        """(S3 client, 'bucket/folder', object names) where the images are objects the service's workers can read
        themselves: one folder of a connection to the user's platform bucket with the key the engine gives their
        workers (the `reeflab` connection); None for any other image (fed to the workers by this server)."""
        places = [on_connection(t["data"]["file"]) for t in tasks]
        if not places or None in places or len({(name, posixpath.dirname(path)) for name, path in places}) != 1:
            return None
        name, path = places[0]
        spec = self._connection(owner, name).spec
        names = [posixpath.basename(path) for _, path in places]
        if spec.kind != "s3":
            return None
        key = service.platform_key()
        if spec.endpoint.rstrip("/") != key["endpoint"].rstrip("/") or spec.access_key != key["access_key"]:
            return None
        folder = "/".join(part for part in (spec.bucket, join(spec.prefix, posixpath.dirname(path))) if part)
        return s3_client(key["endpoint"], key, max_pool_connections=16), folder, names

    def _reader(self, owner: str, file: str) -> Callable[[], bytes]:
        """How to read a project's image in this server: its workspace file, or its object through the connection
        (StorageService's clients, kept per connection)."""
        remote = on_connection(file)
        if remote is None:
            return self._local(file).read_bytes
        storage = self.storage
        return lambda: b"".join(storage.download(owner, *remote))

    async def _store(
        self,
        line: dict[str, Any],
        project: dict[str, Any],
        entry: Any,
        tasks: list[dict[str, Any]],
        progress: dict[str, Any],
    ) -> None:
        """One line of predict.py's answer: a chunk's results become predictions (its header and errors are said)."""
        if line.get("error"):
            raise BadRequest(f"'{entry.id}' failed: {line['error']}")
        if "results" not in line:
            return
        predictions, failed = [], []
        for index, result in enumerate(line["results"]):
            task = tasks[progress["done"] + index]
            if not result["ok"]:
                failed.append({"file": task["data"]["file"], "error": result["error"]})
                continue
            prediction = to_prediction(project["kind"], project["labels"], result["answer"])
            if prediction is None:
                want = "detector" if project["kind"] == "detection" else "classifier"
                raise BadRequest(f"'{entry.id}' does not answer as a {want} does: pick a {want} for this project")
            predictions.append({"task": task["id"], "model_version": entry.id, **prediction})
        if predictions:
            await self._cleared(project["id"])
            await self._call("POST", f"/api/projects/{project['id']}/import/predictions", json=predictions)
        # counted once stored: what the progress says was done is in Label Studio, even if the server stops now
        progress["done"] += len(line["results"])
        progress["failed"] += failed
        progress["predicted"] += len(predictions)
        progress["regions"] += sum(len(p["result"]) for p in predictions)
        self._save(progress)

    # -- export ---------------------------------------------------------------------------

    async def export(self, project_id: int, request: ExportRequest, owner: str = "") -> dict[str, Any]:
        project = self._describe(await self._project(project_id), [])
        target = self._new_folder(request.folder, "export")
        labelled = [t for t in await self._tasks(project_id) if t.get("total_annotations", 0) > 0]
        if not labelled:
            raise BadRequest("no image of this project is labelled yet: label (or accept pre-annotations) first")
        loop = asyncio.get_running_loop()
        exported = await self._call("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON"})
        exported = json.loads(exported) if isinstance(exported, bytes) else exported  # sent as a download
        names = project["labels"]
        if project["kind"] == "classification":
            return await loop.run_in_executor(None, self._write_folders, exported, names, target, request, owner)
        return await loop.run_in_executor(None, self._write_yolo, exported, names, target, request, owner)

    async def dataset(self, request: DatasetRequest) -> dict[str, Any]:
        """Another tool's detection dataset (COCO, Pascal VOC, CVAT XML, YOLO) in a workspace folder, written as an
        Ultralytics YOLO dataset into a new one (formats.py); what was converted and where."""
        source = self._folder(request.source)
        target = self._new_folder(request.folder, "convert")
        if target == source or source in target.parents:
            raise BadRequest(f"'{request.folder}' is inside '{request.source}': convert into a folder beside it")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, formats.convert, source, request.format, target, request, self.workspace
        )

    # -- training -------------------------------------------------------------------------

    async def training(
        self, project_id: int, request: TrainRequest, owner: str = ""
    ) -> tuple[dict[str, Any], PipelineRequest]:
        """Export the project's labelled images into a new dataset folder and make the request that runs the
        retraining pipeline on it from the module's current weights; (the export, the pipeline request)."""
        stored = await self._project(project_id)
        project = self._describe(stored, [])
        kind = project["kind"]
        if not (self.workspace / RETRAIN_PIPELINE).is_file():
            raise BadRequest(
                f"no {RETRAIN_PIPELINE} in your files: Refresh examples (ReefLab panel) brings the shipped ones back"
            )
        labelled = [t for t in await self._tasks(project_id) if t.get("total_annotations", 0) > 0]
        if not labelled:
            raise BadRequest("no image of this project is labelled yet: label (or accept pre-annotations) first")
        example = "fish-detector" if kind == "detection" else "fish-classifier"
        module_id = request.module or project["module"]
        if not module_id:
            raise BadRequest(f"give the module to train on this project, e.g. '{example}'")
        loop = asyncio.get_running_loop()
        entry = await loop.run_in_executor(None, self._module, module_id)
        answer = await loop.run_in_executor(None, self._probe, entry, kind)
        if not answer.get("weights") or answer.get("task") != TASKS[kind]:
            want = "detectors" if kind == "detection" else "classifiers"
            raise BadRequest(
                f"'{entry.id}' cannot be retrained here: the retraining pipeline fine-tunes Ultralytics YOLO "
                f"{want} (e.g. {example}, or a version you registered from it)"
            )
        if entry.source == "registered":  # a new version of the same model, served by the same code
            registered = ModelRegistry(self.catalog.registry_dir, self.workspace).get(entry.id)
            model_name, base_module = entry.id, registered.base_module
            earlier = registered.versions[-1].lineage if registered.versions else {}
        else:
            model_name, base_module = f"{entry.id}-retrained", entry.id
            earlier = {}
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        folder = f"datasets/annotation-{project_id}-{stamp}"
        split = ExportRequest(folder=folder, val_fraction=request.val_fraction)
        exported = await self.export(project_id, split, owner)
        data = str(self.workspace / exported["data"])  # a data.yaml, or a classifier's image folders
        count = exported["train"] + exported["val"]
        # images the weights it continues from were not trained on: all, unless they come from this project's labels
        seen = earlier.get("labelled_images", 0) if earlier.get("annotation_project") == project_id else 0
        new = max(0, count - int(seen))
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
            "NEW_IMAGES": new,
        }
        if answer.get("imgsz"):
            parameters["IMGSZ"] = answer["imgsz"]
        if kind == "classification":  # the gate on the held-out images' top-1 accuracy (the bar: MIN_MAP50)
            parameters["GATE_METRIC"] = "top1"
        bar = request.min_map50 if kind == "detection" else request.min_top1
        if bar is not None:
            parameters["MIN_MAP50"] = bar
        title = f"Train {entry.id} on '{project['title']}' ({count} labelled images)"[:120]
        pipeline = PipelineRequest(
            pipeline=RETRAIN_PIPELINE, parameters=parameters, profile=request.profile, title=title
        )
        return exported, pipeline

    def _write_folders(
        self, tasks: list[dict[str, Any]], names: list[str], target: Path, request: ExportRequest, owner: str
    ) -> dict[str, Any]:
        """An image-folder classification dataset (train/<label>/, val/<label>/), as Ultralytics classifies from:
        each labelled image under the label of its latest annotation; a folder for every label of the project, so
        that a classifier trained on it has the project's classes (those of the module it continues from)."""
        chosen: dict[str, str] = {}
        for task in tasks:
            annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
            latest = max(annotations, key=lambda a: a.get("updated_at") or "", default=None)
            choices = [r["value"]["choices"][0] for r in (latest or {}).get("result", []) if r.get("type") == "choices"]
            if choices and task.get("data", {}).get("file"):
                chosen[task["data"]["file"]] = choices[0]
        if not chosen:
            raise BadRequest("no image of this project has a label yet: label (or accept pre-annotations) first")
        unsafe = sorted(n for n in {*names, *chosen.values()} if "/" in n or "\\" in n or n in (".", "..") or not n)
        if unsafe:
            raise BadRequest(f"labels {unsafe} cannot be folder names: rename them in the project's labels")
        counts = {}
        for split, files in split_files(sorted(chosen), request).items():
            for label in {*names, *chosen.values()}:
                (target / split / label).mkdir(parents=True, exist_ok=True)
            for relative in files:
                folder = target / split / chosen[relative]
                folder.mkdir(parents=True, exist_ok=True)
                self._copy(owner, relative, folder / Path(relative).name)
            counts[split] = len(files)
        return {
            "folder": target.relative_to(self.workspace).as_posix(),
            "data": target.relative_to(self.workspace).as_posix(),
            "train": counts["train"],
            "val": counts["val"],
            "names": sorted({*names, *chosen.values()}),
        }

    def _write_yolo(
        self, tasks: list[dict[str, Any]], names: list[str], target: Path, request: ExportRequest, owner: str
    ) -> dict[str, Any]:
        """The labelled images with their latest annotation's boxes as YOLO labels (class, centre and size as
        fractions of the image: Label Studio's own are percentages of it), split into train/val, and a data.yaml.
        (Label Studio's YOLO export names label files after images it downloads itself, through its own address:
        not for images of a connection.)"""
        labels: dict[str, str] = {}
        for task in tasks:
            annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
            latest = max(annotations, key=lambda a: a.get("updated_at") or "", default=None)
            if latest is None or not task.get("data", {}).get("file"):
                continue
            lines = []
            for region in latest.get("result", []):
                value = region.get("value", {})
                if region.get("type") != "rectanglelabels" or value.get("rectanglelabels", [None])[0] not in names:
                    continue
                x, y, w, h = (value[k] / 100 for k in ("x", "y", "width", "height"))
                lines.append(
                    f"{names.index(value['rectanglelabels'][0])} {x + w / 2:.6g} {y + h / 2:.6g} {w:.6g} {h:.6g}"
                )
            labels[task["data"]["file"]] = "".join(line + "\n" for line in lines)
        counts = write_yolo(target, labels, names, request, partial(self._copy, owner))
        return {
            "folder": target.relative_to(self.workspace).as_posix(),
            "data": (target / "data.yaml").relative_to(self.workspace).as_posix(),
            "train": counts["train"],
            "val": counts["val"],
            "names": names,
        }


def interrupted(progress: dict[str, Any]) -> str:
    """What an interrupted pre-annotation's document says."""
    left = progress["total"] - progress["done"]
    return (
        f"your server stopped after {progress['done']} of {progress['total']} images: pre-annotate again with "
        f"{progress['module']} to continue with the {left} not predicted yet (restart: true redoes them all)"
    )


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
