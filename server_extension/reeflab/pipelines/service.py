"""PipelineService: submit, watch, cancel and describe a user's Elyra pipeline runs (they behave like jobs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil
from jupyter_core.paths import jupyter_data_dir
from traitlets import Float, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..deployments.backends.local import cpu_set, tail_lines
from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..jobs.activity import HubActivity
from ..jobs.backends.local import LocalJobBackend, job_env
from ..jobs.models import JobError, Progress
from ..jobs.store import JOB_FILE, LOG_FILE, write_private
from ..profiles import ProfileCatalog
from .models import NodeState, PipelineRequest, PipelineRun


def now() -> datetime:
    return datetime.now(UTC)


class LocalPipelineBackend(LocalJobBackend):
    """The pipeline runner detached in its own session; status, cancel and logs as for notebook jobs."""

    name = "local"

    async def start(self, run: PipelineRun, folder: Path, spec: dict, profile) -> dict:  # noqa: ARG002
        write_private(folder / "spec.json", json.dumps(spec, indent=1))
        cpus = cpu_set(run.cpu)
        with open(folder / LOG_FILE, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "reeflab.pipelines.runner", str(folder)],
                cwd=spec["root"],
                env=job_env(run, dict(os.environ)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
        return {"pid": process.pid, "started": psutil.Process(process.pid).create_time()}


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
        app = node.get("app_data", {})
        filename = app.get("component_parameters", {}).get("filename")
        if not filename:
            raise BadRequest(f"node '{app.get('label', node['id'])}' of '{pipeline.name}' has no file to run.")
        path = (pipeline.parent / filename).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise BadRequest(f"node '{app.get('label', node['id'])}' runs '{filename}', which is not in your folder.")
        parents = [link["node_id_ref"] for port in node.get("inputs", []) for link in port.get("links", [])]
        label = app.get("label") or app.get("ui_data", {}).get("label") or node["id"]
        nodes.append(NodeState(id=node["id"], label=label, filename=str(path.relative_to(root)), parents=parents))
    if not nodes:
        raise BadRequest(f"'{pipeline.name}' has no nodes to run; add notebooks or scripts in the editor.")
    return nodes


class PipelineService(LoggingConfigurable):
    """One user's pipeline runs, kept true by watching the runner's status file."""

    root_dir = Unicode(config=True, help="Where runs keep their state and logs (private to the user)")

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / "pipelines")

    notebook_root = Unicode(help="The Jupyter server's root folder: pipelines and outputs live under it")

    @default("notebook_root")
    def _default_notebook_root(self) -> str:
        return os.getcwd()

    output_dir = Unicode("reeflab-pipelines", config=True, help="Folder under the root for executed node notebooks")
    max_running = Int(2, config=True, help="Pipeline runs a user may have at once")
    max_parallel = Int(2, config=True, help="Default number of independent nodes run at once")
    poll_interval = Float(1.0, config=True, help="Seconds between checks of running pipelines")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.backend = LocalPipelineBackend(parent=self)
        self.activity = HubActivity(parent=self)
        self.root = Path(self.root_dir)
        self._runs = {r.id: r for r in self._load_all()}
        self._watcher: asyncio.Task | None = None

    def _load_all(self) -> list[PipelineRun]:
        if not self.root.exists():
            return []
        return [PipelineRun.model_validate_json(p.read_text()) for p in sorted(self.root.glob(f"*/{JOB_FILE}"))]

    def folder(self, run: PipelineRun) -> Path:
        return self.root / run.id

    # -- queries -------------------------------------------------------------

    def list(self, owner: str) -> list[PipelineRun]:
        return sorted((r for r in self._runs.values() if r.owner == owner), key=lambda r: r.created)

    def get(self, owner: str, run_id: str) -> PipelineRun:
        run = self._runs.get(run_id)
        if run is None or run.owner != owner:
            raise NotFound(f"No pipeline run '{run_id}'; list yours at /reeflab/api/pipelines.")
        return run

    async def fresh(self, owner: str, run_id: str) -> PipelineRun:
        run = self.get(owner, run_id)
        if run.active:
            await self.check(run)
        return run

    async def logs(self, owner: str, run_id: str, tail: int = 200, node: str | None = None) -> list[str]:
        if not 1 <= tail <= 10000:
            raise BadRequest("tail must be between 1 and 10000 lines")
        run = self.get(owner, run_id)
        if not node:
            return await self.backend.logs(run, self.folder(run), tail)
        if run.node(node) is None:
            raise NotFound(f"Run '{run_id}' has no node '{node}'; its nodes: {', '.join(n.id for n in run.nodes)}.")
        return tail_lines(self.folder(run) / "nodes" / node / LOG_FILE, tail)

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
        active = [r for r in self.list(owner) if r.active]
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
            "nodes": [{"id": n.id, "label": n.label, "output": n.output} for n in nodes],
        }
        self._save(run)
        run.started_at = now()
        try:
            run.runtime = await self.backend.start(run, self.folder(run), spec, profile)
        except Exception as err:
            self._finish(run, "failed", f"could not start: {err}")
            return run
        self._save(run)
        self.ensure_watching()
        return run

    async def cancel(self, owner: str, run_id: str) -> PipelineRun:
        run = self.get(owner, run_id)
        if not run.active:
            raise Conflict(f"Pipeline run '{run_id}' is {run.state}; only a running one can be cancelled.")
        await self.backend.cancel(run, self.folder(run))
        await self.check(run)
        for node in run.nodes:
            if node.state in ("pending", "running"):
                node.state = "skipped" if node.state == "pending" else "cancelled"
        self._finish(run, "cancelled", "cancelled by you")
        return run

    async def delete(self, owner: str, run_id: str) -> None:
        """Forget a run (cancelling it if it runs); its executed notebooks stay in your folder."""
        run = self.get(owner, run_id)
        if run.active:
            await self.backend.cancel(run, self.folder(run))
        del self._runs[run.id]
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, self.folder(run), True)

    async def cancel_all(self, reason: str = "stopped by the platform") -> list[PipelineRun]:
        """Cancel every running pipeline at once (the platform stopping, tests, operators); records stay."""
        active = [r for r in self._runs.values() if r.active]
        outcomes = await asyncio.gather(
            *(self.backend.cancel(r, self.folder(r)) for r in active), return_exceptions=True
        )
        for run, outcome in zip(active, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.log.error("cancelling pipeline run %s failed: %s", run.id, outcome)
            self._finish(run, "cancelled", reason)
        return active

    def _save(self, run: PipelineRun) -> None:
        self._runs[run.id] = run
        folder = self.folder(run)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(folder / JOB_FILE, run.model_dump_json(indent=1))

    def _finish(self, run: PipelineRun, state: str, reason: str | None) -> None:
        run.state = state
        run.reason = reason
        run.finished_at = run.finished_at or now()
        self._save(run)

    # -- watching ----------------------------------------------------------------

    def ensure_watching(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while any(r.active for r in self._runs.values()):
            for run in [r for r in self._runs.values() if r.active]:
                try:
                    await self.check(run)
                except Exception:
                    self.log.exception("checking pipeline run %s failed", run.id)
            if any(r.active for r in self._runs.values()):
                await self.activity.report_if_due()  # a run keeps the server from the idle culler, as a job does
            await asyncio.sleep(self.poll_interval)

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
