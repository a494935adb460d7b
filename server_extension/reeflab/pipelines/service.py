"""PipelineService: submit, watch, cancel and describe a user's Elyra pipeline runs (they behave like jobs)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from datetime import datetime
from pathlib import Path

from traitlets import Int, Type, Unicode, default

from ..errors import BadRequest, Forbidden, NotFound
from ..jobs.backends.base import JobBackend
from ..jobs.distributed import RANK_LOG, check_ranks
from ..jobs.models import JobError, Progress
from ..jobs.store import JOB_FILE, LOG_FILE
from ..processes import tail_lines
from ..profiles import ProfileCatalog
from ..runs.service import RunService, check_tail, now
from .backends import LocalPipelineBackend
from .models import NodeState, PipelineRequest, PipelineRun


def read_nodes(pipeline: Path, root: Path) -> list[NodeState]:
    """The pipeline's nodes from its file (before Elyra's full validation in the runner): a 400 if unusable."""
    try:
        document = json.loads(pipeline.read_text())
        primary = next(p for p in document["pipelines"] if p["id"] == document.get("primary_pipeline", p["id"]))
        raw = primary["nodes"]
    except (ValueError, KeyError, TypeError, StopIteration):
        raise BadRequest(f"'{pipeline.name}' is not an Elyra pipeline file; open and save it in the editor.") from None
    nodes = []
    for node in raw:
        if node.get("type") != "execution_node":
            continue
        properties, label = node.get("app_data", {}).get("component_parameters", {}), _label(node)
        filename = properties.get("filename")
        if not filename:
            raise BadRequest(f"node '{label}' of '{pipeline.name}' has no file to run.")
        path = (pipeline.parent / filename).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise BadRequest(f"node '{label}' runs '{filename}', which is not in your folder.")
        processes = _processes(properties, label, pipeline.name, filename)
        parents = [link["node_id_ref"] for port in node.get("inputs", []) for link in port.get("links", [])]
        relative = str(path.relative_to(root))
        nodes.append(NodeState(id=node["id"], label=label, filename=relative, parents=parents, processes=processes))
    if not nodes:
        raise BadRequest(f"'{pipeline.name}' has no nodes to run; add notebooks or scripts in the editor.")
    return nodes


def _label(node: dict) -> str:
    app = node.get("app_data", {})
    return app.get("label") or app.get("ui_data", {}).get("label") or node["id"]


def _processes(properties: dict, label: str, pipeline: str, filename: str) -> int | None:
    """A node's `processes` property (ranks under torchrun, as a distributed job has): None where not set."""
    processes = properties.get("processes")
    if processes in (None, "", 0):
        return None
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise BadRequest(
            f"node '{label}' of '{pipeline}': 'processes' must be a whole number of ranks (1 or more), "
            f"not {processes!r}."
        )
    if not filename.endswith(".ipynb"):
        raise BadRequest(
            f"node '{label}' of '{pipeline}' asks for {processes} processes, but only notebook nodes run "
            "distributed; remove 'processes' or make it a notebook."
        )
    return processes


class PipelineService(RunService[PipelineRun]):
    """One user's pipeline runs, kept true by watching the runner's status file."""

    folder_name = "pipelines"
    record_class, record_file = PipelineRun, JOB_FILE
    noun, api_path = "pipeline run", "/reeflab/api/pipelines"
    keeps_server_alive = True  # a run keeps the server from the idle culler, as a job does

    backend_class = Type(
        LocalPipelineBackend,
        klass=JobBackend,
        config=True,
        help="Where pipeline runs run: reeflab.pipelines.backends.LocalPipelineBackend (Elyra's local runtime, "
        "every node a process of the user's server's account).",
    )

    notebook_root = Unicode(help="The Jupyter server's root folder: pipelines and outputs live under it")

    @default("notebook_root")
    def _default_notebook_root(self) -> str:
        return os.getcwd()

    output_dir = Unicode("reeflab-pipelines", config=True, help="Folder under the root for executed node notebooks")
    max_running = Int(2, config=True, help="Pipeline runs a user may have at once")
    max_parallel = Int(2, config=True, help="Default number of independent nodes run at once")

    async def logs(
        self, owner: str, run_id: str, tail: int = 200, node: str | None = None, rank: int | None = None
    ) -> list[str]:
        """The run's log; with `node` that node's own; with `rank` too, that rank's log of a distributed node."""
        if not node:
            if rank is not None:
                raise BadRequest("'rank' is the rank of a distributed node: give 'node' too.")
            return await super().logs(owner, run_id, tail)
        check_tail(tail)
        run = self.get(owner, run_id)
        found = run.node(node)
        if found is None:
            raise NotFound(f"Run '{run_id}' has no node '{node}'; its nodes: {', '.join(n.id for n in run.nodes)}.")
        if rank is None:
            return tail_lines(self.folder(run) / "nodes" / node / LOG_FILE, tail)
        if not found.processes:
            raise BadRequest(f"Node '{node}' is not a distributed one: it has no ranks; leave out 'rank'.")
        if not 0 <= rank < found.processes:
            raise BadRequest(f"Node '{node}' has ranks 0 to {found.processes - 1}; 'rank' {rank} is none of them.")
        return tail_lines(self.folder(run) / "nodes" / node / RANK_LOG.format(rank=rank), tail)

    # -- changes ---------------------------------------------------------------

    def _pipeline(self, relative: str) -> Path:
        root = Path(self.notebook_root).resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise BadRequest(f"'{relative}' is outside your folder; give a path inside it.")
        if not path.is_file():
            raise BadRequest(
                f"No pipeline '{relative}' in your folder; check the path (relative to your home). The examples "
                "are in notebooks/ (e.g. notebooks/detect_classify.pipeline); Refresh examples brings them back."
            )
        return path

    async def submit(
        self, owner: str, groups: list[str], request: PipelineRequest, profiles: ProfileCatalog
    ) -> PipelineRun:
        pipeline = self._pipeline(request.pipeline)
        root = Path(self.notebook_root).resolve()
        nodes = read_nodes(pipeline, root)
        profile = profiles.choose(request.profile, groups)
        for node in nodes:
            if node.processes:
                check_ranks(node.processes, profile, f"node '{node.label}' of '{pipeline.name}': ")
        active = self.active(owner)
        if len(active) >= self.max_running:
            raise Forbidden(f"You have {len(active)} pipelines running, the most allowed; wait or cancel one.")
        run_id = secrets.token_hex(4)
        output = Path(self.output_dir) / run_id
        taken: set[str] = set()
        for node in nodes:
            stem = Path(node.filename).stem if node.label in taken else node.label
            stem = node.id if stem in taken else stem
            taken.add(stem)
            node.output = str(output / f"{stem}{'.ipynb' if node.filename.endswith('.ipynb') else '.log'}")
        run = PipelineRun(
            id=run_id,
            owner=owner,
            title=request.title or pipeline.stem,
            pipeline=request.pipeline,
            output=str(output),
            run_name=f"{pipeline.stem}-{run_id}",
            parameters=request.parameters,
            profile=profile.slug,
            cpu=profile.cpu,
            memory_MB=profile.memory_bytes // 10**6,
            gpu=profile.gpu_count,
            max_parallel=request.max_parallel or self.max_parallel,
            nodes=nodes,
            backend=self.backend.name,
            created=now(),
        )
        (root / output).mkdir(parents=True, exist_ok=True)
        spec = {
            "pipeline": str(pipeline),
            "root": str(root),
            "run_name": run.run_name,
            "parameters": request.parameters,
            "max_parallel": run.max_parallel,
            "nodes": [{"id": n.id, "label": n.label, "output": n.output, "processes": n.processes} for n in nodes],
            "ddp_backend": "nccl" if profile.gpu_count else "gloo",  # distributed nodes' torch.distributed backend
        }
        self._save(run)
        await self._launch(run, self.backend.start(run, self.folder(run), spec, profile))
        return run

    async def _cancelled(self, run: PipelineRun) -> None:
        await self.check(run)  # the nodes that ended meanwhile; those that did not are cancelled or skipped
        for node in run.nodes:
            if node.state in ("pending", "running"):
                node.state = "skipped" if node.state == "pending" else "cancelled"

    # -- watching ----------------------------------------------------------------

    async def check(self, run: PipelineRun) -> None:
        """Take over the runner's view: each node's state, progress and error; the run's end."""
        status = await self.backend.status(run, self.folder(run))
        for node_id, seen in (status.get("nodes") or {}).items():
            node = run.node(node_id)
            if node is None:
                continue
            node.state = seen.get("state", node.state)
            node.reason = seen.get("reason")
            if seen.get("progress"):
                node.progress = Progress(**seen["progress"])
            if seen.get("error"):
                node.error = JobError(**seen["error"])
            for stamp in ("started_at", "finished_at"):
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    setattr(node, stamp, datetime.fromisoformat(seen[stamp]))
        state = status.get("state", "starting")
        if state in ("completed", "failed", "cancelled"):
            with contextlib.suppress(KeyError, ValueError):
                run.finished_at = datetime.fromisoformat(status["finished_at"])
            self._finish(run, state, status.get("reason"))
        else:
            run.state = state
            self._save(run)
