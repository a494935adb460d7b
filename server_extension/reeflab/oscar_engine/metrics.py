"""Request metrics of a service, counted by the engine where every call passes (ReefLab's addition to OSCAR).

GET /system/services/<name>/metrics answers its owner (others: 404, or 403 if they may only use it) with the
shape of deployments' metrics (reeflab.monitoring): totals since the service was made, and the calls of the last
`since` seconds with latency percentiles, overall and in `step` second buckets. Sync calls count as answered
(a refused input 400, a failed invocation 500) with their latency from request to answer; async calls count
when their job finishes (Failed: an error) with their latency from queued to finished and their run time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest
from ..monitoring.store import describe, percentiles, summarize
from .oscar_v4 import owned_record
from .store import ASYNC, PENDING, RUNNING, SYNC

if TYPE_CHECKING:
    from .engine import OscarEngine

MAX_SINCE = 90 * 86400
MAX_BUCKETS = 10000


def window_arguments(since: str, step: str) -> tuple[float, float]:
    """`since` and `step` (seconds) as a caller sends them; 400 saying what to send otherwise."""
    try:
        since_s = float(since) if since else 3600.0
        step_s = float(step) if step else 60.0
    except ValueError:
        raise BadRequest("since and step are numbers of seconds, e.g. since=3600&step=60") from None
    if not 0 < since_s <= MAX_SINCE:
        raise BadRequest(f"since: give seconds between 1 and {MAX_SINCE} (90 days)")
    if step_s < 1 or since_s / step_s > MAX_BUCKETS:
        raise BadRequest(f"step: give at least 1 second and at most {MAX_BUCKETS} buckets (since / step)")
    return since_s, step_s


def service_metrics(engine: OscarEngine, user: str, name: str, since: float = 3600, step: float = 60) -> dict:
    record = owned_record(engine, user, name)
    store = engine.store
    start = time.time() - since
    totals = store.call_totals(record.name)
    sync, jobs = store.calls(record.name, start, SYNC), store.calls(record.name, start, ASYNC)
    waiting = store.job_counts(record.name)
    return {
        "service": record.name,
        "total": {
            "requests": sum(t["calls"] for t in totals.values()),
            "errors": sum(t["errors"] for t in totals.values()),
            "items": sum(t["items"] for t in totals.values()),
            "sync": _counts(totals[SYNC]),
            "async": _counts(totals[ASYNC]),
        },
        "window": summarize(sorted(sync + jobs), start, since, step),
        "sync": describe(sync),
        "async": {**describe(jobs), "run_s": percentiles([r[4] for r in jobs if r[4] is not None])},
        "jobs": {"pending": waiting.get(PENDING, 0), "running": waiting.get(RUNNING, 0)},
    }


def _counts(totals: dict[str, Any]) -> dict[str, Any]:
    return {"requests": totals["calls"], "errors": totals["errors"], "items": totals["items"]}
