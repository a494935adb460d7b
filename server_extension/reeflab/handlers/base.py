"""Base class of every ReefLab handler: authentication, authorization, error mapping, and what requests share
(the JSON body, integer arguments, logs)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError

from ..errors import BadRequest, NotFound, ReefLabError, invalid
from ..services import Services

Model = TypeVar("Model", bound=BaseModel)
FOLLOW_EVERY = 0.5  # seconds between two looks at a followed log


def _new_lines(before: list[str], after: list[str]) -> list[str]:
    """Lines of `after` that come after the end of `before` (both are tails of one growing log)."""
    if not before:
        return after
    for start in range(len(after), -1, -1):
        overlap = after[:start]
        if overlap and before[-len(overlap) :] == overlap:
            return after[start:]
    return after


class ReefLabHandler(ExtensionHandlerMixin, APIHandler):
    """Every method of a subclass is decorated with `@web.authenticated` and `@authorized`."""

    auth_resource = "reeflab"

    @property
    def services(self) -> Services:
        return self.settings["reeflab"]

    @property
    def username(self) -> str:
        return self.services.identity.name(self.current_user)

    @property
    def groups(self) -> list[str]:
        return self.services.identity.groups(self.current_user)

    async def run_blocking(self, func, *args):
        """Run slow, blocking service work (imports, downloads) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    def parse_body(self, model: type[Model], what: str) -> Model:
        """The request body as `model` (none: {}), or a 400 naming each field to fix ('Invalid <what>: ...')."""
        try:
            return model.model_validate_json(self.request.body.strip() or b"{}")
        except ValidationError as err:
            raise invalid(what, err) from None

    def int_argument(self, name: str, default: int, low: int, high: int | None = None) -> int:
        """The query argument `name` (absent or empty: `default`) as a whole number from `low` to `high`, or a
        400 saying which numbers it may be."""
        value = self.get_argument(name, "")
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is not None and low <= number and (high is None or number <= high):
            return number
        allowed = f"from {low} to {high}" if high is not None else f"of {low} or more"
        raise BadRequest(f"'{name}' must be a whole number {allowed}, not '{value}'")

    def tail_argument(self) -> int:
        """?tail=: how many of a log's last lines to send."""
        return self.int_argument("tail", 200, 1, 10000)

    async def write_log(
        self, read: Callable[[int], Awaitable[list[str]]], active: Callable[[], Awaitable[bool]]
    ) -> None:
        """A log's last ?tail= lines (`read` gives a number of them) as {"lines"}; with ?follow=1, the log as plain
        text streamed as it grows, until its run ends (`active` is false; then read once more), is deleted, or
        the client goes."""
        lines = await read(self.tail_argument())
        if self.get_argument("follow", "0") not in ("1", "true"):
            self.write_json({"lines": lines})
            return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        seen: list[str] = []
        running = True
        while not self.request.connection.stream.closed():
            new = _new_lines(seen, lines)
            if new:
                self.write("".join(line + "\n" for line in new))
                await self.flush()
            seen = lines
            if not running:
                break
            try:
                running = await active()
                if running:
                    await asyncio.sleep(FOLLOW_EVERY)
                lines = await read(1000)
            except NotFound:  # deleted while followed
                break
        self.finish()

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def _handle_request_exception(self, e: BaseException) -> None:
        # Services raise ReefLabError without knowing HTTP: answer with its status and message.
        if isinstance(e, ReefLabError) and not self._finished:
            if e.status >= 500:
                self.log.error("%s %s failed: %s", self.request.method, self.request.path, e.message)
            self.send_error(e.status, exc_info=sys.exc_info())
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ReefLabError):
            message = exc.message
        else:
            message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "reason": self._reason}))
