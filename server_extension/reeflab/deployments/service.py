"""DeploymentService: create, watch, expire, stop and describe a user's module deployments."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from jupyter_core.paths import jupyter_data_dir
from traitlets import Any, Float, Instance, Int, Type, Unicode, default
from traitlets.config import LoggingConfigurable

from ..catalog.service import CatalogService, below_recommendation, inference_needs
from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..profiles import ProfileCatalog
from .backends.base import DeploymentBackend, Endpoint
from .backends.local import LocalProcessBackend
from .models import Deployment, DeploymentRequest, Hardware, HardwareChoice
from .store import DeploymentStore


def now() -> datetime:
    return datetime.now(UTC)


class DeploymentService(LoggingConfigurable):
    """One user's deployments: the backend runs them, this keeps their state true and bounded."""

    backend_class = Type(
        klass=DeploymentBackend,
        config=True,
        help="Where deployments run: reeflab.deployments.backends.local.LocalProcessBackend (one machine) "
        "or reeflab.deployments.backends.kubernetes.KubernetesBackend. Default: $REEFLAB_DEPLOYMENTS "
        "('local' or 'kubernetes'; the hub sets it in kubernetes mode), else local.",
    )

    @default("backend_class")
    def _default_backend_class(self) -> type[DeploymentBackend]:
        if os.environ.get("REEFLAB_DEPLOYMENTS", "local") == "kubernetes":
            from .backends.kubernetes import KubernetesBackend

            return KubernetesBackend
        return LocalProcessBackend

    root_dir = Unicode(config=True, help="Where deployments keep their state, working dirs and logs")

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / "deployments")

    try_minutes = Float(10, config=True, help="Lifetime of a 'try' deployment, in minutes")
    max_tries = Int(2, config=True, help="Try deployments a user may have at once")
    max_deployments = Int(5, config=True, help="Deployments (tries included) a user may have at once")
    max_gpus = Int(1, config=True, help="GPUs a user's deployments may hold together")
    start_timeout = Float(900, config=True, help="Seconds a deployment may take to become ready (model loading)")
    poll_interval = Float(1.0, config=True, help="Seconds between checks of starting deployments")

    base_url = Unicode(config=True, help="The Jupyter server's base URL: deployments serve their API under it")

    @default("base_url")
    def _default_base_url(self) -> str:
        serverapp = getattr(self.parent, "serverapp", None)
        return getattr(serverapp, "base_url", None) or "/"

    def route_path(self, deployment_id: str) -> str:
        """The path of a deployment's authenticated route, `/<base_url>/reeflab/deployments/<id>`, where its
        DEEPaaS serves (`--base-path`) so that its docs page loads its assets and swagger.json through the route."""
        # decoded: DEEPaaS (aiohttp) matches routes against the decoded path ('/user/a@b/', sent as '/user/a%40b/')
        parts = (*unquote(self.base_url).split("/"), "reeflab", "deployments", deployment_id)
        return "/" + "/".join(p for p in parts if p)

    catalog = Instance(CatalogService)
    storage = Any(None, help="The StorageService whose connections deployments mount; None: refused")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.backend = self.backend_class(parent=self)
        self.store = DeploymentStore(self.root_dir)
        self._deployments = {d.id: d for d in self.store.load_all()}
        self._watcher: asyncio.Task | None = None
        self._changed = asyncio.Event()

    # -- queries -------------------------------------------------------------

    def limits(self) -> dict:
        """What users may have at once, and how long a try lasts (shown before they hit a limit)."""
        return {
            "try_minutes": self.try_minutes,
            "max_deployments": self.max_deployments,
            "max_tries": self.max_tries,
            "max_gpus": self.max_gpus,
        }

    def list(self, owner: str) -> list[Deployment]:
        return sorted((d for d in self._deployments.values() if d.owner == owner), key=lambda d: d.created)

    def get(self, owner: str, deployment_id: str) -> Deployment:
        deployment = self._deployments.get(deployment_id)
        if deployment is None or deployment.owner != owner:  # another user's is as absent as a missing one
            raise NotFound(f"No deployment '{deployment_id}'; list yours at /reeflab/api/deployments.")
        return deployment

    def folder(self, deployment: Deployment) -> Path:
        return self.store.folder(deployment.id)

    async def logs(self, owner: str, deployment_id: str, tail: int = 200) -> list[str]:
        if not 1 <= tail <= 10000:
            raise BadRequest("tail must be between 1 and 10000 lines")
        deployment = self.get(owner, deployment_id)
        return await self.backend.logs(deployment, self.folder(deployment), tail)

    def endpoint(self, owner: str, deployment_id: str) -> Endpoint:
        deployment = self.get(owner, deployment_id)
        if deployment.state != "ready":
            raise Conflict(f"Deployment '{deployment_id}' is {deployment.state}, not ready: it cannot answer yet.")
        return self.backend.endpoint(deployment)

    # -- changes ---------------------------------------------------------------

    async def create(
        self, owner: str, groups: list[str], request: DeploymentRequest, profiles: ProfileCatalog
    ) -> Deployment:
        entry = self.catalog.get(request.module)
        if not entry.deployable:
            if entry.entry_point is None:
                why = "it is not installed on this server (only installed modules can be deployed)"
            else:
                why = f"its metadata is invalid: {entry.problem_text()}"
            raise BadRequest(f"Module '{entry.id}' cannot be deployed: {why}.")
        form = self.catalog.deployment_form(entry.id, profiles, groups)
        # the profiles a user's groups allow are a hard limit; what the module recommends is not
        profile = profiles.choose(request.profile or form["default"], groups)
        choice = next(c for c in form["profiles"] if c["slug"] == profile.slug)
        hardware = (request.hardware or HardwareChoice()).over(Hardware(**choice["prefill"]))
        limits = Hardware(**choice["limits"])
        self._check_fits(hardware, limits, profile.slug)
        warnings = below_recommendation(hardware.model_dump(), form["needs"])
        self._check_quota(owner, request, hardware)
        self._check_storage(owner, request.storage)
        created = now()
        deployment = Deployment(
            id=secrets.token_hex(4),
            owner=owner,
            module=entry.id,
            entry_point=entry.entry_point,
            title=request.title or entry.title,
            kind=request.kind,
            profile=profile.slug,
            hardware=hardware,
            limits=limits,
            env={**entry.deploy_env, **request.env},  # a registered model: its weights
            storage=request.storage,
            warnings=warnings,
            backend=self.backend.name,
            created=created,
            expires=created + timedelta(minutes=self.try_minutes) if request.kind == "try" else None,
        )
        self._save(deployment)
        await self._launch(deployment)
        return deployment

    async def stop_all(self, reason: str = "stopped by the platform") -> list[Deployment]:
        """Stop every deployment at once (the platform stopping, tests, operators); their records stay."""
        active = [d for d in self._deployments.values() if d.active]
        outcomes = await asyncio.gather(*(self.backend.stop(d) for d in active), return_exceptions=True)
        for deployment, outcome in zip(active, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.log.error("stopping deployment %s failed: %s", deployment.id, outcome)
            self._finish(deployment, "stopped", reason)
        return active

    async def delete(self, owner: str, deployment_id: str) -> None:
        deployment = self.get(owner, deployment_id)
        await self.backend.stop(deployment)
        del self._deployments[deployment.id]
        folder = self.folder(deployment)
        (folder / "deployment.json").unlink(missing_ok=True)
        await asyncio.get_running_loop().run_in_executor(None, _remove_tree, folder)

    async def restart(self, owner: str, deployment_id: str, hardware: HardwareChoice | None = None) -> Deployment:
        """Start it again, as it was or with other hardware within its profile (e.g. its `suggestion`)."""
        deployment = self.get(owner, deployment_id)
        if deployment.kind == "try" and deployment.expires and deployment.expires <= now():
            raise Conflict("This try has ended; create a new try or a deployment.")
        if hardware is not None:
            changed = hardware.over(deployment.hardware)
            if deployment.limits is not None:
                self._check_fits(changed, deployment.limits, deployment.profile)
            needs = inference_needs(self.catalog.get(deployment.module))
            deployment.hardware, deployment.warnings = changed, below_recommendation(changed.model_dump(), needs)
        await self.backend.stop(deployment)
        deployment.reason = deployment.ready_at = deployment.stopped_at = deployment.suggestion = None
        await self._launch(deployment)
        return deployment

    async def _launch(self, deployment: Deployment) -> None:
        deployment.state = "starting"
        deployment.started_at = now()
        # no runtime until the backend says where it runs: the watcher, looking meanwhile, must not take the
        # previous run's ended process (a restart's) for this one having failed
        deployment.runtime = {}
        try:
            deployment.runtime = await self.backend.start(deployment, self.folder(deployment))
        except Exception as err:  # the backend could not even start it: say why
            self._finish(deployment, "failed", f"could not start: {err}")
            return
        self._save(deployment)
        self.ensure_watching()

    def _check_fits(self, hardware: Hardware, limits: Hardware, profile: str) -> None:
        over = [
            f"{name} {getattr(hardware, name):g} > {getattr(limits, name):g}"
            for name in ("cpu", "memory_MB", "gpu")
            if getattr(hardware, name) > getattr(limits, name)
        ]
        if over:
            raise BadRequest(f"Hardware beyond profile '{profile}': {', '.join(over)}.")

    def _check_storage(self, owner: str, names: list[str]) -> None:
        """Every connection named is the owner's own (another user's is as absent as a missing one)."""
        if names and self.storage is None:
            raise BadRequest("Storage is not available on this server: deploy without 'storage'.")
        for name in names:
            try:
                self.storage.get(owner, name)
            except NotFound as err:
                raise BadRequest(f"storage: {err.message}") from None

    def _check_quota(self, owner: str, request: DeploymentRequest, hardware: Hardware) -> None:
        active = [d for d in self.list(owner) if d.active]
        if len(active) >= self.max_deployments:
            raise Forbidden(f"You have {len(active)} deployments running, the most allowed; delete one first.")
        if request.kind == "try" and sum(d.kind == "try" for d in active) >= self.max_tries:
            raise Forbidden(f"You may have {self.max_tries} tries at once; delete one or wait for it to end.")
        gpus = sum(d.hardware.gpu for d in active)
        if hardware.gpu and gpus + hardware.gpu > self.max_gpus:
            raise Forbidden(f"GPU quota exceeded: you hold {gpus} of {self.max_gpus} GPUs; delete a GPU deployment.")

    def _save(self, deployment: Deployment) -> None:
        self._deployments[deployment.id] = deployment
        self.store.save(deployment)
        self._changed.set()

    def _finish(self, deployment: Deployment, state: str, reason: str | None) -> None:
        deployment.state = state
        deployment.reason = reason
        deployment.stopped_at = now()
        self._save(deployment)

    # -- watching ----------------------------------------------------------------

    def ensure_watching(self) -> None:
        """Start the background check of active deployments (after a restart too: re-attach)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while any(d.active for d in self._deployments.values()):
            await self.check_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.poll_interval)
            self._changed.clear()

    async def check_all(self) -> None:
        for deployment in [d for d in self._deployments.values() if d.active]:
            try:
                await self.check(deployment)
            except Exception:
                self.log.exception("checking deployment %s failed", deployment.id)

    async def check(self, deployment: Deployment) -> None:
        """Move one deployment along: ready, failed with its reason, or stopped when its try ends."""
        if deployment.expires and deployment.expires <= now():
            await self.backend.stop(deployment)
            minutes = f"{self.try_minutes:g}"
            self._finish(deployment, "stopped", f"the try period of {minutes} minutes ended")
            return
        if deployment.state == "starting" and not deployment.runtime:
            return  # the backend is starting it (see _launch)
        status = await self.backend.status(deployment)
        if status.state == "ready" and deployment.state != "ready":
            deployment.state = "ready"
            deployment.ready_at = now()
            self._save(deployment)
        elif status.state in ("failed", "stopped"):
            if status.out_of_memory:
                deployment.suggestion = more_memory(deployment)
            self._finish(deployment, status.state, status.reason)
        elif deployment.state == "starting" and deployment.started_at:
            waited = (now() - deployment.started_at).total_seconds()
            if waited > self.start_timeout:
                await self.backend.stop(deployment)
                self._finish(deployment, "failed", f"not ready after {self.start_timeout:g} s")


def more_memory(deployment: Deployment) -> Hardware | None:
    """What to restart a deployment stopped for its memory with: twice what it had, in whole GB, within its
    profile; None when its profile has no more to give."""
    given = deployment.hardware.memory_MB
    wanted = math.ceil(2 * given / 1000) * 1000
    if deployment.limits is not None:
        wanted = min(wanted, deployment.limits.memory_MB)
    return deployment.hardware.model_copy(update={"memory_MB": wanted}) if wanted > given else None


def _remove_tree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
