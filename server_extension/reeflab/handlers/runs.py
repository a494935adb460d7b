"""The REST routes every kind of run shares (deployments, jobs, pipeline runs): list and start, get and delete,
logs (tail and follow), cancel. A kind's handler file subclasses them, naming its service and request model."""

from __future__ import annotations

import functools
from abc import ABCMeta, abstractmethod
from typing import Any, ClassVar

from jupyter_server.auth.decorator import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.utils import ensure_async
from pydantic import BaseModel
from tornado import web

from ..runs.service import RunService
from .base import ReefLabHandler


def authorized_each_time(method):
    """jupyter_server's `@authorized` for methods that handlers of several resources inherit: the action and
    resource are read at each request. (jupyter_server's decorator keeps those of its first request, so a method
    shared by the jobs and pipelines handlers would check the first one's resource for both.)"""

    @functools.wraps(method)
    async def checked(self: ReefLabHandler, *args: Any, **kwargs: Any) -> Any:
        action = HTTP_METHOD_TO_AUTH_ACTION[self.request.method.upper()]
        # an authorizer may be async: its coroutine, unawaited, would be truthy
        if not await ensure_async(self.authorizer.is_authorized(self, self.current_user, action, self.auth_resource)):
            raise web.HTTPError(403, f"User is not authorized to {action} on resource: {self.auth_resource}.")
        return await method(self, *args, **kwargs)

    return checked


class RunsBase(ReefLabHandler, metaclass=ABCMeta):
    """A kind's handlers name its service (`runs`); each route has one argument, the run's id."""

    @property
    @abstractmethod
    def runs(self) -> RunService:
        """The kind's service."""

    @staticmethod
    def run_id(route: dict[str, str]) -> str:
        (value,) = route.values()
        return value

    def describe(self, record: Any) -> dict[str, Any]:
        """A run as GET answers it (a kind may add what its rows show)."""
        return record.public()


class RunsHandler(RunsBase):
    """GET: your runs of this kind. POST: start one (the body is the kind's `request_model`)."""

    request_model: ClassVar[type[BaseModel]]
    what: ClassVar[str]  # in a refusal of the body: "Invalid <what>: ..."
    listed_as: ClassVar[str]  # the key of the list in GET's answer

    @web.authenticated
    @authorized_each_time
    async def get(self) -> None:
        self.write_json({self.listed_as: [self.describe(r) for r in self.runs.list(self.username)]})

    @web.authenticated
    @authorized_each_time
    async def post(self) -> None:
        request = self.parse_body(self.request_model, self.what)
        record = await self.runs.submit(self.username, self.groups, request, self.services.profiles.catalog())
        self.write_json(record.public(), status=201)


class RunHandler(RunsBase):
    """GET: one run with its latest state. DELETE: forget it (stopping it if it runs)."""

    @web.authenticated
    @authorized_each_time
    async def get(self, **route: str) -> None:
        self.write_json(self.describe(await self.runs.fresh(self.username, self.run_id(route))))

    @web.authenticated
    @authorized_each_time
    async def delete(self, **route: str) -> None:
        await self.runs.delete(self.username, self.run_id(route))
        self.set_status(204)
        self.finish()


class RunLogHandler(RunsBase):
    """GET ?tail=N: the last lines. GET ?follow=1: stream new lines until the run ends."""

    def log_options(self) -> dict[str, Any]:
        """What else the kind's `logs` takes from the query (e.g. a pipeline's ?node=)."""
        return {}

    @web.authenticated
    @authorized_each_time
    async def get(self, **route: str) -> None:
        runs, owner, run_id, options = self.runs, self.username, self.run_id(route), self.log_options()

        async def active() -> bool:
            return (await runs.fresh(owner, run_id)).active

        await self.write_log(lambda tail: runs.logs(owner, run_id, tail, **options), active)


class RunCancelHandler(RunsBase):
    """POST: stop a run before it ends by itself; it stays listed, cancelled."""

    @web.authenticated
    @authorized_each_time
    async def post(self, **route: str) -> None:
        self.write_json((await self.runs.cancel(self.username, self.run_id(route))).public())
