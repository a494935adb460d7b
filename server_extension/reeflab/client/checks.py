"""Module checks from Python: `c = checks.check("fish-detector").wait(); c.passed, c.failed`; then
`checks.publish("fish-detector")` to share a module whose checks passed."""

from __future__ import annotations

from typing import Any

from .connection import Connection, ReefLabClientError, Run, default_connection


class CheckFailed(ReefLabClientError):
    """The checks could not run to the end (no report): the reason quotes their log."""

    def __init__(self, info: dict[str, Any]):
        super().__init__(409, f"check {info['id']} {info['state']}: {info.get('reason') or ''}".strip())


class Check(Run):
    """A handle on one check of a module; `report` once it completed (each check's state and reason)."""

    collection, listed_as, unit, failure = ("checks",), "checks", "check", CheckFailed

    @property
    def report(self) -> dict[str, Any] | None:
        return self.info.get("report")

    @property
    def passed(self) -> bool:
        return bool(self.report and self.report["passed"])

    @property
    def failed(self) -> dict[str, str]:
        """The failed checks and why: {name: reason}."""
        return {r["name"]: r["reason"] for r in (self.report or {}).get("results", []) if r["state"] == "failed"}

    def page(self) -> str:
        """The report as a readable HTML page."""
        url = self.connection.api_url("checks", self.id, "report.html")
        response = self.connection.session.get(url, timeout=self.connection.timeout)
        if not response.ok:
            raise ReefLabClientError(response.status_code, response.text[:300])
        return response.text

    def __repr__(self) -> str:
        outcome = ("passed" if self.passed else f"failed {', '.join(self.failed)}") if self.report else self.state
        return f"<Check {self.id} {self.info['module']} {outcome}>"


def check(module: str, connection: Connection | None = None) -> Check:
    """Start the checks of an installed marketplace module; `.wait()` for its report."""
    return Check.create({"module": module}, connection)


def list_checks(connection: Connection | None = None) -> list[Check]:
    return Check.all(connection)


def publish(module: str, connection: Connection | None = None) -> dict[str, Any]:
    """Publish a module whose latest check passed to the platform's shared catalogue index, with its report."""
    return (connection or default_connection()).post("catalog", "published", json={"module": module})


def unpublish(module: str, connection: Connection | None = None) -> None:
    (connection or default_connection()).request("DELETE", "catalog", "published", module)


def check_and_publish(module: str, connection: Connection | None = None, progress: bool = True) -> dict[str, Any]:
    """Publish the module; where it has no passing check as it is now, check it on the platform first (and
    raise CheckFailed, with the failed checks, where that check does not pass)."""
    try:
        return publish(module, connection)
    except ReefLabClientError as err:
        if err.status != 409:  # 409: not checked as it is now, or its latest check failed
            raise
    run = check(module, connection).wait(progress=progress)
    if not run.passed:
        failed = "; ".join(f"{name}: {reason}" for name, reason in run.failed.items())
        raise CheckFailed({**run.info, "reason": f"its checks failed, so it is not published ({failed})"})
    return publish(module, connection)
