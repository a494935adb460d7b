"""ModelRegistry: a user's trained weights as new marketplace modules, deployable like any other.

A registered model is a folder `<root>/<name>/` (0700) with `model.json` (its versions) and one
folder per version holding `weights.pt` and the version's `ai4-metadata.yml` (0600). Its
metadata is the base module's, with title, summary, dates, training data, metrics and the
MLflow run filled in, and validated with the ai4-metadata schema. The catalogue lists it
(source `registered`) with the base module's entry point, and a deployment of it runs the base
module's `deepaas-run` with REEFLAB_WEIGHTS pointing at the newest version's weights.

In kubernetes mode (a `store`: the owner's bucket on the platform's S3) each version is also uploaded to
`s3://<bucket>/models/<name>/<version>/` (weights_store.py), and its deployments fetch it from there.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..catalog.models import ModuleEntry
from ..checks.shared import FOLDER as CHECKS_FOLDER
from ..errors import BadRequest, Conflict, NotFound, ReefLabError
from ..files import write_private
from ..modules.metadata import METADATA_FILE, validate_metadata
from ..storage.platform_s3 import StorageUnavailable
from . import weights_store
from .weights_store import WEIGHTS_FILE, ObjectStore

RECORD_FILE = "model.json"
WEIGHTS_ENV = "REEFLAB_WEIGHTS"
MLFLOW_WEIGHTS = "weights/best.pt"  # where Ultralytics' MLflow callback puts the best checkpoint
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.\-+]{0,39}$")


class RegisterRequest(BaseModel):
    """POST /reeflab/api/training/models"""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-_.]{1,62}$", description="Marketplace id of the new module")
    version: str = Field(description="e.g. '1.0.0'; a new version of an existing name adds to it")
    base_module: str = Field("yolo-detector", description="Ultralytics module whose code serves the weights")
    run_id: str | None = Field(None, description="MLflow run whose weights/best.pt to register")
    weights: str | None = Field(None, description="Or a .pt file, relative to your Jupyter root folder")
    title: str | None = Field(None, max_length=100)
    summary: str | None = Field(None, max_length=250)
    training_data: str | None = Field(None, max_length=500, description="Dataset used; default: the run's 'data'")
    metrics: dict[str, float] = Field(default_factory=dict, description="Added to (and overriding) the run's")
    lineage: dict[str, str | int | float] = Field(
        default_factory=dict,
        max_length=20,
        description="Where the version comes from, e.g. the annotation project and its number of new images",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RegisterRequest:
        if self.name == CHECKS_FOLDER:
            raise ValueError(f"name: '{self.name}' is where the platform keeps check reports; choose another name")
        if not _VERSION.match(self.version):
            raise ValueError("version: letters, digits, '.', '-', '+' (e.g. 1.0.0), at most 40 characters")
        if bool(self.run_id) == bool(self.weights):
            raise ValueError("give either run_id (an MLflow run) or weights (a .pt file), not both or neither")
        return self


class ModelVersion(BaseModel):
    version: str
    created: datetime
    sha256: str
    size: int
    metrics: dict[str, float] = Field(default_factory=dict)
    training_data: str | None = None
    lineage: dict[str, str | int | float] = Field(default_factory=dict)
    run_id: str | None = None
    run_path: str | None = None
    source: str = Field(description="Where the weights came from: the run, or the file")
    location: str | None = Field(None, description="kubernetes mode: s3://<bucket>/models/<name>/<version>/")


class RegisteredModel(BaseModel):
    name: str
    owner: str
    base_module: str
    entry_point: str
    task: str
    versions: list[ModelVersion] = Field(default_factory=list)

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["latest"] = self.versions[-1].version if self.versions else None
        return data


class ModelRegistry:
    """Registered models of one user (a user server has one owner), stored under `root`."""

    def __init__(
        self,
        root: str | os.PathLike,
        contents_root: str | os.PathLike,
        store: Callable[[str], ObjectStore | None] | None = None,
    ):
        """`store(owner)`: in kubernetes mode, the owner's bucket, where versions are uploaded (None: none now)."""
        self.root = Path(root)
        self.contents_root = Path(contents_root).resolve()
        self.store = store

    # -- queries -------------------------------------------------------------------

    def list(self) -> list[RegisteredModel]:
        if not self.root.exists():
            return []
        return [RegisteredModel.model_validate_json(p.read_text()) for p in sorted(self.root.glob(f"*/{RECORD_FILE}"))]

    def get(self, name: str) -> RegisteredModel:
        path = self.root / name / RECORD_FILE
        if "/" in name or not path.exists():
            raise NotFound(f"No registered model '{name}'; list yours at /reeflab/api/training/models.")
        return RegisteredModel.model_validate_json(path.read_text())

    def weights(self, model: RegisteredModel, version: str | None = None) -> Path:
        chosen = version or model.versions[-1].version
        return self.root / model.name / chosen / WEIGHTS_FILE

    def entries(self) -> list[ModuleEntry]:
        """Catalogue entries: the newest version's metadata, deployed with its weights."""
        entries = []
        for model in self.list():
            latest = model.versions[-1]
            document = yaml.safe_load((self.root / model.name / latest.version / METADATA_FILE).read_text())
            problems = validate_metadata(document)
            entries.append(
                ModuleEntry(
                    id=model.name,
                    source="registered",
                    metadata=document,
                    valid=not problems,
                    problems=problems,
                    entry_point=model.entry_point,
                    versions=[v.version for v in model.versions],
                    owner=model.owner,
                    deploy_env=self.deploy_env(model),
                )
            )
        return entries

    def deploy_env(self, model: RegisteredModel) -> dict[str, str]:
        """What a deployment of its newest version gets: the weights, and where a pod fetches them from."""
        latest = model.versions[-1]
        env = {WEIGHTS_ENV: str(self.weights(model))}
        if latest.location:
            env.update({weights_store.SOURCE_ENV: latest.location, weights_store.SHA256_ENV: latest.sha256})
        return env

    # -- changes -----------------------------------------------------------------------

    def source_file(self, weights: str) -> Path:
        """A user's .pt path, confined to their Jupyter root folder."""
        path = (self.contents_root / weights).resolve()
        if not path.is_relative_to(self.contents_root):
            raise BadRequest(f"'{weights}' is outside your folder; give a path inside {self.contents_root}.")
        if not path.is_file():
            raise BadRequest(f"No file '{weights}' in your folder; give the path of a trained .pt file.")
        return path

    def register(
        self,
        owner: str,
        request: RegisterRequest,
        base: ModuleEntry,
        weights: Path,
        task: str,
        run: dict[str, Any] | None = None,
    ) -> RegisteredModel:
        """Store `weights` as version `request.version` of `request.name`, with its ai4-metadata."""
        try:
            model = self.get(request.name)
        except NotFound:
            model = RegisteredModel(
                name=request.name, owner=owner, base_module=base.id, entry_point=base.entry_point, task=task
            )
        if model.base_module != base.id:
            raise Conflict(
                f"'{model.name}' is registered on '{model.base_module}'; register weights of '{base.id}' "
                "under another name."
            )
        if any(v.version == request.version for v in model.versions):
            raise Conflict(f"'{model.name}' already has version {request.version}; give a new version.")
        run = run or {}
        metrics = {**{k: float(v) for k, v in (run.get("metrics") or {}).items()}, **request.metrics}
        training_data = request.training_data or (run.get("params") or {}).get("data")
        created = datetime.now(UTC)
        version = ModelVersion(
            version=request.version,
            created=created,
            sha256=_sha256(weights),
            size=weights.stat().st_size,
            metrics=metrics,
            training_data=training_data,
            lineage=request.lineage,
            run_id=run.get("id"),
            run_path=run.get("path"),
            source=f"MLflow run {run['id']}" if run else str(weights.relative_to(self.contents_root)),
        )
        first = model.versions[0].created if model.versions else created
        document = metadata_for(base, request, version, first)
        problems = validate_metadata(document)
        if problems:
            listed = "; ".join(f"{p.field or 'metadata'}: {p.message}" for p in problems)
            raise BadRequest(f"The new module's metadata would be invalid: {listed}")
        store = self._store(owner)
        folder = self.root / model.name / version.version
        self._write(folder, weights, document)
        if store is not None:
            try:
                version.location = weights_store.upload(store, folder, model.name, version.version)
            except Exception as err:  # no half version: the folder goes, and the user learns why
                shutil.rmtree(folder, ignore_errors=True)
                raise ReefLabError(f"Could not upload the weights to your bucket {store.bucket}: {err}") from None
        model.versions.append(version)
        write_private(self.root / model.name / RECORD_FILE, model.model_dump_json(indent=1))
        return model

    def _write(self, folder: Path, weights: Path, document: dict) -> None:
        """Everything of one version, into place at once (a failure leaves no half version)."""
        folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".new-"))
        try:
            fd = os.open(staging / WEIGHTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, open(weights, "rb") as source:
                shutil.copyfileobj(source, out)
            write_private(staging / METADATA_FILE, yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
            staging.replace(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _store(self, owner: str) -> ObjectStore | None:
        if self.store is None:
            return None
        store = self.store(owner)
        if store is None:  # kubernetes mode: a version only in this server's folder could never be deployed
            raise StorageUnavailable(
                "Your platform storage (S3) is not available, and deployments in this cluster fetch registered "
                "weights from it: try again in a minute, or ask an admin."
            )
        return store

    def delete(self, name: str) -> None:
        model = self.get(name)
        if self.store is not None and any(v.location for v in model.versions):
            weights_store.delete(self._store(model.owner), name)
        shutil.rmtree(self.root / name)


def metadata_for(base: ModuleEntry, request: RegisterRequest, version: ModelVersion, first: datetime) -> dict:
    """The base module's ai4-metadata, made the new module's: dates, training data, metrics, run."""
    document = copy.deepcopy(base.metadata)
    document["title"] = request.title or f"{request.name} ({base.title})"
    document["summary"] = request.summary or f"{base.title} trained on {version.training_data or 'new data'}."
    document["dates"] = {"created": first.date().isoformat(), "updated": version.created.date().isoformat()}
    tags = [t for t in document.get("tags") or [] if t != "demo"]
    document["tags"] = [*tags, *(t for t in ("retrained", "registered") if t not in tags)]
    if version.training_data and re.match(r"^[a-z][a-z0-9+.\-]*://", version.training_data):
        document.setdefault("links", {})["dataset"] = version.training_data
    document["version"] = version.version
    lines = [
        (
            f"**Version {version.version}**, registered {version.created:%Y-%m-%d %H:%M} UTC: weights of the "
            f"`{base.id}` module retrained by its owner ({version.source})."
        ),
        "",
        f"**Training data**: {version.training_data or 'not given'}",
        "",
    ]
    if version.lineage:
        lines += ["**Lineage**: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in version.lineage.items()), ""]
    if version.metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4g} |" for name, value in sorted(version.metrics.items())]
        lines.append("")
    lines += ["---", "", f"*About the base module, {base.title}:*", "", str(base.metadata.get("description", ""))]
    document["description"] = "\n".join(lines)
    return document


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
