"""Service definitions onto an OSCAR cluster through `oscar-python`, OSCAR's own client.

The same calls reach a real OSCAR cluster at scale (its endpoint, and the user's OIDC access
token, which the hub passes to user servers from the login's auth_state) or ReefLab's local
engine (its URL and the user's hub token): the FDL ReefLab writes is plain OSCAR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from ..serverless.batch import Engine
from ..serverless.invocations import content_disposition
from .connection import ReefLabClientError


class OscarCluster:
    """`OscarCluster(endpoint, token=...)` or `(endpoint, user=..., password=...)` (OSCAR basic auth)."""

    def __init__(self, endpoint: str, token: str = "", user: str = "", password: str = ""):
        from oscar_python.client import Client

        options: dict[str, Any] = {"cluster_id": "reeflab", "endpoint": endpoint.rstrip("/")}
        options["ssl"] = endpoint.startswith("https:")
        if token:
            options["oidc_token"] = token
        else:
            options.update(user=user, password=password)
        self.client = Client(options)

    @classmethod
    def of(cls, engine: Engine) -> OscarCluster:
        scheme, _, credential = engine.authorization.partition(" ")
        if scheme.lower() == "basic":
            import base64

            user, _, password = base64.b64decode(credential).decode().partition(":")
            return cls(engine.url, user=user, password=password)
        return cls(engine.url, token=credential)

    def _checked(self, call, *args, **kwargs) -> requests.Response:
        try:
            return call(*args, **kwargs)
        except requests.HTTPError as error:
            answer = error.response
            raise ReefLabClientError(answer.status_code, answer.text.strip() or answer.reason) from None

    def deploy(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Create the service, or update it when one of that name is already yours."""
        name = definition["name"]
        if self._exists(name):
            self._checked(self.client.update_service, name, definition)
        else:
            self._checked(self.client.create_service, definition)
        return self._checked(self.client.get_service, name).json()

    def _exists(self, name: str) -> bool:
        try:
            self.client.get_service(name)
        except requests.HTTPError as error:
            if error.response.status_code == 404:
                return False
            raise ReefLabClientError(error.response.status_code, error.response.text.strip()) from None
        return True

    def services(self) -> list[dict[str, Any]]:
        return self._checked(self.client.list_services).json()

    def delete(self, name: str) -> None:
        self._checked(self.client.remove_service, name)

    def invoke(self, name: str, path: str, timeout: float = 600) -> str:
        """A synchronous call with one file; OSCAR's answer (base64 of the output, or the log).

        The file's own name goes along (Content-Disposition), so that the module and its errors name it."""
        named = f"Content-Disposition: {content_disposition(Path(path).name)}"
        return self._checked(self.client.run_service, name, input=str(path), timeout=timeout, headers=named).text
