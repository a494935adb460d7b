"""HTTP for OSCAR v4's user routes beyond services, run, job and job logs (see oscar_v4.py and buckets.py).

Every route needs a logged-in caller and acts on their own things only: a service the caller may
not see answers 404, one they may use but do not own answers 403 where OSCAR keeps it to owners;
a bucket not recorded as theirs answers 404. Exposed services need a login too, unless the operator
allows OSCAR's public ones (see ExposedHandler). OSCAR routes this engine does not offer
(volumes, federation) answer 501 with a message, after authentication.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Any

from tornado import httputil, web
from tornado.httpclient import HTTPClientError, HTTPRequest

from ..errors import ReefLabError
from . import oscar_v4
from .buckets import UserBuckets
from .exposed import upstream_path
from .routes import EngineHandler


class NotOffered(ReefLabError):
    status = 501


class SystemLogsHandler(EngineHandler):
    """GET /system/logs: OSCAR's manager log is for admins; here a user gets their own jobs, one entry each."""

    def get(self) -> None:
        self.write_json(oscar_v4.logs_listing(self.engine, self.user))


class BucketsHandler(EngineHandler):
    async def get(self) -> None:
        self.write_json(await UserBuckets(self.engine).list(self.user))

    async def post(self) -> None:
        bucket = await UserBuckets(self.engine).create(self.user, self.json_body())
        self.write_text(f"bucket {bucket} created", status=201)

    def put(self) -> None:
        UserBuckets(self.engine).update(self.user, self.json_body())
        self.set_status(204)


class BucketHandler(EngineHandler):
    async def get(self, bucket: str) -> None:
        self.write_json(await UserBuckets(self.engine).get(self.user, bucket, self.get_argument("page", "")))

    async def delete(self, bucket: str) -> None:
        await UserBuckets(self.engine).delete(self.user, bucket)
        self.set_status(204)


class PresignHandler(EngineHandler):
    async def post(self, bucket: str) -> None:
        self.write_json(await UserBuckets(self.engine).presign(self.user, bucket, self.json_body()))


class DeploymentHandler(EngineHandler):
    """GET /system/services/<svc>/deployment: anyone who may use the service sees whether it is up."""

    def get(self, name: str) -> None:
        record = oscar_v4.visible_record(self.engine, self.user, name)
        self.write_json(oscar_v4.deployment_status(self.engine, record))


class DeploymentLogsHandler(EngineHandler):
    """GET .../deployment/logs: what the workers wrote, for the owner only (it is their code's output)."""

    def get(self, name: str) -> None:
        record = oscar_v4.owned_record(self.engine, self.user, name)
        tail = self.get_argument("tailLines", "200")
        timestamps = self.get_argument("timestamps", "false").lower() in ("1", "true", "yes")
        lines = int(tail) if tail.isdigit() else 200
        self.write_json(oscar_v4.deployment_logs(self.engine, record, lines, timestamps))


class LifecycleHandler(EngineHandler):
    """POST .../{start,stop,restart}: stop keeps no warm workers, start keeps min_scale warm, restart renews them."""

    def post(self, name: str, action: str) -> None:
        record = oscar_v4.owned_record(self.engine, self.user, name)
        pool, exposed = self.engine.pool, self.engine.exposed
        if action == "stop":
            pool.stopped.add(record.name)
            pool.retire(record.name)  # idle workers now, busy ones when their call ends
            exposed.stop(record.name)
        elif action == "start":
            pool.stopped.discard(record.name)
            exposed.maintain()
        else:
            pool.retire(record.name)
            pool.stopped.discard(record.name)
            exposed.restart(record.name)
        self.write_json(oscar_v4.deployment_status(self.engine, record))


class ServiceAuthHandler(EngineHandler):
    """GET /system/services/<svc>/auth: 200 if the caller (a user or the service's token) may use the service."""

    requires_user = False

    def get(self, name: str) -> None:
        record = self.engine.store.get_service(name)
        token = self.caller.token or ""
        if record is not None and token and hmac.compare_digest(token.encode(), record.token.encode()):
            self.set_status(200)
            self.finish()
            return
        if not self.caller.user:
            raise web.HTTPError(401, "log in, or send the service's token")
        oscar_v4.visible_record(self.engine, self.user, name)
        self.set_status(200)
        self.finish()


class MetricsHandler(EngineHandler):
    def get(self) -> None:
        start, end = self.get_argument("start", ""), self.get_argument("end", "")
        self.write_json(oscar_v4.metrics_summary(self.engine, self.user, start, end))


class MetricsBreakdownHandler(EngineHandler):
    def get(self) -> None:
        if self.get_argument("format", "json") != "json":
            raise NotOffered("format: only json is offered here")
        start, end = self.get_argument("start", ""), self.get_argument("end", "")
        group_by = self.get_argument("group_by", "")
        self.write_json(oscar_v4.metrics_breakdown(self.engine, self.user, group_by, start, end))


class ServiceMetricsHandler(EngineHandler):
    def get(self, name: str) -> None:
        record = oscar_v4.owned_record(self.engine, self.user, name)
        start, end = self.get_argument("start", ""), self.get_argument("end", "")
        metric = self.get_argument("metric", "")
        self.write_json(oscar_v4.service_metrics(self.engine, record, metric, start, end))


class QuotaHandler(EngineHandler):
    """GET /system/quotas/user[/<id>]: the caller's own (an admin may ask for anyone's); quotas are not set here."""

    async def get(self, user_id: str | None = None) -> None:
        if user_id and user_id != self.user and not self.caller.admin:
            raise web.HTTPError(403, "you may see your own quota only")
        target = user_id or self.user
        groups = await self._groups() if target == self.user else []
        self.write_json(oscar_v4.quota(self.engine, target, groups))

    def put(self, user_id: str | None = None) -> None:
        raise NotOffered("quotas come from the hardware profiles file (profiles.yaml): an admin edits it")

    async def _groups(self) -> list[str]:
        """The caller's hub groups when they came with a hub token (HubAuth caches the model); else none."""
        hub = self.auth.hub_auth
        if hub is None or not self.caller.token:
            return []
        model = await hub.user_for_token(self.caller.token, sync=False)
        return oscar_v4.profile_groups(model)


HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Content-Length",
    )
)  # fmt: skip
HUB_COOKIES = "jupyterhub"  # the hub's own login cookies: never passed to a service's code


class ExposedHandler(EngineHandler):
    """/system/services/<name>/exposed/<path>: the service's HTTP server, any method, body and headers.

    Every call needs the service's credentials: basic auth with the service's name and token, as OSCAR's
    ingress asks with `set_auth`, or its token as a bearer token, or the engine login of a user who may use
    the service (the dashboard's, or a Jupyter server's). Only where the operator allows public exposed
    services (`public_exposed`) does one without `set_auth` answer anyone, as in OSCAR. Credentials of the engine are
    not passed on to the service's code (nor the hub's cookies); anything else is, unchanged.
    """

    requires_user = False

    async def _proxy(self, name: str, _rest: str | None = None) -> None:
        record = self.engine.store.get_service(name)
        definition = self.engine.definition(name) if record else None
        _, marker, rest = self.request.path.partition(f"/system/services/{name}/exposed")
        if definition is None or definition.expose is None or not marker:  # (not marker: its name %-escaped)
            raise web.HTTPError(404, f"no exposed service named '{name}': a service is exposed by `expose` in its FDL")
        expose = definition.expose
        service_login, invoker = self._service_login(record), self.engine.may_invoke(self.caller, name)
        needs_login = expose.set_auth or not self.engine.settings.public_exposed
        if needs_login and not (service_login or invoker):  # 401 with a basic-auth challenge (write_error)
            raise web.HTTPError(401, f"exposed service '{name}' needs basic auth: user '{name}', the service's token")
        engine_login = service_login or invoker or bool(self.caller.user or self.caller.hub)
        instance = await self.engine.exposed.ready(name, self.engine.settings.start_timeout)
        path = upstream_path(expose, instance.prefix, rest, self.request.query)  # `rest` as sent: %-escapes kept
        headers = self._forwarded_headers(engine_login, instance.prefix, expose.rewrite_target)
        method = self.request.method
        request = HTTPRequest(
            instance.url(path),
            method=method,
            headers=headers,
            body=self.request.body if method not in ("GET", "HEAD") else None,
            follow_redirects=False,
            decompress_response=False,
            allow_nonstandard_methods=True,
            request_timeout=self.engine.settings.invocation_timeout,
        )
        try:
            answer = await instance.client.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as error:
            raise web.HTTPError(502, f"exposed service '{name}' did not answer: {error}") from None
        if answer.code == 599:
            raise web.HTTPError(502, f"exposed service '{name}' did not answer: {answer.error}")
        self.set_status(answer.code, answer.reason or httputil.responses.get(answer.code, "Unknown"))
        self.clear_header("Content-Type")  # the service's headers, not the engine's defaults
        seen: set[str] = set()
        for header, value in answer.headers.get_all():
            lowered = header.lower()
            if lowered in HOP_BY_HOP and not (method == "HEAD" and lowered == "content-length"):
                continue
            (self.add_header if lowered in seen else self.set_header)(header, value)
            seen.add(lowered)
        no_body = method == "HEAD" or answer.code in (204, 304) or answer.code < 200
        self.finish(None if no_body else answer.body)

    def compute_etag(self) -> None:
        return None  # the service's own ETag (if any), not one of the engine's

    def _service_login(self, record) -> bool:
        """Basic auth with the service's name and token (OSCAR's set_auth)."""
        scheme, _, value = self.request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        return user == record.name and hmac.compare_digest(password.encode(), record.token.encode())

    def _forwarded_headers(self, strip_authorization: bool, prefix: str, rewritten: bool) -> httputil.HTTPHeaders:
        headers = httputil.HTTPHeaders()
        for header, value in self.request.headers.get_all():
            lowered = header.lower()
            if lowered in HOP_BY_HOP or (lowered == "authorization" and strip_authorization):
                continue
            if lowered == "cookie":
                value = _without_hub_cookies(value)
                if not value:
                    continue
            headers.add(header, value)
        headers["X-Forwarded-For"] = self.request.remote_ip or ""
        headers["X-Forwarded-Proto"] = self.request.headers.get("X-Forwarded-Proto", self.request.protocol)
        headers["X-Forwarded-Host"] = self.request.headers.get("X-Forwarded-Host", self.request.host)
        if not rewritten:
            headers["X-Forwarded-Prefix"] = prefix  # where the browser sees the path the service got
        return headers

    get = post = put = delete = patch = head = options = _proxy


def _without_hub_cookies(header: str) -> str:
    try:
        cookies = SimpleCookie(header)
    except CookieError:
        return header
    kept = [f"{key}={morsel.coded_value}" for key, morsel in cookies.items() if not key.startswith(HUB_COOKIES)]
    return "; ".join(kept)


class NotOfferedHandler(EngineHandler):
    """OSCAR routes with no local counterpart: a 501 that says what to use instead."""

    def initialize(self, message: str = "", **context: Any) -> None:
        super().initialize(**context)
        self.message = message

    def _refuse(self, *args: str) -> None:
        raise NotOffered(self.message)

    get = post = put = delete = _refuse


VOLUMES = "managed volumes are not offered by ReefLab's local engine: use your buckets (/system/buckets)"
FEDERATION = "federation across OSCAR clusters is not offered by ReefLab's local engine"


def routes_v4(base_url: str, **context: Any) -> list[tuple[str, type, dict[str, Any]]]:
    """The v4 route table under `base_url`; none of its paths overlaps handlers.routes'."""
    prefix = "/" + base_url.strip("/") if base_url.strip("/") else ""
    table: list[tuple[str, type, dict[str, Any]]] = [
        (r"/system/logs/?", SystemLogsHandler, {}),
        (r"/system/buckets/?", BucketsHandler, {}),
        (r"/system/buckets/([^/]+)/presign/?", PresignHandler, {}),
        (r"/system/buckets/([^/]+)/?", BucketHandler, {}),
        (r"/system/services/([^/]+)/deployment/?", DeploymentHandler, {}),
        (r"/system/services/([^/]+)/deployment/logs/?", DeploymentLogsHandler, {}),
        (r"/system/services/([^/]+)/(start|stop|restart)/?", LifecycleHandler, {}),
        (r"/system/services/([^/]+)/auth/?", ServiceAuthHandler, {}),
        (r"/system/services/([^/]+)/exposed(/.*)?", ExposedHandler, {}),
        (r"/system/metrics/?", MetricsHandler, {}),
        (r"/system/metrics/breakdown/?", MetricsBreakdownHandler, {}),
        (r"/system/metrics/([^/]+)/?", ServiceMetricsHandler, {}),
        (r"/system/quotas/user/?", QuotaHandler, {}),
        (r"/system/quotas/user/([^/]+)/?", QuotaHandler, {}),
        (r"/system/volumes(?:/.*)?", NotOfferedHandler, {"message": VOLUMES}),
        (r"/system/federation(?:/.*)?", NotOfferedHandler, {"message": FEDERATION}),
    ]
    return [(prefix + path, handler, {**context, **extra}) for path, handler, extra in table]
