"""JobService: submit, watch, cancel and describe a user's papermill notebook jobs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from datetime import datetime
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from traitlets import Any, Int, Type, Unicode, default

from ..errors import BadRequest, Forbidden
from ..processes import tail_lines
from ..profiles import HardwareProfile, ProfileCatalog
from ..runs.service import RunService, check_tail, now
from ..storage.bindings import Bindings, bind
from .backends.base import JobBackend
from .backends.local import LocalJobBackend
from .distributed import RANK_LOG, check_ranks
from .models import Job, JobError, JobRequest, Progress
from .store import JOB_FILE


class JobService(RunService[Job]):
    """One user's notebook jobs: the backend runs them, this keeps their state true and the server alive."""

    folder_name = "jobs"
    record_class, record_file = Job, JOB_FILE
    noun, api_path = "job", "/reeflab/api/jobs"
    keeps_server_alive = True

    backend_class = Type(
        klass=JobBackend,
        config=True,
        help="Where jobs run: reeflab.jobs.backends.local.LocalJobBackend (one machine) or "
        "reeflab.jobs.backends.kubernetes.KubernetesJobBackend. Default: $REEFLAB_JOBS "
        "('local' or 'kubernetes'), else $REEFLAB_DEPLOYMENTS, else local.",
    )

    @default("backend_class")
    def _default_backend_class(self) -> type[JobBackend]:
        mode = os.environ.get("REEFLAB_JOBS") or os.environ.get("REEFLAB_DEPLOYMENTS", "local")
        if mode == "kubernetes":
            from .backends.kubernetes import KubernetesJobBackend

            return KubernetesJobBackend
        return LocalJobBackend

    notebook_root = Unicode(help="The Jupyter server's root folder: notebooks and outputs live under it")

    @default("notebook_root")
    def _default_notebook_root(self) -> str:
        return os.getcwd()

    output_dir = Unicode("reeflab-jobs", config=True, help="Folder under the root for executed notebooks")
    max_running = Int(3, config=True, help="Jobs a user may run at once")
    storage = Any(None, help="The StorageService resolving inputs/outputs ('connection:path'); None: refused")

    def output_path(self, owner: str, job_id: str) -> Path:
        return Path(self.notebook_root) / self.get(owner, job_id).output

    @staticmethod
    def kernels() -> list[str]:
        return sorted(KernelSpecManager().find_kernel_specs())

    # -- changes ---------------------------------------------------------------

    def _notebook(self, relative: str) -> Path:
        """The notebook's absolute path, confined to the root folder (symlinks resolved)."""
        root = Path(self.notebook_root).resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise BadRequest(f"'{relative}' is outside your folder; give a path inside it.")
        if not path.is_file():
            raise BadRequest(f"No notebook '{relative}' in your folder; check the path (relative to your home).")
        return path

    def _kernel(self, asked: str | None, notebook: Path) -> str:
        try:
            nb = nbformat.read(notebook, as_version=4)
        except Exception as err:
            raise BadRequest(f"'{notebook.name}' is not a readable notebook: {err}") from None
        kernel = asked or nb.metadata.get("kernelspec", {}).get("name") or "python3"
        known = self.kernels()
        if kernel not in known:
            raise BadRequest(f"Unknown kernel '{kernel}'. Kernels on this server: {', '.join(known)}.")
        return kernel

    async def submit(self, owner: str, groups: list[str], request: JobRequest, profiles: ProfileCatalog) -> Job:
        notebook = self._notebook(request.notebook)
        kernel = self._kernel(request.kernel, notebook)
        profile = profiles.choose(request.profile, groups)
        self._check_distributed(request, profile)
        running = self.active(owner)
        if len(running) >= self.max_running:
            raise Forbidden(f"You have {len(running)} jobs running, the most allowed; wait or cancel one.")
        job_id = secrets.token_hex(4)
        bindings = await self._bindings(owner, request, self.store.folder(job_id) / "storage")
        output = Path(self.output_dir) / job_id / notebook.name
        job = Job(
            id=job_id,
            owner=owner,
            title=request.title or notebook.stem,
            notebook=request.notebook,
            output=str(output),
            parameters=request.parameters,
            inputs=request.inputs,
            outputs=request.outputs,
            kernel=kernel,
            profile=profile.slug,
            cpu=profile.cpu,
            memory_MB=profile.memory_bytes // 10**6,
            gpu=profile.gpu_count,
            processes=request.processes,
            nodes=request.nodes,
            backend=self.backend.name,
            created=now(),
        )
        (Path(self.notebook_root) / output).parent.mkdir(parents=True, exist_ok=True)
        spec = {
            "input": str(notebook),
            "output": str(Path(self.notebook_root) / output),
            "notebook": request.notebook,
            "cwd": str(notebook.parent),
            "root": str(Path(self.notebook_root).resolve()),
            "parameters": request.parameters,
            "kernel": kernel,
        }
        if request.inputs or request.outputs:
            spec["storage"] = bindings.spec()
        if request.processes is not None:
            backend = "nccl" if profile.gpu_count else "gloo"
            spec["distributed"] = {"processes": request.processes, "nodes": request.nodes, "id": job_id}
            spec["distributed"]["backend"] = backend
        self._save(job)
        await self._launch(job, self.backend.start(job, self.folder(job), spec, profile, secrets=bindings.secrets))
        return job

    def _check_distributed(self, request: JobRequest, profile: HardwareProfile) -> None:
        """A distributed job fits its profile: one rank per GPU where it has GPUs, else one per CPU; several
        nodes only where the backend has them."""
        if request.processes is None:
            if request.nodes > 1:
                raise BadRequest("A job on several nodes is a distributed one: give 'processes' (ranks per node) too.")
            return
        check_ranks(request.processes, profile)
        if request.nodes > self.backend.max_nodes:
            raise BadRequest(
                f"Jobs here run on one machine ({self.backend.name} mode): 'nodes' must be 1, not {request.nodes}. "
                "Several nodes need kubernetes mode."
            )

    async def logs(self, owner: str, job_id: str, tail: int = 200, rank: int | None = None) -> list[str]:
        """The job's log, or with `rank` that rank's own log (rank-<N>.log) of a distributed job."""
        if rank is None:
            return await super().logs(owner, job_id, tail)
        check_tail(tail)
        job = self.get(owner, job_id)
        if job.processes is None:
            raise BadRequest(f"Job '{job_id}' is not a distributed one: it has no ranks; leave out 'rank'.")
        world = job.processes * job.nodes
        if not 0 <= rank < world:
            raise BadRequest(f"Job '{job_id}' has ranks 0 to {world - 1}; 'rank' {rank} is none of them.")
        return tail_lines(self.folder(job) / RANK_LOG.format(rank=rank), tail)

    async def _bindings(self, owner: str, request: JobRequest, scratch: Path) -> Bindings:
        """The job's storage: locations and only the named connections' credentials (the owner's own)."""
        if not (request.inputs or request.outputs):
            return Bindings()
        if self.storage is None:
            raise BadRequest("Storage is not available on this server: submit the job without inputs/outputs.")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, bind, self.storage, owner, request.inputs, request.outputs, scratch.resolve()
        )

    # -- watching ----------------------------------------------------------------

    async def check(self, job: Job) -> None:
        """Take over the runner's view: progress, and the end state with the failing cell."""
        status = await self.backend.status(job, self.folder(job))
        if status.get("progress"):
            job.progress = Progress(**status["progress"])
        state = status.get("state", "starting")
        if state in ("completed", "failed", "cancelled"):
            if status.get("error"):
                job.error = JobError(**status["error"])
            job.failed_rank = status.get("rank")
            with contextlib.suppress(KeyError, ValueError):
                job.finished_at = datetime.fromisoformat(status["finished_at"])
            self._finish(job, state, status.get("reason"))
        elif state != job.state:
            job.state = state
            self._save(job)
