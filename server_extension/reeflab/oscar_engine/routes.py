"""HTTP only: OSCAR's REST routes, each parsing the request, calling the engine, writing the answer.

Every route but /health needs a caller (see auth.py); /run and /job also take a service token.
Errors answer with their status and a plain-text message, as OSCAR does.
"""

from __future__ import annotations

import hmac
import json
import logging
import sys
from typing import Any

from tornado import web

from .. import generations
from ..errors import BadRequest, ReefLabError
from ..serverless.invocations import given_name
from . import metrics, oscar_v4, system
from .auth import RequestAuthenticator
from .engine import Caller, OscarEngine
from .inputs import parse_json

log = logging.getLogger(__name__)


class EngineHandler(web.RequestHandler):
    """Authenticates in `prepare`; `self.user` is the caller's name."""

    requires_user = True

    def initialize(self, engine: OscarEngine, auth: RequestAuthenticator, events_token: str = "") -> None:
        self.engine, self.auth, self.events_token = engine, auth, events_token
        self.caller = Caller()

    async def prepare(self) -> None:
        self.caller = await self.auth.identify(self.request.headers.get("Authorization", ""))
        if self.requires_user and not self.caller.user:
            raise web.HTTPError(401, "log in: send a JupyterHub token or your OSCAR basic-auth credentials")
        if self.caller.user and self.caller.generation:
            self.engine.meet(self.caller.user, self.caller.generation)  # a deleted namesake's records go first

    @property
    def user(self) -> str:
        assert self.caller.user
        return self.caller.user

    def json_body(self) -> Any:
        return parse_json(self.request.body)

    def given_name(self) -> str | None:
        """The caller's own name for the input file (Content-Disposition), if they sent one."""
        return given_name(self.request.headers.get("Content-Disposition", ""))

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_text(self, text: str | bytes, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, RecursionError) and not self._finished:  # bad input no parser caught: still the caller's
            log.warning("%s %s: input nested too deeply", self.request.method, self.request.path)
            e = BadRequest("the request is nested too deeply to be read: send a flatter document")
            self.send_error(e.status, exc_info=(type(e), e, None))
            return
        if isinstance(e, ReefLabError) and not self._finished:
            if e.status >= 500:
                log.error("%s %s failed: %s", self.request.method, self.request.path, e.message)
            self.send_error(e.status, exc_info=sys.exc_info())
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(error, "message", None) or getattr(error, "log_message", None) or self._reason
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="reeflab-serverless"')
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(message)


class HealthHandler(EngineHandler):
    requires_user = False

    def get(self) -> None:
        self.write_text("Ok")


class RootHandler(EngineHandler):
    """The engine's own address (the hub's Services menu links it, and checks it at start): what it is."""

    requires_user = False

    def get(self) -> None:
        base = self.request.path.rstrip("/")
        self.write_text(
            "ReefLab serverless engine: the OSCAR REST API (services, run, job, logs, buckets).\n"
            f"Log in with your hub token (Authorization: token ...), e.g. GET {base}/system/info;\n"
            f"{base}/system/config gives your OSCAR login and S3 key for oscar-python.\n"
        )


class InfoHandler(EngineHandler):
    def get(self) -> None:
        self.write_json(system.info())


class StatusHandler(EngineHandler):
    def get(self) -> None:
        self.write_json(system.status(self.engine, self.caller))


class ConfigHandler(EngineHandler):
    async def get(self) -> None:
        proto = self.request.headers.get("X-Forwarded-Proto", self.request.protocol)
        endpoint = f"{proto}://{self.request.host}{self.settings['base_url'].rstrip('/')}"
        self.write_json(await system.user_config(self.engine, self.user, endpoint))


class ServicesHandler(EngineHandler):
    def get(self) -> None:
        include = self.get_argument("include", "")
        services = self.engine.list_services(self.user)
        self.write_json([oscar_v4.service_answer(self.engine, view, include) for view in services])

    async def post(self) -> None:
        created = await self.engine.create_service(self.user, self.json_body())
        self.write_json(oscar_v4.service_answer(self.engine, created), status=201)

    async def put(self) -> None:
        await self.engine.update_service(self.user, self.json_body())
        self.set_status(204)


class ServiceHandler(EngineHandler):
    def get(self, name: str) -> None:
        include = self.get_argument("include", "")
        self.write_json(oscar_v4.service_answer(self.engine, self.engine.get_service(self.user, name), include))

    async def put(self, name: str) -> None:
        await self.engine.update_service(self.user, self.json_body(), name=name)
        self.set_status(204)

    def delete(self, name: str) -> None:
        self.engine.delete_service(self.user, name)
        self.set_status(204)


class ServiceMetricsHandler(EngineHandler):
    """ReefLab's own route: the service's request metrics (metrics.py), for its owner only."""

    def get(self, name: str) -> None:
        since, step = metrics.window_arguments(self.get_argument("since", ""), self.get_argument("step", ""))
        self.write_json(metrics.service_metrics(self.engine, self.user, name, since, step))


class RunHandler(EngineHandler):
    requires_user = False  # a service token is enough (checked by the engine)

    async def post(self, name: str) -> None:
        self.write_text(await self.engine.run(self.caller, name, self.request.body, self.given_name()))


class JobHandler(EngineHandler):
    requires_user = False

    def post(self, name: str) -> None:
        job = self.engine.submit(self.caller, name, self.request.body, self.given_name())
        self.write_json({"jobName": job}, status=201)


class JobsHandler(EngineHandler):
    def get(self, name: str) -> None:
        self.write_json(self.engine.list_jobs(self.user, name, self.get_argument("page", "")))

    def delete(self, name: str) -> None:
        everything = self.get_argument("all", "false").lower() in ("1", "true", "yes")
        self.engine.delete_jobs(self.user, name, everything)
        self.set_status(204)


class JobLogHandler(EngineHandler):
    def get(self, name: str, job: str) -> None:
        self.write_text(self.engine.job_log(self.user, name, job))

    def delete(self, name: str, job: str) -> None:
        self.engine.delete_job(self.user, name, job)
        self.set_status(204)


class StorageEventsHandler(EngineHandler):
    """ReefLab's own route: the S3 server's webhook (SeaweedFS filer events), with its bearer token."""

    requires_user = False

    async def prepare(self) -> None:
        """Only the events token is checked (in `post`): it is nobody's login, so the callers' authentication (static
        tokens, then the hub's answer, cached) has nothing to find, and runs on no upload or output event."""

    def _log(self) -> None:
        """Refused or failed posts only: an accepted one comes with every upload and output (its access-log line
        was ~7 % of the engine's CPU in an async run)."""
        if self.get_status() >= 400:
            super()._log()

    def post(self) -> None:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if (
            not self.events_token
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(token.strip().encode(), self.events_token.encode())
        ):
            raise web.HTTPError(403, "storage events are accepted from the platform's S3 server only")
        events = self.json_body()
        queued = self.engine.storage_events(events if isinstance(events, list) else [events])
        self.write_json({"queued": queued})


class UserHandler(EngineHandler):
    """ReefLab's own route: the hub revokes a user it deleted (or a hub admin does). Nobody else may."""

    requires_user = False

    def delete(self, name: str) -> None:
        if not (self.caller.hub or self.caller.user_admin):
            raise web.HTTPError(403, "only the hub (or a token with admin:users) may revoke a user")
        generation = self.get_argument("generation", "")
        current = self.engine.generation_of(name)
        if generation and current and generations.older(generation, current):
            raise web.HTTPError(409, f"user {name} of {generation} is gone already: a newer one ({current}) is kept")
        revoked = self.engine.revoke_user(name, generation or current)
        self.auth.forget(name)
        log.info("user %s revoked at the request of %s", name, "the hub" if self.caller.hub else "a hub admin")
        self.write_json(revoked)


class UnknownRouteHandler(web.RequestHandler):
    """Any other path, e.g. OSCAR routes this engine does not offer (buckets, volumes, metrics)."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(
            f"{self.request.path}: no such route on this engine (it offers OSCAR's services, run, job and logs)"
        )


def routes(base_url: str, **context: Any) -> list[tuple[str, type, dict[str, Any]]]:
    """The route table under `base_url` (e.g. /services/reeflab-serverless/ under the hub)."""
    prefix = "/" + base_url.strip("/") if base_url.strip("/") else ""
    table = [
        (r"/?", RootHandler),
        (r"/health/?", HealthHandler),
        (r"/system/info/?", InfoHandler),
        (r"/system/status/?", StatusHandler),
        (r"/system/config/?", ConfigHandler),
        (r"/system/services/?", ServicesHandler),
        (r"/system/services/([^/]+)/?", ServiceHandler),
        (r"/system/services/([^/]+)/metrics/?", ServiceMetricsHandler),
        (r"/run/([^/]+)/?", RunHandler),
        (r"/job/([^/]+)/?", JobHandler),
        (r"/system/logs/([^/]+)/?", JobsHandler),
        (r"/system/logs/([^/]+)/([^/]+)/?", JobLogHandler),
        (r"/system/storage-events/?", StorageEventsHandler),
        (r"/system/users/([^/]+)/?", UserHandler),
    ]
    return [(prefix + path, handler, context) for path, handler in table]
