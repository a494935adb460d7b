"""The reeflab server extension, through a real jupyter-server (pytest-jupyter's jp_fetch)."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

PROFILES = """
image: example.org/reeflab/singleuser:1
profiles:
  - {slug: small, display_name: Small, cpu: 1, memory: 2G, default: true}
  - {slug: gpu, display_name: GPU, cpu: 4, memory: 16Gi, gpu: {count: 2, model: T4}, groups: [vo.test]}
"""


@pytest.fixture
def profiles_file(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text(PROFILES)
    return path


@pytest.fixture
def jp_server_config(jp_server_config, profiles_file):
    return {**jp_server_config, "ReefLabApp": {"profiles_file": str(profiles_file)}}


async def get_json(jp_fetch, *path):
    response = await jp_fetch(*path)
    assert response.code == 200
    return json.loads(response.body)


async def test_info_reports_version_user_and_backends(jp_fetch, profiles_file):
    info = await get_json(jp_fetch, "reeflab", "api", "info")
    assert info["version"] == __import__("reeflab").__version__
    assert info["user"]
    assert info["groups"] == []
    assert info["backends"]["profiles"] == str(profiles_file)
    assert info["backends"]["identity"].endswith("HubIdentity")
    assert info["backends"]["deployments"].endswith("LocalProcessBackend")
    assert info["deployments"]["try_minutes"] == 10 and info["deployments"]["max_tries"] == 2


async def test_profiles_lists_only_what_the_user_may_use(jp_fetch):
    data = await get_json(jp_fetch, "reeflab", "api", "profiles")
    assert data["default"] == "small"
    assert [p["slug"] for p in data["profiles"]] == ["small"]
    small = data["profiles"][0]
    assert small["memory_bytes"] == 2 * 10**9
    assert small["image"] == "example.org/reeflab/singleuser:1"
    assert "groups" not in small


@pytest.mark.parametrize("groups, slugs", [([], ["small"]), (["vo.test"], ["small", "gpu"])])
async def test_group_members_see_gated_profiles(jp_fetch, jp_serverapp, groups, slugs):
    jp_serverapp.web_app.settings["reeflab"].identity.standalone_groups = groups
    data = await get_json(jp_fetch, "reeflab", "api", "profiles")
    assert [p["slug"] for p in data["profiles"]] == slugs


async def test_broken_profiles_file_is_reported_with_the_field_at_fault(jp_fetch, profiles_file):
    profiles_file.write_text(PROFILES.replace("memory: 2G", "memory: lots"))
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("reeflab", "api", "profiles")
    assert err.value.code == 500
    message = json.loads(err.value.response.body)["message"]
    assert "profiles.0.memory" in message and "lots" in message
