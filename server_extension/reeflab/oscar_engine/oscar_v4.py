"""The answers of OSCAR v4's user routes, computed from the local engine (no HTTP here).

Each function takes the caller's name and returns what OSCAR's type holds (swagger types.*), so
the OSCAR dashboard and oscar-python read them unchanged. Everything is scoped to the caller:
their own services (and, where OSCAR lets other users see a service, its status only), the jobs
of their services and the jobs they sent, their own buckets. Where the local engine has no such
thing (countries, GPU hours, counts of exposed requests) the answer says so with zeros and a note.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from ..errors import BadRequest, Forbidden, NotFound, ReefLabError
from ..profiles import ProfileStore, default_profiles_path
from .engine import TOKEN_SUBMITTER, OscarEngine, iso_time
from .store import SYNC, JobRecord, ServiceRecord

NAMESPACE = "reeflab"
RESOURCE_KIND = "reeflab_workers"  # OSCAR says knative_service or exposed_service: here, the engine's warm workers
FAILED_START_SECONDS = 60  # a worker that failed to start this recently makes the deployment "failed"
LOG_TAIL_BYTES = 2**20
MAX_LOG_LINES = 5000
ALL_JOBS = 2**31
# what a real OSCAR shows in `expose` when a service sets none (types.Expose defaults); api_port empty: not exposed
EXPOSE_DEFAULTS: dict[str, Any] = {
    "api_port": [],
    "nodePort": [],
    "min_scale": 1,
    "max_scale": 10,
    "cpu_threshold": 80,
    "rewrite_target": False,
    "default_command": False,
    "set_auth": False,
    "health_path": "/",
    "probe_mode": "legacy",
    "auth_type": "basic",
}
# FDL fields OSCAR always answers with; the dashboard reads them without checking they are there
SERVICE_DEFAULTS: dict[str, Any] = {
    "labels": {},
    "annotations": {},
    "alpine": False,
    "enable_gpu": False,
    "enable_sgx": False,
    "image_prefetch": False,
    "image_pull_secrets": [],
    "file_stage_in": False,
    "cluster_id": "",
    "clusters": {},
    "vo": "",
    "bucket_list": [],
    "total_cpu": "",
    "total_memory": "",
    "namespace": NAMESPACE,
    "isolation_level": "SERVICE",
}
METRICS = (
    "requests-sync-per-service",
    "requests-async-per-service",
    "requests-exposed-per-service",
    "cpu-hours",
    "gpu-hours",
    "users-per-service",
)
SOURCE_NOTE = "jobs and synchronous calls recorded by the local engine; exposed services are not counted"


class ProfilesUnavailable(ReefLabError):
    status = 503


# -- services --------------------------------------------------------------------------------


def service_view(view: dict[str, Any], deployment: dict[str, Any] | None = None) -> dict[str, Any]:
    """A service as OSCAR answers it: the engine's view with every field OSCAR always has filled in."""
    shaped = {**SERVICE_DEFAULTS, **view}
    for key in ("labels", "annotations", "clusters"):
        if not isinstance(shaped.get(key), dict):
            shaped[key] = {}
    expose = view.get("expose")
    shaped["expose"] = {**EXPOSE_DEFAULTS, **(expose if isinstance(expose, dict) else {})}
    if deployment is not None:
        shaped["deployment"] = {k: v for k, v in deployment.items() if k not in ("service_name", "namespace")}
    return shaped


def service_answer(engine: OscarEngine, view: dict[str, Any], include: str = "") -> dict[str, Any]:
    """What GET/POST /system/services answer for one service; `include=deployment` adds its workers' summary."""
    deployment = None
    if "deployment" in include.split(","):
        record = engine.store.get_service(str(view.get("name", "")))
        deployment = deployment_status(engine, record) if record else None
    return service_view(view, deployment)


def visible_record(engine: OscarEngine, user: str, name: str) -> ServiceRecord:
    """The service if the user may see it (404 as if it did not exist otherwise)."""
    engine.get_service(user, name)  # raises NotFound for others' private services
    record = engine.store.get_service(name)
    if record is None:
        raise NotFound(f"no service named '{name}' that you can use: GET /system/services lists yours")
    return record


def owned_record(engine: OscarEngine, user: str, name: str) -> ServiceRecord:
    """The service if the user owns it: 404 if they cannot see it, 403 if they only may use it."""
    record = visible_record(engine, user, name)
    if record.owner != user:
        raise Forbidden(f"only the owner of service '{name}' may see its workers, logs and metrics or stop it")
    return record


# -- deployment: the warm workers -----------------------------------------------------------


def deployment_status(engine: OscarEngine, record: ServiceRecord) -> dict[str, Any]:
    """types.ServiceDeploymentStatus of the service's warm workers (OSCAR: its Knative pods), or of its exposed
    service's process (OSCAR: its exposed pods)."""
    definition = engine.definition(record.name)
    if definition is not None and definition.expose is not None:
        shown = engine.exposed.status(record.name, definition.expose)
        return {"service_name": record.name, "namespace": NAMESPACE, **shown}
    spec = engine.spec(record.name)
    workers = [w for w in engine.pool.live() if w.spec.service == record.name and not w.retired]
    alive = [w for w in workers if w.alive]
    busy = sum(1 for w in alive if w.busy)
    min_scale = spec.min_scale if spec else 0
    failed_at = engine.pool.failed_start(spec) if spec else None
    failed = failed_at is not None and time.monotonic() - failed_at < FAILED_START_SECONDS
    stopped = record.name in engine.pool.stopped
    if stopped:
        state, reason = "stopped", "Stopped: no warm workers are kept (an invocation still starts one)."
    elif failed and not alive:
        state, reason = "failed", "A worker failed to start: see the deployment logs."
    elif len(alive) >= min_scale:
        state = "ready"
        most = spec.max_scale if spec else 0
        reason = f"{len(alive)} warm workers ({busy} busy); more start on demand, up to {most}."
    elif alive:
        state, reason = "degraded", f"{len(alive)} of {min_scale} warm workers are up."
    else:
        state, reason = "pending", f"Starting {min_scale} warm workers."
    return {
        "service_name": record.name,
        "namespace": NAMESPACE,
        "state": state,
        "reason": reason,
        "active_instances": len(alive),
        "affected_instances": 0 if stopped else max(0, min_scale - len(alive)),
        "resource_kind": RESOURCE_KIND,
    }


def deployment_logs(engine: OscarEngine, record: ServiceRecord, tail: int, timestamps: bool) -> dict[str, Any]:
    """types.DeploymentLogStream: the last lines the service's workers wrote (loading the module, errors)."""
    lines, modified = _tail(engine.pool.home / record.name / "worker.log", max(1, min(tail, MAX_LOG_LINES)))
    stamp = iso_time(modified) if timestamps and modified else None
    entries = [{"timestamp": stamp, "message": line} if stamp else {"message": line} for line in lines]
    answer: dict[str, Any] = {"service_name": record.name, "available": bool(entries), "entries": entries}
    if not entries:
        answer["message"] = "No worker of this service has written anything yet."
    return answer


def _tail(path: Path, count: int) -> tuple[list[str], float | None]:
    """The last `count` lines of a log file; never follows a link (the service's code may write in its folder)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return [], None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return [], None
        handle.seek(max(0, info.st_size - LOG_TAIL_BYTES))
        text = handle.read(LOG_TAIL_BYTES).decode(errors="replace")
    return text.splitlines()[-count:], info.st_mtime


# -- the caller's jobs ---------------------------------------------------------------------------


def caller_jobs(engine: OscarEngine, user: str) -> list[tuple[ServiceRecord, JobRecord]]:
    """Every job of the user's services, and the jobs they sent to services of others they may still use."""
    found = []
    for record in engine.store.list_services():
        definition = engine.definition(record.name)
        if definition is None or not definition.visible_to(user, record.owner):
            continue
        submitter = None if record.owner == user else user
        jobs, _ = engine.store.list_jobs(record.name, submitter, 0, ALL_JOBS)
        found.extend((record, job) for job in jobs)
    return sorted(found, key=lambda pair: pair[1].created)


def logs_listing(engine: OscarEngine, user: str) -> dict[str, Any]:
    """GET /system/logs: OSCAR gives admins its manager's log; here each user gets one entry per job of theirs."""
    logs = []
    for record, job in caller_jobs(engine, user)[-MAX_LOG_LINES:]:
        created = iso_time(job.created)
        path = f"/job/{record.name}" if not job.source else f"(upload) {job.source}"
        logs.append(
            {
                "timestamp": created,
                "service": record.name,
                "job": job.name,
                "status": job.status,
                "user": _submitter(job, record),
                "method": "POST",
                "path": path,
                "raw": f"{created} {record.name} {job.name} {job.status}",
            }
        )
    return {"logs": logs}


def _submitter(job: JobRecord, record: ServiceRecord) -> str:
    return record.owner if job.submitter == TOKEN_SUBMITTER else job.submitter


# -- metrics ---------------------------------------------------------------------------------------


def window(start: str, end: str) -> tuple[datetime, datetime]:
    """OSCAR's metric window: RFC 3339 `start`/`end`, by default the last 24 hours."""
    try:
        until = _parse_time(end) if end else datetime.now(UTC)
        since = _parse_time(start) if start else until - timedelta(hours=24)
    except ValueError:
        raise BadRequest("start and end must be RFC 3339 times, e.g. 2026-01-31T12:00:00Z") from None
    if since > until:
        raise BadRequest("start must come before end")
    return since, until


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _in_window(job: JobRecord, since: datetime, until: datetime) -> bool:
    return since.timestamp() <= job.created <= until.timestamp()


def _cpu_hours(engine: OscarEngine, record: ServiceRecord, jobs: Iterable[JobRecord]) -> float:
    definition = engine.definition(record.name)
    cores = definition.cpu_millicores / 1000 if definition else 0
    seconds = sum(job.finished - job.started for job in jobs if job.started and job.finished)
    return round(seconds * cores / 3600, 6)


def _service_totals(engine: OscarEngine, record: ServiceRecord, since: datetime, until: datetime) -> dict[str, Any]:
    jobs, _ = engine.store.list_jobs(record.name, None, 0, ALL_JOBS)
    jobs = [job for job in jobs if _in_window(job, since, until)]
    sync = [c for c in engine.store.calls(record.name, since.timestamp(), SYNC) if c[0] <= until.timestamp()]
    return {
        "jobs": len(jobs),
        "sync": len(sync),
        "cpu_hours": _cpu_hours(engine, record, jobs),
        "users": len({_submitter(job, record) for job in jobs}),
    }


def _sources() -> list[dict[str, Any]]:
    return [{"name": "reeflab-engine", "status": "ok", "notes": SOURCE_NOTE, "last_updated": iso_time(time.time())}]


def metrics_summary(engine: OscarEngine, user: str, start: str = "", end: str = "") -> dict[str, Any]:
    """types.MetricsSummaryResponse over the caller's own services."""
    since, until = window(start, end)
    owned = [r for r in engine.store.list_services() if r.owner == user]
    totals = [_service_totals(engine, r, since, until) for r in owned]
    up = {w.spec.service for w in engine.pool.live()}
    jobs = sum(t["jobs"] for t in totals)
    sync = sum(t["sync"] for t in totals)
    return {
        "start": _rfc3339(since),
        "end": _rfc3339(until),
        "totals": {
            "services_count_total": len(owned),
            "services_count_active": sum(
                1 for r, t in zip(owned, totals, strict=True) if t["jobs"] or t["sync"] or r.name in up
            ),
            "requests_count_sync": sync,
            "requests_count_async": jobs,
            "requests_count_exposed": 0,
            "requests_count_total": jobs + sync,
            "cpu_hours_total": round(sum(t["cpu_hours"] for t in totals), 6),
            "gpu_hours_total": 0,
            "users": [user],
            "users_count": 1,
            "countries": [],
            "countries_count": 0,
        },
        "sources": _sources(),
    }


def service_metrics(
    engine: OscarEngine, record: ServiceRecord, metric: str = "", start: str = "", end: str = ""
) -> dict[str, Any]:
    """types.ServiceMetricsResponse of one of the caller's services (all metrics, or `metric`)."""
    if metric and metric not in METRICS:
        raise BadRequest(f"metric: '{metric}' is not one of {', '.join(METRICS)}")
    since, until = window(start, end)
    totals = _service_totals(engine, record, since, until)
    values = {
        "requests-sync-per-service": (totals["sync"], "requests"),
        "requests-async-per-service": (totals["jobs"], "requests"),
        "requests-exposed-per-service": (0, "requests"),
        "cpu-hours": (totals["cpu_hours"], "hours"),
        "gpu-hours": (0, "hours"),
        "users-per-service": (totals["users"], "users"),
    }
    chosen = [metric] if metric else list(METRICS)
    return {
        "service_name": record.name,
        "start": _rfc3339(since),
        "end": _rfc3339(until),
        "metrics": [
            {"metric": key, "value": values[key][0], "unit": values[key][1], "sources": _sources()} for key in chosen
        ],
    }


def metrics_breakdown(engine: OscarEngine, user: str, group_by: str, start: str = "", end: str = "") -> dict[str, Any]:
    """types.MetricsBreakdownResponse of the caller's services, by service or user (no countries are known here)."""
    if group_by not in ("service", "user", "country"):
        raise BadRequest("group_by: give service, user or country")
    since, until = window(start, end)
    owned = [r for r in engine.store.list_services() if r.owner == user]
    items = []
    if group_by == "service":
        for record in owned:
            totals = _service_totals(engine, record, since, until)
            items.append(_breakdown_item(record.name, totals["jobs"], totals["sync"], totals["users"]))
    elif group_by == "user":
        totals = [_service_totals(engine, r, since, until) for r in owned]
        items.append(_breakdown_item(user, sum(t["jobs"] for t in totals), sum(t["sync"] for t in totals), 1))
    return {"start": _rfc3339(since), "end": _rfc3339(until), "group_by": group_by, "items": items}


def _breakdown_item(key: str, jobs: int, sync: int, users: int) -> dict[str, Any]:
    return {
        "key": key,
        "executions_count": jobs,
        "requests_count_async": jobs,
        "requests_count_sync": sync,
        "requests_count_exposed": 0,
        "requests_count_total": jobs + sync,
        "unique_users_count": users,
        "users": [],
        "countries": [],
    }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- quotas -------------------------------------------------------------------------------------

_profiles: dict[Path, ProfileStore] = {}


def quota(engine: OscarEngine, user: str, groups: Iterable[str]) -> dict[str, Any]:
    """types.QuotaResponse: the most a user may ask for (their largest hardware profile) and what their workers hold."""
    path = default_profiles_path()
    store = _profiles.setdefault(path, ProfileStore(path))
    try:
        allowed = store.catalog().allowed(groups)
    except ReefLabError as error:
        raise ProfilesUnavailable(error.message) from None
    capacity_m = (psutil.cpu_count() or 1) * 1000
    cpu_max = min(capacity_m, max((round(p.cpu * 1000) for p in allowed), default=0))
    memory_max = min(psutil.virtual_memory().total, max((p.memory_bytes for p in allowed), default=0))
    mine = [w for w in engine.pool.live() if w.spec.owner == user]
    return {
        "user_id": user,
        "cluster_queue": "reeflab-local",
        "resources": {
            "cpu": {"max": cpu_max, "used": sum(w.spec.cpu_millicores for w in mine)},
            "memory": {"max": memory_max, "used": sum(w.spec.memory_bytes for w in mine)},
        },
    }


def profile_groups(model: dict[str, Any] | None) -> list[str]:
    """The hub groups in a hub user model (empty when the caller came with basic auth or a static token)."""
    groups = (model or {}).get("groups") or []
    return [g for g in groups if isinstance(g, str)]


def engine_started() -> str:
    """When this engine process started (its creation time), for /system/status's oscar.deployment."""
    with contextlib.suppress(psutil.Error):
        return iso_time(psutil.Process().create_time()) or ""
    return ""
