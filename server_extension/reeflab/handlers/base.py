"""Base class of every ReefLab handler: authentication, authorization and error mapping."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError

from ..errors import BadRequest, ReefLabError
from ..services import Services


def parse_body(model: type[BaseModel], body: bytes, what: str):
    """The request body as `model`, or a 400 naming each field to fix ('Invalid job request: ...')."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors(include_url=False)
        )
        raise BadRequest(f"Invalid {what} request: {problems}") from None


class ReefLabHandler(ExtensionHandlerMixin, APIHandler):
    """Every method of a subclass is decorated with `@web.authenticated` and `@authorized`."""

    auth_resource = "reeflab"

    @property
    def services(self) -> Services:
        return self.settings["reeflab"]

    @property
    def username(self) -> str:
        return self.services.identity.name(self.current_user)

    async def run_blocking(self, func, *args):
        """Run slow, blocking service work (imports, downloads) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

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
