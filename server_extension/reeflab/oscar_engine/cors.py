"""CORS for an OSCAR dashboard served from another origin (`ServerlessApp.cors_origins`, default none).

A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered before any
handler authenticates, since browsers never send credentials with it: 204 with the methods and
headers the API takes for an allowed origin, 403 without any CORS header for any other. Every
other answer to an allowed origin carries `Access-Control-Allow-Origin` (that origin, never `*`),
added by an output transform so error pages get it too. No cookies are involved (the API takes an
Authorization header), so `Access-Control-Allow-Credentials` is never sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tornado import httputil, web

ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"  # PATCH, HEAD: exposed services
ALLOWED_HEADERS = "Authorization, Content-Type, Accept, X-Requested-With"
MAX_AGE = "600"


def normalise(origin: str) -> str:
    """Origins compare as browsers send them: scheme://host[:port], lower case, no trailing slash."""
    return origin.strip().rstrip("/").lower()


class PreflightHandler(web.RequestHandler):
    """Answers a CORS preflight without authentication: the browser asks whether it may send the real request."""

    def initialize(self, origins: frozenset[str]) -> None:
        self.origins = origins

    def options(self, *args: Any, **kwargs: Any) -> None:
        origin = self.request.headers.get("Origin", "")
        if normalise(origin) not in self.origins:
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"origin {origin} may not call this engine (ServerlessApp.cors_origins)")
            return
        self.set_status(204)
        self.set_header("Access-Control-Allow-Origin", origin)
        self.set_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
        self.set_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
        self.set_header("Access-Control-Max-Age", MAX_AGE)
        self.set_header("Vary", "Origin")
        self.finish()


def origin_transform(origins: frozenset[str]) -> type:
    """An output transform class that adds Access-Control-Allow-Origin to answers to allowed origins."""

    class AllowOrigin(web.OutputTransform):
        def __init__(self, request: httputil.HTTPServerRequest) -> None:
            super().__init__(request)
            origin = request.headers.get("Origin", "")
            self.origin = origin if origin and normalise(origin) in origins else ""

        def transform_first_chunk(
            self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
        ) -> tuple[int, httputil.HTTPHeaders, bytes]:
            if self.origin and "Access-Control-Allow-Origin" not in headers:
                headers["Access-Control-Allow-Origin"] = self.origin
                headers.add("Vary", "Origin")
            return status_code, headers, chunk

    return AllowOrigin


class CorsApplication(web.Application):
    """A tornado Application that answers CORS preflights itself and marks answers to allowed origins."""

    def __init__(self, handlers: list, origins: Iterable[str] = (), **settings: Any) -> None:
        self.cors_origins = frozenset(normalise(o) for o in origins if o.strip())
        transforms = [origin_transform(self.cors_origins)] if self.cors_origins else []
        super().__init__(handlers, transforms=transforms, **settings)

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> web._HandlerDelegate:
        if (
            request.method == "OPTIONS"
            and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers
        ):
            return self.get_handler_delegate(request, PreflightHandler, {"origins": self.cors_origins})
        return super().find_handler(request, **kwargs)
