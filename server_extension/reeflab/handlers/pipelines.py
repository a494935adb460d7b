"""Pipeline runs: submit an Elyra pipeline with parameters, list, per-node status, logs, cancel."""

from __future__ import annotations

from typing import Any

from ..pipelines.models import PipelineRequest
from ..pipelines.service import PipelineService
from .runs import RunCancelHandler, RunHandler, RunLogHandler, RunsBase, RunsHandler


class PipelinesBase(RunsBase):
    auth_resource = "reeflab:pipelines"

    @property
    def runs(self) -> PipelineService:
        return self.services.pipelines


class PipelinesHandler(PipelinesBase, RunsHandler):
    """GET: your pipeline runs. POST: run a .pipeline file with parameters in the background."""

    request_model, what, listed_as = PipelineRequest, "pipeline request", "runs"


class PipelineRunHandler(PipelinesBase, RunHandler):
    """GET: one run with every node's state, cell progress and error. DELETE: forget it (cancelling it)."""


class PipelineCancelHandler(PipelinesBase, RunCancelHandler):
    pass


class PipelineLogHandler(PipelinesBase, RunLogHandler):
    """GET ?tail=N: the run's log; ?node=<id>: that node's own log (its cells' output), with ?rank=N that rank's
    (a distributed node); ?follow=1 streams it."""

    def log_options(self) -> dict[str, Any]:
        rank = self.int_argument("rank", 0, 0) if self.get_argument("rank", "") else None
        return {"node": self.get_argument("node", "") or None, "rank": rank}
