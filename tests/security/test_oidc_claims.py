"""Red team, OIDC login: claims a hostile provider user could send, against the real hub and a real provider.

Entitlements from another namespace or authority, or with another role than `member`, grant no login,
no group and never admin; a second person (another `sub`) claiming a taken name, under any spelling,
is refused with a message; platform names cannot be claimed. Claims are set with the provider's
`PUT /users/{sub}`. The entitlement parser and the name normalisation are tested from tables first.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Iterator

import pytest
import requests
from reeflab.hub.oidc import (
    IdentityBindings,
    NameTaken,
    fallback_name,
    groups_from_entitlements,
    parse_entitlement,
    readable_name,
)
from reeflab.testing.hub import HubProcess
from test_hub_oidc import VO, entitlement, oidc_login, set_claims

ADMINS = f"{VO}:admins"
BOT = "notebook-bot"  # a hub service whose name has no platform prefix
FOREIGN_NAMESPACE = f"urn:mace:evil.example.org:group:{VO}:role=member#aai.egi.eu"
FOREIGN_AUTHORITY = f"urn:mace:egi.eu:group:{VO}:role=member#aai.evil.example.org"


@pytest.mark.parametrize(
    ("claim", "groups"),
    [
        ([entitlement(VO)], {VO}),
        (entitlement(VO), {VO}),  # a single string, not a list
        ((entitlement(VO),), {VO}),
        ([entitlement(f"{VO}:reef-team")], {f"{VO}:reef-team"}),
        ([entitlement(VO), entitlement("vo.other.eu")], {VO, "vo.other.eu"}),
        ([entitlement("vo.access.egi.eu:Foo%20Bar")], {"vo.access.egi.eu:Foo%20Bar"}),
        # other roles grant nothing, not even alongside membership of another VO
        ([entitlement(VO, "manager"), entitlement(VO, "vm_operator"), entitlement(VO, "owner")], set()),
        ([entitlement(VO), entitlement("vo.other.eu", "vm_operator")], {VO}),
        # foreign namespaces, including look-alikes of EGI's
        ([FOREIGN_NAMESPACE], set()),
        ([f"urn:mace:egi.eu:groupx:{VO}:role=member#aai.egi.eu"], set()),
        ([f"URN:MACE:EGI.EU:GROUP:{VO}:role=member#aai.egi.eu"], set()),
        ([f"urn:mace:egi.eu:res:{VO}:role=member#aai.egi.eu"], set()),
        ([f"urn:mace:anything:group:{ADMINS}:role=member#aai.egi.eu"], set()),
        # foreign, missing or doubled authorities
        ([FOREIGN_AUTHORITY], set()),
        ([f"urn:mace:egi.eu:group:{VO}:role=member#aai.egi.eu.evil.org"], set()),
        ([f"urn:mace:egi.eu:group:{VO}:role=member"], set()),
        ([f"urn:mace:egi.eu:group:{VO}:role=member#"], set()),
        ([f"urn:mace:egi.eu:group:{VO}:role=member#aai.egi.eu#aai.egi.eu"], set()),
        # malformed group paths and roles
        ([f"urn:mace:egi.eu:group:{VO}:role=member:role=member#aai.egi.eu"], set()),
        (["urn:mace:egi.eu:group::role=member#aai.egi.eu"], set()),
        ([f"urn:mace:egi.eu:group:{VO}::x:role=member#aai.egi.eu"], set()),
        ([f"urn:mace:egi.eu:group:{VO}/x:role=member#aai.egi.eu"], set()),
        ([f"urn:mace:egi.eu:group:{VO}:role=#aai.egi.eu"], set()),
        ([f"urn:mace:egi.eu:group:{VO}#aai.egi.eu"], set()),
        # plain group names (a Keycloak `groups` claim) and junk: nothing by default
        ([VO, f"/{VO}", "admins"], set()),
        (["urn:mace:egi.eu:res:rcauth#aai.egi.eu", "urn:geant:example.org:something"], set()),
        ([None, 42, "", "/", ["nested"], entitlement(VO)], {VO}),
        ([], set()),
        (None, set()),
        ({"not": "a list"}, set()),
        (42, set()),
    ],
)
def test_only_member_entitlements_of_the_pinned_namespace_and_authority_are_groups(claim, groups):
    assert groups_from_entitlements(claim) == groups


@pytest.mark.parametrize(
    ("claim", "settings", "groups"),
    [
        (
            ["urn:mace:example.org:group:vo.a:role=member#login.example.org", entitlement("vo.b")],
            {"namespace": "urn:mace:example.org:group:", "authority": "login.example.org"},
            {"vo.a"},
        ),
        (
            ["urn:mace:egi.eu:group:vo.a:role=member", entitlement("vo.b")],
            {"authority": None},  # a provider that writes no authority: then none may be written
            {"vo.a"},
        ),
        (
            [f"/{VO}", "/reef/divers", "admins", FOREIGN_NAMESPACE],
            {"plain_groups": True},
            {VO, "reef/divers", "admins"},
        ),
        ([entitlement(VO, "manager"), entitlement("vo.b", "vm_operator")], {"roles": ("member", "manager")}, {VO}),
    ],
)
def test_the_pins_follow_the_settings(claim, settings, groups):
    assert groups_from_entitlements(claim, **settings) == groups


def test_parse_entitlement_gives_the_group_path_and_role():
    assert parse_entitlement(entitlement(f"{VO}:a:b", "vm_operator")) == (f"{VO}:a:b", "vm_operator")
    assert parse_entitlement(FOREIGN_AUTHORITY) is None


@pytest.mark.parametrize(
    ("proposed", "name"),
    [
        ("ana", "ana"),
        ("Ana", "ana"),
        ("\uff41\uff4e\uff41", "ana"),  # fullwidth look-alike
        ("An\u00e4", "ana"),  # accent folded
        ("Jos\u00e9 P\u00e9rez", "jose-perez"),
        ("ana@uni.example.org", "ana-uni.example.org"),
        ("Stra\u00dfe", "strasse"),
        ("\u0430na", "na"),  # Cyrillic a dropped: the rest must then be free
        ("../../etc", "etc"),
        ("-._", ""),
        ("\u0414\u0438\u043c\u0430", ""),  # nothing ASCII left: the name derives from the identity
        ("x" * 50, "x" * 32),
        (None, ""),
        (["ana"], ""),
    ],
)
def test_readable_names_are_folded_so_look_alikes_collide(proposed, name):
    assert readable_name(proposed) == name


def test_identity_bindings_are_private_exclusive_and_fail_closed(tmp_path):
    path = tmp_path / "state" / "oidc-identities.json"
    bindings = IdentityBindings(path, "sub")
    bindings.bind("sub-a", "ana")
    bindings.bind("sub-a", "ana")  # again: nothing changes
    assert path.stat().st_mode & 0o777 == 0o600
    assert bindings.name_of("sub-a") == "ana" and bindings.identity_of("ana") == "sub-a"
    with pytest.raises(NameTaken):
        bindings.bind("sub-b", "ana")
    with pytest.raises(NameTaken):
        bindings.bind("sub-a", "ana2")  # one name per person
    with pytest.raises(RuntimeError, match="not 'voperson_id'"):
        IdentityBindings(path, "voperson_id").name_of("sub-a")
    path.write_text("{not json")
    with pytest.raises(RuntimeError, match="cannot read"):
        bindings.name_of("sub-a")


@pytest.fixture(scope="module")
def hub(provider, tmp_path_factory) -> Iterator[HubProcess]:
    state = tmp_path_factory.mktemp("hub")
    bot = f"add_service(c, {{'name': {BOT!r}, 'api_token': {secrets.token_hex(16)!r}}}, scopes=[])"
    hub = HubProcess(state, env={"REEFLAB_AUTH": "oidc"}, extra_config=bot)
    hub.env.update(
        REEFLAB_OIDC_ISSUER=provider,
        REEFLAB_OIDC_CLIENT_ID="reeflab-hub",
        REEFLAB_OIDC_CLIENT_SECRET=secrets.token_hex(16),
        REEFLAB_OIDC_CALLBACK_URL=hub.url + "hub/oauth_callback",
        REEFLAB_OIDC_ALLOWED_VOS=VO,
        REEFLAB_OIDC_ADMIN_VOS=ADMINS,
        JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32),
    )
    with hub:
        yield hub


def login(hub: HubProcess, provider: str, sub: str, claims: dict) -> tuple[requests.Session, requests.Response]:
    """Give `sub` these claims at the provider, then log in as them."""
    set_claims(provider, sub, claims)
    return oidc_login(hub, provider, sub)


def refused(response: requests.Response, status: int = 403) -> str:
    """The refusal page's text, after checking it came back from the hub's callback with `status`."""
    assert response.status_code == status, (response.status_code, response.url)
    return html.unescape(response.text)


def user(hub: HubProcess, name: str) -> dict | None:
    answer = hub.api("GET", f"users/{name}")
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return answer.json()


@pytest.mark.parametrize(
    ("name", "entitlements"),
    [
        ("fiona", [FOREIGN_NAMESPACE]),
        ("faust", [FOREIGN_AUTHORITY]),
        ("vera", [entitlement(VO, "vm_operator"), entitlement(VO, "manager")]),
        ("nora", [f"urn:mace:egi.eu:group:{VO}:role=member"]),  # no authority
        ("paula", [VO, f"/{VO}"]),  # plain names in the entitlement claim
        ("adam", [f"urn:mace:evil.example.org:group:{ADMINS}:role=member#aai.egi.eu"]),
        ("adele", [f"urn:mace:egi.eu:group:{ADMINS}:role=member#aai.evil.example.org"]),
        ("adrian", f"urn:mace:evil.example.org:group:{ADMINS}:role=member#aai.egi.eu"),  # a single string
    ],
    ids=[
        "foreign-namespace",
        "foreign-authority",
        "non-member-roles",
        "no-authority",
        "plain-vo-name",
        "admin-vo-foreign-namespace",
        "admin-vo-foreign-authority",
        "admin-vo-single-string",
    ],
)
def test_foreign_entitlements_grant_no_login(hub, provider, name, entitlements):
    session, answer = login(
        hub, provider, f"{name}-sub", {"preferred_username": name, "eduperson_entitlement": entitlements}
    )
    assert f"only members of {VO}" in refused(answer)
    assert session.get(hub.url + "hub/api/user", timeout=30).status_code in (401, 403)
    assert user(hub, name) is None, "no account, so no group and no admin"


def test_a_member_with_foreign_admin_entitlements_is_a_member_only(hub, provider):
    foreign_admin = [
        f"urn:mace:evil.example.org:group:{ADMINS}:role=member#aai.egi.eu",
        f"urn:mace:egi.eu:group:{ADMINS}:role=member#aai.evil.example.org",
        f"urn:mace:egi.eu:group:{ADMINS}:role=owner#aai.egi.eu",
        ADMINS,
    ]
    claims = {"preferred_username": "mia", "eduperson_entitlement": [entitlement(VO), *foreign_admin]}
    assert login(hub, provider, "mia-sub", claims)[1].ok
    mia = user(hub, "mia")
    assert mia["groups"] == [VO] and mia["admin"] is False

    # the control: the genuine admin entitlement does make an admin, so the check above can fail
    claims = {"preferred_username": "ada", "eduperson_entitlement": [entitlement(VO), entitlement(ADMINS)]}
    assert login(hub, provider, "ada-sub", claims)[1].ok
    ada = user(hub, "ada")
    assert ada["admin"] is True and sorted(ada["groups"]) == sorted([VO, ADMINS])


def test_a_taken_name_is_refused_to_another_person_under_any_spelling(hub, provider):
    member = {"eduperson_entitlement": [entitlement(VO)]}
    session, answer = login(hub, provider, "dana-0001@egi.eu", {"preferred_username": "dana", **member})
    assert answer.ok and session.get(hub.url + "hub/api/user", timeout=30).json()["name"] == "dana"

    for sub, spelling in [
        ("dana-0002@egi.eu", "dana"),
        ("dana-0003@egi.eu", "DANA"),
        ("dana-0004@egi.eu", "\uff44ana"),
    ]:
        session, answer = login(hub, provider, sub, {"preferred_username": spelling, **member})
        text = refused(answer)
        assert "the user name 'dana' is already taken by another person" in text, text
        assert "Choose another preferred_username at EGI Check-in" in text
        assert session.get(hub.url + "hub/api/user", timeout=30).status_code in (401, 403)
    assert user(hub, "dana")["auth_state"]["oauth_user"]["sub"] == "dana-0001@egi.eu"

    # the name follows the person, not the claim they may change
    session, answer = login(hub, provider, "dana-0001@egi.eu", {"preferred_username": "dana-renamed", **member})
    assert answer.ok and session.get(hub.url + "hub/api/user", timeout=30).json()["name"] == "dana"
    assert user(hub, "dana-renamed") is None

    bindings = hub.state / "oidc-identities.json"
    assert bindings.stat().st_mode & 0o777 == 0o600
    assert json.loads(bindings.read_text())["names"]["dana"] == "dana-0001@egi.eu"


def test_an_account_not_made_by_this_person_is_not_taken_over(hub, provider):
    assert hub.api("POST", "users/erin").status_code == 201  # made by an admin, bound to nobody
    answer = login(
        hub, provider, "erin-sub", {"preferred_username": "erin", "eduperson_entitlement": [entitlement(VO)]}
    )[1]
    assert "'erin' is already taken" in refused(answer)
    assert user(hub, "erin")["auth_state"] is None


@pytest.mark.parametrize(
    "name",
    ["admin", "root", "Admin", "reeflab-serverless", "reeflab-admin", "reeflab", "rl-ana", "idle-culler", BOT],
)
def test_reserved_names_cannot_be_claimed(hub, provider, name):
    sub = f"reserved-{name}-sub"
    claims = {"preferred_username": name, "eduperson_entitlement": [entitlement(VO), entitlement(ADMINS)]}
    session, answer = login(hub, provider, sub, claims)
    assert f"the user name '{name.lower()}' is reserved" in refused(answer)
    assert session.get(hub.url + "hub/api/user", timeout=30).status_code in (401, 403)
    assert user(hub, name.lower()) is None


def test_without_a_readable_name_the_name_derives_from_the_identity(hub, provider):
    member = {"eduperson_entitlement": [entitlement(VO)]}
    sub = "0123456789abcdef0123456789abcdef@egi.eu"
    session, answer = login(hub, provider, sub, member)  # no preferred_username released
    assert answer.ok and session.get(hub.url + "hub/api/user", timeout=30).json()["name"] == fallback_name(sub)

    # and nobody can squat the name another person would derive
    answer = login(hub, provider, "squatter-sub", {"preferred_username": fallback_name("victim@egi.eu"), **member})[1]
    assert "is reserved" in refused(answer)
