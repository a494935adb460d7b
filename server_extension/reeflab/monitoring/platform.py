"""PlatformUsage: a user's server asks the usage service (hub service `reeflab-usage`) for the platform's status and
each user's usage over time, with the server's own hub token. The service decides who may see them (hub admins);
this server never reads other users' data itself, it passes the service's answer or refusal on."""

from __future__ import annotations

import os
from typing import Any

import httpx
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import ReefLabError

PASSED_ON = (400, 403, 404, 501)  # the service's own answers, with its words; anything else: 502


class UsageServiceError(ReefLabError):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class PlatformUsage(LoggingConfigurable):
    url = Unicode(
        config=True,
        help="The usage service's address, its prefix included: $REEFLAB_USAGE_SERVICE_URL (the hub sets it); "
        "empty: the panel's Platform section says it is not configured",
    )
    timeout = Float(30, config=True, help="Seconds to wait for the usage service")

    @default("url")
    def _default_url(self) -> str:
        return os.environ.get("REEFLAB_USAGE_SERVICE_URL", "")

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.url:
            raise UsageServiceError(
                "The platform's usage service is not configured here (the hub gives user servers its address in "
                "REEFLAB_USAGE_SERVICE_URL); ask the platform's operator.",
                503,
            )
        headers = {"Authorization": f"token {os.environ.get('JUPYTERHUB_API_TOKEN', '')}"}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url.rstrip("/") + "/" + path, params=params, headers=headers)
        except httpx.HTTPError as err:
            message = f"The platform's usage service does not answer ({err}); try again later."
            raise UsageServiceError(message, 502) from None
        if response.status_code >= 400:
            try:
                message = response.json()["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300] or response.reason_phrase
            status = response.status_code if response.status_code in PASSED_ON else 502
            raise UsageServiceError(f"The usage service says: {message}", status)
        return response.json()

    async def status(self) -> dict[str, Any]:
        """What each user runs now, their servers, and the machine's (or cluster's) free capacity."""
        return await self._get("status")

    async def usage(self, since: int, step: int) -> dict[str, Any]:
        """Each user's CPU-hours, GPU-hours, requests and peak memory over the last `since` seconds, in total and
        in `step` second buckets."""
        return await self._get("usage", {"since": since, "step": step})
