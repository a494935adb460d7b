"""JobService: submit, watch, cancel and describe a user's papermill notebook jobs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.paths import jupyter_data_dir
from traitlets import Any, Float, Int, Type, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..profiles import ProfileCatalog
from ..storage.bindings import Bindings, bind
from .activity import HubActivity
from .backends.base import JobBackend
from .backends.local import LocalJobBackend
from .models import Job, JobError, JobRequest, Progress
from .store import JobStore


def now() -> datetime:
    return datetime.now(UTC)


class JobService(LoggingConfigurable):
    """One user's notebook jobs: the backend runs them, this keeps their state true and the server alive."""

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

    root_dir = Unicode(config=True, help="Where jobs keep their state and logs (private to the user)")

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / "jobs")

    notebook_root = Unicode(help="The Jupyter server's root folder: notebooks and outputs live under it")

    @default("notebook_root")
    def _default_notebook_root(self) -> str:
        return os.getcwd()

    output_dir = Unicode("reeflab-jobs", config=True, help="Folder under the root for executed notebooks")
    max_running = Int(3, config=True, help="Jobs a user may run at once")
    poll_interval = Float(1.0, config=True, help="Seconds between checks of running jobs")
    storage = Any(None, help="The StorageService resolving inputs/outputs ('connection:path'); None: refused")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.backend = self.backend_class(parent=self)
        self.store = JobStore(self.root_dir)
        self.activity = HubActivity(parent=self)
        self._jobs = {j.id: j for j in self.store.load_all()}
        self._watcher: asyncio.Task | None = None

    # -- queries -------------------------------------------------------------

    def list(self, owner: str) -> list[Job]:
        return sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: j.created)

    def get(self, owner: str, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.owner != owner:  # another user's is as absent as a missing one
            raise NotFound(f"No job '{job_id}'; list yours at /reeflab/api/jobs.")
        return job

    async def fresh(self, owner: str, job_id: str) -> Job:
        """The job with its latest progress from the backend."""
        job = self.get(owner, job_id)
        if job.active:
            await self.check(job)
        return job

    def folder(self, job: Job) -> Path:
        return self.store.folder(job.id)

    def output_path(self, owner: str, job_id: str) -> Path:
        return Path(self.notebook_root) / self.get(owner, job_id).output

    async def logs(self, owner: str, job_id: str, tail: int = 200) -> list[str]:
        if not 1 <= tail <= 10000:
            raise BadRequest("tail must be between 1 and 10000 lines")
        job = self.get(owner, job_id)
        return await self.backend.logs(job, self.folder(job), tail)

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
        running = [j for j in self.list(owner) if j.active]
        if len(running) >= self.max_running:
            raise Forbidden(f"You have {len(running)} jobs running, the most allowed; wait or cancel one.")
        job_id = secrets.token_hex(4)
        bindings = await self._bindings(owner, request, self.folder_of(job_id) / "storage")
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
        self._save(job)
        job.started_at = now()
        try:
            job.runtime = await self.backend.start(job, self.folder(job), spec, profile, secrets=bindings.secrets)
        except Exception as err:  # the backend could not even start it: say why
            self._finish(job, "failed", f"could not start: {err}")
            return job
        self._save(job)
        self.ensure_watching()
        return job

    def folder_of(self, job_id: str) -> Path:
        return self.store.folder(job_id)

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

    async def cancel(self, owner: str, job_id: str) -> Job:
        job = self.get(owner, job_id)
        if not job.active:
            raise Conflict(f"Job '{job_id}' is {job.state}; only a running job can be cancelled.")
        await self.backend.cancel(job, self.folder(job))
        self._finish(job, "cancelled", "cancelled by you")
        return job

    async def delete(self, owner: str, job_id: str) -> None:
        """Forget a job (cancelling it if it runs); its output notebook stays in your folder."""
        job = self.get(owner, job_id)
        if job.active:
            await self.backend.cancel(job, self.folder(job))
        del self._jobs[job.id]
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, self.folder(job), True)

    async def cancel_all(self, reason: str = "stopped by the platform") -> list[Job]:
        """Cancel every running job at once (the platform stopping, tests, operators); records stay."""
        active = [j for j in self._jobs.values() if j.active]
        outcomes = await asyncio.gather(
            *(self.backend.cancel(j, self.folder(j)) for j in active), return_exceptions=True
        )
        for job, outcome in zip(active, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.log.error("cancelling job %s failed: %s", job.id, outcome)
            self._finish(job, "cancelled", reason)
        return active

    def _save(self, job: Job) -> None:
        self._jobs[job.id] = job
        self.store.save(job)

    def _finish(self, job: Job, state: str, reason: str | None) -> None:
        job.state = state
        job.reason = reason
        job.finished_at = job.finished_at or now()
        self._save(job)

    # -- watching ----------------------------------------------------------------

    def ensure_watching(self) -> None:
        """Start the background check of running jobs (after a restart too: re-attach)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while any(j.active for j in self._jobs.values()):
            for job in [j for j in self._jobs.values() if j.active]:
                try:
                    await self.check(job)
                except Exception:
                    self.log.exception("checking job %s failed", job.id)
            if any(j.active for j in self._jobs.values()):
                await self.activity.report_if_due()  # keeps the server from the idle culler while jobs run
            await asyncio.sleep(self.poll_interval)

    async def check(self, job: Job) -> None:
        """Take over the runner's view: progress, and the end state with the failing cell."""
        status = await self.backend.status(job, self.folder(job))
        if status.get("progress"):
            job.progress = Progress(**status["progress"])
        state = status.get("state", "starting")
        if state in ("completed", "failed", "cancelled"):
            if status.get("error"):
                job.error = JobError(**status["error"])
            with contextlib.suppress(KeyError, ValueError):
                job.finished_at = datetime.fromisoformat(status["finished_at"])
            self._finish(job, state, status.get("reason"))
        elif state != job.state:
            job.state = state
            self._save(job)
