"""What a ReefLab process run as a JupyterHub-managed service shares (the serverless engine, the catalogue): where
it listens and its URL prefix, from the hub's environment unless given, and HubAuth to check users' hub tokens."""

from __future__ import annotations

import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from tornado import web
from traitlets import Integer, Unicode, default
from traitlets.config import Application

from .errors import ReefLabError


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


@dataclass
class Caller:
    user: str | None = None
    admin: bool = False


class Callers:
    """Who holds a token: the hub says (HubAuth, with the service's access scope), else the static tokens."""

    def __init__(self, hub_auth: Any, static: dict[str, str], admins: frozenset[str]):
        self.hub_auth, self.static, self.admins = hub_auth, static, admins

    async def identify(self, authorization: str) -> Caller:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in ("token", "bearer") or not token:
            return Caller()
        for known, user in self.static.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return Caller(user, user in self.admins)
        if self.hub_auth is None:
            return Caller()
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model or model.get("kind", "user") != "user":
            return Caller()
        required = self.hub_auth.access_scopes
        if required and not self.hub_auth.check_scopes(required, model):
            return Caller()
        return Caller(model["name"], bool(model.get("admin")) or model["name"] in self.admins)


class ServiceHandler(web.RequestHandler):
    """A route of such a service: the caller (`self.callers` set by the subclass's initialize) must send a token
    the hub (or the static tokens) knows, else 401; ReefLabErrors answer their status with {"message"}."""

    callers: Callers
    caller: Caller

    async def prepare(self) -> None:
        self.caller = await self.callers.identify(self.request.headers.get("Authorization", ""))
        if self.caller.user is None:
            self.set_header("WWW-Authenticate", "token")
            self.reply(401, {"message": "Send your hub token: 'Authorization: token <token>'."})

    def reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        self.set_status(status)
        self.finish(body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        message = error.message if isinstance(error, ReefLabError) else self._reason
        self.finish({"message": message})

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ReefLabError):
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
        else:
            super()._handle_request_exception(e)
