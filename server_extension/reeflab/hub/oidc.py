"""OIDC login (EGI Check-in / Keycloak): VO membership from entitlements becomes hub groups."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterable

# urn:mace:egi.eu:group:<vo>[:<subgroup>...]:role=<role>#<authority>
ENTITLEMENT = re.compile(
    r"^urn:mace:(?P<namespace>[^:]+):group:(?P<group>[^#]+?):role=(?P<role>[^#:]+)(?:#(?P<authority>.+))?$"
)


def groups_from_entitlements(values: Iterable[str] | str | None, roles: Iterable[str] = ("member",)) -> set[str]:
    """Hub groups of a user: the VO (and sub-group) paths of entitlements with an accepted role.

    `vo.imagine-ai.eu` for `urn:mace:egi.eu:group:vo.imagine-ai.eu:role=member#aai.egi.eu`.
    Other URNs are not groups and are dropped; plain strings (a Keycloak `groups` claim)
    are kept as they are, without a leading slash.
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
        match = ENTITLEMENT.match(value)
        if match:
            if match["role"] in roles:
                groups.add(match["group"])
        elif not value.startswith("urn:") and value.strip("/"):
            groups.add(value.lstrip("/"))
    return groups


def auth_state_groups(
    claim: str, roles: Iterable[str] = ("member",), key: str = "oauth_user"
) -> Callable[[dict], set[str]]:
    """An `auth_state_groups_key` callable reading `claim` from the userinfo in `auth_state[key]`.

    `key` is oauthenticator's `user_auth_state_key` ("oauth_user" for GenericOAuthenticator).
    """
    roles = tuple(roles)

    def groups(auth_state: dict) -> set[str]:
        userinfo = auth_state.get(key) or {}
        return groups_from_entitlements(userinfo.get(claim), roles)

    return groups


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
