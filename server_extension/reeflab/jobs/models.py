"""Notebook jobs as users submit and see them."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..runs.models import RunRecord
from ..storage.bindings import check_names

State = Literal["starting", "running", "completed", "failed", "cancelled"]
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def relative_file(value: str, suffix: str, what: str, kind: str) -> str:
    """A path inside the user's Jupyter root (no absolute path, no '..') ending in `suffix`."""
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"give the {what}'s path relative to your Jupyter root folder, without '..'")
    if path.suffix != suffix:
        raise ValueError(f"'{value}' is not {kind}")
    return str(path)


class JobRequest(BaseModel):
    """POST /reeflab/api/jobs"""

    model_config = ConfigDict(extra="forbid")

    notebook: str = Field(min_length=1, description="Path of the notebook, relative to your Jupyter root folder")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Values for the notebook's parameters cell")
    kernel: str | None = Field(None, description="Kernel name; default: the notebook's own kernel")
    profile: str | None = Field(None, description="Hardware profile slug; default: your default profile")
    title: str | None = Field(None, max_length=120)
    inputs: dict[str, str] = Field(
        default_factory=dict, description='Storage to read: {"NAME": "connection:path"}; the job gets env NAME'
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description='Storage to write: {"NAME": "connection:path"}; the job gets env NAME'
    )

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, inputs: dict[str, str]) -> dict[str, str]:
        return check_names(inputs, "input")

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, outputs: dict[str, str]) -> dict[str, str]:
        return check_names(outputs, "output")

    @field_validator("notebook")
    @classmethod
    def _relative_notebook(cls, notebook: str) -> str:
        return relative_file(notebook, ".ipynb", "notebook", "a notebook (.ipynb)")

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        for name in parameters:
            if not _PARAM_NAME.match(name):
                raise ValueError(f"'{name}' is not a Python variable name (letters, digits, '_')")
        return parameters


class Progress(BaseModel):
    """Where the run is: cell `cell` (1-based, in your notebook) of `cells`."""

    cell: int = 0
    cells: int = 0
    source: str = Field("", description="First line of the running cell")


class JobError(BaseModel):
    """The failing cell of a failed job, and what it raised."""

    cell_index: int | None = Field(None, description="0-based index of the failing cell in your notebook")
    execution_count: int | None = None
    ename: str
    evalue: str
    source: str = ""


class Job(RunRecord):
    """A notebook job and everything the platform keeps about it (runtime details stay server-side)."""

    notebook: str
    output: str = Field(description="Executed notebook, relative to your Jupyter root folder")
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict, description="Storage read, as 'connection:path'")
    outputs: dict[str, str] = Field(default_factory=dict, description="Storage written, as 'connection:path'")
    kernel: str
    cpu: float
    memory_MB: int
    gpu: int = 0
    state: State = "starting"
    progress: Progress = Field(default_factory=Progress)
    error: JobError | None = None
    finished_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        data = super().public()
        data["output_url"] = f"lab/tree/{self.output}"
        return data
