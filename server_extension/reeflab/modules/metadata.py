"""ai4-metadata v2 documents of modules: loading and validation with the official schema."""

from __future__ import annotations

import functools
import re
import warnings
from importlib import resources
from typing import Any

import yaml

from ..catalog.models import MetadataProblem

METADATA_FILE = "ai4-metadata.yml"
_REQUIRED = re.compile(r"^'(.+)' is a required property$")


def load_module_metadata(package: str) -> dict[str, Any]:
    """The metadata document shipped inside a module package."""
    text = resources.files(package).joinpath(METADATA_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


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
