"""Pipeline runs as users submit and see them: the run, and the state of each of its nodes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ..jobs.models import JobError, Progress
from ..runs.models import RunRecord, RunRequest, check_identifiers, relative_file

State = Literal["starting", "running", "completed", "failed", "cancelled"]
NodeStateName = Literal["pending", "running", "completed", "failed", "cancelled", "skipped"]


class PipelineRequest(RunRequest):
    """POST /reeflab/api/pipelines"""

    pipeline: str = Field(min_length=1, description="Path of the .pipeline file, relative to your Jupyter root folder")
    parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Values for the pipeline's environment variables (its parameters)"
    )
    max_parallel: int | None = Field(None, ge=1, le=16, description="Nodes run at once when independent")

    @field_validator("pipeline")
    @classmethod
    def _relative_pipeline(cls, pipeline: str) -> str:
        return relative_file(pipeline, ".pipeline", "pipeline", "an Elyra pipeline (.pipeline)")

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, parameters: dict[str, Any]) -> dict[str, str]:
        check_identifiers(parameters, "an environment variable name")
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in parameters.items()}


class NodeState(BaseModel):
    """One node of a run: where it is, and for a failure the cell and error."""

    id: str
    label: str
    filename: str = Field(description="The node's file, relative to your Jupyter root folder")
    parents: list[str] = Field(default_factory=list)
    processes: int | None = Field(
        None, description="Ranks of a distributed node (its 'processes' property): torchrun starts them, as for jobs"
    )
    state: NodeStateName = "pending"
    reason: str | None = None
    progress: Progress = Field(default_factory=Progress)
    error: JobError | None = None
    output: str | None = Field(None, description="Executed notebook of this node, relative to your root folder")
    started_at: datetime | None = None
    finished_at: datetime | None = None


class PipelineRun(RunRecord):
    """A pipeline run and everything the platform keeps about it (runtime details stay server-side)."""

    pipeline: str
    output: str = Field(description="Folder of the executed node notebooks, relative to your root folder")
    run_name: str = Field(
        "",
        description="ELYRA_RUN_NAME of its nodes: shipped nodes write under <WORK_DIR>/<run_name>/ and "
        "<REPORT_DIR>/<run_name>/, so two runs never share a folder",
    )
    parameters: dict[str, str] = Field(default_factory=dict)
    cpu: float
    memory_MB: int
    gpu: int = 0
    max_parallel: int = 2
    state: State = "starting"
    nodes: list[NodeState] = Field(default_factory=list)
    finished_at: datetime | None = None

    @property
    def notebook(self) -> str:  # what the jobs' process environment names runs after
        return self.pipeline

    def node(self, node_id: str) -> NodeState | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def public(self) -> dict[str, Any]:
        data = super().public()
        data["output_url"] = f"lab/tree/{self.output}"
        return data
