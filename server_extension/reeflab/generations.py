"""Which incarnation of a hub user an external account belongs to: the hub user's `created` time.

A user deleted and made again keeps their name, so every account ReefLab keeps outside the hub
(OS account, engine login and S3 key, MLflow account) records the generation it was made for;
an account whose generation is not the hub user's is a deleted user's, and is revoked before the
new user gets anything. The form has no ':' (it goes into an OS account's GECOS field).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# a hub DB that keeps whole seconds (MySQL DATETIME) may round what the hub had in memory: within this, equal
TOLERANCE_SECONDS = 1.0
PATTERN = r"\d{8}T\d{6}(?:\.\d{1,6})?Z"
_COMPACT = re.compile(PATTERN)


def generation(created: datetime | str | None) -> str:
    """The generation of a hub user from their `created` (ORM datetime, naive UTC, or the REST model's ISO text).

    '' when unknown (a user record without `created`, a caller that is not a hub user).
    """
    when = parse(created) if isinstance(created, str) else created
    if when is None:
        return ""
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.strftime("%Y%m%dT%H%M%S.%fZ")


def parse(text: str | None) -> datetime | None:
    """A generation or an ISO 8601 time as a naive UTC datetime; None if it is neither."""
    if not text:
        return None
    try:
        if _COMPACT.fullmatch(text):
            fmt = "%Y%m%dT%H%M%S.%fZ" if "." in text else "%Y%m%dT%H%M%SZ"
            return datetime.strptime(text, fmt)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def same(recorded: str, current: str) -> bool:
    """Whether two generations are the same user: equal, or within the rounding of a database that keeps
    whole seconds (one of them has none), so a user deleted and made again within a second is still new."""
    if recorded == current:
        return True
    a, b = parse(recorded), parse(current)
    if a is None or b is None:
        return False
    if a == b:
        return True
    if a.microsecond and b.microsecond:
        return False
    return abs((a - b).total_seconds()) <= TOLERANCE_SECONDS


def older(recorded: str, current: str) -> bool:
    """Whether `recorded` is an earlier user than `current` (so what it holds belongs to a deleted user)."""
    a, b = parse(recorded), parse(current)
    return a is not None and b is not None and not same(recorded, current) and a < b
