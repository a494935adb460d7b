"""Red team, the surfaces of the last stops: ria's own Label Studio and the admins' usage service, tried by sol.

A real hub as root (as `make up` runs it on a lab server): ria and sol each have a running server, ria has an
annotation project (her real Label Studio, as her OS account, on a 127.0.0.1 port); tad is a hub admin. Sol
works from his own kernel, as he would from a notebook: he connects straight to ria's Label Studio port, reads
her files and processes, and calls the usage service with every token he can get. Each crossing must fail; the
same calls with the rightful credentials succeed (so each test fails when the protection is gone).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import psutil
import pytest
import requests
from reeflab import accounts
from reeflab.annotation.labelstudio import LabelStudioAPI
from reeflab.client import Connection, annotation
from reeflab.modules.fish_detector.synth import generate_samples
from reeflab.testing.hub import HubProcess, form_post, run_in_kernel

pytestmark = pytest.mark.skipif(
    not accounts.isolation_available(), reason="per-user OS accounts need root (CI and `make up` run as root)"
)

OWNER, INTRUDER, ADMIN = "ria", "sol", "tad"  # names of their own: hubs retire an account of a name they create
ANNOTATION = Path(".local/share/jupyter/reeflab/annotation")  # the user's Label Studio folder in her home


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubProcess(tmp_path_factory.mktemp("hub"), env={"REEFLAB_ADMINS": ADMIN}) as hub:
        for name in (OWNER, INTRUDER):
            hub.api("POST", f"users/{name}").raise_for_status()
        yield hub
        for name in (OWNER, INTRUDER):
            hub.api("DELETE", f"users/{name}/server")


@pytest.fixture(scope="module")
def hub_users():
    return (OWNER, INTRUDER)


def in_kernel(servers, user: str, code: str) -> dict:
    """Run `code` in `user`'s kernel; the JSON it printed last."""
    printed = run_in_kernel(*servers[user], code, timeout=120)
    return json.loads(printed.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def labelstudio(hub, servers, tmp_path_factory):
    """Ria's project over one generated scene in her folder 'private'; her running Label Studio's address,
    pid, credentials and the scene's bytes."""
    ria = Connection(*servers[OWNER])
    local = tmp_path_factory.mktemp("scene")
    name = next(iter(json.loads(generate_samples(local, n=1, seed=5).read_text())["images"]))
    for path, body in (
        ("private", {"type": "directory"}),
        (
            f"private/{name}",
            {"type": "file", "format": "base64", "content": base64.b64encode((local / name).read_bytes()).decode()},
        ),
    ):
        ria.session.put(ria.url + "api/contents/" + path, json=body, timeout=30).raise_for_status()
    project = annotation.create("Ria's survey", "private", labels=["fish"], connection=ria)
    folder = hub.homes / OWNER / ANNOTATION
    running = json.loads((folder / "server.json").read_text())
    yield {
        "url": running["url"],
        "pid": running["pid"],
        "folder": folder,
        "credentials": json.loads((folder / "credentials.json").read_text()),
        "project": project.id,
        "image": f"private/{name}",
        "bytes": (local / name).read_bytes(),
    }
    project.delete()


LABELSTUDIO_PROBE = r"""
import json, os, re, requests
t = json.loads({targets!r})
url, results = t["url"], {{}}
def attempt(name, action):
    try:
        results[name] = action()
    except Exception as err:
        results[name] = type(err).__name__
def get(path, **kw):
    r = requests.get(url + path, allow_redirects=False, timeout=30, **kw)
    return [r.status_code, r.headers.get("Content-Type", ""), r.content[:64].hex()]
for name, path in t["read"].items():
    attempt("read " + name, lambda path=path: "CROSSED: " + open(path, "rb").read(64).hex())
attempt("ps: Label Studio's command line", lambda: open("/proc/%d/cmdline" % t["pid"]).read().replace("\0", " "))
attempt("list its folder", lambda: "CROSSED: %s" % os.listdir(t["folder"]))
attempt("image, no login", lambda: get("/data/local-files/", params={{"d": t["image"]}}))
attempt("projects, no login", lambda: get("/api/projects"))
attempt("projects, forged token", lambda: get("/api/projects", headers={{"Authorization": "Token " + "0" * 40}}))
attempt("tasks, no login", lambda: get("/api/tasks", params={{"project": t["project"]}}))
def form(page, email, password):
    s = requests.Session()
    s.get(url + page, timeout=30)
    data = {{"email": email, "password": password, "csrfmiddlewaretoken": s.cookies.get("csrftoken", "")}}
    r = s.post(url + page, data=data, headers={{"Referer": url + page}}, allow_redirects=False, timeout=30)
    return s, r.status_code
attempt("sign up", lambda: form("/user/signup/", "sol@evil.example", "sol-password-1")[1])
def login(email, password):
    s, status = form("/user/login/", email, password)
    return [status, s.get(url + "/api/projects", timeout=30).status_code]
attempt("log in as the new account", lambda: login("sol@evil.example", "sol-password-1"))
attempt("log in as ria, guessed password", lambda: login(t["username"], "password"))
print(json.dumps(results))
"""


def test_sol_reaches_neither_ria_label_studio_nor_its_secrets_from_his_kernel(hub, servers, labelstudio):
    ls = labelstudio
    secrets_ = ls["credentials"]
    data = ls["folder"] / "data"
    targets = {
        "url": ls["url"],
        "pid": ls["pid"],
        "folder": str(ls["folder"]),
        "project": ls["project"],
        "image": ls["image"],
        "username": secrets_["username"],
        "read": {
            "credentials": str(ls["folder"] / "credentials.json"),
            "its address file": str(ls["folder"] / "server.json"),
            "its database": str(data / "label_studio.sqlite3"),
            "the image itself": str(hub.homes / OWNER / ls["image"]),
            "its environment": f"/proc/{ls['pid']}/environ",
        },
    }
    results = in_kernel(servers, INTRUDER, LABELSTUDIO_PROBE.format(targets=json.dumps(targets)))

    for name in targets["read"]:
        assert results["read " + name] == "PermissionError", (name, results["read " + name])
    assert results["list its folder"] == "PermissionError"
    # `ps` shows every account's command lines: neither the password nor the token may be in Label Studio's
    command_line = results["ps: Label Studio's command line"]
    assert "label-studio" in command_line, command_line  # sol did read it: the check is real
    assert secrets_["password"] not in command_line and secrets_["token"] not in command_line, command_line

    # the port answers anyone on the machine: nothing without ria's login
    image_hex = ls["bytes"][:64].hex()
    for name in ("image, no login", "projects, no login", "projects, forged token", "tasks, no login"):
        status, _, head = results[name]
        assert status in (401, 403) or status == 302 and name.startswith("image"), (name, status)
        assert head != image_hex
    assert results["sign up"] == 403, results["sign up"]
    for name in ("log in as the new account", "log in as ria, guessed password"):
        status, projects = results[name]  # a login Label Studio takes answers 302 to its projects
        assert status != 302 and projects in (401, 403), (name, results[name])

    # what sol was refused, ria's own credentials get: the port, the image and the API are real
    api = requests.Session()
    api.headers["Authorization"] = f"Token {secrets_['token']}"
    assert api.get(ls["url"] + "/api/projects", timeout=30).status_code == 200
    image = api.get(ls["url"] + "/data/local-files/", params={"d": ls["image"]}, timeout=30)
    assert image.status_code == 200 and image.content == ls["bytes"]
    LabelStudioAPI(ls["url"], secrets_["token"]).login(secrets_["username"], secrets_["password"])  # 302, or raises
    # and the instance still has ria's account alone: sol's sign-up made none
    users = api.get(ls["url"] + "/api/users", timeout=30).json()
    assert [user["email"] for user in users] == [secrets_["username"]], users
    assert psutil.Process(ls["pid"]).username() == accounts.account_name(OWNER)


def test_sol_is_refused_on_ria_label_studio_route_with_every_token_he_holds(servers, labelstudio):
    ria_url, ria_token = servers[OWNER]
    ui = ria_url + "reeflab/annotation/ui/"
    server_token = in_kernel(
        servers, INTRUDER, "import json, os; print(json.dumps(os.environ['JUPYTERHUB_API_TOKEN']))"
    )
    paths = [
        (f"projects/{labelstudio['project']}/data", {}),
        ("api/projects", {}),
        ("api/tasks", {"project": labelstudio["project"]}),
        ("data/local-files/", {"d": labelstudio["image"]}),
    ]
    for token in (servers[INTRUDER][1], server_token):
        for path, params in paths:
            answer = requests.get(
                ui + path, params=params, headers={"Authorization": f"token {token}"}, allow_redirects=False, timeout=60
            )
            assert answer.status_code in (403, 404), (path, answer.status_code)
            assert labelstudio["bytes"][:64] not in answer.content and "Ria's survey" not in answer.text
    # ria's own token on the same route: her image
    mine = requests.get(
        ui + "data/local-files/",
        params={"d": labelstudio["image"]},
        headers={"Authorization": f"token {ria_token}"},
        timeout=60,
    )
    assert mine.status_code == 200 and mine.content == labelstudio["bytes"]


def test_sol_logged_in_to_the_hub_is_refused_ria_label_studio_pages(hub, servers, labelstudio):
    """His browser: the hub's login cookie (first login sets his password), which opens his own server."""
    browser = requests.Session()
    form_post(browser, hub.url + "hub/login", {"username": INTRUDER, "password": "sol-hub-password"})
    own = browser.get(servers[INTRUDER][0] + "lab", timeout=60)
    assert own.status_code == 200 and "JupyterLab" in own.text, own.text[:300]  # the cookie is his, and it works
    ui = servers[OWNER][0] + "reeflab/annotation/ui/"
    for path, params in (
        (f"projects/{labelstudio['project']}/data", {}),
        ("data/local-files/", {"d": labelstudio["image"]}),
    ):
        answer = browser.get(ui + path, params=params, timeout=60)  # the hub's OAuth redirects followed
        # refused by the hub itself (its OAuth: sol may not access ria's server), before her server is reached
        assert answer.status_code == 403 and "/hub/" in answer.url, (path, answer.status_code, answer.url)
        assert labelstudio["bytes"][:64] not in answer.content and "Ria's survey" not in answer.text


# -- the usage service -----------------------------------------------------------------------------------------


def usage_process(hub: HubProcess) -> psutil.Process:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "reeflab.usage" in cmdline and f"--state-dir={hub.state / 'usage'}" in cmdline:
            return proc
    raise AssertionError("the usage service is not running")


USAGE_PROBE = r"""
import json, os, requests
t = json.loads({targets!r})
tokens = {{"none": None, "forged": "f" * 32, "sol's own": t["token"]}}
tokens["his server's"] = os.environ["JUPYTERHUB_API_TOKEN"]
results = {{}}
for where, base in t["bases"].items():
    for what, token in tokens.items():
        for route in ("usage", "status"):
            headers = {{"Authorization": "token " + token}} if token else {{}}
            r = requests.get(base + route, headers=headers, timeout=30)
            results[f"{{where}} {{route}} {{what}}"] = [r.status_code, r.text[:200]]
print(json.dumps(results))
"""


def test_the_usage_service_answers_admins_only_and_listens_on_loopback(hub, servers):
    process = usage_process(hub)
    connections = getattr(process, "net_connections", None) or process.connections  # psutil < 6: connections()
    listening = [c for c in connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening
    direct = f"http://127.0.0.1:{hub.env['REEFLAB_USAGE_PORT']}/services/reeflab-usage/"
    bases = {"through the hub": f"{hub.url}services/reeflab-usage/", "straight to its port": direct}
    targets = {"bases": bases, "token": servers[INTRUDER][1]}
    results = in_kernel(servers, INTRUDER, USAGE_PROBE.format(targets=json.dumps(targets)))

    assert len(results) == 16
    for attempt, (status, said) in results.items():
        assert status in (401, 403), (attempt, status, said)
        assert OWNER not in said and "cpu_hours" not in said, (attempt, said)
    for where in bases:  # a known user who is no admin hears why, whichever way he came
        assert (
            results[f"{where} usage sol's own"][0] == 403
            and "Only hub admins" in results[f"{where} usage sol's own"][1]
        )
    # the admin's token, both ways: the service answers (the refusals above are its checks, not a dead route)
    admin = {"Authorization": f"token {hub.user_token(ADMIN)}"}
    for base in bases.values():
        status = requests.get(base + "status", headers=admin, timeout=30)
        assert status.status_code == 200 and OWNER in {u["user"] for u in status.json()["users"]}, status.text[:300]
