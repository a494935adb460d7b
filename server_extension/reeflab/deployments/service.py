"""DeploymentService: create, watch, expire, stop and describe a user's module deployments."""

from __future__ import annotations

import asyncio
import math
import os
import secrets
from datetime import timedelta
from urllib.parse import unquote

from traitlets import Any, Float, Instance, Int, Type, Unicode, default

from ..catalog.service import CatalogService, below_recommendation, inference_needs
from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..profiles import ProfileCatalog
from ..runs.service import RunService, now
from .backends.base import DeploymentBackend, Endpoint
from .backends.local import LocalProcessBackend
from .models import Deployment, DeploymentRequest, Hardware, HardwareChoice


class DeploymentService(RunService[Deployment]):
    """One user's deployments: the backend runs them, this keeps their state true and bounded."""

    folder_name = "deployments"
    record_class, record_file = Deployment, "deployment.json"
    noun, api_path = "deployment", "/reeflab/api/deployments"
    stopped_state = "stopped"
    stop_ended_on_delete = True  # its backend may keep objects after the end (a failed pod, a cgroup)

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

    try_minutes = Float(10, config=True, help="Lifetime of a 'try' deployment, in minutes")
    max_tries = Int(2, config=True, help="Try deployments a user may have at once")
    max_deployments = Int(5, config=True, help="Deployments (tries included) a user may have at once")
    max_gpus = Int(1, config=True, help="GPUs a user's deployments may hold together")
    start_timeout = Float(900, config=True, help="Seconds a deployment may take to become ready (model loading)")

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
    checks = Any(None, help="The ModuleCheckService whose reports gate others' registered versions; None: no gate")

    # -- queries -------------------------------------------------------------

    def limits(self) -> dict:
        """What users may have at once, and how long a try lasts (shown before they hit a limit)."""
        return {
            "try_minutes": self.try_minutes,
            "max_deployments": self.max_deployments,
            "max_tries": self.max_tries,
            "max_gpus": self.max_gpus,
        }

    def endpoint(self, owner: str, deployment_id: str) -> Endpoint:
        deployment = self.get(owner, deployment_id)
        if deployment.state != "ready":
            raise Conflict(f"Deployment '{deployment_id}' is {deployment.state}, not ready: it cannot answer yet.")
        return self.backend.endpoint(deployment)

    # -- changes ---------------------------------------------------------------

    async def submit(
        self, owner: str, groups: list[str], request: DeploymentRequest, profiles: ProfileCatalog
    ) -> Deployment:
        entry = self.catalog.get(request.module)
        if not entry.deployable:
            if entry.entry_point is None:
                why = "it is not installed on this server (only installed modules can be deployed)"
            else:
                why = f"its metadata is invalid: {entry.problem_text()}"
            raise BadRequest(f"Module '{entry.id}' cannot be deployed: {why}.")
        refusal = self.checks.refusal(entry, owner) if self.checks is not None else None
        if refusal:
            raise BadRequest(f"Module '{entry.id}' cannot be deployed: {refusal}.")
        form = self.catalog.deployment_form(entry.id, profiles, groups)
        # the profiles a user's groups allow are a hard limit; what the module recommends is not
        profile = profiles.choose(request.profile or form["default"], groups)
        choice = next(c for c in form["profiles"] if c["slug"] == profile.slug)
        hardware = (request.hardware or HardwareChoice()).over(Hardware(**choice["prefill"]))
        limits = Hardware(**choice["limits"])
        self._check_fits(hardware, limits, profile.slug)
        warnings = below_recommendation(hardware.model_dump(), form["needs"])
        await asyncio.to_thread(self._check_storage, owner, request.storage)  # the platform's: asks the engine
        self._check_quota(owner, request, hardware)  # no await from here to _save: two requests cannot both pass
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
        await self._start(deployment)
        return deployment

    async def restart(self, owner: str, deployment_id: str, hardware: HardwareChoice | None = None) -> Deployment:
        """Start it again, as it was or with other hardware within its profile (e.g. its `suggestion`)."""
        async with self.lock(self.get(owner, deployment_id).id):  # a check of the run before ends first
            deployment = self.get(owner, deployment_id)
            if deployment.kind == "try" and deployment.expires and deployment.expires <= now():
                raise Conflict("This try has ended; create a new try or a deployment.")
            if hardware is not None:
                changed = hardware.over(deployment.hardware)
                if deployment.limits is not None:
                    self._check_fits(changed, deployment.limits, deployment.profile)
                needs = inference_needs(self.catalog.get(deployment.module))
                deployment.hardware = changed
                deployment.warnings = below_recommendation(changed.model_dump(), needs)
            await self.backend.stop(deployment)
            deployment.reason = deployment.ready_at = deployment.stopped_at = deployment.suggestion = None
            await self._start(deployment)
        return deployment

    async def _start(self, deployment: Deployment) -> None:
        deployment.state = "starting"
        # no runtime until the backend says where it runs: the watcher, looking meanwhile, must not take the
        # previous run's ended process (a restart's) for this one having failed
        deployment.runtime = {}
        await self._launch(deployment, self.backend.start(deployment, self.folder(deployment)))

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
        active = self.active(owner)
        if len(active) >= self.max_deployments:
            raise Forbidden(f"You have {len(active)} deployments running, the most allowed; delete one first.")
        if request.kind == "try" and sum(d.kind == "try" for d in active) >= self.max_tries:
            raise Forbidden(f"You may have {self.max_tries} tries at once; delete one or wait for it to end.")
        gpus = sum(d.hardware.gpu for d in active)
        if hardware.gpu and gpus + hardware.gpu > self.max_gpus:
            raise Forbidden(f"GPU quota exceeded: you hold {gpus} of {self.max_gpus} GPUs; delete a GPU deployment.")

    # -- watching ----------------------------------------------------------------

    async def check(self, deployment: Deployment) -> None:
        """Move one deployment along: ready, failed with its reason, or stopped when its try ends."""
        if deployment.expires and deployment.expires <= now():
            await self.backend.stop(deployment)
            minutes = f"{self.try_minutes:g}"
            self._finish(deployment, "stopped", f"the try period of {minutes} minutes ended")
            return
        if deployment.state == "starting" and not deployment.runtime:
            return  # the backend is starting it (see _start)
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
