"""A user's server talking to the catalogue service with the user's hub token: publish and unpublish, the index
(read by the marketplace as one of its remote indexes) and the platform's reports of the installed modules."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from ..checks.models import CheckReport
from ..errors import BadRequest, Conflict, Forbidden, NotFound, ReefLabError

ERRORS = {400: BadRequest, 403: Forbidden, 404: NotFound, 409: Conflict}


class CatalogueClient:
    def __init__(self, url: str, token: str, timeout: float = 20, max_age: float = 60):
        self.url = url.rstrip("/") + "/"
        self.headers = {"Authorization": f"token {token}"}
        self.timeout, self.max_age = timeout, max_age
        self._lock = threading.Lock()
        self._reports: tuple[float, dict[str, list[tuple[str, CheckReport]]]] | None = None

    @property
    def index_url(self) -> str:
        return f"{self.url}index.json"

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = httpx.request(method, self.url + path, headers=self.headers, timeout=self.timeout, **kwargs)
        except httpx.HTTPError as err:
            raise ReefLabError(f"The platform's catalogue service does not answer ({err}); try again later.") from None
        if response.status_code >= 400:
            try:
                message = response.json()["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise ERRORS.get(response.status_code, ReefLabError)(f"The catalogue service says: {message}")
        return response

    def published(self) -> list[dict[str, Any]]:
        return self._call("GET", "index.json").json()["modules"]

    def publish(self, module: str, metadata: dict[str, Any], report: CheckReport) -> dict[str, Any]:
        body = {"id": module, "metadata": metadata, "check": report.model_dump(mode="json")}
        return self._call("POST", "modules", json=body).json()

    def unpublish(self, module: str) -> None:
        self._call("DELETE", f"modules/{module}")

    def page(self, name: str) -> bytes:
        return self._call("GET", f"reports/{name}.html").content

    def reports(self, module: str) -> list[tuple[str, CheckReport]]:
        """The platform's reports of an installed module (asked again after `max_age`; none while it does not
        answer: the badge is then the user's own checks')."""
        with self._lock:
            if self._reports is None or time.monotonic() - self._reports[0] > self.max_age:
                self._reports = (time.monotonic(), self._fetch_reports())
            return self._reports[1].get(module, [])

    def _fetch_reports(self) -> dict[str, list[tuple[str, CheckReport]]]:
        try:
            listing = self._call("GET", "reports.json").json()["reports"]
        except ReefLabError:
            return {}
        found: dict[str, list[tuple[str, CheckReport]]] = {}
        for item in listing:
            report = CheckReport.model_validate(item["report"])
            found.setdefault(report.module, []).append((item["name"], report))
        return found
