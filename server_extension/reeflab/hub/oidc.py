"""OIDC login (EGI Check-in / Keycloak): VO membership from pinned entitlements becomes hub groups,
and each hub name belongs to one person, known by a stable claim.

Entitlements count only under the configured namespace and authority (EGI Check-in's by default)
and with `role=member`. A person is identified by a claim they cannot choose (`sub`, or EGI's
`voperson_id`); their readable hub name comes from `preferred_username` at first login and is bound
to that identity in a 0600 file of the hub's state folder, so nobody else can ever log in under it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Bool, List, Set, Unicode

from .authenticators import RevokingAuthenticator

DEFAULT_NAMESPACE = "urn:mace:egi.eu:group:"
DEFAULT_AUTHORITY = "aai.egi.eu"
MEMBER = "member"
# one group segment of `<vo>[:<subgroup>...]`: no ':', '#', '=', '/' or spaces (COmanage percent-encodes those)
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~%+-]*")
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# claims a user may set at their provider: never an identity
MUTABLE_CLAIMS = frozenset({"preferred_username", "nickname", "name", "given_name", "family_name", "email"})
MAX_NAME = 32
FALLBACK_PREFIX = "user-"
_FALLBACK = re.compile(r"user-[0-9a-f]{10}")
RESERVED_NAMES = frozenset({"admin", "root", "hub", "jupyterhub", "jovyan", "nobody", "idle-culler"})
RESERVED_PREFIXES = ("reeflab", "rl-")


def parse_entitlement(
    value: object, namespace: str = DEFAULT_NAMESPACE, authority: str | None = DEFAULT_AUTHORITY
) -> tuple[str, str] | None:
    """`(group path, role)` of an entitlement under exactly this namespace and authority, else None.

    `authority=None` accepts only entitlements without a `#authority` part; nothing is matched loosely,
    so a look-alike URN from another namespace or issuer never becomes a group.
    """
    if not isinstance(value, str) or not namespace or not value.startswith(namespace):
        return None
    rest, hash_sign, found_authority = value[len(namespace) :].partition("#")
    if authority is None:
        if hash_sign:
            return None
    elif found_authority != authority:  # also when there is no '#' at all
        return None
    path, role_sign, role = rest.rpartition(":role=")
    if not role_sign or not _ROLE.fullmatch(role):
        return None
    if not all(_SEGMENT.fullmatch(segment) for segment in path.split(":")):
        return None
    return path, role


def groups_from_entitlements(
    values: Iterable[str] | str | None,
    roles: Iterable[str] = (MEMBER,),
    namespace: str = DEFAULT_NAMESPACE,
    authority: str | None = DEFAULT_AUTHORITY,
    plain_groups: bool = False,
) -> set[str]:
    """Hub groups of a user: the VO (and sub-group) paths of pinned entitlements with an accepted role.

    `vo.imagine-ai.eu` for `urn:mace:egi.eu:group:vo.imagine-ai.eu:role=member#aai.egi.eu`; any other
    value grants nothing, except plain group names (a Keycloak `groups` claim) when `plain_groups`.
    """
    if isinstance(values, str):
        values = [values]
    elif not isinstance(values, (list, tuple, set, frozenset)):
        return set()  # absent, or not a claim we understand
    roles = set(roles)
    groups = set()
    for value in values:
        if not isinstance(value, str):
            continue
        parsed = parse_entitlement(value, namespace, authority)
        if parsed:
            if parsed[1] in roles:
                groups.add(parsed[0])
        elif plain_groups and not value.startswith("urn:") and value.strip("/"):
            groups.add(value.lstrip("/"))
    return groups


def auth_state_groups(
    claim: str,
    roles: Iterable[str] = (MEMBER,),
    key: str = "oauth_user",
    namespace: str = DEFAULT_NAMESPACE,
    authority: str | None = DEFAULT_AUTHORITY,
    plain_groups: bool = False,
) -> Callable[[dict], set[str]]:
    """An `auth_state_groups_key` callable reading `claim` from the userinfo in `auth_state[key]`.

    `key` is oauthenticator's `user_auth_state_key` ("oauth_user" for GenericOAuthenticator).
    """
    roles = tuple(roles)

    def groups(auth_state: dict) -> set[str]:
        userinfo = auth_state.get(key) or {}
        return groups_from_entitlements(userinfo.get(claim), roles, namespace, authority, plain_groups)

    return groups


def readable_name(value: object) -> str:
    """A safe hub name from a user-chosen one ('' if nothing usable is left): ASCII `[a-z0-9._-]`,
    accents and case folded, so look-alikes (`Ana`, `ａｎａ`, `Anä`) meet and collide instead of coexisting."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch for ch in unicodedata.normalize("NFKD", value) if not unicodedata.combining(ch))
    text = re.sub(r"[^a-z0-9._-]+", "-", unicodedata.normalize("NFKC", text.casefold()))
    return text.strip("._-")[:MAX_NAME].strip("._-")


def fallback_name(identity: str) -> str:
    """The hub name of a person whose provider gives no usable readable name: derived from their identity."""
    return FALLBACK_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:10]


class NameTaken(Exception):
    """The name, or the identity, is already bound to someone else."""


class IdentityBindings:
    """Which identity (stable claim value) holds which hub name, kept in a 0600 JSON file.

    A file rather than each user's auth_state: the lookup goes by identity before any account exists,
    and a binding outlives a deleted account, so a name is never handed to another person.
    """

    def __init__(self, path: Path, claim: str):
        self.path = Path(path)
        self.claim = claim

    def load(self) -> dict[str, str]:
        """`{name: identity}`; a file that cannot be read stops logins rather than forgetting who is who."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise RuntimeError(f"cannot read the OIDC identity bindings {self.path}: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("names"), dict):
            raise RuntimeError(f"{self.path} is not an OIDC identity bindings file")
        if data.get("claim") != self.claim:
            raise RuntimeError(
                f"{self.path} binds names to the claim {data.get('claim')!r}, not {self.claim!r}: "
                "set REEFLAB_OIDC_USERNAME_CLAIM back, or move the file away to start over"
            )
        return {str(name): str(identity) for name, identity in data["names"].items()}

    def name_of(self, identity: str) -> str | None:
        """The name this person holds, if they ever logged in."""
        return next((name for name, owner in self.load().items() if owner == identity), None)

    def identity_of(self, name: str) -> str | None:
        """The person holding this name, if anyone does."""
        return self.load().get(name)

    def bind(self, identity: str, name: str) -> None:
        """Record that `name` is `identity`'s; NameTaken if either is bound to another."""
        names = self.load()
        if names.get(name, identity) != identity:
            raise NameTaken(name)
        if any(owner == identity and bound != name for bound, owner in names.items()):
            raise NameTaken(identity)
        if names.get(name) == identity:
            return
        names[name] = identity
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"version": 1, "claim": self.claim, "names": names}, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


class ReefLabOAuthenticator(RevokingAuthenticator, GenericOAuthenticator):
    """GenericOAuthenticator whose accounts are keyed on a stable claim (`username_claim`), with readable
    names bound to that identity at first login: a second person with the same name is refused.

    Deleting a hub user revokes their accounts (RevokingAuthenticator); the name stays bound to its person.
    """

    name_claim = Unicode(
        "preferred_username", config=True, help="Claim proposing a readable hub name at first login ('' for none)."
    )
    identities_file = Unicode(config=True, help="The 0600 JSON file binding hub names to identities.")
    reserved_names = Set(Unicode(), RESERVED_NAMES, config=True, help="Names no login may claim.")
    reserved_prefixes = List(Unicode(), list(RESERVED_PREFIXES), config=True, help="Prefixes no login may claim.")
    reserve_service_names = Bool(True, config=True, help="Also refuse the names of the hub's services.")

    @property
    def bindings(self) -> IdentityBindings:
        claim = self.username_claim if isinstance(self.username_claim, str) else "custom"
        return IdentityBindings(Path(self.identities_file), claim)

    def identity(self, user_info: dict) -> str | None:
        """The person behind a userinfo: the value of the stable claim, None if it is missing."""
        claim = self.username_claim
        value = claim(user_info) if callable(claim) else user_info.get(claim)
        return str(value) if value not in (None, "") else None

    def user_info_to_username(self, user_info: dict) -> str:
        """The name this identity is bound to, else the one its readable claim proposes (bound after login)."""
        identity = self.identity(user_info)
        if identity is None:
            raise ValueError(f"the login carries no {self.username_claim} claim: request the scope that gives it")
        bound = self.bindings.name_of(identity)
        if bound:
            return bound
        proposed = readable_name(user_info.get(self.name_claim)) if self.name_claim else ""
        return proposed or fallback_name(identity)

    def is_reserved(self, name: str, identity: str, handler: Any = None) -> bool:
        """Names of the platform (admin, root, the hub's services, `reeflab*`, `rl-*`), and derived-looking
        names (`user-<hash>`) but the one derived from this very identity."""
        if _FALLBACK.fullmatch(name):
            return name != fallback_name(identity)
        services = (handler.settings.get("services") or {}) if handler is not None else {}
        return (
            name in self.reserved_names
            or name.startswith(tuple(self.reserved_prefixes))
            or (self.reserve_service_names and name in services)
        )

    def _refuse(self, name: str, identity: str, why: str, message: str) -> web.HTTPError:
        self.log.warning("OIDC login of %s as %r refused: %s", identity, name, why)
        return web.HTTPError(403, message)

    async def run_post_auth_hook(self, handler: Any, auth_model: dict) -> dict:
        """After the membership check: refuse reserved names and names held by another identity, then bind."""
        name = auth_model["name"]
        identity = self.identity((auth_model.get("auth_state") or {}).get(self.user_auth_state_key) or {})
        if identity is None:  # user_info_to_username saw it: only a hook could have dropped it
            raise web.HTTPError(403, f"Sorry, {self.login_service} gave no {self.username_claim} for this login.")
        change = (
            f"Choose another {self.name_claim or 'user name'} at {self.login_service}, "
            "or ask the hub's admins, then log in again."
        )
        if self.is_reserved(name, identity, handler):
            raise self._refuse(name, identity, "reserved", f"Sorry, the user name '{name}' is reserved. {change}")
        taken = f"Sorry, the user name '{name}' is already taken by another person on this hub. {change}"
        owner = self.bindings.identity_of(name)
        if owner is not None and owner != identity:
            raise self._refuse(name, identity, f"bound to {owner}", taken)
        existing = handler.find_user(name) if handler is not None else None
        if existing is not None:
            # an account made before bindings existed, or by an admin: it is this person's only if its
            # recorded identity says so (or the binding does, where the auth_state was lost)
            state = await existing.get_auth_state() or {}
            previous = self.identity(state.get(self.user_auth_state_key) or {})
            if (previous or owner) != identity:
                raise self._refuse(name, identity, f"existing account of {previous or 'no OIDC identity'}", taken)
        try:
            self.bindings.bind(identity, name)
        except NameTaken:
            raise self._refuse(name, identity, "bound meanwhile", taken) from None
        return await super().run_post_auth_hook(handler, auth_model)


def discover(issuer: str, timeout: float = 10) -> dict:
    """The provider's endpoints from its OpenID discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError) as err:
        raise RuntimeError(
            f"Cannot read the OIDC discovery document {url}: {err}. "
            "Check REEFLAB_OIDC_ISSUER, or set the endpoint URLs explicitly."
        ) from None
