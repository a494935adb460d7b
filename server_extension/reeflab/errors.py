"""Errors raised by services; handlers turn them into HTTP answers with the same message."""


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
