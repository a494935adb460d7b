"""UsageStore: per-user, per-hour usage rows (CPU seconds, GPU seconds, requests, peak memory) in SQLite.

The sampler adds what it measured each minute to the hour's row of each user; requests are counts the platform
keeps elsewhere (deployments' stores, the serverless engine), so an hour's requests are set to what was counted in
that hour (never lowered: a deleted deployment takes its rows with it). The file survives restarts.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

HOUR = 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    user TEXT NOT NULL,
    hour REAL NOT NULL,
    cpu_s REAL NOT NULL DEFAULT 0,
    gpu_s REAL NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    memory_max_MB INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, hour)
);
"""


def hour_of(ts: float) -> float:
    return float(int(ts // HOUR) * HOUR)


class UsageStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, ts: float, usage: dict[str, dict[str, float]], requests: dict[tuple[str, float], int]) -> None:
        """`usage`: {user: {cpu_s, gpu_s, memory_MB}} measured in the sample at `ts`; `requests`: {(user, hour):
        requests counted in that hour}."""
        hour = hour_of(ts)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for user, figures in usage.items():
                self._db.execute(
                    "INSERT INTO usage (user, hour, cpu_s, gpu_s, memory_max_MB) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (user, hour) DO UPDATE SET cpu_s = cpu_s + excluded.cpu_s, "
                    "gpu_s = gpu_s + excluded.gpu_s, memory_max_MB = MAX(memory_max_MB, excluded.memory_max_MB)",
                    (
                        user,
                        hour,
                        figures.get("cpu_s", 0.0),
                        figures.get("gpu_s", 0.0),
                        int(figures.get("memory_MB", 0)),
                    ),
                )
            for (user, at), count in requests.items():
                self._db.execute(
                    "INSERT INTO usage (user, hour, requests) VALUES (?, ?, ?) "
                    "ON CONFLICT (user, hour) DO UPDATE SET requests = MAX(requests, excluded.requests)",
                    (user, at, count),
                )

    def rows(self, since: float, step: float) -> dict[str, Any]:
        """Each user's usage since `since` (a time stamp), in `step` second buckets (multiples of an hour)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT user, hour, cpu_s, gpu_s, requests, memory_max_MB FROM usage WHERE hour >= ? "
                "ORDER BY user, hour",
                (hour_of(since),),
            ).fetchall()
        users: dict[str, dict[str, Any]] = {}
        for user, hour, cpu_s, gpu_s, requests, memory in rows:
            entry = users.setdefault(user, {"cpu_hours": 0.0, "gpu_hours": 0.0, "requests": 0, "buckets": {}})
            entry["cpu_hours"] += cpu_s / HOUR
            entry["gpu_hours"] += gpu_s / HOUR
            entry["requests"] += requests
            start = hour_of(since) + ((hour - hour_of(since)) // step) * step
            bucket = entry["buckets"].setdefault(
                start, {"start": start, "cpu_hours": 0.0, "gpu_hours": 0.0, "requests": 0, "memory_max_MB": 0}
            )
            bucket["cpu_hours"] += cpu_s / HOUR
            bucket["gpu_hours"] += gpu_s / HOUR
            bucket["requests"] += requests
            bucket["memory_max_MB"] = max(bucket["memory_max_MB"], memory)
        for entry in users.values():
            entry["buckets"] = list(entry["buckets"].values())
        return {"since": hour_of(since), "step_s": step, "users": users}
