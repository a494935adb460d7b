"""Keep the user's server alive while jobs run: report activity to JupyterHub as jupyterhub-singleuser does.

The hub's idle culler stops servers whose last activity is old; a job runs without any browser tab,
so without this the server (and, in kubernetes mode, the pod holding the user's home) would be culled
mid-run. The request is the one singleuser's `notify_activity` sends: POST JUPYTERHUB_ACTIVITY_URL
with the server's API token and `{"servers": {name: {"last_activity": ts}}, "last_activity": ts}`.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable


class HubActivity(LoggingConfigurable):
    """Posts activity to the hub; does nothing outside JupyterHub (no activity URL)."""

    url = Unicode(config=True, help="Hub activity endpoint (default: $JUPYTERHUB_ACTIVITY_URL)")
    interval = Float(
        config=True,
        help="Seconds between reports while a job runs. Default: $JUPYTERHUB_ACTIVITY_INTERVAL, which ReefLab's "
        "hub derives from its cull timeout (a third of it), else singleuser's 300",
    )
    server_name = Unicode(config=True, help="Named server ('' for the default one)")

    @default("url")
    def _default_url(self) -> str:
        return os.environ.get("JUPYTERHUB_ACTIVITY_URL", "")

    @default("interval")
    def _default_interval(self) -> float:
        return float(os.environ.get("JUPYTERHUB_ACTIVITY_INTERVAL", "300"))

    @default("server_name")
    def _default_server_name(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVER_NAME", "")

    _last_report: float | None = None

    async def report_if_due(self) -> bool:
        """Report now if `interval` has passed since the last report (or none was made): call it while jobs run."""
        if self._last_report is not None and time.monotonic() - self._last_report < self.interval:
            return False
        self._last_report = time.monotonic()
        return await self.report()

    async def report(self) -> bool:
        """One report now; False (logged, never raised) when the hub did not take it."""
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not self.url or not token:
            return False
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = {"servers": {self.server_name: {"last_activity": stamp}}, "last_activity": stamp}
        try:
            await AsyncHTTPClient().fetch(
                self.url,
                method="POST",
                headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
                body=json.dumps(body),
                request_timeout=10,
            )
        except (HTTPClientError, OSError) as err:
            self.log.warning("Could not report job activity to the hub: %s", err)
            return False
        return True
