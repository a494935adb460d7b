"""Bearer tokens for Flower clients: the ai4-flwr convention, gRPC metadata `x-authorization: Bearer <token>`.

The server side is a gRPC server interceptor that checks every new call against the owner's token file
(hashes only, re-read when it changes, so a revoked token is refused from its next connection on). The
client side is a gRPC client interceptor that adds the header to every call of the Flower connection.
No tornado, no Jupyter: the Flower server process and remote clients import only this and grpc.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections import namedtuple
from pathlib import Path
from typing import Any, NamedTuple

import grpc

HEADER = "x-authorization"
PREFIX = "rlf_"  # ReefLab Flower token: recognisable in a leak scan


def token_hash(token: str) -> str:
    """Tokens are 256-bit random strings: a plain SHA-256 is enough to keep them unusable at rest."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_of(metadata) -> str | None:
    """The token of an `x-authorization: Bearer <token>` header, if any."""
    for key, value in metadata or ():
        if key.lower() == HEADER:
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class TokenFile:
    """The hashed tokens of one user (a JSON list of {id, name, created, hash}), re-read when it changes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[dict[str, Any]] = []

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                self._stamp, self._entries = None, []
                return []
            if stamp != self._stamp:
                self._entries = json.loads(self.path.read_text() or "[]")
                self._stamp = stamp
            return list(self._entries)

    def match(self, token: str | None) -> dict[str, Any] | None:
        """The entry of a valid token, compared in constant time; None for a missing/unknown/revoked one."""
        if not token:
            return None
        digest = token_hash(token)
        found = None
        for entry in self.entries():
            if hmac.compare_digest(entry["hash"], digest):
                found = entry
        return found


class Caller(NamedTuple):
    token_id: str
    token_name: str


# The token of the call a gRPC worker thread is serving: the Flower servicer creates the client's
# proxy in that thread, so the server can tell which token each client contribution came from.
current = threading.local()


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without a valid token with UNAUTHENTICATED, before any Flower code runs."""

    def __init__(self, tokens: TokenFile, on_reject=None):
        self.tokens = tokens
        self.on_reject = on_reject or (lambda reason: None)

    def intercept_service(self, continuation, handler_call_details):
        token = bearer_of(handler_call_details.invocation_metadata)
        entry = self.tokens.match(token)
        if entry is None:
            reason = "no bearer token" if token is None else "invalid or revoked token"
            self.on_reject(reason)
            return _refusal(f"ReefLab federated server: {reason} (send '{HEADER}: Bearer <token>')")
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _with_caller(handler, Caller(entry["id"], entry["name"]))


def _refusal(details: str) -> grpc.RpcMethodHandler:
    def abort(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    # Flower's Join is stream-stream; refusing every kind keeps unknown methods closed too
    return grpc.stream_stream_rpc_method_handler(abort)


def _with_caller(handler: grpc.RpcMethodHandler, caller: Caller) -> grpc.RpcMethodHandler:
    """The same handler, with `current.caller` set while its behaviour runs."""
    if handler.stream_stream is None:
        return handler
    behaviour = handler.stream_stream

    def stream_stream(request_iterator, context):
        current.caller = caller
        try:
            yield from behaviour(request_iterator, context)
        finally:
            current.caller = None

    return grpc.stream_stream_rpc_method_handler(
        stream_stream,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _CallDetails(
    namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    """Call details with our header added (grpc wants a ClientCallDetails)."""


class BearerTokenClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `x-authorization: Bearer <token>` to every call on a channel."""

    def __init__(self, token: str):
        self._header = (HEADER, f"Bearer {token}")

    def _details(self, details) -> _CallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)
