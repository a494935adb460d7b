"""HTTP for OSCAR v4's user routes beyond services, run, job and job logs (see oscar_v4.py and buckets.py).

Every route needs a logged-in caller and acts on their own things only: a service the caller may
not see answers 404, one they may use but do not own answers 403 where OSCAR keeps it to owners;
a bucket not recorded as theirs answers 404. OSCAR routes this engine does not offer (exposed
services, volumes, federation) answer 501 with a message, after authentication.
"""

from __future__ import annotations

import hmac
from typing import Any

from tornado import web

from ..errors import ReefLabError
from . import oscar_v4
from .buckets import UserBuckets
from .handlers import EngineHandler


class NotOffered(ReefLabError):
    status = 501


class SystemLogsHandler(EngineHandler):
    """GET /system/logs: OSCAR's manager log is for admins; here a user gets their own jobs, one entry each."""

    def get(self) -> None:
        self.write_json(oscar_v4.logs_listing(self.engine, self.user))


class BucketsHandler(EngineHandler):
    def get(self) -> None:
        self.write_json(UserBuckets(self.engine).list(self.user))

    def post(self) -> None:
        bucket = UserBuckets(self.engine).create(self.user, self.json_body())
        self.write_text(f"bucket {bucket} created", status=201)

    def put(self) -> None:
        UserBuckets(self.engine).update(self.user, self.json_body())
        self.set_status(204)


class BucketHandler(EngineHandler):
    def get(self, bucket: str) -> None:
        self.write_json(UserBuckets(self.engine).get(self.user, bucket, self.get_argument("page", "")))

    def delete(self, bucket: str) -> None:
        UserBuckets(self.engine).delete(self.user, bucket)
        self.set_status(204)


class PresignHandler(EngineHandler):
    def post(self, bucket: str) -> None:
        self.write_json(UserBuckets(self.engine).presign(self.user, bucket, self.json_body()))


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
        pool = self.engine.pool
        if action == "stop":
            pool.stopped.add(record.name)
            pool.retire(record.name)  # idle workers now, busy ones when their call ends
        elif action == "start":
            pool.stopped.discard(record.name)
        else:
            pool.retire(record.name)
            pool.stopped.discard(record.name)
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


class NotOfferedHandler(EngineHandler):
    """OSCAR routes with no local counterpart: a 501 that says what to use instead."""

    def initialize(self, message: str = "", **context: Any) -> None:
        super().initialize(**context)
        self.message = message

    def _refuse(self, *args: str) -> None:
        raise NotOffered(self.message)

    get = post = put = delete = _refuse


EXPOSED = (
    "exposed services (long-running HTTP services) are not offered by ReefLab's local engine: "
    "run the module as a ReefLab deployment instead"
)
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
        (r"/system/services/[^/]+/exposed(?:/.*)?", NotOfferedHandler, {"message": EXPOSED}),
        (r"/system/metrics/?", MetricsHandler, {}),
        (r"/system/metrics/breakdown/?", MetricsBreakdownHandler, {}),
        (r"/system/metrics/([^/]+)/?", ServiceMetricsHandler, {}),
        (r"/system/quotas/user/?", QuotaHandler, {}),
        (r"/system/quotas/user/([^/]+)/?", QuotaHandler, {}),
        (r"/system/volumes(?:/.*)?", NotOfferedHandler, {"message": VOLUMES}),
        (r"/system/federation(?:/.*)?", NotOfferedHandler, {"message": FEDERATION}),
    ]
    return [(prefix + path, handler, {**context, **extra}) for path, handler, extra in table]
