"""The local OSCAR engine: services, sync and async invocations, job logs, for many users.

No HTTP here: handlers pass in who is calling and what they sent; errors are ReefLabErrors with
a message and a status. Others' private services answer 404, as if they did not exist. A service's
token goes to its owner only; anyone else who may use it gets a token of their own for it (so
oscar-python, which invokes with the token the service shows, acts as them). The buckets a service
reads and writes must be its owner's, as recorded in the store when the platform made them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import posixpath
import shutil
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import accounts, generations
from ..errors import BadRequest, Conflict, Forbidden, NotFound, ReefLabError
from ..serverless.fdl import MODULE_VAR, PREDICT_ARGS_VAR, ServiceDefinition, allowed, parse_definition
from ..storage.platform_s3 import PlatformS3, StorageUnavailable, bucket_problem, check_path, split_path, user_bucket
from .dispatcher import GIVEN_NAME, JobDispatcher, given_name_of, stamp
from .exposed import ExposedServices
from .introspect import ArgumentReader
from .objects import JobStorage
from .payload import decode_event, event_file_name, failure_lines, sync_response
from .pool import WorkerDied, WorkerPool, WorkerSpec
from .sandbox import SandboxPolicy
from .slices import slice_of, slice_problem
from .store import RUNNING, SUCCEEDED, SYNC, EngineStore, JobRecord, ServiceRecord
from .triggers import UploadedObject, from_event, from_listing, is_platform, matches, not_triggered

log = logging.getLogger(__name__)
JOBS_PAGE = 500
TOKEN_SUBMITTER = "(service token)"  # jobs sent with the service token alone: nobody's but the owner's to see
WEIGHTS_VAR = "REEFLAB_WEIGHTS"  # the weights a module serves (training/registry.py): unpickled by the worker
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "modules"  # the built-in modules and their weights
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_UNEXPOSED: set[str] = set()  # services stored with an `expose` that is not valid now (warned once)
PERSONAL_TOKEN = "rlu."  # a non-owner's own token for a service: rlu.<base64url user>.<hmac>


class InvocationFailed(ReefLabError):
    status = 500


class Unauthorized(ReefLabError):
    status = 401


@dataclass(frozen=True)
class Caller:
    """Who calls: an authenticated user, and/or the bearer token sent (a service token on /run, /job)."""

    user: str | None = None
    token: str | None = None
    admin: bool = False  # sees platform-wide figures in /system/status
    generation: str = ""  # the hub user's incarnation (generations.py), when the hub said who calls
    hub: bool = False  # the hub itself (the engine's own service token): may revoke deleted users
    user_admin: bool = False  # a hub token allowed to manage users (admin:users): may revoke them too


@dataclass
class EngineSettings:
    state_dir: Path
    idle_seconds: float = 300.0
    max_attempts: int = 3
    invocation_timeout: float = 600.0
    start_timeout: float = 180.0
    max_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_workers_per_service: int = field(default_factory=lambda: os.cpu_count() or 1)
    worker_env: dict[str, str] = field(default_factory=dict)
    s3: PlatformS3 | None = None
    reconcile_seconds: float = 300.0
    metrics_retention_days: float = 30.0  # calls kept one by one; older ones are folded into running totals
    allow_unsandboxed: bool = False  # without bubblewrap (and without root): run service code unconfined
    sandbox_dir: Path | None = None  # where workers' folders go (default: see sandbox.choose_root)
    homes_dir: Path | None = None  # the hub users' homes: new OS accounts get theirs there
    secret_files: tuple[Path, ...] = ()  # the engine's own secrets on disk, hidden from workers
    bwrap: str = ""  # the bubblewrap program (default: found on PATH)
    base_url: str = "/"  # where the API is served: exposed services are under <base_url>/system/services/<name>/exposed
    public_exposed: bool = False  # exposed services without set_auth answer anyone (OSCAR's way); off: login needed
    max_body_bytes: int = 200 * 2**20  # the largest request or answer relayed to or from an exposed service
    fork_workers: bool = True  # a module service's workers are forked from one zygote that loaded it (zygote.py)


def installed_modules() -> list[str]:
    return sorted(ep.name for ep in entry_points(group="deepaas.v2.model"))


def iso_time(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if timestamp else None


class OscarEngine:
    """Services and their invocations; `start()` resumes the queue left by a previous run."""

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        state = Path(settings.state_dir)
        self.jobs_dir, self.runs_dir = state / "jobs", state / "runs"
        for folder in (self.jobs_dir, self.runs_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = EngineStore(state / "engine.sqlite")
        self._parsed: tuple[int, dict[str, tuple[ServiceRecord, ServiceDefinition]]] | None = None  # see _services
        self.sandbox = SandboxPolicy(
            state,
            settings.sandbox_dir,
            settings.homes_dir,
            settings.secret_files,
            settings.allow_unsandboxed,
            bwrap=settings.bwrap,
        )
        self.pool = WorkerPool(
            state / "workers",
            settings.worker_env,
            settings.max_workers,
            settings.start_timeout,
            self.sandbox,
            fork=settings.fork_workers,
        )
        self.dispatcher = JobDispatcher(
            self.store,
            self.pool,
            self.jobs_dir,
            self.spec,
            JobStorage(settings.s3, self._parsed_definition, self.service_owns),
            settings.max_attempts,
            settings.invocation_timeout,
            settings.max_workers,
        )
        self._specs: dict[str, tuple[str, WorkerSpec]] = {}
        self._key_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # one key made at a time
        self.exposed = ExposedServices(self, settings.base_url, settings.max_body_bytes)
        self.arguments = ArgumentReader(self.sandbox, settings.worker_env, settings.start_timeout)
        self._maintainer: asyncio.Task | None = None
        self._reconciler: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self.hub_users = None  # auth.HubUsers under the hub: users it no longer has are revoked (sweep_users)

    async def start(self) -> None:
        requeued = self.store.recover()
        if requeued:
            log.info("requeued %d jobs that were running when the engine stopped", requeued)
        known = self.store.job_names()
        for folder in self.jobs_dir.iterdir():
            if folder.name not in known:  # input written, job never recorded (stopped in between)
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self.runs_dir, ignore_errors=True)
        self.runs_dir.mkdir(mode=0o700)
        await asyncio.to_thread(self.sandbox.reset)
        (log.warning if self.sandbox.problem() or not self.sandbox.sandboxed else log.info)(
            "%s", self.sandbox.describe()
        )
        self._record_service_buckets()
        self.dispatcher.start()
        self._maintainer = asyncio.ensure_future(self._maintain())
        if self.settings.s3 is not None:
            self._reconciler = asyncio.ensure_future(self._reconcile_forever())
        if self.hub_users is not None:
            self._sweeper = asyncio.ensure_future(self._sweep_forever())

    def _record_service_buckets(self) -> None:
        """Services made before owners were recorded keep working: their owner's own-named buckets are recorded now.

        Only buckets the owner may hold by the naming rules (their bucket, `<it>--<name>`) and nobody has
        are recorded; an old `alice-x` stays nobody's, so no service reads or writes it until remade.
        """
        for record in self.store.list_services():
            definition = self._definition(record)
            for io in (io for io in [*definition.input, *definition.output] if is_platform(io)):
                bucket = split_path(io.path)[0]
                if bucket_problem(record.owner, bucket) is None and self.store.bucket_owner(bucket) is None:
                    self.store.claim_bucket(bucket, record.owner)

    async def stop(self) -> None:
        for task in (self._maintainer, self._reconciler, self._sweeper):
            if task:
                task.cancel()
        await self.dispatcher.stop()
        self.exposed.close()
        self.pool.close()
        self.sandbox.close()
        self.store.close()

    async def _maintain(self) -> None:
        pruned = 0.0
        while True:
            try:
                self.pool.maintain({r.name: s for r in self.store.list_services() if (s := self.spec(r.name))})
            except Exception:
                log.exception("could not scale the workers")
            try:
                self.exposed.maintain()
            except Exception:
                log.exception("could not keep the exposed services running")
            try:
                self.store.flush_calls()
                if time.time() - pruned > 3600:  # at start, then hourly
                    pruned = time.time()
                    self.store.prune_calls(pruned - self.settings.metrics_retention_days * 86400)
            except Exception:
                log.exception("could not record the last calls' metrics")
            await asyncio.sleep(1.0)

    # -- services -------------------------------------------------------------------------

    async def create_service(self, user: str, data: Any) -> dict[str, Any]:
        definition = await self._checked(parse_definition(data), user)
        await self._check_arguments(definition, user)
        self.store.add_service(definition.name, user, definition.model_dump(mode="json"))
        self.exposed.maintain()  # an exposed service with min_scale >= 1 starts now
        return self.get_service(user, definition.name)

    async def update_service(self, user: str, data: Any, name: str | None = None) -> None:
        given = {k.lower(): v for k, v in data.items() if isinstance(k, str)} if isinstance(data, dict) else {}
        target = name or given.get("name")  # FDL keys match whatever their case
        if not isinstance(target, str) or not target:
            raise BadRequest("name: give the name of the service to update")
        record = self._owned(user, target)
        if name and isinstance(data, dict):
            data = {**{k: v for k, v in data.items() if not (isinstance(k, str) and k.lower() == "name")}, "name": name}
        definition = await self._checked(parse_definition(data, previous=self._definition(record)), user)
        await self._check_arguments(definition, user)
        self.store.update_service(record.name, definition.model_dump(mode="json"))
        self.pool.retire(record.name)
        self.exposed.maintain()  # a changed exposed service is replaced now

    async def _check_arguments(self, definition: ServiceDefinition, user: str) -> None:
        """Refuse a module that cannot load, or predict arguments it does not take: every call would fail."""
        if not definition.module:
            return
        module = definition.module
        found = await asyncio.to_thread(self.arguments.read, module, user)
        if found is None:
            return  # no worker may run here now: the first call says why
        if found.error:
            raise BadRequest(f"environment.variables.{MODULE_VAR}: module '{module}': {found.error}")
        unknown = sorted(set(definition.predict_args) - set(found.args))
        if unknown:
            raise BadRequest(
                f"environment.variables.{PREDICT_ARGS_VAR}: {', '.join(unknown)} not accepted by the predict of "
                f"module '{module}' (it takes: {', '.join(found.args) or 'nothing'})"
            )

    def list_services(self, user: str) -> list[dict[str, Any]]:
        records = self.store.list_services()
        return [self._view(r, user) for r in records if self._definition(r).visible_to(user, r.owner)]

    def get_service(self, user: str, name: str) -> dict[str, Any]:
        return self._view(self._visible(user, name), user)

    def delete_service(self, user: str, name: str) -> None:
        record = self._owned(user, name)
        for job in self.store.delete_service(record.name):
            self.dispatcher.cancel(job)
            shutil.rmtree(self.jobs_dir / job, ignore_errors=True)
        self.pool.retire(record.name)
        self.exposed.forget(record.name)
        self._specs.pop(record.name, None)

    async def _checked(self, definition: ServiceDefinition, user: str) -> ServiceDefinition:
        """Refuse a module not installed here and storage paths outside the user's buckets."""
        module, installed = definition.module, installed_modules()
        if module and module not in installed:
            raise BadRequest(
                f"environment.variables.{MODULE_VAR}: no module named '{module}' is installed here; "
                f"installed: {', '.join(installed) or 'none'}"
            )
        self._check_weights(definition, user)
        await self._check_storage(definition, user)
        if definition.expose is not None and not self.sandbox.sandboxed:
            raise BadRequest(
                "expose: exposed services run only in a bubblewrap sandbox with a network namespace of its own "
                "(no other local user may reach their port), and bubblewrap is not installed on the engine's machine"
            )
        return definition

    def _check_weights(self, definition: ServiceDefinition, user: str) -> None:
        """A module's weights file is unpickled by its workers: ReefLab's shipped weights or the owner's own files."""
        given = {**definition.environment.variables, **definition.environment.secrets}.get(WEIGHTS_VAR)
        if not definition.module or given is None:
            return
        where = f"environment.variables.{WEIGHTS_VAR}"
        roots = self._weights_roots(user)
        if not Path(given).is_absolute():
            raise BadRequest(f"{where}: give the absolute path of a weights file in {' or '.join(map(str, roots))}")
        real = Path(given).resolve()
        if not any(real.is_relative_to(root) for root in roots):
            raise BadRequest(
                f"{where}: '{given}' is neither among ReefLab's shipped weights nor in your own files "
                f"(weights are loaded with pickle, which runs code): use a file in {' or '.join(map(str, roots))}"
            )
        if not real.is_file():
            raise BadRequest(f"{where}: there is no file '{given}'")

    def _weights_roots(self, user: str) -> list[Path]:
        """Where a user's service may take weights from: the shipped modules, and their home if known."""
        roots = [SHIPPED_WEIGHTS]
        homes = self.settings.homes_dir
        if homes and user not in (".", "..") and "/" not in user:
            roots.append((Path(homes) / user).resolve())
        found = accounts.lookup(user) if self.sandbox.isolate else None
        if found and not Path(found.home).resolve().is_relative_to(Path(self.settings.state_dir).resolve()):
            roots.append(Path(found.home).resolve())
        return list(dict.fromkeys(roots))

    async def _check_storage(self, definition: ServiceDefinition, user: str) -> None:
        """Input/output paths on the platform's S3 must be the user's; their buckets and folders are made here
        (the S3 calls off the event loop)."""
        storages = [("input", io) for io in definition.input] + [("output", io) for io in definition.output]
        platform = [(f"{kind}.path", io) for kind, io in storages if is_platform(io)]
        if platform and self.settings.s3 is None:
            raise BadRequest(f"{platform[0][0]}: this engine has no S3 storage configured; remove input and output")
        buckets: dict[str, str] = {}
        if platform:
            self._settle(user, strict=True)
        for where, io in platform:
            bucket = check_path(user, io.path, where)[0]
            owner = self.store.bucket_owner(bucket)
            if owner is not None and owner != user:
                own = user_bucket(user)
                raise BadRequest(f"{where}: bucket '{bucket}' belongs to another user: use your bucket '{own}'")
            buckets.setdefault(bucket, where)
        inputs = [io.path.strip("/") + "/" for io in definition.input if is_platform(io)]
        for i, out in enumerate(definition.output):
            if is_platform(out) and any((out.path.strip("/") + "/").startswith(path) for path in inputs):
                raise BadRequest(f"output[{i}].path: '{out.path}' is inside an input path: outputs would trigger jobs")
        for bucket in sorted(buckets):
            self._claim(user, bucket)
            await asyncio.to_thread(self.settings.s3.ensure_bucket, bucket)
        for _, io in platform:  # as OSCAR does: the folders are there to upload into (and to find results in)
            await asyncio.to_thread(self.settings.s3.ensure_folder, *split_path(io.path))
        if buckets:
            await self.storage_key(user)  # the owner's key (now allowed these buckets), given to the service's workers

    def _view(self, record: ServiceRecord, user: str) -> dict[str, Any]:
        owner = record.owner == user
        view = self._definition(record).public_view(owner=owner)
        token = record.token if owner else personal_token(record, user, self.generation_of(user))
        return {**view, "owner": record.owner, "token": token}

    @staticmethod
    def _definition(record: ServiceRecord) -> ServiceDefinition:
        try:
            return ServiceDefinition.model_validate(record.definition)
        except ValidationError:
            # stored before `expose` was read (it was kept as it came): not exposed, as it was then
            if record.name not in _UNEXPOSED:
                _UNEXPOSED.add(record.name)
                log.warning("service %s has an `expose` this engine cannot run: it stays unexposed", record.name)
            return ServiceDefinition.model_validate({**record.definition, "expose": None})

    def definition(self, name: str) -> ServiceDefinition | None:
        record = self.store.get_service(name)
        return self._definition(record) if record else None

    def _visible(self, user: str | None, name: str) -> ServiceRecord:
        record = self.store.get_service(name)
        if record is None or user is None or not self._definition(record).visible_to(user, record.owner):
            raise NotFound(f"no service named '{name}' that you can use: GET /system/services lists yours")
        return record

    def _owned(self, user: str, name: str) -> ServiceRecord:
        record = self._visible(user, name)
        if record.owner != user:
            raise Forbidden(f"only the owner of service '{name}' may change or delete it")
        return record

    def spec(self, name: str) -> WorkerSpec | None:
        """How the pool runs a service's workers (cached until its definition or its owner's S3 key changes).

        The key is part of the version: workers started before the owner had one are replaced once it exists.
        """
        record = self.store.get_service(name)
        if record is None:
            return None
        owner_generation = self.generation_of(record.owner)
        storage = self._storage_env(record.owner)
        identity = [record.definition, record.created, owner_generation, storage]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        cached = self._specs.get(name)
        if cached and cached[0] == digest:
            return cached[1]
        definition, settings = self._definition(record), self.settings
        max_scale = min(definition.synchronous.max_scale or settings.max_workers_per_service, settings.max_workers)
        threads = str(max(1, -(-definition.cpu_millicores // 1000)))  # the CPU limit, rounded up
        variables, secrets = allowed(definition.environment.variables), allowed(definition.environment.secrets)
        if len(variables) + len(secrets) < len(definition.environment.variables) + len(definition.environment.secrets):
            log.warning("service %s sets environment variables no longer allowed: its workers do not get them", name)
        spec = WorkerSpec(
            service=name,
            version=digest[:16],
            owner=record.owner,
            owner_generation=owner_generation,
            module=definition.module,
            script=definition.script,
            predict_args=definition.predict_args,
            env={
                **dict.fromkeys(THREAD_VARIABLES, threads),
                **storage,
                **variables,
                **secrets,
            },
            min_scale=min(definition.synchronous.min_scale, max_scale),
            max_scale=max_scale,
            idle_seconds=definition.idle_seconds(settings.idle_seconds),
            cpu_millicores=definition.cpu_millicores,
            memory_bytes=definition.memory_bytes,
        )
        self._specs[name] = (digest, spec)
        return spec

    # -- storage --------------------------------------------------------------------------

    async def storage_key(self, user: str) -> dict[str, str]:
        """The user's own key to the platform's S3 (made on first use), allowed exactly their recorded buckets.

        The IAM calls run off the event loop, one user's at a time; a user revoked meanwhile loses that key too."""
        if self.settings.s3 is None:
            return {"access_key": "", "secret_key": ""}
        async with self._key_locks[user]:
            self._settle(user, strict=True)  # a deleted namesake's IAM user and buckets go before any of this user's
            self._claim(user, user_bucket(user))
            known, before = self.store.s3_key(user), self.store.generation(user)
            key = await asyncio.to_thread(self.settings.s3.user_key, user, known, self.store.buckets_of(user))
            if _revoked(self.store.generation(user)) != _revoked(before):
                self.store.revoke_s3_key(user, key)  # removed from S3 before a namesake's next step (_settle)
                raise Conflict(f"user {user} was deleted while their storage key was made")
            if key != known:
                self.store.set_s3_key(user, key)
            return key

    def _claim(self, user: str, bucket: str) -> None:
        """Record the bucket as the user's; a bucket recorded as someone else's is refused, never shared."""
        owner = self.store.claim_bucket(bucket, user)
        if owner != user:
            log.warning("bucket %s is recorded as another user's: refused to %s", bucket, user)
            raise Conflict(f"bucket '{bucket}' belongs to another user: ask the platform's admin to sort out the names")

    def service_owns(self, service: str, bucket: str) -> bool:
        """Whether the service's owner is the recorded owner of `bucket` (checked before every transfer)."""
        record = self.store.get_service(service)
        return record is not None and self.store.bucket_owner(bucket) == record.owner

    def _storage_env(self, owner: str) -> dict[str, str]:
        """What a service's workers get to reach S3 as their owner (as OSCAR gives its scripts)."""
        key = self.store.s3_key(owner) if self.settings.s3 else None
        if not key:
            return {}
        return {
            "AWS_ENDPOINT_URL": self.settings.s3.endpoint,
            "AWS_ACCESS_KEY_ID": key["access_key"],
            "AWS_SECRET_ACCESS_KEY": key["secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def storage_events(self, events: list[Any]) -> int:
        """Queue a job for each upload into a service's input path; returns how many were queued."""
        uploads = [obj for obj in map(from_event, events) if obj]
        if not uploads:
            return 0
        services = self._services().values()
        return sum(self._trigger(record, definition, obj) for obj in uploads for record, definition in services)

    def _services(self) -> dict[str, tuple[ServiceRecord, ServiceDefinition]]:
        """Every service by name with its parsed definition, read and parsed again only after the services changed
        (every upload event asks: reading and validating each definition cost ~0.05 ms a service per event here)."""
        version = self.store.services_version
        if self._parsed is None or self._parsed[0] != version:
            self._parsed = (version, {r.name: (r, self._definition(r)) for r in self.store.list_services()})
        return self._parsed[1]

    def _parsed_definition(self, name: str) -> ServiceDefinition | None:
        """The service's definition as _services keeps it (read only: every job delivering its outputs asks)."""
        found = self._services().get(name)
        return found[1] if found else None

    def _trigger(self, record: ServiceRecord, definition: ServiceDefinition, obj: UploadedObject) -> bool:
        if not any(matches(storage, obj) is not None for storage in definition.input):
            return False
        if self.store.bucket_owner(obj.bucket) != record.owner:
            return False  # only uploads into the owner's own buckets run the owner's service
        job = self._job_name(record.name)
        (self.jobs_dir / job).mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.store.add_triggered_job(job, record.name, record.owner, obj.source, obj.version):
            shutil.rmtree(self.jobs_dir / job, ignore_errors=True)
            return False
        self.dispatcher.wake()
        return True

    async def reconcile(self) -> int:
        """Catch up with uploads whose event never arrived (the engine was down): list each input path."""
        queued = 0
        for record in self.store.list_services():
            definition = self._definition(record)
            for storage in (io for io in definition.input if is_platform(io)):
                if self.store.bucket_owner(split_path(storage.path)[0]) != record.owner:
                    continue
                objects = await asyncio.to_thread(self._list, storage.path, record.created)
                done = self.store.triggered(record.name)
                fresh = not_triggered(objects, done)
                queued += sum(self._trigger(record, definition, obj) for obj in fresh)
        if queued:
            log.info("queued %d jobs for uploads that arrived while no event reached the engine", queued)
        return queued

    def _list(self, path: str, since: float) -> list[UploadedObject]:
        bucket, prefix = split_path(path)
        pages = self.settings.s3.client().get_paginator("list_objects_v2")
        found = []
        for page in pages.paginate(Bucket=bucket, Prefix=prefix + "/" if prefix else ""):
            for item in page.get("Contents", []):
                obj = from_listing(bucket, item)
                if obj and obj.mtime >= int(since) - 1:  # OSCAR triggers on new uploads only
                    found.append(obj)
        return found

    async def _reconcile_forever(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as error:
                log.warning("could not list the input paths to catch up with uploads: %s", error)
            await asyncio.sleep(self.settings.reconcile_seconds)

    # -- invocations ----------------------------------------------------------------------

    def _invocable(self, caller: Caller, name: str) -> tuple[ServiceRecord, str | None]:
        """The service and who invokes it: the caller, or the user a personal token was made for."""
        record = self.store.get_service(name)
        if record and caller.token:
            if hmac.compare_digest(caller.token.encode(), record.token.encode()):
                return record, caller.user
            holder = _personal_token_user(record, caller.token, self.generation_of)
            if holder is not None:
                return self._visible(holder, name), holder
        if caller.user is None:
            raise Unauthorized(
                f"this token is not valid for service '{name}': send the token GET /system/services/{name} "
                "shows you, or your own credentials"
            )
        return self._visible(caller.user, name), caller.user

    def may_invoke(self, caller: Caller, name: str) -> bool:
        """Whether these credentials may invoke the service: its token, a personal token for it, or a user who
        may use it."""
        try:
            self._invocable(caller, name)
        except (Unauthorized, NotFound):
            return False
        return True

    async def run(self, caller: Caller, name: str, body: bytes, filename: str | None = None) -> bytes:
        """A synchronous invocation: the answer OSCAR gives (base64 of the output, or the log).

        The input is written as OSCAR's supervisor writes it (`event-file-<uuid>`); `filename`, the caller's own
        name for it, is what modules and error messages see.
        """
        record, user = self._invocable(caller, name)
        started, status = time.monotonic(), 500
        try:
            answer = await self._run(record, user, body, filename)
            status = 200
            return answer
        except ReefLabError as error:
            status = error.status
            raise
        finally:  # every answered call counts, refused inputs and failures too (GET .../metrics)
            self.store.record_call(record.name, SYNC, status, time.monotonic() - started)

    async def _run(self, record: ServiceRecord, user: str | None, body: bytes, filename: str | None) -> bytes:
        data = _checked_input(decode_event(body))
        spec = self.spec(record.name)
        run_id = f"run-{uuid.uuid4().hex}"
        work = self.runs_dir / run_id
        (work / "input").mkdir(parents=True)
        (work / "output").mkdir()
        source = work / "input" / event_file_name()
        source.write_bytes(data)
        request = {
            "id": run_id,
            "input": str(source),
            "name": filename or source.name,
            "output_dir": str(work / "output"),
            "log": str(work / "log"),
            "workdir": str(work),
            "trusted": user == record.owner,
        }
        try:
            reply = await self.pool.invoke(spec, request, self.settings.invocation_timeout)
            output = (work / "log").read_bytes() if (work / "log").exists() else b""
            if reply.get("ok"):
                return sync_response(work / "output", output)
            if reply.get("kind") == "input":
                raise BadRequest(reply.get("error") or "the service refused this input")
            tail = failure_lines(output)
            raise InvocationFailed("; ".join([reply.get("error") or "the invocation failed", *tail]))
        except WorkerDied as error:
            raise InvocationFailed(f"{error}; try again") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def submit(self, caller: Caller, name: str, body: bytes, filename: str | None = None) -> str:
        """An asynchronous invocation: the input is stored (as `event-file-<uuid>`, the caller's `filename`
        beside it), the job queued; returns the job name."""
        record, user = self._invocable(caller, name)
        data = _checked_input(decode_event(body))
        job = self._job_name(record.name)
        folder = self.jobs_dir / job
        (folder / "input").mkdir(parents=True, mode=0o700)
        if filename:
            (folder / GIVEN_NAME).write_text(filename)
        with open(folder / "input" / event_file_name(), "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        self.store.add_job(job, record.name, user or TOKEN_SUBMITTER)
        self.dispatcher.wake()
        return job

    @staticmethod
    def _job_name(service: str) -> str:
        return f"{service[:16] if len(service) >= 25 else service}-{uuid.uuid4()}"

    # -- jobs -----------------------------------------------------------------------------

    def list_jobs(self, user: str, name: str, page: str = "") -> dict[str, Any]:
        record = self._visible(user, name)
        offset = int(page) if page.isdigit() else 0
        submitter = None if record.owner == user else user
        jobs, remaining = self.store.list_jobs(record.name, submitter, offset, JOBS_PAGE)
        return {
            "jobs": {
                job.name: {
                    "status": job.status,
                    "creation_time": iso_time(job.created),
                    "start_time": iso_time(job.started),
                    "finish_time": iso_time(job.finished),
                    **self._job_extras(job),
                }
                for job in jobs
            },
            "next_page": str(offset + len(jobs)) if remaining else "",
            "remaining_jobs": remaining,
        }

    def _job_extras(self, job: JobRecord) -> dict[str, Any]:
        """ReefLab's fields beside OSCAR's JobInfo (clients ignore them): `file`, the caller's own name for the
        input; `input`, the uploaded object ('bucket/key') of a job an upload made; `outputs`, the 'bucket/key's
        its results were written to, once it succeeded."""
        extras: dict[str, Any] = {"file": given_name_of(self.jobs_dir / job.name) or posixpath.basename(job.source)}
        if job.source:
            extras["input"] = job.source
        if job.status == SUCCEEDED:
            result = self.store.result(job.name)
            extras["outputs"] = [path for out in (result or {}).get("outputs", []) for path in out.get("stored", [])]
        return extras

    def job_log(self, user: str, name: str, job: str) -> str:
        """What each attempt printed, with the engine's notes, then the job's one recorded outcome."""
        self._job(user, name, job)
        path = self.jobs_dir / job / "log"
        text = path.read_text(errors="replace") if path.exists() else ""
        result = self.store.result(job)
        if result is None:
            return text
        if result["status"] == SUCCEEDED:
            listed = ", ".join(f"{o['name']} ({o['size']} bytes)" for o in result["outputs"]) or "none"
            outcome = f"job succeeded; outputs: {listed}"
        else:
            outcome = f"job failed: {result['error']}"
        return f"{text}[{stamp(result['completed'])}] {outcome}\n"

    def delete_job(self, user: str, name: str, job: str) -> None:
        self._remove([self._job(user, name, job).name])

    def delete_jobs(self, user: str, name: str, everything: bool = False) -> None:
        """Remove finished jobs (OSCAR's default: succeeded ones), or all of them with `everything`."""
        record = self._visible(user, name)
        submitter = None if record.owner == user else user
        jobs, _ = self.store.list_jobs(record.name, submitter, 0, 2**31)
        self._remove([job.name for job in jobs if everything or job.status == SUCCEEDED])

    def _job(self, user: str, name: str, job: str):
        record = self._visible(user, name)
        found = self.store.get_job(job)
        if found is None or found.service != record.name or (record.owner != user and found.submitter != user):
            raise NotFound(f"service '{name}' has no job '{job}': GET /system/logs/{name} lists its jobs")
        return found

    def _remove(self, jobs: list[str]) -> None:
        for job in jobs:
            self.dispatcher.cancel(job)
        self.store.delete_jobs(jobs)
        for job in jobs:
            shutil.rmtree(self.jobs_dir / job, ignore_errors=True)

    def running_jobs(self) -> int:
        return self.store.status_counts().get(RUNNING, 0)

    # -- hub users: generations and revocation ----------------------------------------------

    def generation_of(self, user: str) -> str:
        """The incarnation of `user` the records here belong to ('' if not known)."""
        recorded = self.store.generation(user)
        return recorded[0] if recorded else ""

    def meet(self, user: str, generation: str) -> None:
        """A hub user calls: what is recorded under their name is theirs, or a deleted namesake's (revoked first).

        A caller of a revoked or older incarnation (a deleted user's token the hub or a cache still had)
        is refused; records that predate generations are adopted.
        """
        if not generation:
            return  # not a hub user (static tokens of tests, basic-auth logins: revoked with their user)
        recorded = self.store.generation(user)
        current, revoked = recorded or ("", "")
        deleted = (revoked and generations.same(revoked, generation)) or (
            current and generations.older(generation, current)
        )
        if recorded is None or (current and generations.same(current, generation)):
            pass
        elif deleted:
            raise Unauthorized("this account was deleted: log in again")
        elif current:
            log.warning("hub user %s was made anew (%s, was %s): revoking the old one's", user, generation, current)
            self.revoke_user(user, current)
        if current != generation:
            self.store.set_generation(user, generation)
        # a deleted namesake's S3 side not removed yet (S3 was down): removed before this user does anything
        self._settle(user, strict=True)

    def revoke_user(self, user: str, generation: str = "") -> dict[str, Any]:
        """Everything of a deleted hub user goes: their services (workers stopped) with their jobs, the jobs they
        sent to others' services, their login, and on S3 their IAM user, keys and buckets with their objects."""
        services, jobs, buckets = self.store.forget_user(user, generation)
        for job in jobs:
            self.dispatcher.cancel(job)
            shutil.rmtree(self.jobs_dir / job, ignore_errors=True)
        for service in services:
            self.pool.stop_service(service)
            self.exposed.forget(service)
            self._specs.pop(service, None)
        settled = self._settle(user, strict=False)
        log.info(
            "revoked hub user %s: %d services, %d jobs, %d buckets%s",
            user,
            len(services),
            len(jobs),
            len(buckets),
            "" if settled else " (S3 pending: retried)",
        )
        return {"services": services, "jobs": len(jobs), "buckets": buckets, "s3_revoked": settled}

    def _settle(self, user: str, strict: bool) -> bool:
        """Remove from S3 what a deleted user of this name still has there (their IAM user, keys, buckets).

        `strict`: raise StorageUnavailable if S3 does not answer (a namesake must not get the old buckets);
        otherwise log, and the next sweep retries. True when nothing is left to remove.
        """
        pending = self.store.s3_revocation(user)
        if pending is None:
            return True
        if self.settings.s3 is None:
            self.store.s3_revoked(user)
            return True
        try:
            self.settings.s3.delete_user(user, {"access_key": pending["access_key"]} if pending["access_key"] else None)
            for bucket in pending["buckets"]:
                if self.store.bucket_owner(bucket) is None:  # never one recorded since as someone else's
                    self.settings.s3.delete_bucket(bucket)
        except StorageUnavailable as error:
            log.warning("S3 side of deleted user %s not removed yet: %s", user, error.message)
            if strict:
                raise
            return False
        self.store.s3_revoked(user)
        return True

    async def _sweep_forever(self) -> None:
        """At start and then every reconcile_seconds: what the hub deleted while its call could not reach us goes."""
        delay = 2.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self.sweep_users(await self.hub_users.all(), self.hub_users.exists)
                delay = self.settings.reconcile_seconds
            except Exception as error:  # the hub may not answer yet (it starts its services first)
                log.warning("could not compare the engine's users with the hub's: %s", error)
                delay = min(delay * 2, self.settings.reconcile_seconds)

    async def sweep_users(self, hub_users: dict[str, str], still_there) -> list[str]:
        """Revoke what belongs to users the hub no longer has, or to an earlier incarnation of a name.

        `hub_users`: {name: generation} from the hub's full list; `still_there(name)`: the hub's answer for one
        name right now (its generation, or None if there is no such user), asked before revoking anything.
        """
        revoked = []
        for user in sorted(self.store.known_users()):
            generation = hub_users.get(user)
            if generation is None:
                generation = await still_there(user)
            recorded = self.generation_of(user)
            if generation is None:
                self.revoke_user(user, recorded)
                revoked.append(user)
            elif not recorded:
                self.store.set_generation(user, generation)  # records from before generations: adopted
            elif generations.older(recorded, generation):
                self.revoke_user(user, recorded)
                self.store.set_generation(user, generation)
                revoked.append(user)
        for user in self.store.s3_revocations():
            self._settle(user, strict=False)
        if revoked:
            log.info("revoked %d users the hub no longer has: %s", len(revoked), ", ".join(revoked))
        return revoked


def _revoked(generation: tuple[str, str] | None) -> str:
    """The generation of the user revoked last (store.generation), '' if none."""
    return generation[1] if generation else ""


def _checked_input(data: bytes) -> bytes:
    """The input, unless it is a batch slice that could never run (400 naming the field, before it is queued)."""
    descriptor = slice_of(data)
    problem = slice_problem(descriptor) if descriptor is not None else None
    if problem:
        raise BadRequest(problem)
    return data


def personal_token(record: ServiceRecord, user: str, generation: str = "") -> str:
    """A user's own token for someone else's service: it names them (and their incarnation: a deleted user's
    token is not a namesake's), and only they are shown it."""
    name = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
    message = f"{record.name}\0{user}" + (f"\0{generation}" if generation else "")
    mac = hmac.new(record.token.encode(), message.encode(), hashlib.sha256).hexdigest()
    return f"{PERSONAL_TOKEN}{name}.{mac}"


def _personal_token_user(record: ServiceRecord, token: str, generation_of=lambda user: "") -> str | None:
    """The user a personal token of this service was made for, or None if it is not one."""
    if not token.startswith(PERSONAL_TOKEN):
        return None
    name = token[len(PERSONAL_TOKEN) :].partition(".")[0]
    try:
        user = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not user:
        return None
    expected = personal_token(record, user, generation_of(user))
    return user if hmac.compare_digest(expected.encode(), token.encode()) else None
