"""OIDC login end to end: the real hub with REEFLAB_AUTH=oidc against a real OIDC provider (oidc-provider-mock).

The provider (reeflab.testing.oidc, the `provider` fixture) accepts any client id and secret, and a
user's claims are set with `PUT /users/{sub}`. The entitlement parser's table and the hostile claims
(foreign namespaces, colliding and reserved names) are in tests/security/test_oidc_claims.py.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest
import requests
from reeflab.hub.config import configure_oidc_login
from reeflab.testing.hub import HubProcess
from traitlets.config import Config

VO = "vo.imagine-ai.eu"


def entitlement(group: str, role: str = "member") -> str:
    """An EGI Check-in style entitlement URN."""
    return f"urn:mace:egi.eu:group:{group}:role={role}#aai.egi.eu"


def set_claims(issuer: str, sub: str, claims: dict) -> None:
    """Give the provider's user `sub` these claims (created if new)."""
    r = requests.put(f"{issuer}/users/{sub}", json=claims, timeout=10)
    assert r.status_code == 204, r.text


@pytest.fixture(scope="module")
def hub(provider, tmp_path_factory) -> Iterator[HubProcess]:
    state = tmp_path_factory.mktemp("hub")
    hub = HubProcess(state, env={"REEFLAB_AUTH": "oidc"})
    hub.env.update(
        REEFLAB_OIDC_ISSUER=provider,
        REEFLAB_OIDC_CLIENT_ID="reeflab-hub",
        REEFLAB_OIDC_CLIENT_SECRET=secrets.token_hex(16),
        REEFLAB_OIDC_CALLBACK_URL=hub.url + "hub/oauth_callback",
        REEFLAB_OIDC_ALLOWED_VOS=VO,
        JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32),
    )
    with hub:
        yield hub


@pytest.fixture
def oidc_env(monkeypatch, tmp_path) -> pytest.MonkeyPatch:
    """The environment configure_oidc_login needs, without any endpoint URL."""
    for name in list(os.environ):
        if name.startswith("REEFLAB_OIDC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REEFLAB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("REEFLAB_OIDC_CLIENT_ID", "reeflab-hub")
    monkeypatch.setenv("REEFLAB_OIDC_ALLOWED_VOS", VO)
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", secrets.token_hex(32))
    return monkeypatch


def test_explicit_endpoint_urls_win_and_discovery_fills_in_the_others(provider, oidc_env, tmp_path):
    oidc_env.setenv("REEFLAB_OIDC_ISSUER", provider)
    oidc_env.setenv("REEFLAB_OIDC_AUTHORIZE_URL", "https://login.example.org/authorize")
    oidc_env.setenv("REEFLAB_OIDC_TOKEN_URL", "https://login.example.org/token")
    c = Config()
    configure_oidc_login(c)
    a = c.GenericOAuthenticator
    assert a.authorize_url == "https://login.example.org/authorize"
    assert a.token_url == "https://login.example.org/token"
    assert a.userdata_url == provider + "/userinfo"
    assert a.allowed_groups == {VO} and a.manage_groups and a.enable_auth_state
    assert a.username_claim == "sub", "accounts are keyed on a claim users cannot choose"
    assert c.ReefLabOAuthenticator.identities_file == str(tmp_path / "oidc-identities.json")


def test_without_an_issuer_every_endpoint_url_is_needed(oidc_env):
    oidc_env.setenv("REEFLAB_OIDC_AUTHORIZE_URL", "https://login.example.org/authorize")
    with pytest.raises(ValueError, match="token_endpoint, userinfo_endpoint"):
        configure_oidc_login(Config())


def oidc_login(hub: HubProcess, issuer: str, sub: str) -> tuple[requests.Session, requests.Response]:
    """Log in as a browser does: hub login page, provider's authorize form (choose `sub`), back to the hub."""
    session = requests.Session()
    login = session.get(hub.url + "hub/login", timeout=30)
    button = re.search(r"href=['\"]([^'\"]*oauth_login[^'\"]*)['\"]>Sign in with EGI Check-in<", login.text)
    assert login.ok and button, login.text
    href = html.unescape(button.group(1))
    authorize = session.get(requests.compat.urljoin(login.url, href), timeout=30)
    assert authorize.ok and authorize.url.startswith(issuer + "/oauth2/authorize"), authorize.url
    # the form has no action: a browser posts it back to the page's own URL
    return session, session.post(authorize.url, data={"sub": sub}, timeout=30)


def test_vo_member_logs_in_lands_in_the_vo_group_and_keeps_encrypted_tokens(hub, provider):
    entitlements = [entitlement(VO), entitlement(VO, "vm_operator"), "urn:mace:egi.eu:res:rcauth#aai.egi.eu"]
    set_claims(provider, "alice-0001@egi.eu", {"preferred_username": "alice", "eduperson_entitlement": entitlements})

    session, landed = oidc_login(hub, provider, "alice-0001@egi.eu")
    assert landed.ok and landed.url.startswith(hub.url + "hub/"), (landed.status_code, landed.url, hub.log_tail())
    assert session.get(hub.url + "hub/api/user", timeout=30).json()["name"] == "alice"

    alice = hub.api("GET", "users/alice").json()
    assert alice["groups"] == [VO]
    state = alice["auth_state"]
    assert state["oauth_user"]["sub"] == "alice-0001@egi.eu"
    assert state["oauth_user"]["eduperson_entitlement"] == entitlements
    assert state["access_token"] and state["refresh_token"]
    with closing(sqlite3.connect(hub.state / "jupyterhub.sqlite")) as db:
        (stored,) = db.execute("SELECT encrypted_auth_state FROM users WHERE name = 'alice'").fetchone()
    assert stored and state["access_token"].encode() not in stored


@pytest.mark.parametrize(
    ("name", "claims"),
    [
        ("olga", {"eduperson_entitlement": [entitlement("vo.other.eu")]}),
        ("manny", {"eduperson_entitlement": [entitlement(VO, "manager")]}),
        ("nemo", {}),
    ],
    ids=["other-vo-only", "manager-role-only", "no-entitlements"],
)
def test_user_without_membership_of_an_allowed_vo_is_refused_and_not_created(hub, provider, name, claims):
    set_claims(provider, f"{name}-sub", {"preferred_username": name, **claims})
    session, refused = oidc_login(hub, provider, f"{name}-sub")
    assert refused.status_code == 403, (refused.status_code, refused.url)
    assert refused.url.startswith(hub.url + "hub/oauth_callback")
    assert f"only members of {VO}" in refused.text
    assert session.get(hub.url + "hub/api/user", timeout=30).status_code in (401, 403)
    assert hub.api("GET", f"users/{name}").status_code == 404
    assert hub.api("GET", "groups/vo.other.eu").status_code == 404


def test_membership_revoked_at_the_provider_refuses_the_next_login(hub, provider):
    set_claims(provider, "bob-sub", {"preferred_username": "bob", "eduperson_entitlement": [entitlement(VO)]})
    assert oidc_login(hub, provider, "bob-sub")[1].ok
    assert hub.api("GET", "users/bob").json()["groups"] == [VO]

    # the provider drops bob from the VO: the hub refuses him although he has an account
    set_claims(provider, "bob-sub", {"preferred_username": "bob", "eduperson_entitlement": [entitlement("vo.x.eu")]})
    assert oidc_login(hub, provider, "bob-sub")[1].status_code == 403
