"""Keep the user's server alive while jobs run: report activity to JupyterHub as jupyterhub-singleuser does.

The hub's idle culler stops servers whose last activity is old; a job runs without any browser tab,
so without this the server (and, in kubernetes mode, the pod holding the user's home) would be culled
mid-run. The request is the one singleuser's `notify_activity` sends: POST JUPYTERHUB_ACTIVITY_URL
with the server's API token and `{"servers": {name: {"last_activity": ts}}, "last_activity": ts}`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable


class HubActivity(LoggingConfigurable):
    """Posts activity to the hub; does nothing outside JupyterHub (no activity URL)."""

    url = Unicode(config=True, help="Hub activity endpoint (default: $JUPYTERHUB_ACTIVITY_URL)")
    interval = Float(config=True, help="Seconds between reports while a job runs (default: singleuser's)")
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
