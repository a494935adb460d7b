"""Errors raised by services; handlers turn them into HTTP answers with the same message."""

from pydantic import ValidationError


class ReefLabError(Exception):
    """A failure the user can act on; `status` is the HTTP status a handler answers with."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ReefLabError):
    status = 400


class Forbidden(ReefLabError):
    status = 403


class NotFound(ReefLabError):
    status = 404


class Conflict(ReefLabError):
    status = 409


def invalid(what: str, error: ValidationError, *, tagged: bool = False) -> BadRequest:
    """A 400 naming each field to fix ('Invalid job request: gpu: ...; env.PATH: ...'), never the values sent
    (they may be secrets). `tagged`: the model is a tagged union, whose tag each field's path starts with."""

    def field(path: tuple) -> str:
        return ".".join(str(part) for part in (path[1:] if tagged else ()) or path) or "body"

    problems = "; ".join(
        f"{field(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors(include_url=False, include_input=False)
    )
    return BadRequest(f"Invalid {what}: {problems}")
