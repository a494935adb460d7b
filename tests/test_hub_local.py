"""Local mode end to end: a real JupyterHub, real sign-up and login, real user servers."""

from __future__ import annotations

import stat

import pytest
import requests
from reeflab.testing.hub import HubProcess, form_post

PASSWORD = "c0ral-Reef-42"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubProcess(tmp_path_factory.mktemp("hub"), env={"REEFLAB_ADMINS": "admin"}) as hub:
        yield hub
        for user in ("alice", "bob"):
            hub.api("DELETE", f"users/{user}/server")


def login(hub: HubProcess, name: str, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    form_post(session, hub.url + "hub/login", {"username": name, "password": password})
    return session


def logged_in_as(hub: HubProcess, session: requests.Session) -> str | None:
    me = session.get(hub.url + "hub/api/user", timeout=30)
    return me.json()["name"] if me.ok else None


def test_only_users_an_admin_added_can_log_in_and_first_login_sets_the_password(hub):
    page = requests.get(hub.url + "hub/login", timeout=30).text
    assert "The password you type now becomes its password" in page  # the login page says so itself
    assert logged_in_as(hub, login(hub, "admin")) == "admin"
    # a name nobody added is refused and not created
    assert logged_in_as(hub, login(hub, "mallory")) is None
    assert hub.api("GET", "users/mallory").status_code == 404

    admin = login(hub, "admin")
    xsrf = admin.cookies.get("_xsrf")
    added = admin.post(
        hub.url + "hub/api/users",
        json={"usernames": ["alice", "bob"]},
        headers={"X-XSRFToken": xsrf},
        timeout=30,
    )
    assert added.status_code == 201, added.text

    assert logged_in_as(hub, login(hub, "alice")) == "alice"
    assert logged_in_as(hub, login(hub, "alice", "not-her-password")) is None
    assert logged_in_as(hub, login(hub, "admin", "a-guess-at-it")) is None
    assert logged_in_as(hub, login(hub, "bob")) == "bob"


def test_the_services_menu_opens_mlflow_through_the_users_own_server(hub):
    home = login(hub, "admin").get(hub.url + "hub/home", timeout=30).text
    menu = home[home.index(">Services</a>") :]
    assert 'href="/hub/user-redirect/reeflab/mlflow/"' in menu and "MLflow" in menu, menu[:1500]
    assert "/services/reeflab-serverless/" in menu


def test_user_server_serves_reeflab_api_only_to_its_owner(hub):
    alice_url = hub.spawn("alice")
    alice_token = hub.user_token("alice")
    bob_token = hub.user_token("bob")
    info_url = alice_url + "reeflab/api/info"

    ok = requests.get(info_url, headers={"Authorization": f"token {alice_token}"}, timeout=30)
    assert ok.status_code == 200, ok.text
    info = ok.json()
    assert info["user"] == "alice"
    assert info["version"]
    assert info["hub"]

    anonymous = requests.get(info_url, timeout=30, allow_redirects=False)
    assert anonymous.status_code in (401, 403), anonymous.status_code

    other = requests.get(info_url, headers={"Authorization": f"token {bob_token}"}, timeout=30)
    assert other.status_code in (401, 403), other.status_code

    profiles = requests.get(
        alice_url + "reeflab/api/profiles", headers={"Authorization": f"token {alice_token}"}, timeout=30
    ).json()
    # alice is in no group: only the profiles open to everyone
    assert [p["slug"] for p in profiles["profiles"]] == ["cpu-small"]


def test_user_servers_reach_the_platforms_catalogue_as_their_user(hub):
    """Publishing goes through the catalogue service, which knows each caller by their hub token."""
    alice_url = hub.url.rstrip("/") + hub.api("GET", "users/alice").json()["servers"][""]["url"]  # started above
    alice_token = hub.user_token("alice")
    published = requests.get(
        alice_url + "reeflab/api/catalog/published", headers={"Authorization": f"token {alice_token}"}, timeout=30
    )
    assert published.status_code == 200 and published.json() == {"modules": []}, published.text
    catalogue = f"http://127.0.0.1:{hub.env['REEFLAB_CATALOGUE_PORT']}/index.json"
    assert requests.get(catalogue, headers={"Authorization": f"token {alice_token}"}, timeout=30).ok
    assert requests.get(catalogue, timeout=30).status_code == 401
    assert requests.get(catalogue, headers={"Authorization": "token not-a-hub-token"}, timeout=30).status_code == 401


def test_each_user_gets_own_private_home_and_jupyterlab(hub):
    hub.spawn("bob")
    token = hub.user_token("bob")
    bob = hub.api("GET", "users/bob").json()
    lab = requests.get(
        hub.url.rstrip("/") + bob["servers"][""]["url"] + "lab",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert lab.ok and "JupyterLab" in lab.text

    home = hub.homes / "bob"
    assert home.is_dir()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    # the file browser of bob's server is rooted at his home: alice's files are not there
    contents = requests.get(
        hub.url.rstrip("/") + bob["servers"][""]["url"] + "api/contents/",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    ).json()
    (home / "bob-notes.txt").write_text("hello")
    listing = requests.get(
        hub.url.rstrip("/") + bob["servers"][""]["url"] + "api/contents/",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    ).json()
    names = {item["name"] for item in listing["content"]}
    assert "bob-notes.txt" in names and contents["path"] == ""


def test_a_new_home_holds_the_examples_and_runs_the_shipped_pipeline(hub):
    if not hub.api("GET", "users/bob").json()["servers"]:
        hub.spawn("bob")
    home = hub.homes / "bob"
    pipeline = home / "notebooks" / "detect_classify.pipeline"
    assert pipeline.is_file() and (home / "notebooks" / "pipelines" / "detect.ipynb").is_file()
    assert pipeline.stat().st_uid == home.stat().st_uid  # bob's own copies, in his private home
    # "Run pipeline notebooks/detect_classify.pipeline" from the panel, as a brand-new user
    token = hub.user_token("bob")
    api = hub.url.rstrip("/") + hub.api("GET", "users/bob").json()["servers"][""]["url"] + "reeflab/api/"
    headers = {"Authorization": f"token {token}"}
    run = requests.post(api + "pipelines", json={"pipeline": "notebooks/detect_classify.pipeline"}, headers=headers)
    assert run.status_code == 201, run.text
    assert [n["id"] for n in run.json()["nodes"]] == ["detect", "crop", "classify", "report"]
    requests.post(api + f"pipelines/{run.json()['id']}/cancel", headers=headers, timeout=60)
    # Refresh: the examples he deleted come back, his edits stay
    (home / "notebooks" / "pipelines" / "crop.ipynb").unlink()
    report = requests.post(api + "examples", headers=headers, timeout=60).json()
    assert report["added"] == ["pipelines/crop.ipynb"] and report["kept"] == []


def test_the_reeflab_lab_extension_is_installed_in_user_servers(hub):
    token = hub.user_token("alice")
    alice = hub.api("GET", "users/alice").json()
    base = hub.url.rstrip("/") + alice["servers"][""]["url"]
    ext = requests.get(base + "lab/api/extensions", headers={"Authorization": f"token {token}"}, timeout=30)
    assert ext.ok
    assert any(e["name"] == "reeflab" and e["enabled"] for e in ext.json())
