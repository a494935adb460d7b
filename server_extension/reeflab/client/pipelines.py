"""Pipeline runs from Python: `run = submit("notebooks/detect_classify.pipeline", {"IMAGES_DIR": "photos"})`.

`run.wait()` shows each node as it finishes; `run.nodes()` is every node's state; `run.logs(node="crop")`
is one node's output; a failure raises PipelineFailed naming the node and the cell.
"""

from __future__ import annotations

from typing import Any

from .connection import Connection, ReefLabClientError, Run


class PipelineFailed(ReefLabClientError):
    """The run did not complete: `node` is the failing node's id, `cell_index` its failing cell."""

    def __init__(self, info: dict[str, Any]):
        failed = next((n for n in info.get("nodes", []) if n["state"] == "failed"), None) or {}
        self.node = failed.get("id")
        self.cell_index = (failed.get("error") or {}).get("cell_index")
        super().__init__(409, f"pipeline run {info['id']} {info['state']}: {info.get('reason') or ''}".strip())


class PipelineRun(Run):
    """A handle on one run; `info` is its latest state from the server."""

    collection, listed_as, unit, failure = ("pipelines",), "runs", "node", PipelineFailed

    def __repr__(self) -> str:
        done = sum(n["state"] == "completed" for n in self.info["nodes"])
        return f"<PipelineRun {self.id} {self.info['pipeline']} {self.state} {done}/{len(self.info['nodes'])} nodes>"

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Each node's state, cell progress and error, by node id."""
        return {n["id"]: n for n in self.info["nodes"]}

    def show_progress(self, bar) -> None:
        """One step per finished node, and the cells of the running ones."""
        nodes = self.info["nodes"]
        bar.total, bar.n = len(nodes), sum(n["state"] == "completed" for n in nodes)
        cells = [(n["label"], n["progress"]) for n in nodes if n["state"] == "running"]
        bar.set_postfix_str(", ".join(f"{label} {p['cell']}/{p['cells']}" for label, p in cells))

    def logs(self, tail: int = 200, node: str | None = None, rank: int | None = None) -> list[str]:
        """The run's log, or one node's own (its cells' output), or one rank's of a distributed node."""
        options = {"node": node} if node else {}
        return super().logs(tail, **options, **({"rank": rank} if rank is not None else {}))


def submit(
    pipeline: str,
    parameters: dict[str, Any] | None = None,
    *,
    profile: str | None = None,
    title: str | None = None,
    max_parallel: int | None = None,
    connection: Connection | None = None,
) -> PipelineRun:
    """Run a .pipeline file (path relative to your Jupyter root folder) with parameters in the background."""
    body = {"pipeline": pipeline, "parameters": parameters or {}, "profile": profile, "title": title}
    return PipelineRun.create({**body, "max_parallel": max_parallel}, connection)


def list_runs(connection: Connection | None = None) -> list[PipelineRun]:
    return PipelineRun.all(connection)


def get(run_id: str, connection: Connection | None = None) -> PipelineRun:
    return PipelineRun.fetch(run_id, connection)
