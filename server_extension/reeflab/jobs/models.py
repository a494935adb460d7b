"""Notebook jobs as users submit and see them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator

from ..runs.models import RunRecord, RunRequest, check_identifiers, relative_file
from ..storage.bindings import check_names

State = Literal["starting", "running", "completed", "failed", "cancelled"]


class JobRequest(RunRequest):
    """POST /reeflab/api/jobs"""

    notebook: str = Field(min_length=1, description="Path of the notebook, relative to your Jupyter root folder")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Values for the notebook's parameters cell")
    kernel: str | None = Field(None, description="Kernel name; default: the notebook's own kernel")
    inputs: dict[str, str] = Field(
        default_factory=dict, description='Storage to read: {"NAME": "connection:path"}; the job gets env NAME'
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description='Storage to write: {"NAME": "connection:path"}; the job gets env NAME'
    )
    processes: int | None = Field(
        None,
        ge=1,
        le=64,
        validation_alias=AliasChoices("processes", "nproc"),
        description="Run the notebook as a distributed training with torchrun: this many ranks on each node "
        "(at most one per GPU of the profile, else one per CPU); each gets RANK, LOCAL_RANK, WORLD_SIZE",
    )
    nodes: int = Field(1, ge=1, le=64, description="Nodes of a distributed job (more than one: kubernetes mode)")

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
        check_identifiers(parameters, "a Python variable name")
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
    processes: int | None = Field(None, description="Ranks on each node of a distributed job; None: not one")
    nodes: int = 1
    state: State = "starting"
    progress: Progress = Field(default_factory=Progress)
    error: JobError | None = None
    failed_rank: int | None = Field(None, description="The rank whose failure failed a distributed job")
    finished_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        data = super().public()
        data["output_url"] = f"lab/tree/{self.output}"
        return data
