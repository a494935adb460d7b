"""Who is calling the engine: a JupyterHub token, an OSCAR basic-auth login, or a dev/test token.

- `Authorization: token|Bearer <hub token>`: checked with the hub (HubAuth), when the engine
  runs as a hub service; the token needs the service's access scope (HubAuth.access_scopes).
- `Authorization: Basic user:password`: the per-user password the engine gives each user in
  GET /system/config, so oscar-python and oscar-cli work with basic auth.
- `Authorization: Bearer <service token>`: OSCAR's invocation token (checked by the engine on
  /run and /job for that service only).
- `Authorization: Bearer rlu.<...>`: a user's own token for someone else's service (engine.py).
- Static tokens (`ServerlessApp.static_tokens_file`, JSON `{token: user}`): for tests and
  development without a hub; never configured by the hub setup.
A caller is an admin (platform-wide /system/status) if the hub says so for their token, or if
their name is in `ServerlessApp.admin_users`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Any

from .engine import PERSONAL_TOKEN, Caller
from .store import EngineStore

log = logging.getLogger(__name__)


class RequestAuthenticator:
    """Turns an Authorization header into a `Caller` (user and/or bearer token)."""

    def __init__(
        self,
        store: EngineStore,
        hub_auth: Any = None,
        static_tokens: dict[str, str] | None = None,
        admin_users: frozenset[str] = frozenset(),
    ):
        self.store = store
        self.hub_auth = hub_auth
        self.static_tokens = dict(static_tokens or {})
        self.admin_users = frozenset(admin_users)

    async def identify(self, authorization: str) -> Caller:
        scheme, _, value = authorization.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic" and value:
            user = self._basic(value)
            return Caller(user=user, admin=user in self.admin_users)
        if scheme in ("bearer", "token") and value.startswith(PERSONAL_TOKEN):
            return Caller(token=value)  # checked by the engine against the service invoked
        if scheme in ("bearer", "token") and value:
            user = self._static(value)
            hub_admin = False
            if user is None:
                user, hub_admin = await self._hub(value)
            return Caller(user=user, token=value, admin=hub_admin or user in self.admin_users)
        return Caller()

    def _basic(self, value: str) -> str | None:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return user if user and self.store.check_password(user, password) else None

    def _static(self, token: str) -> str | None:
        for known, user in self.static_tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        return None

    async def _hub(self, token: str) -> tuple[str | None, bool]:
        """The hub user of the token and whether the hub says they are an admin."""
        if self.hub_auth is None:
            return None, False
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model or model.get("kind", "user") != "user":
            return None, False
        required = self.hub_auth.access_scopes
        if required and not self.hub_auth.check_scopes(required, model):
            log.info("hub user %s lacks the scope to use this service (%s)", model.get("name"), sorted(required))
            return None, False
        return model["name"], bool(model.get("admin"))
