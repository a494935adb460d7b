"""MetricsStore: one deployment's request metrics, drift evaluations and events, in a SQLite file of its folder.

A row a request (time, status, latency, items), so that any range and its exact percentiles can be asked for;
rows older than the retention are folded into running totals (the Prometheus counters never go back).
WAL with synchronous=NORMAL: a request's insert does not wait for the disk, and a crash loses at most the last
moments, never the file.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.metrics import Histogram

FILE = "monitoring.sqlite"
BUCKETS = tuple(b for b in Histogram.DEFAULT_BUCKETS if b != float("inf"))  # seconds, Prometheus' usual ones
_TOTALS = ("requests", "errors", "items", "latency_sum", *(f"le_{b}" for b in BUCKETS))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (ts REAL NOT NULL, status INTEGER NOT NULL, latency REAL NOT NULL,
                                     items INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, features BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS drift (ts REAL NOT NULL, statistic REAL NOT NULL, p_value REAL NOT NULL,
                                  size INTEGER NOT NULL, drift INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (ts REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
                                   data TEXT NOT NULL DEFAULT '{}');
"""


def percentiles(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(np.asarray(latencies), [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def describe(rows: list[tuple]) -> dict[str, Any]:
    """Counts and latency percentiles of (ts, status, latency, items) rows."""
    return {
        "requests": len(rows),
        "errors": sum(r[1] >= 400 for r in rows),
        "items": sum(r[3] for r in rows),
        "latency_s": percentiles([r[2] for r in rows]),
    }


def summarize(rows: list[tuple], start: float, since: float, step: float) -> dict[str, Any]:
    """(ts, status, latency, items) rows since `start` (oldest first): `describe` overall and in `step` second
    buckets (empty ones left out). Deployments' and serverless services' metrics share this shape."""
    buckets: dict[int, list[tuple]] = {}
    for row in rows:
        buckets.setdefault(int((row[0] - start) // step), []).append(row)
    return {
        "since_s": since,
        "step_s": step,
        **describe(rows),
        "buckets": [{"start": start + index * step, **describe(chunk)} for index, chunk in sorted(buckets.items())],
    }


def _array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _blob(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float64), allow_pickle=False)
    return buffer.getvalue()


class MetricsStore:
    """Thread-safe (requests are recorded on the event loop, features and drift evaluations in threads)."""

    def __init__(self, folder: str | Path, retention_days: float = 30):
        self.path = Path(folder) / FILE
        self.retention = retention_days * 86400
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)
        self._pruned_at = 0.0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- requests ------------------------------------------------------------------

    def record(self, status: int, latency: float, items: int, ts: float | None = None) -> None:
        ts = time.time() if ts is None else ts
        with self._lock:
            self._db.execute("INSERT INTO requests VALUES (?, ?, ?, ?)", (ts, status, latency, items))
        if ts - self._pruned_at > 3600:
            self.prune(ts)

    def prune(self, now: float | None = None) -> None:
        """Fold requests older than the retention into the running totals."""
        now = time.time() if now is None else now
        self._pruned_at = now
        cutoff = now - self.retention
        sums = ", ".join(f"SUM(latency <= {b})" for b in BUCKETS)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                f"SELECT COUNT(*), SUM(status >= 400), SUM(items), SUM(latency), {sums} FROM requests WHERE ts < ?",
                (cutoff,),
            ).fetchone()
            if not row[0]:
                return
            for name, value in zip(_TOTALS, row, strict=True):
                self._db.execute(
                    "INSERT INTO totals VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (name, value or 0),
                )
            self._db.execute("DELETE FROM requests WHERE ts < ?", (cutoff,))
            self._db.execute("DELETE FROM drift WHERE ts < ?", (cutoff,))

    def totals(self) -> dict[str, float]:
        """Counters since the deployment was created: requests, errors, items, latency_sum, le_<bucket>."""
        sums = ", ".join(f"SUM(latency <= {b})" for b in BUCKETS)
        with self._lock:
            row = self._db.execute(
                f"SELECT COUNT(*), SUM(status >= 400), SUM(items), SUM(latency), {sums} FROM requests"
            ).fetchone()
            carried = dict(self._db.execute("SELECT name, value FROM totals").fetchall())
        return {name: (value or 0) + carried.get(name, 0) for name, value in zip(_TOTALS, row, strict=True)}

    def summary(self, since: float, step: float, now: float | None = None) -> dict[str, Any]:
        """Requests of the last `since` seconds: their counts and latency percentiles, overall and in `step`
        second buckets (oldest first; empty buckets are left out)."""
        now = time.time() if now is None else now
        start = now - since
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, status, latency, items FROM requests WHERE ts >= ? ORDER BY ts", (start,)
            ).fetchall()
        return summarize(rows, start, since, step)

    # -- drift ---------------------------------------------------------------------

    def get_config(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return _array(row[0]) if key == "reference" else json.loads(row[0])

    def set_config(self, key: str, value: Any) -> None:
        data = _blob(value) if key == "reference" else json.dumps(value)
        with self._lock:
            self._db.execute(
                "INSERT INTO config VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, data)
            )

    def add_inputs(self, features: list[np.ndarray], keep: int) -> int:
        """Append inputs' features to the sliding window, keep its last `keep`; the inputs added so far."""
        ts = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO inputs (ts, features) VALUES (?, ?)", [(ts, _blob(f)) for f in features])
            last = self._db.execute("SELECT MAX(id) FROM inputs").fetchone()[0] or 0
            self._db.execute("DELETE FROM inputs WHERE id <= ?", (last - keep,))
        return last

    def window(self, size: int) -> np.ndarray:
        with self._lock:
            rows = self._db.execute("SELECT features FROM inputs ORDER BY id DESC LIMIT ?", (size,)).fetchall()
        return np.array([_array(r[0]) for r in reversed(rows)])

    def clear_inputs(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM inputs")

    def add_evaluation(self, statistic: float, p_value: float, size: int, drift: bool) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO drift VALUES (?, ?, ?, ?, ?)", (time.time(), statistic, p_value, size, int(drift))
            )

    def evaluations(self, limit: int = 500) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, statistic, p_value, size, drift FROM drift ORDER BY ts DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            {"ts": r[0], "statistic": r[1], "p_value": r[2], "size": r[3], "drift": bool(r[4])} for r in reversed(rows)
        ]

    def add_event(self, kind: str, message: str, data: dict | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?)", (time.time(), kind, message, json.dumps(data or {}))
            )

    def events(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, kind, message, data FROM events ORDER BY ts DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"ts": r[0], "kind": r[1], "message": r[2], "data": json.loads(r[3])} for r in reversed(rows)]
