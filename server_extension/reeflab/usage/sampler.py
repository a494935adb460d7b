"""What each hub user uses on this machine, sampled every minute by the usage service (the platform's account).

- CPU: the CPU seconds each user's processes used since the last sample (psutil). A process is the user's when it
  runs under their OS account (accounts.py), else (shared-account mode) when its environment names them
  (JUPYTERHUB_USER, which their server and everything it starts inherit). A process that starts and ends between
  two samples is not seen.
- GPU: seconds × GPUs their processes hold (nvidia-smi's compute apps), where nvidia-smi is installed.
- Memory: their processes' resident memory now (the hour keeps its peak).
- Requests: what the platform counted in each hour: their deployments' stores (monitoring.sqlite in each
  deployment's folder) and the serverless engine's calls of their services.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from .. import accounts
from ..monitoring.store import FILE as DEPLOYMENT_METRICS
from .store import HOUR, hour_of

DATA_DIR = Path(".local", "share", "jupyter", "reeflab")  # a user's runs under their home (Jupyter's data dir)


class Sampler:
    def __init__(self, homes: Path | None, engine_db: Path | None):
        self.homes, self.engine_db = homes, engine_db
        self._seen: dict[tuple[int, float], float] = {}  # (pid, create time): CPU seconds at the last sample
        self._last: float | None = None

    def sample(self, users: list[str], now: float | None = None) -> tuple[dict[str, dict[str, float]], dict]:
        """({user: {cpu_s, gpu_s, memory_MB}} since the last sample, {(user, hour): requests} of the recent hours)."""
        now = time.time() if now is None else now
        usage = {user: {"cpu_s": 0.0, "gpu_s": 0.0, "memory_MB": 0} for user in users}
        owners = self._owners(users)
        seen: dict[tuple[int, float], float] = {}
        pids: dict[int, str] = {}
        for proc in psutil.process_iter(["uids", "create_time", "cpu_times", "memory_info"]):
            user = self._owner(proc, owners, set(users))
            info = proc.info
            if user is None or info["cpu_times"] is None or info["create_time"] is None:
                continue
            pids[proc.pid] = user
            key, cpu = (proc.pid, info["create_time"]), info["cpu_times"].user + info["cpu_times"].system
            seen[key] = cpu
            if key in self._seen:
                usage[user]["cpu_s"] += max(0.0, cpu - self._seen[key])
            elif self._last is not None and info["create_time"] >= self._last:
                usage[user]["cpu_s"] += cpu  # started since the last sample: all it used is new
            if info["memory_info"] is not None:
                usage[user]["memory_MB"] += info["memory_info"].rss // 1_000_000
        if self._last is not None:
            for user, gpus in gpu_holders(pids).items():
                usage[user]["gpu_s"] += (now - self._last) * gpus
        self._seen, self._last = seen, now
        return usage, self.requests(users, now)

    def _owners(self, users: list[str]) -> dict[int, str]:
        if not accounts.isolation_available():
            return {}
        found = {user: accounts.lookup(user) for user in users}
        return {account.uid: user for user, account in found.items() if account is not None}

    @staticmethod
    def _owner(proc: psutil.Process, owners: dict[int, str], users: set[str]) -> str | None:
        uids = proc.info["uids"]
        if uids is not None and uids.real in owners:
            return owners[uids.real]
        if owners and uids is not None and uids.real != 0 and uids.real not in owners:
            return None  # per-user accounts: another account's process is nobody's here
        try:
            name = proc.environ().get("JUPYTERHUB_USER")
        except (psutil.Error, OSError):
            return None
        return name if name in users else None

    def requests(self, users: list[str], now: float) -> dict[tuple[str, float], int]:
        """Requests counted in the current hour (and the previous one, whose last minutes the last sample missed)."""
        hours = sorted({hour_of(now - 120), hour_of(now)})
        counts: dict[tuple[str, float], int] = {}
        for hour in hours:
            for user in users:
                for path in self._deployment_stores(user):
                    counts[(user, hour)] = counts.get((user, hour), 0) + _count(
                        path, "SELECT COUNT(*) FROM requests WHERE ts >= ? AND ts < ?", (hour, hour + HOUR)
                    )
            if self.engine_db is not None and self.engine_db.exists():
                for user, count in _rows(
                    self.engine_db,
                    "SELECT s.owner, COUNT(*) FROM calls c JOIN services s ON s.name = c.service "
                    "WHERE c.ts >= ? AND c.ts < ? GROUP BY s.owner",
                    (hour, hour + HOUR),
                ):
                    if user in users:
                        counts[(user, hour)] = counts.get((user, hour), 0) + count
        return {key: count for key, count in counts.items() if count}

    def home(self, user: str) -> Path | None:
        if self.homes is None or "/" in user or user in ("", ".", ".."):  # <homes>/<name>, never beside it
            return None
        home = self.homes / user
        return home if home.is_dir() else None

    def _deployment_stores(self, user: str) -> list[Path]:
        home = self.home(user)
        return sorted((home / DATA_DIR / "deployments").glob(f"*/{DEPLOYMENT_METRICS}")) if home else []


def _rows(path: Path, query: str, args: tuple) -> list[tuple]:
    """Read another component's SQLite file without writing to it; [] when it is missing or being replaced."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        return db.execute(query, args).fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()


def _count(path: Path, query: str, args: tuple) -> int:
    rows = _rows(path, query, args)
    return int(rows[0][0] or 0) if rows else 0


def gpu_holders(pids: dict[int, str]) -> dict[str, int]:
    """How many GPUs each user's processes hold now (nvidia-smi's compute apps); {} without nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None or not pids:
        return {}
    try:
        out = subprocess.run(
            [smi, "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    held: dict[str, set[str]] = {}
    for line in out.stdout.splitlines():
        pid, _, gpu = (part.strip() for part in line.partition(","))
        if pid.isdigit() and int(pid) in pids:
            held.setdefault(pids[int(pid)], set()).add(gpu)
    return {user: len(gpus) for user, gpus in held.items()}


def active_runs(home: Path | None) -> dict[str, list[Any]]:
    """The user's active runs of each kind, read from their records (what their server keeps in their home)."""
    from ..checks.service import ModuleCheckService
    from ..deployments.service import DeploymentService
    from ..jobs.service import JobService
    from ..pipelines.service import PipelineService
    from ..runs.store import RecordStore

    runs: dict[str, list[Any]] = {}
    for kind in (DeploymentService, JobService, PipelineService, ModuleCheckService):
        if home is None:
            runs[kind.folder_name] = []
            continue
        store = RecordStore(home / DATA_DIR / kind.folder_name, kind.record_file, kind.record_class)
        try:
            records = store.load_all()
        except (OSError, ValueError):
            records = []
        runs[kind.folder_name] = [r for r in records if r.active]
    return runs
