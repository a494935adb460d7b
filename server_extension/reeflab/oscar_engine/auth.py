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

Hub users carry their generation (the hub's `created`, generations.py): the engine's records of a
name belong to one incarnation of it, and a deleted user's are revoked. The hub itself calls with
the engine's own service token (DELETE /system/users/<name> when it deletes a user).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..generations import generation
from .engine import PERSONAL_TOKEN, Caller
from .store import EngineStore

USER_ADMIN = "admin:users"

log = logging.getLogger(__name__)


class RequestAuthenticator:
    """Turns an Authorization header into a `Caller` (user and/or bearer token)."""

    def __init__(
        self,
        store: EngineStore,
        hub_auth: Any = None,
        static_tokens: dict[str, str] | None = None,
        admin_users: frozenset[str] = frozenset(),
        hub_users: HubUsers | None = None,
    ):
        self.store = store
        self.hub_auth = hub_auth
        self.static_tokens = dict(static_tokens or {})
        self.admin_users = frozenset(admin_users)
        self.hub_users = hub_users

    async def identify(self, authorization: str) -> Caller:
        scheme, _, value = authorization.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic" and value:
            user = self._basic(value)
            return Caller(user=user, admin=user in self.admin_users)
        if scheme in ("bearer", "token") and value.startswith(PERSONAL_TOKEN):
            return Caller(token=value)  # checked by the engine against the service invoked
        if scheme in ("bearer", "token") and value:
            if self.hub_users is not None and hmac.compare_digest(value.encode(), self.hub_users.token.encode()):
                return Caller(hub=True)  # the hub (only it and this engine know the engine's service token)
            user = self._static(value)
            if user is not None:
                return Caller(user=user, token=value, admin=user in self.admin_users)
            hub = await self._hub(value)
            return Caller(
                user=hub.get("user"),
                token=value,
                admin=bool(hub.get("admin")) or hub.get("user") in self.admin_users,
                generation=hub.get("generation", ""),
                user_admin=bool(hub.get("user_admin")),
            )
        return Caller()

    def forget(self, user: str) -> None:
        """Drop what is cached about the hub's tokens and `user` (deleted): the next request asks the hub."""
        if self.hub_auth is not None:
            self.hub_auth.cache.clear()
        if self.hub_users is not None:
            self.hub_users.forget(user)

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

    async def _hub(self, token: str) -> dict[str, Any]:
        """Who the hub says holds the token: {user, admin, generation, user_admin}, empty if nobody."""
        if self.hub_auth is None:
            return {}
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model:
            return {}
        user_admin = self.hub_auth.check_scopes({USER_ADMIN}, model)
        if model.get("kind", "user") != "user":
            return {"user_admin": bool(user_admin)}  # a service: may manage users if the hub lets it, nothing else
        required = self.hub_auth.access_scopes
        if required and not self.hub_auth.check_scopes(required, model):
            log.info("hub user %s lacks the scope to use this service (%s)", model.get("name"), sorted(required))
            return {"user_admin": bool(user_admin)}
        name = model["name"]
        created = model.get("created")  # only where the token may read its user's model (a server's may not)
        if not created and self.hub_users is not None:
            try:
                created = await self.hub_users.created(name)
            except (HTTPClientError, OSError, RuntimeError) as error:
                log.warning("could not ask the hub when user %s was made: %s", name, error)
            else:
                if created is None:  # deleted since the hub answered for the token (a cached answer)
                    return {}
        return {
            "user": name,
            "admin": bool(model.get("admin")),
            "generation": generation(created),
            "user_admin": bool(user_admin),
        }


class HubUsers:
    """The hub's users and when each was made, asked with the engine's own service token (list:users, read:users).

    One user's answer is kept `max_age` seconds (it is asked on requests whose token cannot read it).
    """

    def __init__(self, api_url: str, token: str, max_age: float = 60):
        self.api_url = api_url.rstrip("/") + "/"
        self.token = token
        self.max_age = max_age
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def _get(self, path: str) -> Any:
        headers = {"Authorization": f"token {self.token}", "Accept": "application/jupyterhub-pagination+json"}
        answer = await AsyncHTTPClient().fetch(self.api_url + path, headers=headers, request_timeout=30)
        return json.loads(answer.body)

    async def created(self, name: str) -> str | None:
        """The user's `created` (the hub's ISO text), None if the hub has no such user."""
        cached = self._cache.get(name)
        if cached and time.monotonic() - cached[0] < self.max_age:
            return cached[1]
        try:
            model = await self._get("users/" + quote(name, safe=""))
        except HTTPClientError as error:
            if error.code != 404:
                raise
            model = None
        created = _created(model) if model is not None else None
        self._cache[name] = (time.monotonic(), created)
        return created

    async def exists(self, name: str) -> str | None:
        """Asked afresh: the user's generation, or None if the hub has no such user (404)."""
        self.forget(name)
        created = await self.created(name)
        return generation(created) if created else None

    async def all(self) -> dict[str, str]:
        """{name: generation} of every hub user (all pages, or an error: never a partial list)."""
        users: dict[str, str] = {}
        offset = 0
        while True:
            page = await self._get("users?" + urlencode({"offset": offset, "limit": 200}))
            items = page["items"] if isinstance(page, dict) else page
            for model in items:
                users[model["name"]] = generation(_created(model))
            following = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not following or not items:
                return users
            offset = following["offset"]

    def forget(self, name: str | None = None) -> None:
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(name, None)


def _created(model: dict) -> str:
    """A user model's `created`; an error where the hub left it out (the engine's token lacks read:users),
    so that no user ever looks deleted for want of a field."""
    created = model.get("created")
    if not created:
        raise RuntimeError(f"the hub gave no 'created' for user {model.get('name')!r}: the engine needs read:users")
    return created
