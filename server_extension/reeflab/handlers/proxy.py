"""One authorized route to a web service behind this server: a deployment's DEEPaaS API, MLflow."""

from __future__ import annotations

import json
from abc import ABCMeta, abstractmethod
from urllib.parse import urlparse

from jupyter_server.utils import ensure_async
from jupyter_server_proxy.handlers import ProxyHandler
from tornado import web

from ..services import Services


class AuthorizedProxyHandler(ProxyHandler, metaclass=ABCMeta):
    """jupyter-server-proxy's handler (it authenticates every request, and passes websockets and streams on),
    with ReefLab's authorization check, cross-site writes refused, and errors as {"message"}.

    A subclass names what it guards (`auth_resource`, `what`) and where requests go (`target`).
    """

    auth_resource = "reeflab"
    what = "this service"  # in refusals: 'not allowed to use <what>'

    @property
    def services(self) -> Services:
        return self.settings["reeflab"]

    @abstractmethod
    def target(self) -> tuple[str, int]:
        """The host and port to send the request to (the route's arguments are in `self.path_kwargs`); raise
        web.HTTPError to refuse it."""

    async def prepare(self, *args, **kwargs):
        await super().prepare(*args, **kwargs)
        if self._finished:
            return
        # an authorizer may be async: its coroutine, unawaited, would be truthy
        if not await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", self.auth_resource)
        ):
            raise web.HTTPError(403, f"not allowed to use {self.what}")
        origin = self.request.headers.get("Origin")
        if self.request.method not in ("GET", "HEAD", "OPTIONS") and origin:
            # the proxy skips Jupyter's XSRF check (defers to the app): refuse cross-site writes here
            if urlparse(origin).netloc != self.request.host:
                raise web.HTTPError(403, f"cross-origin requests to {self.what} are refused")

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": getattr(exc, "log_message", None) or self._reason}))

    # prepare() authenticates every method; the decorators make that visible to jupyter-server's check of
    # extension handlers (and to readers)
    @web.authenticated
    async def get(self, path: str = "", **route: str) -> None:
        return await super().get(path=path, **route)  # a websocket goes to open(), the rest to http_get()

    async def http_get(self, path: str = "", **route: str) -> None:
        return await self.proxy(*self.target(), path)

    async def open(self, path: str = "", **route: str) -> None:
        return await self.proxy_open(*self.target(), path)

    @web.authenticated
    async def _forward(self, path: str = "", **route: str) -> None:
        return await self.proxy(*self.target(), path)

    post = put = delete = patch = head = options = _forward
