"""ai4-metadata v2 documents of modules: loading and validation with the official schema."""

from __future__ import annotations

import functools
import inspect
import re
import sys
import warnings
from importlib import resources
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

METADATA_FILE = "ai4-metadata.yml"
_REQUIRED = re.compile(r"^'(.+)' is a required property$")


class MetadataProblem(BaseModel):
    """One reason a module's metadata is invalid: the field at fault and what is wrong."""

    field: str = Field(description="Dotted path of the field, e.g. 'resources.inference.cpu'; '' for the top")
    message: str


def load_module_metadata(package: str) -> dict[str, Any]:
    """The metadata document shipped inside a module package."""
    text = resources.files(package).joinpath(METADATA_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


# a project's root: the search for its ai4-metadata.yml stops there (or at the folder packages install into)
_PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
_INSTALL_DIRS = ("site-packages", "dist-packages")


def find_metadata_file(obj: Any, ep: EntryPoint | None = None) -> Path | None:
    """The `ai4-metadata.yml` a module ships: next to its code or above it up to its project's root (AI4OS
    modules keep it at the repository root and are installed from there), else among its distribution's files."""
    module = inspect.getmodule(obj) if not inspect.ismodule(obj) else obj
    if module is None and ep is not None:
        module = sys.modules.get(ep.module)
    source = getattr(module, "__file__", None)
    if source:
        folder = Path(source).resolve().parent
        for candidate in (folder, *folder.parents):
            if candidate.name in _INSTALL_DIRS:
                break
            if (candidate / METADATA_FILE).is_file():
                return candidate / METADATA_FILE
            if any((candidate / name).is_file() for name in _PROJECT_FILES):
                break
    dist = getattr(ep, "dist", None)
    for file in (dist.files or []) if dist is not None else []:
        if file.name == METADATA_FILE:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


def read_metadata_file(path: Path) -> tuple[Any, list[MetadataProblem]]:
    """The document of an ai4-metadata.yml, or the problem that keeps it from being read."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}, []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return {}, [MetadataProblem(field="", message=f"{METADATA_FILE} could not be read: {err}")]


@functools.cache
def _validator(version: str):
    from ai4_metadata import metadata as ai4

    with warnings.catch_warnings():
        # the ai4-metadata schemas name a $schema URL jsonschema does not know; it uses the latest draft
        warnings.filterwarnings("ignore", "The metaschema specified by", DeprecationWarning)
        return ai4.get_validator_for_schema(ai4.get_schema_file(ai4.MetadataVersions(version)))


def validate_metadata(document: Any) -> list[MetadataProblem]:
    """Every problem of a document against the ai4-metadata schema it declares (v2.x)."""
    if not isinstance(document, dict):
        return [MetadataProblem(field="", message="metadata must be a mapping of fields (YAML or JSON object)")]
    version = str(document.get("metadata_version", ""))
    if not version.startswith("2."):
        return [MetadataProblem(field="metadata_version", message=f"'{version}' is not a supported 2.x version")]
    try:
        validator = _validator(version)
    except ValueError:
        return [MetadataProblem(field="metadata_version", message=f"unknown ai4-metadata version '{version}'")]
    problems = []
    for error in validator.iter_errors(document):
        path = [str(p) for p in error.absolute_path]
        missing = _REQUIRED.match(error.message) if error.validator == "required" else None
        if missing:  # name the missing field itself, not its parent
            path.append(missing.group(1))
        problems.append(MetadataProblem(field=".".join(path), message=error.message))
    return sorted(problems, key=lambda p: p.field)
