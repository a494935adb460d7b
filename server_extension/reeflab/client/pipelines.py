"""Pipeline runs from Python: `run = submit("notebooks/detect_classify.pipeline", {"IMAGES_DIR": "photos"})`.

`run.wait()` shows each node as it finishes; `run.nodes()` is every node's state; `run.logs(node="crop")`
is one node's output; a failure raises PipelineFailed naming the node and the cell.
"""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm

from .connection import Connection, ReefLabClientError, Resource, default_connection

ACTIVE = ("starting", "running")


class PipelineFailed(ReefLabClientError):
    """The run did not complete: `node` is the failing node's id, `cell_index` its failing cell."""

    def __init__(self, info: dict[str, Any]):
        failed = next((n for n in info.get("nodes", []) if n["state"] == "failed"), None) or {}
        self.node = failed.get("id")
        self.cell_index = (failed.get("error") or {}).get("cell_index")
        super().__init__(409, f"pipeline run {info['id']} {info['state']}: {info.get('reason') or ''}".strip())


class PipelineRun(Resource):
    """A handle on one run; `info` is its latest state from the server."""

    collection = ("pipelines",)

    def __repr__(self) -> str:
        done = sum(n["state"] == "completed" for n in self.info["nodes"])
        return f"<PipelineRun {self.id} {self.info['pipeline']} {self.state} {done}/{len(self.info['nodes'])} nodes>"

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Each node's state, cell progress and error, by node id."""
        return {n["id"]: n for n in self.info["nodes"]}

    def wait(self, timeout: float | None = None, progress: bool = True, interval: float = 1.0) -> PipelineRun:
        """Block until the run ends, one progress step per finished node; raise PipelineFailed unless it completed."""
        deadline = time.monotonic() + timeout if timeout else None
        with tqdm(desc=self.info["title"], total=len(self.info["nodes"]), unit="node", disable=not progress) as bar:
            while self.refresh().state in ACTIVE:
                bar.n = sum(n["state"] == "completed" for n in self.info["nodes"])
                running = [f"{n['label']} {n['progress']['cell']}/{n['progress']['cells']}" for n in self.info["nodes"]]
                bar.set_postfix_str(
                    ", ".join(r for r, n in zip(running, self.info["nodes"], strict=True) if n["state"] == "running")
                )
                if deadline and time.monotonic() > deadline:
                    raise TimeoutError(f"{self!r} still running after {timeout:.0f} s")
                time.sleep(interval)
            bar.n = sum(n["state"] == "completed" for n in self.info["nodes"])
            bar.set_description(f"{self.info['title']}: {self.state}")
        if self.state != "completed":
            raise PipelineFailed(self.info)
        return self

    def logs(self, tail: int = 200, node: str | None = None) -> list[str]:
        params = {"tail": tail, **({"node": node} if node else {})}
        return self.connection.get("pipelines", self.id, "log", **params)["lines"]

    def cancel(self) -> PipelineRun:
        self.info = self.connection.post("pipelines", self.id, "cancel")
        return self

    def delete(self) -> None:
        self.connection.request("DELETE", "pipelines", self.id)


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
    connection = connection or default_connection()
    body = {"pipeline": pipeline, "parameters": parameters or {}, "profile": profile, "title": title}
    body["max_parallel"] = max_parallel
    return PipelineRun(connection.post("pipelines", json={k: v for k, v in body.items() if v is not None}), connection)


def list_runs(connection: Connection | None = None) -> list[PipelineRun]:
    connection = connection or default_connection()
    return [PipelineRun(info, connection) for info in connection.get("pipelines")["runs"]]


def get(run_id: str, connection: Connection | None = None) -> PipelineRun:
    connection = connection or default_connection()
    return PipelineRun(connection.get("pipelines", run_id), connection)
