"""Platform status for one user: what they run now, what it holds, and what this machine has free.

Local mode only (the machine their server runs on); in kubernetes mode the cluster's allocatable minus requests
would be the figure, which is not done yet.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import psutil

from ..runs.models import RunRecord
from ..runs.service import RunService


def user_status(owner: str, services: tuple[RunService, ...]) -> dict[str, Any]:
    """The owner's active runs of every kind, and the CPUs, memory and GPUs they asked for together."""
    return runs_status(owner, {service.folder_name: service.active(owner) for service in services})


def runs_status(owner: str, runs: dict[str, list[RunRecord]]) -> dict[str, Any]:
    """`user_status` of active runs by kind (the usage service reads them from each user's records)."""
    running: dict[str, list[dict[str, Any]]] = {}
    held = {"cpu": 0.0, "memory_MB": 0, "gpu": 0}
    for kind, active in runs.items():
        running[kind] = [{"id": r.id, "title": r.title, "state": r.state} for r in active]
        for record in active:
            hardware = getattr(record, "hardware", record)  # a deployment's hardware, a job's own fields
            held["cpu"] += float(getattr(hardware, "cpu", 0) or 0)
            held["memory_MB"] += int(getattr(hardware, "memory_MB", 0) or 0)
            held["gpu"] += int(getattr(hardware, "gpu", 0) or 0)
    return {"user": owner, "running": running, "held": held}


def machine_status() -> dict[str, Any]:
    """This machine's CPUs (and how many are idle now), memory (available), and GPUs (free memory each)."""
    cpus = psutil.cpu_count() or 1
    busy = psutil.cpu_percent(interval=0.2)
    memory = psutil.virtual_memory()
    return {
        "cpu": {"count": cpus, "free": round(cpus * (1 - busy / 100), 2)},
        "memory_MB": {"total": memory.total // 1_000_000, "available": memory.available // 1_000_000},
        "gpus": _gpus(),
    }


def _gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs as nvidia-smi reports them; none where it is not installed."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = "--query-gpu=index,name,memory.total,memory.used,utilization.gpu"
    try:
        out = subprocess.run([smi, query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 5 and parts[0].isdigit():
            total, used = int(float(parts[2])), int(float(parts[3]))
            gpus.append({"index": int(parts[0]), "name": parts[1], "memory_MB": {"total": total, "free": total - used}})
            gpus[-1]["utilization_percent"] = float(parts[4]) if parts[4].replace(".", "").isdigit() else None
    return gpus
