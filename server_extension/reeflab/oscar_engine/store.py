"""The engine's durable state in one sqlite database (WAL): services, jobs, results, user passwords,
and who owns each bucket of the platform's S3 (recorded when the platform makes it, never guessed from its name).

Every call of a service is counted in `calls` (a row per sync answer and per finished job; removed with the service),
for its owner's request metrics (metrics.py).

A job moves Pending -> Running -> Succeeded | Failed (the Kubernetes pod phases OSCAR reports).
Its outcome is written once: `results` is keyed by job name, so a late or repeated completion
of the same job (a retried attempt, a restart) cannot record a second output.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Conflict

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
SYNC, ASYNC = "sync", "async"  # kinds of calls (the calls table)

SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    definition TEXT NOT NULL,
    token TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    submitter TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_service ON jobs (service, created);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created);
CREATE TABLE IF NOT EXISTS results (
    job TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    outputs TEXT NOT NULL,
    error TEXT NOT NULL,
    completed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS s3_keys (
    name TEXT PRIMARY KEY,
    access_key TEXT NOT NULL,
    secret_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS buckets_by_owner ON buckets (owner, name);
CREATE TABLE IF NOT EXISTS generations (
    name TEXT PRIMARY KEY,
    generation TEXT NOT NULL,
    revoked TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS s3_revocations (
    name TEXT PRIMARY KEY,
    access_key TEXT NOT NULL,
    buckets TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    service TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    status INTEGER NOT NULL,
    latency REAL NOT NULL,
    run REAL,
    items INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_service ON calls (service, ts);
CREATE TABLE IF NOT EXISTS call_totals (
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    items INTEGER NOT NULL,
    latency_sum REAL NOT NULL,
    PRIMARY KEY (service, kind)
);
CREATE TABLE IF NOT EXISTS triggers (
    service TEXT NOT NULL,
    object TEXT NOT NULL,
    version TEXT NOT NULL,
    job TEXT NOT NULL,
    PRIMARY KEY (service, object, version)
);
"""
_INSERT_CALL = (  # not for a service deleted meanwhile
    "INSERT INTO calls (service, ts, kind, status, latency, run, items) SELECT ?, ?, ?, ?, ?, ?, 1 "
    "WHERE EXISTS (SELECT 1 FROM services WHERE name = ?)"
)
# columns added after the first release: (table, column, declaration)
MIGRATIONS = [("jobs", "source", "TEXT")]


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    owner: str
    definition: dict[str, Any]
    token: str
    created: float


@dataclass(frozen=True)
class JobRecord:
    name: str
    service: str
    submitter: str
    status: str
    attempts: int
    created: float
    started: float | None
    finished: float | None
    error: str = ""
    source: str = ""  # "bucket/key" of the uploaded file that triggered the job, if any


class EngineStore:
    """All reads and writes of the engine's state; used from the event loop thread only."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            self.path.touch(mode=0o600)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self._unflushed: list[tuple] = []
        # changes with every write to the services table (add, update, delete, a user's removal): who caches what
        # it derives from the services (the engine's parsed definitions, read on every upload event) compares it
        self.services_version = 0
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        for table, column, declaration in MIGRATIONS:
            if column not in {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        self.flush_calls()
        self.db.close()

    def _transaction(self):
        return _Transaction(self.db)

    # -- services ------------------------------------------------------------------------

    def add_service(self, name: str, owner: str, definition: dict[str, Any]) -> ServiceRecord:
        token = secrets.token_hex(32)  # 64 characters, as OSCAR's service tokens
        try:
            self.db.execute(
                "INSERT INTO services (name, owner, definition, token, created) VALUES (?, ?, ?, ?, ?)",
                (name, owner, json.dumps(definition), token, time.time()),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"a service named '{name}' already exists: choose another name") from None
        finally:
            self.services_version += 1
        return self.get_service(name)

    def update_service(self, name: str, definition: dict[str, Any]) -> None:
        try:
            self.db.execute("UPDATE services SET definition = ? WHERE name = ?", (json.dumps(definition), name))
        finally:
            self.services_version += 1

    def get_service(self, name: str) -> ServiceRecord | None:
        row = self.db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
        return _service(row) if row else None

    def list_services(self) -> list[ServiceRecord]:
        return [_service(row) for row in self.db.execute("SELECT * FROM services ORDER BY name")]

    def delete_service(self, name: str) -> list[str]:
        """Forget the service and all its jobs; returns the names of the jobs removed."""
        self.flush_calls()
        with self._transaction():
            jobs = [row[0] for row in self.db.execute("SELECT name FROM jobs WHERE service = ?", (name,))]
            self.db.execute("DELETE FROM results WHERE job IN (SELECT name FROM jobs WHERE service = ?)", (name,))
            self.db.execute("DELETE FROM jobs WHERE service = ?", (name,))
            self.db.execute("DELETE FROM services WHERE name = ?", (name,))
            self.db.execute("DELETE FROM triggers WHERE service = ?", (name,))
            self.db.execute("DELETE FROM calls WHERE service = ?", (name,))
            self.db.execute("DELETE FROM call_totals WHERE service = ?", (name,))
        self.services_version += 1
        return jobs

    # -- jobs ----------------------------------------------------------------------------

    def add_job(self, name: str, service: str, submitter: str, source: str = "") -> None:
        self.db.execute(
            "INSERT INTO jobs (name, service, submitter, status, created, source) VALUES (?, ?, ?, ?, ?, ?)",
            (name, service, submitter, PENDING, time.time(), source or None),
        )

    def add_triggered_job(self, name: str, service: str, submitter: str, source: str, version: str) -> bool:
        """Queue the job of an uploaded object once: False if this version of it already has one.

        Committed without waiting for the disk (synchronous=NORMAL: in the WAL, safe from a killed engine; only the
        machine's crash could lose it, before the next synced commit, which writes it too): an upload whose job is
        lost that way has no outcome yet, and the listing of the input paths at the next start queues it again.
        Each upload's event waited ~5-10 ms for the disk here, one event at a time."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction():
                added = self.db.execute(
                    "INSERT OR IGNORE INTO triggers (service, object, version, job) VALUES (?, ?, ?, ?)",
                    (service, source, version, name),
                ).rowcount
                if added:
                    self.add_job(name, service, submitter, source)
        finally:
            self.db.execute("PRAGMA synchronous=FULL")
        return bool(added)

    def triggered(self, service: str) -> set[tuple[str, str]]:
        """(object, version) pairs that already made a job of `service`."""
        rows = self.db.execute("SELECT object, version FROM triggers WHERE service = ?", (service,))
        return {(row[0], row[1]) for row in rows}

    def claim(self, name: str) -> int | None:
        """Mark a pending job running; returns its attempt number, None if it is not pending."""
        return self.claim_many([name]).get(name)

    def claim_many(self, names: list[str]) -> dict[str, int]:
        """`claim` for several jobs in one transaction (one synced write, not one each): name -> attempt number, for
        those that were pending."""
        claimed = {}
        with self._transaction():
            for name in names:
                changed = self.db.execute(
                    "UPDATE jobs SET status = ?, attempts = attempts + 1, started = ? WHERE name = ? AND status = ?",
                    (RUNNING, time.time(), name, PENDING),
                ).rowcount
                if changed:
                    claimed[name] = self.db.execute("SELECT attempts FROM jobs WHERE name = ?", (name,)).fetchone()[0]
        return claimed

    def requeue(self, name: str, attempt: int) -> bool:
        """Put a running job back in the queue (its worker died); False if it moved on meanwhile."""
        return bool(
            self.db.execute(
                "UPDATE jobs SET status = ? WHERE name = ? AND status = ? AND attempts = ?",
                (PENDING, name, RUNNING, attempt),
            ).rowcount
        )

    def complete(self, name: str, attempt: int, status: str, outputs: list[dict], error: str = "") -> bool:
        """Record the one outcome of a job; False (and nothing written) if it already has one."""
        return self.complete_many([(name, attempt, status, outputs, error)])[0]

    def complete_many(self, outcomes: list[tuple[str, int, str, list[dict], str]]) -> list[bool]:
        """`complete` for several jobs ((name, attempt, status, outputs, error) each) in one transaction."""
        now, recorded = time.time(), []
        with self._transaction():
            for name, attempt, status, outputs, error in outcomes:
                job = self.db.execute(
                    "SELECT service, status, attempts, created, started FROM jobs WHERE name = ?", (name,)
                ).fetchone()
                if job is None or job["status"] != RUNNING or job["attempts"] != attempt:
                    recorded.append(False)
                    continue
                inserted = self.db.execute(
                    "INSERT OR IGNORE INTO results (job, status, outputs, error, completed) VALUES (?, ?, ?, ?, ?)",
                    (name, status, json.dumps(outputs), error, now),
                ).rowcount
                if inserted:
                    self.db.execute("UPDATE jobs SET status = ?, finished = ? WHERE name = ?", (status, now, name))
                    run = now - job["started"] if job["started"] else None
                    code = 200 if status == SUCCEEDED else 500
                    self.record_call(job["service"], ASYNC, code, now - job["created"], run, ts=now)
                recorded.append(bool(inserted))
        return recorded

    def recover(self) -> int:
        """After a restart: jobs left running go back to the queue; the lost attempt does not count."""
        return self.db.execute(
            "UPDATE jobs SET status = ?, attempts = MAX(attempts - 1, 0) WHERE status = ?", (PENDING, RUNNING)
        ).rowcount

    def services_with_pending(self) -> list[str]:
        """Services that have queued jobs, the one waiting longest first."""
        rows = self.db.execute(
            "SELECT service, MIN(created) AS oldest FROM jobs WHERE status = ? GROUP BY service ORDER BY oldest",
            (PENDING,),
        )
        return [row[0] for row in rows]

    def pending(self, service: str, limit: int) -> list[JobRecord]:
        """The oldest queued jobs of a service."""
        rows = self.db.execute(
            "SELECT * FROM jobs WHERE service = ? AND status = ? ORDER BY created, rowid LIMIT ?",
            (service, PENDING, limit),
        ).fetchall()
        return [_job(row) for row in rows]

    def get_job(self, name: str) -> JobRecord | None:
        row = self.db.execute(
            "SELECT jobs.*, results.error FROM jobs LEFT JOIN results ON results.job = jobs.name WHERE name = ?",
            (name,),
        ).fetchone()
        return _job(row) if row else None

    def result(self, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM results WHERE job = ?", (name,)).fetchone()
        if row is None:
            return None
        return {
            "status": row["status"],
            "outputs": json.loads(row["outputs"]),
            "error": row["error"],
            "completed": row["completed"],
        }

    def list_jobs(self, service: str, submitter: str | None, offset: int, limit: int) -> tuple[list[JobRecord], int]:
        """A page of a service's jobs (only `submitter`'s if given) and how many remain after it."""
        where, args = "service = ?", [service]
        if submitter is not None:
            where, args = where + " AND submitter = ?", [*args, submitter]
        total = self.db.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}", args).fetchone()[0]
        rows = self.db.execute(
            f"SELECT * FROM jobs WHERE {where} ORDER BY created, rowid LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return [_job(row) for row in rows], max(0, total - offset - len(rows))

    def delete_jobs(self, names: list[str]) -> None:
        with self._transaction():
            for name in names:
                self.db.execute("DELETE FROM results WHERE job = ?", (name,))
                self.db.execute("DELETE FROM jobs WHERE name = ?", (name,))

    def job_counts(self, service: str) -> dict[str, int]:
        """The service's jobs per status (those it has)."""
        rows = self.db.execute("SELECT status, COUNT(*) FROM jobs WHERE service = ? GROUP BY status", (service,))
        return {row[0]: row[1] for row in rows}

    def job_names(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM jobs")}

    def status_counts(self, user: str | None = None) -> dict[str, int]:
        """Jobs per status: all of them, or only `user`'s (of their services, or sent by them)."""
        if user is None:
            rows = self.db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        else:
            rows = self.db.execute(
                "SELECT status, COUNT(*) FROM jobs WHERE submitter = ? "
                "OR service IN (SELECT name FROM services WHERE owner = ?) GROUP BY status",
                (user, user),
            )
        return {row[0]: row[1] for row in rows}

    # -- calls (request metrics: a row per sync call answered and per job finished) ---------------

    def record_call(
        self, service: str, kind: str, status: int, latency: float, run: float | None = None, ts: float | None = None
    ) -> None:
        """One invocation of `service`: `kind` SYNC (status as answered, latency request to answer) or ASYNC
        (200 or 500 for Succeeded or Failed, latency queued to finished, `run` the last attempt's run time).

        Sync calls wait in memory for `flush_calls` (the engine's maintenance, each second, and every read):
        a synced insert per call would add milliseconds to each (bench/serverless.py); an engine killed
        loses at most the last second's counts, never a job's."""
        row = (service, time.time() if ts is None else ts, kind, status, latency, run, service)
        if kind == SYNC:
            self._unflushed.append(row)
        else:
            self.db.execute(_INSERT_CALL, row)

    def flush_calls(self) -> None:
        if self._unflushed:
            rows, self._unflushed = self._unflushed, []
            with self._transaction():
                self.db.executemany(_INSERT_CALL, rows)

    def calls(self, service: str, since: float, kind: str | None = None) -> list[tuple]:
        """(ts, status, latency, items, run) of the service's calls since `since` (of one kind if given), oldest
        first."""
        self.flush_calls()
        where, args = "service = ? AND ts >= ?", [service, since]
        if kind:
            where, args = where + " AND kind = ?", [*args, kind]
        rows = self.db.execute(f"SELECT ts, status, latency, items, run FROM calls WHERE {where} ORDER BY ts", args)
        return [tuple(row) for row in rows]

    def call_totals(self, service: str) -> dict[str, dict[str, float]]:
        """Per kind (sync, async): calls, errors, items and latency_sum since the service was made (the rows kept
        and the totals of those pruned)."""
        self.flush_calls()
        rows = self.db.execute(
            "SELECT kind, COUNT(*), SUM(status >= 400), SUM(items), SUM(latency) FROM calls WHERE service = ? "
            "GROUP BY kind UNION ALL SELECT kind, calls, errors, items, latency_sum FROM call_totals WHERE service = ?",
            (service, service),
        )
        names = ("calls", "errors", "items", "latency_sum")
        totals = {kind: dict.fromkeys(names, 0) for kind in (SYNC, ASYNC)}
        for row in rows:
            for name, value in zip(names, row[1:], strict=True):
                totals[row[0]][name] += value or 0
        return totals

    def prune_calls(self, before: float) -> int:
        """Fold the calls older than `before` into the running totals (call_totals); returns how many."""
        self.flush_calls()
        with self._transaction():
            self.db.execute(
                "INSERT INTO call_totals (service, kind, calls, errors, items, latency_sum) "
                "SELECT service, kind, COUNT(*), SUM(status >= 400), SUM(items), SUM(latency) FROM calls "
                "WHERE ts < ? GROUP BY service, kind "
                "ON CONFLICT (service, kind) DO UPDATE SET calls = calls + excluded.calls, "
                "errors = errors + excluded.errors, items = items + excluded.items, "
                "latency_sum = latency_sum + excluded.latency_sum",
                (before,),
            )
            return self.db.execute("DELETE FROM calls WHERE ts < ?", (before,)).rowcount

    # -- buckets ---------------------------------------------------------------------------

    def claim_bucket(self, name: str, owner: str) -> str:
        """Record `owner` as the bucket's owner unless it has one; returns the owner it has now."""
        self.db.execute(
            "INSERT OR IGNORE INTO buckets (name, owner, created) VALUES (?, ?, ?)", (name, owner, time.time())
        )
        return self.db.execute("SELECT owner FROM buckets WHERE name = ?", (name,)).fetchone()[0]

    def bucket_owner(self, name: str) -> str | None:
        row = self.db.execute("SELECT owner FROM buckets WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def buckets_of(self, owner: str) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT name FROM buckets WHERE owner = ? ORDER BY name", (owner,))]

    def release_bucket(self, name: str, owner: str) -> bool:
        """Forget that `owner` owns the bucket (deleted by them); False if it was not recorded as theirs."""
        return bool(self.db.execute("DELETE FROM buckets WHERE name = ? AND owner = ?", (name, owner)).rowcount)

    # -- users -----------------------------------------------------------------------------

    def password(self, user: str) -> str:
        """The user's basic-auth password for OSCAR clients, created on first use."""
        self.db.execute("INSERT OR IGNORE INTO users (name, password) VALUES (?, ?)", (user, secrets.token_urlsafe(24)))
        return self.db.execute("SELECT password FROM users WHERE name = ?", (user,)).fetchone()[0]

    def s3_key(self, user: str) -> dict[str, str] | None:
        row = self.db.execute("SELECT access_key, secret_key FROM s3_keys WHERE name = ?", (user,)).fetchone()
        return {"access_key": row[0], "secret_key": row[1]} if row else None

    def set_s3_key(self, user: str, key: dict[str, str]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO s3_keys (name, access_key, secret_key) VALUES (?, ?, ?)",
            (user, key["access_key"], key["secret_key"]),
        )

    # -- hub users' generations (which incarnation of a name the records above belong to) ------

    def generation(self, user: str) -> tuple[str, str] | None:
        """(generation recorded for the user, generation revoked last) or None if never recorded."""
        row = self.db.execute("SELECT generation, revoked FROM generations WHERE name = ?", (user,)).fetchone()
        return (row[0], row[1]) if row else None

    def set_generation(self, user: str, generation: str) -> None:
        self.db.execute(
            "INSERT INTO generations (name, generation) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET generation = excluded.generation",
            (user, generation),
        )

    def known_users(self) -> set[str]:
        """Every name something here belongs to: logins, keys, generations, services, buckets."""
        rows = self.db.execute(
            "SELECT name FROM users UNION SELECT name FROM s3_keys UNION SELECT name FROM generations "
            "WHERE generation != '' UNION SELECT owner FROM services UNION SELECT owner FROM buckets"
        )
        return {row[0] for row in rows}

    def forget_user(self, user: str, generation: str = "") -> tuple[list[str], list[str], list[str]]:
        """Remove everything of a (deleted) user: their services with all their jobs, the jobs they sent to
        others' services, their login, key and bucket records. Returns (services, jobs, buckets) removed.

        The generation revoked is kept, so a cached token of that user is refused from now on.
        """
        self.flush_calls()
        with self._transaction():
            services = [r[0] for r in self.db.execute("SELECT name FROM services WHERE owner = ?", (user,))]
            jobs = [
                r[0]
                for r in self.db.execute(
                    "SELECT name FROM jobs WHERE submitter = ? "
                    "OR service IN (SELECT name FROM services WHERE owner = ?)",
                    (user, user),
                )
            ]
            buckets = [r[0] for r in self.db.execute("SELECT name FROM buckets WHERE owner = ?", (user,))]
            for job in jobs:
                self.db.execute("DELETE FROM results WHERE job = ?", (job,))
                self.db.execute("DELETE FROM jobs WHERE name = ?", (job,))
            for service in services:
                self.db.execute("DELETE FROM triggers WHERE service = ?", (service,))
                self.db.execute("DELETE FROM calls WHERE service = ?", (service,))
                self.db.execute("DELETE FROM call_totals WHERE service = ?", (service,))
                self.db.execute("DELETE FROM services WHERE name = ?", (service,))
            key = self.s3_key(user)
            pending = self.s3_revocation(user)
            if key or buckets or pending:  # the S3 side goes next (engine.py), and is retried until it has
                self.db.execute(
                    "INSERT OR REPLACE INTO s3_revocations (name, access_key, buckets) VALUES (?, ?, ?)",
                    (
                        user,
                        (pending or {}).get("access_key") or (key or {}).get("access_key", ""),
                        json.dumps(sorted({*buckets, *(pending or {}).get("buckets", [])})),
                    ),
                )
            for table, column in (("users", "name"), ("s3_keys", "name"), ("buckets", "owner")):
                self.db.execute(f"DELETE FROM {table} WHERE {column} = ?", (user,))
            recorded = self.generation(user)
            revoked = generation or (recorded[0] if recorded else "")
            self.db.execute(
                "INSERT INTO generations (name, generation, revoked) VALUES (?, '', ?) "
                "ON CONFLICT (name) DO UPDATE SET generation = '', revoked = excluded.revoked",
                (user, revoked),
            )
        self.services_version += 1
        return services, jobs, buckets

    def s3_revocation(self, user: str) -> dict[str, Any] | None:
        """What of a deleted user is still to be removed from S3: {access_key, buckets}, or None."""
        row = self.db.execute("SELECT access_key, buckets FROM s3_revocations WHERE name = ?", (user,)).fetchone()
        return {"access_key": row[0], "buckets": json.loads(row[1])} if row else None

    def revoke_s3_key(self, user: str, key: dict[str, str]) -> None:
        """A key made for a user revoked meanwhile: their IAM user goes again (it is pending until then)."""
        pending = self.s3_revocation(user) or {"access_key": "", "buckets": []}
        self.db.execute(
            "INSERT OR REPLACE INTO s3_revocations (name, access_key, buckets) VALUES (?, ?, ?)",
            (user, pending["access_key"] or key["access_key"], json.dumps(pending["buckets"])),
        )

    def s3_revocations(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT name FROM s3_revocations ORDER BY name")]

    def s3_revoked(self, user: str) -> None:
        self.db.execute("DELETE FROM s3_revocations WHERE name = ?", (user,))

    def check_password(self, user: str, password: str) -> bool:
        row = self.db.execute("SELECT password FROM users WHERE name = ?", (user,)).fetchone()
        expected = row[0] if row else secrets.token_urlsafe(24)  # compare anyway: same time either way
        return hmac.compare_digest(expected.encode(), password.encode()) and row is not None


class _Transaction:
    """`with store._transaction():` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, *exc) -> None:
        self.db.execute("ROLLBACK" if kind else "COMMIT")


def _service(row: sqlite3.Row) -> ServiceRecord:
    return ServiceRecord(row["name"], row["owner"], json.loads(row["definition"]), row["token"], row["created"])


def _job(row: sqlite3.Row) -> JobRecord:
    error = row["error"] if "error" in row.keys() and row["error"] else ""
    return JobRecord(
        row["name"],
        row["service"],
        row["submitter"],
        row["status"],
        row["attempts"],
        row["created"],
        row["started"],
        row["finished"],
        error,
        (row["source"] or "") if "source" in row.keys() else "",
    )
