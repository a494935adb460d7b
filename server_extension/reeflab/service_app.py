"""What a ReefLab process run as a JupyterHub-managed service shares (the serverless engine, the catalogue, the usage
service): where it listens and its URL prefix, from the hub's environment unless given, HubAuth to check users'
hub tokens; for the catalogue and usage services also their private state folder, who calls (`Callers`) and
serving until SIGTERM (`serve_until_stopped`)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Integer, Set, Unicode, default
from traitlets.config import Application

from .errors import ReefLabError
from .runs.backend import AbstractConfigurable


class HubServiceApp(Application, metaclass=AbstractConfigurable):
    default_port = 8000  # where it listens outside the hub, unless told

    ip = Unicode(config=True, help="Interface to listen on (default: from JUPYTERHUB_SERVICE_URL, else 127.0.0.1)")
    port = Integer(config=True, help="Port to listen on (default: from JUPYTERHUB_SERVICE_URL, else the service's)")
    base_url = Unicode(config=True, help="URL prefix of every route (default: JUPYTERHUB_SERVICE_PREFIX, else /)")
    state_dir = Unicode(
        config=True,
        help="Folder of the service's state, kept private to it (default: "
        "$REEFLAB_STATE_DIR/<its folder>, else ~/.reeflab/<its folder>)",
    )
    state_folder = ""  # the state folder's name, under $REEFLAB_STATE_DIR
    static_tokens_file = Unicode("", config=True, help="Tests/development only: JSON file {token: user name}")
    admin_users = Set(Unicode(), config=True, help="Users who are admins of this service besides hub admins")

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

    @default("state_dir")
    def _default_state_dir(self) -> str:
        return str(Path(os.environ.get("REEFLAB_STATE_DIR") or Path.home() / ".reeflab") / self.state_folder)

    def private_state(self) -> Path:
        """The state folder, made if missing, 0700: what the service keeps is read through its API only."""
        state = Path(self.state_dir)
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(state, 0o700)
        return state

    def callers(self) -> Callers:
        static = json.loads(Path(self.static_tokens_file).read_text()) if self.static_tokens_file else {}
        return Callers(self.hub_auth(), static, frozenset(self.admin_users))

    def start(self) -> None:
        logging.basicConfig(level=self.log_level, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
        asyncio.run(self.serve())

    @abstractmethod
    async def serve(self) -> None:
        """Start the service's work and serve its routes (`serve_until_stopped`) until it is stopped."""

    async def serve_until_stopped(self, app: web.Application, **server_options: Any) -> None:
        """Listen with this application (HTTPServer's options) until SIGTERM or SIGINT."""
        server = HTTPServer(app, **server_options)
        server.listen(self.port, self.ip)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        server.stop()

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
