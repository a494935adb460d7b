"""hub_config/jupyterhub_config.py under each switch, loaded the way JupyterHub loads it."""

from __future__ import annotations

import os

import pytest
from reeflab.hub.config import REPO
from traitlets.config import PyFileConfigLoader


def load(monkeypatch, tmp_path, **env):
    for key in [k for k in __import__("os").environ if k.startswith("REEFLAB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("REEFLAB_STATE_DIR", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(REPO / "hub_config")).load_config()


def test_local_mode_is_the_default(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path)
    assert c.JupyterHub.spawner_class.__name__ == "ReefLabLocalSpawner"
    assert c.JupyterHub.authenticator_class == "reeflab.hub.authenticators.ReefLabFirstUseAuthenticator"
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000/"
    assert c.Spawner.default_url == "/lab"
    assert c.Authenticator.admin_users == {"admin"}
    assert c.FirstUseAuthenticator.create_users is False
    assert c.ReefLabLocalSpawner.home_dir_template == str(tmp_path / "homes" / "{username}")
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    token = tmp_path / "proxy_token"
    assert token.stat().st_mode & 0o077 == 0, "the proxy token must be private to its owner"
    names = [s["name"] for s in c.JupyterHub.services]
    assert names[:3] == ["idle-culler", "reeflab-s3", "reeflab-serverless"]
    assert (tmp_path / "s3-admin-key.json").stat().st_mode & 0o077 == 0, "the S3 admin key must be private"
    s3 = next(s for s in c.JupyterHub.services if s["name"] == "reeflab-s3")
    assert not any("secret" in arg for arg in s3["command"]), "no secret on a command line"
    assert c.Spawner.environment["REEFLAB_S3_ENDPOINT"] == "http://127.0.0.1:8333"
    # the platform's services keep their own chatter (SeaweedFS's status box, MLflow's start-up) in their logs
    mlflow = next(s for s in c.JupyterHub.services if s["name"] == "reeflab-mlflow")
    assert f"--log-file={tmp_path / 's3' / 'seaweedfs.log'}" in s3["command"]
    assert f"--log-file={tmp_path / 'mlflow' / 'mlflow.log'}" in mlflow["command"]
    assert {r["name"] for r in c.JupyterHub.load_roles}.isdisjoint({"reeflab-s3", "reeflab-mlflow"})  # no empty roles
    assert c.JupyterHub.template_vars["reeflab_mlflow_path"] == "reeflab/mlflow/"  # in the Services menu
    assert "becomes its password" in c.JupyterHub.template_vars["reeflab_login_hint"]


def test_admins_and_users_come_from_the_environment(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, REEFLAB_ADMINS="ana, ben", REEFLAB_USERS="cy", REEFLAB_OPEN_SIGNUP="true")
    assert c.Authenticator.admin_users == {"ana", "ben"}
    assert c.Authenticator.allowed_users == {"cy"}
    assert c.FirstUseAuthenticator.create_users is True


def test_kubernetes_mode_uses_the_gated_kubespawner(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, REEFLAB_MODE="kubernetes", REEFLAB_NAMESPACE="reef")
    assert c.JupyterHub.spawner_class.__name__ == "ReefLabKubeSpawner"
    assert c.KubeSpawner.namespace == "reef"
    assert c.ReefLabKubeSpawner.profiles_file == str(REPO / "hub_config" / "profiles.yaml")
    assert "REEFLAB_PROFILES_FILE" not in c.Spawner.environment
    assert c.Spawner.environment["REEFLAB_DEPLOYMENTS"] == "kubernetes"
    # networking, database and proxy belong to the deployment (e.g. the z2jh chart)
    assert "bind_url" not in c.JupyterHub and "db_url" not in c.JupyterHub
    assert "services" not in c.JupyterHub


def test_kubernetes_mode_gives_admins_the_clusters_status_where_the_usage_service_has_an_address(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, REEFLAB_MODE="kubernetes", REEFLAB_USAGE_URL="http://hub:8098")
    [service] = c.JupyterHub.services
    assert service["name"] == "reeflab-usage" and service["url"] == "http://hub:8098"
    assert service["command"][-3:] == ["--kubernetes", "--ip=0.0.0.0", "--port=8098"]
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "reeflab-usage")
    assert role["scopes"] == ["list:users", "read:users", "read:servers"]
    # users' servers reach it (the panel's Platform section) with their own token, at its prefix
    assert c.Spawner.environment["REEFLAB_USAGE_SERVICE_URL"] == "http://hub:8098/services/reeflab-usage/"
    server = next(r for r in c.JupyterHub.load_roles if r["name"] == "server")
    assert "access:services!service=reeflab-usage" in server["scopes"]


OIDC = {
    "REEFLAB_AUTH": "oidc",
    "REEFLAB_OIDC_AUTHORIZE_URL": "https://aai.example/auth",
    "REEFLAB_OIDC_TOKEN_URL": "https://aai.example/token",
    "REEFLAB_OIDC_USERDATA_URL": "https://aai.example/userinfo",
    "REEFLAB_OIDC_CLIENT_ID": "reeflab",
    "REEFLAB_OIDC_ALLOWED_VOS": "vo.imagine-ai.eu",
    "JUPYTERHUB_CRYPT_KEY": "00" * 32,
}


def test_oidc_mode_maps_vos_to_groups(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, **OIDC)
    a = c.GenericOAuthenticator
    assert c.JupyterHub.authenticator_class.__name__ == "ReefLabOAuthenticator"
    assert a.allowed_groups == {"vo.imagine-ai.eu"} and a.manage_groups and a.enable_auth_state
    assert "eduperson_entitlement" in a.scope
    assert a.username_claim == "sub" and c.ReefLabOAuthenticator.name_claim == "preferred_username"
    assert c.ReefLabOAuthenticator.identities_file == str(tmp_path / "oidc-identities.json")
    state = {"oauth_user": {"eduperson_entitlement": ["urn:mace:egi.eu:group:vo.imagine-ai.eu:role=member#aai.egi.eu"]}}
    assert a.auth_state_groups_key(state) == {"vo.imagine-ai.eu"}
    foreign = ["urn:mace:example.org:group:vo.imagine-ai.eu:role=member#aai.egi.eu", "vo.imagine-ai.eu"]
    assert a.auth_state_groups_key({"oauth_user": {"eduperson_entitlement": foreign}}) == set()


def test_oidc_entitlement_namespace_and_authority_are_pinned_from_the_environment(monkeypatch, tmp_path):
    c = load(
        monkeypatch,
        tmp_path,
        **OIDC,
        REEFLAB_OIDC_ENTITLEMENT_NAMESPACE="urn:mace:example.org:group",  # the ':' is added
        REEFLAB_OIDC_ENTITLEMENT_AUTHORITY="login.example.org",
        REEFLAB_OIDC_USERNAME_CLAIM="voperson_id",
    )
    a = c.GenericOAuthenticator
    ours = "urn:mace:example.org:group:vo.imagine-ai.eu:role=member#login.example.org"
    for claim, groups in [
        ([ours], {"vo.imagine-ai.eu"}),
        (["urn:mace:egi.eu:group:vo.imagine-ai.eu:role=member#aai.egi.eu"], set()),  # EGI's no longer counts
        (["urn:mace:example.org:groupx:vo.imagine-ai.eu:role=member#login.example.org"], set()),
    ]:
        assert a.auth_state_groups_key({"oauth_user": {"eduperson_entitlement": claim}}) == groups
    assert a.username_claim == "voperson_id" and "voperson_id" in a.scope

    c = load(monkeypatch, tmp_path, **OIDC, REEFLAB_OIDC_ENTITLEMENT_AUTHORITY="none", REEFLAB_OIDC_PLAIN_GROUPS="true")
    groups = c.GenericOAuthenticator.auth_state_groups_key
    claim = ["urn:mace:egi.eu:group:vo.a:role=member", "urn:mace:egi.eu:group:vo.b:role=member#aai.egi.eu", "/kc"]
    assert groups({"oauth_user": {"eduperson_entitlement": claim}}) == {"vo.a", "kc"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REEFLAB_OIDC_USERNAME_CLAIM": "preferred_username"}, "users can change that claim"),
        ({"REEFLAB_OIDC_USERNAME_CLAIM": "email"}, "REEFLAB_OIDC_NAME_CLAIM"),
        ({"REEFLAB_OIDC_ENTITLEMENT_NAMESPACE": "egi.eu:group"}, "give a URN prefix"),
    ],
)
def test_oidc_settings_that_would_unpin_identities_are_refused(monkeypatch, tmp_path, env, message):
    with pytest.raises(ValueError, match=message):
        load(monkeypatch, tmp_path, **OIDC, **env)


def test_a_real_oscar_cluster_gets_the_users_own_oidc_token(monkeypatch, tmp_path):
    from types import SimpleNamespace

    c = load(monkeypatch, tmp_path, REEFLAB_MODE="kubernetes", REEFLAB_OSCAR_ENDPOINT="https://oscar.example.org")
    assert c.Spawner.environment["REEFLAB_SERVERLESS_URL"] == "https://oscar.example.org"
    spawner = SimpleNamespace(environment={"A": "1"})
    c.Spawner.auth_state_hook(spawner, {"access_token": "eyJ.ana", "oauth_user": {}})
    assert spawner.environment == {"A": "1", "REEFLAB_SERVERLESS_TOKEN": "eyJ.ana"}
    c.Spawner.auth_state_hook(spawner := SimpleNamespace(environment={}), None)  # local login: no token
    assert spawner.environment == {}


@pytest.mark.parametrize(
    "env, message",
    [
        ({"REEFLAB_MODE": "docker"}, "use 'local' or 'kubernetes'"),
        ({"REEFLAB_AUTH": "ldap"}, "use 'local' or 'oidc'"),
        (
            {"REEFLAB_AUTH": "oidc", "REEFLAB_OIDC_AUTHORIZE_URL": "x", "REEFLAB_OIDC_TOKEN_URL": "y"},
            "REEFLAB_OIDC_ALLOWED_VOS",
        ),
        (
            {
                "REEFLAB_AUTH": "oidc",
                "REEFLAB_OIDC_AUTHORIZE_URL": "x",
                "REEFLAB_OIDC_TOKEN_URL": "y",
                "REEFLAB_OIDC_ALLOWED_VOS": "v",
            },
            "JUPYTERHUB_CRYPT_KEY",
        ),
    ],
)
def test_bad_switches_say_what_to_set(monkeypatch, tmp_path, env, message):
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    with pytest.raises(Exception, match=message):
        load(monkeypatch, tmp_path, **env)


def test_as_root_the_platform_state_is_closed_and_homes_only_passed_through(monkeypatch, tmp_path):
    from reeflab import accounts

    monkeypatch.setattr(accounts, "isolation_available", lambda: True)
    (tmp_path / "jupyterhub.sqlite").write_text("")
    (tmp_path / "jupyterhub.sqlite").chmod(0o644)  # left readable by an earlier run
    umask = os.umask(0o022)
    try:
        load(monkeypatch, tmp_path)
        assert os.umask(0o022) == 0o077, "the hub and its services create private files"
    finally:
        os.umask(umask)
    assert (tmp_path / "jupyterhub.sqlite").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "homes").stat().st_mode & 0o777 == 0o711
    assert tmp_path.stat().st_mode & 0o777 == 0o711, "users pass through to their homes, never list"
    assert all(e.stat().st_mode & 0o077 == 0 for e in tmp_path.iterdir() if e.name != "homes")


def test_without_root_one_user_only_unless_shared_mode_is_accepted(monkeypatch, tmp_path):
    from reeflab import accounts

    monkeypatch.setattr(accounts, "isolation_available", lambda: False)
    c = load(monkeypatch, tmp_path, REEFLAB_USERS="ana,bob", REEFLAB_OPEN_SIGNUP="true")
    assert c.Authenticator.allowed_users == {"admin"} and c.Authenticator.admin_users == {"admin"}
    assert c.FirstUseAuthenticator.create_users is False and c.Authenticator.allow_existing_users is False
    assert "only admin may log in" in c.JupyterHub.template_vars["announcement"]
    assert c.ReefLabLocalSpawner.isolate_users is False

    c = load(monkeypatch, tmp_path, REEFLAB_USERS="ana,bob", REEFLAB_SHARED_ACCOUNT="true")
    assert c.Authenticator.allowed_users == {"ana", "bob"}
    assert "can read each other's files" in c.JupyterHub.template_vars["announcement"]

    with pytest.raises(ValueError, match="REEFLAB_SHARED_ACCOUNT"):
        load(
            monkeypatch,
            tmp_path,
            REEFLAB_AUTH="oidc",
            REEFLAB_OIDC_ALLOWED_VOS="vo",
            REEFLAB_OIDC_CLIENT_ID="x",
            JUPYTERHUB_CRYPT_KEY="0" * 64,
            REEFLAB_OIDC_AUTHORIZE_URL="http://a",
            REEFLAB_OIDC_TOKEN_URL="http://b",
            REEFLAB_OIDC_USERDATA_URL="http://c",
        )


@pytest.mark.parametrize("timeout, interval", [("3600", 300), ("60", 20), ("600", 200)])
def test_servers_and_their_jobs_report_activity_well_within_the_cull_timeout(monkeypatch, tmp_path, timeout, interval):
    from reeflab.runs.activity import HubActivity

    c = load(monkeypatch, tmp_path, REEFLAB_CULL_TIMEOUT=timeout)
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert f"--timeout={timeout}" in culler["command"]
    # user servers (jupyterhub-singleuser) and their jobs and pipelines report at this interval,
    # the hub reads the proxy's activity as often: at least twice before a busy server could count as idle
    assert c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == str(interval)
    assert c.JupyterHub.last_activity_interval == interval and 3 * interval <= int(timeout)
    monkeypatch.setenv("JUPYTERHUB_ACTIVITY_INTERVAL", c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"])
    assert HubActivity().interval == interval


def test_no_culler_no_activity_setting(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, REEFLAB_CULL_TIMEOUT="0")
    assert "idle-culler" not in [s["name"] for s in c.JupyterHub.services]
    assert "JUPYTERHUB_ACTIVITY_INTERVAL" not in c.Spawner.environment
