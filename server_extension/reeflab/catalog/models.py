"""What the catalogue knows about a module, independent of where it came from."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..modules.metadata import MetadataProblem

# Facets a user filters on; keys of ai4-metadata v2 except "data-type" spelled as in the schema.
FACETS = ("tasks", "libraries", "categories", "data-type", "tags")

SourceKind = Literal["builtin", "installed", "remote", "registered"]


def slug(name: str) -> str:
    """A module id from any name: lower case letters, digits, '-', '_' and '.'."""
    return re.sub(r"[^a-z0-9\-_.]+", "-", name.lower()).strip("-_.") or "unnamed"


class ModuleEntry(BaseModel):
    """A module in the catalogue: its ai4-metadata, where it comes from, and whether it validates."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-_.]*$", description="Unique slug, e.g. 'yolo-detector'")
    source: SourceKind
    metadata: dict[str, Any] = Field(default_factory=dict, description="ai4-metadata v2 document")
    valid: bool = True
    problems: list[MetadataProblem] = Field(default_factory=list)
    entry_point: str | None = Field(None, description="deepaas.v2.model entry point name, if installed here")
    versions: list[str] = Field(default_factory=list, description="Registered versions, newest last")
    owner: str | None = Field(None, description="Who registered it (a registered model)")
    trained: bool = Field(
        True,
        description="False when the module says it has no trained weights (a network built from a yaml): "
        "it is to be trained, not tried",
    )
    retrain: dict[str, str] | None = Field(
        None, description="Parameters of notebooks/retrain.pipeline that train it, when it has no trained weights"
    )
    # the check report a module of a remote index was published with (shown as its badge)
    published_check: dict[str, Any] | None = Field(None, exclude=True)
    # environment a deployment of this entry gets (a registered model's weights); internal paths, never shown
    deploy_env: dict[str, str] = Field(default_factory=dict, exclude=True)

    @property
    def deployable(self) -> bool:
        """Installed here and valid: what the search card, the form and the deploy call all go by."""
        return self.entry_point is not None and self.valid

    def problem_text(self) -> str:
        """The problems in one line, each with its field, for error messages."""
        return "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in self.problems)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or self.id)

    @property
    def summary(self) -> str:
        return str(self.metadata.get("summary") or "")

    def facet_values(self, facet: str) -> list[str]:
        # invalid metadata may hold anything: keep only what reads as values
        values = self.metadata.get(facet) or []
        values = values if isinstance(values, list) else [values]
        return [str(v) for v in values if isinstance(v, str | int | float)]

    def updated(self) -> str:
        dates = self.metadata.get("dates")
        if not isinstance(dates, dict):
            return ""
        return str(dates.get("updated") or dates.get("created") or "")

    def card(self) -> dict[str, Any]:
        """The short form shown in search results."""
        return {
            "id": self.id,
            "title": self.title,
            "summary": self.summary,
            "source": self.source,
            "valid": self.valid,
            "deployable": self.deployable,
            "trained": self.trained,
            "updated": self.updated(),
            **{facet: self.facet_values(facet) for facet in FACETS},
        }
