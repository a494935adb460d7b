"""Request bodies turned into data, or into a 4xx that says what is wrong: never a 500 from what a caller sent."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import BadRequest, ReefLabError

MAX_DEPTH = 32  # an OSCAR service definition nests 4 deep; SeaweedFS's events about 6
DEFINITION_BYTES = 2**20
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped whole) and brackets


class BodyTooLarge(ReefLabError):
    status = 413


def nesting(body: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def parse_json(body: bytes, what: str = "the request body", limit: int = DEFINITION_BYTES) -> Any:
    """The JSON `body` holds: 413 above `limit` bytes, 400 naming the problem if malformed or nested too deeply."""
    if len(body) > limit:
        raise BodyTooLarge(f"{what} is {len(body)} bytes: at most {limit} are accepted")
    if nesting(body) > MAX_DEPTH:
        raise BadRequest(f"{what} nests arrays or objects more than {MAX_DEPTH} deep: send a flatter JSON document")
    try:
        return json.loads(body or b"null")
    except RecursionError:
        raise BadRequest(f"{what} nests arrays or objects too deeply") from None
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not UTF-8 text") from None
    except ValueError as error:
        raise BadRequest(f"{what} is not valid JSON ({error})") from None


def sniff_json(body: bytes) -> Any:
    """The JSON an invocation body holds if it is a JSON document we can read, else None (it is a file then)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
