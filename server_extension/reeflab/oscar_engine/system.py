"""The /system/info, /system/status and /system/config answers, shaped as OSCAR's types.

Status reports this machine as the one node; "free" CPU and memory subtract what busy workers
requested (their service's `cpu` and `memory`), as OSCAR subtracts pod requests, so a batch
coordinator can size its parallelism from it (idle warm workers are stopped to make room).
CPU figures are millicores, as OSCAR reports them. Job and worker counts are the caller's own
(their services' and the jobs they sent), and the node is named by the engine, not the host:
only an admin sees the platform-wide counts and the host name.
"""

from __future__ import annotations

import platform
import socket
from collections import Counter
from typing import Any

import psutil

from .._version import __version__
from ..storage.platform_s3 import REGION
from .engine import Caller, OscarEngine
from .oscar_v4 import engine_started

BACKEND_NAME = "reeflab-local"
# the OSCAR release whose REST API this engine answers (reference/oscar-api-v4.swagger.yaml): clients compare
# `version` with OSCAR releases to decide which features to offer, so it must not be ReefLab's own version
OSCAR_API_VERSION = "4.0.0"


def info() -> dict[str, Any]:
    """types.Info: the OSCAR version whose API is matched, and ReefLab's own version beside it."""
    return {
        "version": OSCAR_API_VERSION,
        "git_commit": "",
        "architecture": platform.machine(),
        "kubernetes_version": "",
        "serverless_backend": {"name": BACKEND_NAME, "version": __version__},
        "reeflab_version": __version__,
        "oscar_api": f"v{OSCAR_API_VERSION}",
    }


def status(engine: OscarEngine, caller: Caller) -> dict[str, Any]:
    """The cluster's capacity and what is free (as OSCAR reports it); counts are the caller's unless an admin asks."""
    workers = engine.pool.live()
    capacity_m = (psutil.cpu_count() or 1) * 1000
    busy = [w for w in workers if w.busy]  # idle warm workers give way to any invocation
    requested_m = sum(w.spec.cpu_millicores for w in busy)
    memory = psutil.virtual_memory()
    requested_bytes = sum(w.spec.memory_bytes for w in busy)
    free_m = max(0, capacity_m - requested_m)
    free_bytes = max(0, min(memory.available, memory.total - requested_bytes))
    node = {
        "name": socket.gethostname() if caller.admin else BACKEND_NAME,
        "status": "Ready",
        "conditions": [{"type": "Ready", "status": True}],
        "cpu": {
            "capacity_cores": capacity_m,
            "request_cores": requested_m,
            "usage_cores": round(psutil.cpu_percent(interval=None) * capacity_m / 100),
        },
        "memory": {
            "capacity_bytes": memory.total,
            "request_bytes": requested_bytes,
            "usage_bytes": memory.total - memory.available,
        },
        "gpu": 0,
        "is_interlink": False,
    }
    jobs = engine.store.status_counts(None if caller.admin else caller.user or "")
    mine = workers if caller.admin else [w for w in workers if w.spec.owner == caller.user]
    pods = Counter("Running" if w.busy else "Idle" for w in mine)
    return {
        "cluster": {
            "nodes_count": 1,
            "nodes": [node],
            "metrics": {
                "cpu": {
                    "total_free_cores": free_m,
                    "max_free_on_node_cores": free_m,
                    "total_schedulable_cores": capacity_m,
                    "total_schedulable_on_node_cores": capacity_m,
                },
                "memory": {
                    "total_free_bytes": free_bytes,
                    "max_free_on_node_bytes": free_bytes,
                    "total_schedulable_bytes": memory.total,
                    "max_schedulable_on_node_bytes": memory.total,
                },
                "gpu": {"total_gpu": 0},
            },
        },
        "oscar": {
            "ready": True,
            "deployment_name": BACKEND_NAME,
            "jobs_count": sum(jobs.values()),
            "pods": {"total": len(mine), "states": dict(pods)},
            # the engine is one process: one replica, up since the process started
            "deployment": {
                "available_replicas": 1,
                "ready_replicas": 1,
                "replicas": 1,
                "creation_timestamp": engine_started(),
                "strategy": "Recreate",
                "labels": {"app": "reeflab-serverless"},
            },
            # the engine checks no OIDC token itself: logins (OIDC included) happen at the hub
            "oidc": {"enabled": False, "issuers": [], "groups": []},
        },
        "minio": {"buckets_count": len(engine.store.buckets_of(caller.user)) if caller.user else 0, "total_objects": 0},
    }


async def user_config(engine: OscarEngine, user: str, endpoint: str) -> dict[str, Any]:
    """The caller's view of the cluster: their own S3 key, and (ReefLab) their basic-auth login."""
    s3 = engine.settings.s3
    key = await engine.storage_key(user)
    return {
        "config": {
            "name": BACKEND_NAME,
            "namespace": "reeflab",
            "services_namespace": "reeflab",
            "serverless_backend": BACKEND_NAME,
            "gpu_available": False,
            "interLink_available": False,
            "yunikorn_enable": False,
            "kueue_enable": False,
            "volume_enable": False,
            "minio_quota_enabled": False,
            "oidc_groups": [],
        },
        "minio_provider": {
            "endpoint": s3.endpoint if s3 else "",
            "region": REGION,
            "access_key": key["access_key"],
            "secret_key": key["secret_key"],
            "verify": bool(s3 and s3.endpoint.startswith("https:")),
        },
        "allowed_image_repositories": [],
        # oscar-cli's cluster entry (types.Cluster): what oscar-python's basic-auth Client needs
        "oscar_cluster": {
            "endpoint": endpoint,
            "auth_user": user,
            "auth_password": engine.store.password(user),
            "ssl_verify": endpoint.startswith("https:"),
        },
    }
