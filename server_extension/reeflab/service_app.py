"""What a ReefLab process run as a JupyterHub-managed service shares (the serverless engine, the catalogue): where
it listens and its URL prefix, from the hub's environment unless given, and HubAuth to check users' hub tokens."""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlparse

from traitlets import Integer, Unicode, default
from traitlets.config import Application


class HubServiceApp(Application):
    default_port = 8000  # where it listens outside the hub, unless told

    ip = Unicode(config=True, help="Interface to listen on (default: from JUPYTERHUB_SERVICE_URL, else 127.0.0.1)")
    port = Integer(config=True, help="Port to listen on (default: from JUPYTERHUB_SERVICE_URL, else the service's)")
    base_url = Unicode(config=True, help="URL prefix of every route (default: JUPYTERHUB_SERVICE_PREFIX, else /)")

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    @default("ip")
    def _default_ip(self) -> str:
        return urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "")).hostname or "127.0.0.1"

    @default("port")
    def _default_port(self) -> int:
        return urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "")).port or self.default_port

    @default("base_url")
    def _default_base_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")

    def hub_auth(self) -> Any:
        """HubAuth when running under JupyterHub (it sets JUPYTERHUB_API_TOKEN and _URL), else None."""
        if not (os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get("JUPYTERHUB_API_URL")):
            return None
        from jupyterhub.services.auth import HubAuth

        return HubAuth(parent=self)
