"""OSCAR exposed services on the local engine: a real long-running HTTP server per service, reached through the engine.

One real engine for the module; alice's services run a tiny WSGI app (or `python -m http.server`) from their
script, in their sandbox with a network namespace of their own. Requests go through the engine's
/system/services/<name>/exposed/ route; no other OS user reaches the port or the socket behind it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from reeflab import accounts
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.testing.process import wait_until

ECHO_APP = r"""#!/bin/sh
echo "echo app starting on port $PORT"
exec python - <<'PY'
import json, os
from wsgiref.simple_server import make_server
def app(environ, start):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    seen = {
        "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "query": environ["QUERY_STRING"],
        "body": environ["wsgi.input"].read(size).decode() if size else "",
        "headers": {k[5:]: v for k, v in environ.items() if k.startswith("HTTP_")},
        "uid": os.getuid(), "base": os.environ.get("OSCAR_SERVICE_BASE_PATH"),
        "name": os.environ.get("OSCAR_SERVICE_NAME"), "token": os.environ.get("OSCAR_SERVICE_TOKEN"),
    }
    cookies = [("Set-Cookie", "first=1"), ("Set-Cookie", "second=2")]
    start("201 Created", [("Content-Type", "application/json"), ("X-App", "echo"), *cookies])
    return [json.dumps(seen).encode()]
make_server("127.0.0.1", int(os.environ["PORT"]), app).serve_forever()
PY
"""
BRIDGE = "reeflab.oscar_engine.bridge"


def exposed(name: str, port: int, script: str = ECHO_APP, variables: dict | None = None, **expose) -> dict:
    return {
        "name": name,
        "image": "ghcr.io/example/echo",
        "cpu": "0.5",
        "memory": "256Mi",
        "script": script,
        "environment": {"variables": {"PORT": str(port), **(variables or {})}},
        "expose": {"api_port": port, **expose},
    }


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("exposed") / "state"
    # OSCAR's own rule here (services without set_auth answer anyone): the operator's opt-in
    args = ["--ServerlessApp.max_workers=2", "--ServerlessApp.public_exposed=True"]
    with EngineProcess(state, users=["alice", "bob"], args=args) as engine:
        yield engine


def test_by_default_every_exposed_service_needs_a_login(tmp_path):
    with EngineProcess(tmp_path / "state", users=["alice", "bob"]) as engine:
        assert engine.request("POST", "/system/services", "alice", json=exposed("open", 8767)).status_code == 201
        deployment(engine, "open")
        anonymous = engine.request("GET", "/system/services/open/exposed/")
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
        assert engine.request("GET", "/system/services/open/exposed/", "bob").status_code == 401
        assert engine.request("GET", "/system/services/open/exposed/", "alice").status_code == 201
        engine.request("DELETE", "/system/services/open", "alice")


def deployment(engine: EngineProcess, name: str, state: str = "ready") -> dict:
    def reached():
        status = engine.request("GET", f"/system/services/{name}/deployment", "alice").json()
        return status if status["state"] == state else None

    return wait_until(reached, 60, f"{name} to be {state}")


def bridge_of(engine: EngineProcess, name: str) -> psutil.Process:
    """The bridge process of a service (inside its sandbox, below the engine)."""
    for process in psutil.Process(engine.proc.pid).children(recursive=True):
        try:
            line, sandbox = process.cmdline(), " ".join(process.parent().cmdline())
        except psutil.Error:
            continue
        if line[1:3] == ["-m", BRIDGE] and f"/{name}-" in sandbox:
            return process
    raise AssertionError(f"no bridge process for {name}")


def listening_socket(bridge: psutil.Process) -> str:
    """The Unix socket the bridge accepts on (it inherited it from the engine)."""
    connections = getattr(bridge, "net_connections", None) or bridge.connections
    paths = {c.laddr for c in connections(kind="unix") if c.laddr}
    assert len(paths) == 1, paths
    return paths.pop()


def as_account(uid: int, gid: int, code: str) -> str:
    """What `code` prints when run by another OS account (a fresh Python, no privileges)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, user=uid, group=gid, extra_groups=[]
    )
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def echo(engine):
    assert engine.request("POST", "/system/services", "alice", json=exposed("echo", 8765)).status_code == 201
    deployment(engine, "echo")
    yield "echo"
    engine.request("DELETE", "/system/services/echo", "alice")


def test_requests_reach_the_service_with_their_method_body_and_headers(engine, echo):
    answer = engine.request(
        "POST", "/system/services/echo/exposed/reefs/red%20sea?depth=12", data=b"grouper", headers={"X-Diver": "ana"}
    )
    assert answer.status_code == 201 and answer.headers["X-App"] == "echo"
    assert answer.raw.headers.getlist("Set-Cookie") == ["first=1", "second=2"]
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "POST",
        "/reefs/red sea",
        "depth=12",
        "grouper",
    )
    assert (
        seen["headers"]["X_DIVER"] == "ana" and seen["headers"]["X_FORWARDED_PREFIX"] == "/system/services/echo/exposed"
    )
    assert (seen["base"], seen["name"]) == ("/system/services/echo/exposed", "echo")
    assert seen["token"] == engine.request("GET", "/system/services/echo", "alice").json()["token"]
    if os.geteuid() == 0:  # it runs as its owner's OS account, in a cgroup of the service's
        assert seen["uid"] == accounts.lookup("alice").uid
        cgroups = Path(f"/proc/{bridge_of(engine, 'echo').pid}/cgroup").read_text()
        assert "serverless-echo-" in cgroups, cgroups

    for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS"):
        answer = engine.request(method, "/system/services/echo/exposed/x", data=b"b" if method != "GET" else None)
        assert answer.status_code == 201 and answer.json()["method"] == method, method
    head = engine.request("HEAD", "/system/services/echo/exposed/")
    assert head.status_code == 201 and head.content == b"" and head.headers["X-App"] == "echo"
    assert engine.request("GET", "/system/services/echo/exposed").json()["path"] == "/"
    raw = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)  # sent as written (requests unescapes)
    raw.request("GET", "/system/services/ech%6F/exposed/")
    assert raw.getresponse().status == 404
    raw.close()

    # no set_auth, public_exposed: anyone may call it (as in OSCAR);
    # the engine's credentials and the hub's cookies stay behind
    cookies = {"Cookie": "jupyterhub-session-id=s; theme=dark"}
    mine = engine.request("GET", "/system/services/echo/exposed/", "alice", headers=cookies)
    assert "AUTHORIZATION" not in mine.json()["headers"] and mine.json()["headers"]["COOKIE"] == "theme=dark"
    own = engine.request("GET", "/system/services/echo/exposed/", headers={"Authorization": "Bearer the-apps-own"})
    assert own.json()["headers"]["AUTHORIZATION"] == "Bearer the-apps-own"

    status = deployment(engine, "echo")
    assert status["resource_kind"] == "exposed_service" and status["active_instances"] == 1
    logs = engine.request("GET", "/system/services/echo/deployment/logs", "alice").json()["entries"]
    assert any("echo app starting on port 8765" in entry["message"] for entry in logs)
    assert engine.request("GET", "/system/services/echo/deployment/logs", "bob").status_code == 404


def test_no_other_user_reaches_its_port_or_socket(engine, echo):
    bridge = bridge_of(engine, "echo")
    path = listening_socket(bridge)
    folder = os.stat(Path(path).parent)
    assert folder.st_mode & 0o777 == 0o700 and folder.st_uid == os.geteuid()
    # its port is in the sandbox's own network namespace: nothing listens on the machine's 127.0.0.1:8765
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", 8765), timeout=5):
        pass
    if os.geteuid() != 0:
        return
    probe = f"""
import socket
for family, where in ((socket.AF_INET, ("127.0.0.1", 8765)), (socket.AF_UNIX, {path!r})):
    try:
        socket.socket(family).connect(where)
        print("connected", where)
    except OSError as error:
        print(type(error).__name__, where)
"""
    bob = engine.request("POST", "/system/services", "bob", json={"name": "bobs", "script": "echo hi"})
    assert bob.status_code == 201
    engine.request("POST", "/run/bobs", "bob", data=b"aGk=")  # bob's OS account exists once his code ran
    bobs = accounts.lookup("bob")
    for uid, gid in ((bobs.uid, bobs.gid), (65534, 65534)):  # bob's account, and nobody
        said = as_account(uid, gid, probe)
        assert "ConnectionRefusedError ('127.0.0.1', 8765)" in said and f"PermissionError {path}" in said, said
        assert "connected" not in said
    engine.request("DELETE", "/system/services/bobs", "bob")


def test_set_auth_asks_for_the_services_credentials_and_rewrite_target_keeps_the_path(engine):
    service = exposed("guarded", 8766, set_auth=True, rewrite_target=True)
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    try:
        deployment(engine, "guarded")
        token = engine.request("GET", "/system/services/guarded", "alice").json()["token"]
        url = "/system/services/guarded/exposed/api/v1?q=1"
        anonymous = engine.request("GET", url)
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
        assert "guarded" in anonymous.text
        assert engine.request("GET", url, auth=("guarded", "wrong")).status_code == 401
        assert engine.request("GET", url, auth=("echo", token)).status_code == 401
        assert engine.request("GET", url, "bob").status_code == 401  # a user who may not use it
        for allowed in (
            {"auth": ("guarded", token)},
            {"headers": {"Authorization": f"Bearer {token}"}},
            {"user": "alice"},
        ):
            answer = engine.request("GET", url, **allowed)
            assert answer.status_code == 201, (allowed, answer.text)
            seen = answer.json()
            assert seen["path"] == "/system/services/guarded/exposed/api/v1" and seen["query"] == "q=1"
            assert "AUTHORIZATION" not in seen["headers"] and "X_FORWARDED_PREFIX" not in seen["headers"]
    finally:
        engine.request("DELETE", "/system/services/guarded", "alice")


def test_stop_start_restart_update_and_delete(engine):
    assert engine.request("POST", "/system/services", "alice", json=exposed("cycle", 8767)).status_code == 201
    deployment(engine, "cycle")
    first = bridge_of(engine, "cycle")
    path = listening_socket(first)

    for who, status in (("bob", 404),):
        assert engine.request("POST", "/system/services/cycle/stop", who).status_code == status
    stopped = engine.request("POST", "/system/services/cycle/stop", "alice").json()
    assert stopped["state"] == "stopped"
    wait_until(lambda: not first.is_running(), 30, "the stopped service's process to end")
    refused = engine.request("GET", "/system/services/cycle/exposed/")
    assert refused.status_code == 503 and "/system/services/cycle/start" in refused.text

    assert engine.request("POST", "/system/services/cycle/start", "alice").status_code == 200
    deployment(engine, "cycle")
    second = bridge_of(engine, "cycle")
    assert second.pid != first.pid and engine.request("GET", "/system/services/cycle/exposed/").status_code == 201

    assert engine.request("POST", "/system/services/cycle/restart", "alice").status_code == 200
    wait_until(lambda: not second.is_running(), 30, "the restarted service's old process to end")
    deployment(engine, "cycle")
    third = bridge_of(engine, "cycle")

    changed = exposed("cycle", 8767, variables={"GREETING": "hello"})
    assert engine.request("PUT", "/system/services/cycle", "alice", json=changed).status_code == 204
    wait_until(lambda: not third.is_running(), 30, "the changed service's old process to end")
    deployment(engine, "cycle")
    fourth = bridge_of(engine, "cycle")
    program = [p for p in fourth.children(recursive=True) if p.is_running()]

    assert engine.request("DELETE", "/system/services/cycle", "alice").status_code == 204
    wait_until(
        lambda: not any(p.is_running() for p in [fourth, *program]), 30, "the deleted service's processes to end"
    )
    assert not os.path.exists(path)
    assert engine.request("GET", "/system/services/cycle/exposed/").status_code == 404


def test_min_scale_0_starts_at_the_first_request_and_stops_when_idle(engine):
    service = exposed("ondemand", 8768, variables={"REEFLAB_IDLE_SECONDS": "2"}, min_scale=0)
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    try:
        status = engine.request("GET", "/system/services/ondemand/deployment", "alice").json()
        assert status["active_instances"] == 0 and "first request" in status["reason"]
        assert engine.request("GET", "/system/services/ondemand/exposed/").status_code == 201
        bridge = bridge_of(engine, "ondemand")
        wait_until(lambda: not bridge.is_running(), 30, "the idle service to stop")
        assert engine.request("GET", "/system/services/ondemand/exposed/again").json()["path"] == "/again"
    finally:
        engine.request("DELETE", "/system/services/ondemand", "alice")


def test_a_privileged_port_and_python_http_server(engine):
    """`python -m http.server 80`, as an image's web server would listen: still its owner's account outside."""
    script = "#!/bin/sh\necho index > index.html\nexec python -m http.server 80 --bind 127.0.0.1\n"
    assert (
        engine.request("POST", "/system/services", "alice", json=exposed("web", 80, script=script)).status_code == 201
    )
    try:
        deployment(engine, "web")
        answer = engine.request("GET", "/system/services/web/exposed/index.html")
        assert answer.status_code == 200 and answer.text == "index\n"
        server = [p for p in bridge_of(engine, "web").children(recursive=True) if "http.server" in p.cmdline()]
        if os.geteuid() == 0:
            assert server and server[0].uids().real == accounts.lookup("alice").uid
    finally:
        engine.request("DELETE", "/system/services/web", "alice")


def test_a_program_that_exits_is_reported_with_its_status(engine):
    script = "#!/bin/sh\necho 'cannot find my model' >&2\nexit 3\n"
    assert (
        engine.request("POST", "/system/services", "alice", json=exposed("crash", 8769, script=script)).status_code
        == 201
    )
    try:
        status = deployment(engine, "crash", "failed")
        assert "status 3" in status["reason"]
        logs = engine.request("GET", "/system/services/crash/deployment/logs", "alice").json()["entries"]
        assert any("cannot find my model" in entry["message"] for entry in logs)
        answer = engine.request("GET", "/system/services/crash/exposed/")
        assert answer.status_code == 503 and "status 3" in answer.text
    finally:
        engine.request("DELETE", "/system/services/crash", "alice")


@pytest.mark.parametrize(
    "expose, field",
    [
        ({"min_scale": 1}, "expose.api_port"),
        ({"api_port": 70000}, "expose.api_port"),
        ({"api_port": [5000, 5001]}, "expose.api_port"),
        ({"api_port": 5000, "min_scale": 3, "max_scale": 2}, "max_scale must be at least min_scale"),
        ({"api_port": 5000, "nodePort": 30080}, "expose.nodePort"),
        ({"api_port": 5000, "default_command": True}, "expose.default_command"),
        ({"api_port": 5000, "health_path": "health"}, "expose.health_path"),
        ({"api_port": 5000, "set_auth": "maybe"}, "expose.set_auth"),
        ("yes", "expose"),
    ],
)
def test_a_bad_expose_block_is_refused_with_the_field(engine, expose, field):
    service = {**exposed("bad", 5000), "expose": expose}
    answer = engine.request("POST", "/system/services", "alice", json=service)
    assert answer.status_code == 400 and field in answer.text, answer.text
    assert engine.request("GET", "/system/services/bad", "alice").status_code == 404


def test_oscars_unset_expose_is_no_exposed_service(engine):
    service = {**exposed("plain", 5000), "expose": {"api_port": [], "min_scale": 1, "max_scale": 10}}
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    try:
        assert engine.request("GET", "/system/services/plain/exposed/").status_code == 404
        assert engine.request("GET", "/system/services/plain", "alice").json()["expose"]["api_port"] == []
    finally:
        engine.request("DELETE", "/system/services/plain", "alice")


def test_it_dies_with_the_engine_and_starts_with_it(tmp_path):
    engine = EngineProcess(tmp_path / "state", users=["alice"])
    with engine:
        assert engine.request("POST", "/system/services", "alice", json=exposed("lasting", 8770)).status_code == 201
        deployment(engine, "lasting")
        before = bridge_of(engine, "lasting")
        program = before.children(recursive=True)
        engine.kill()  # SIGKILL: nothing of the engine's runs on
        wait_until(lambda: not any(p.is_running() for p in [before, *program]), 30, "its processes to end")
    with engine:
        deployment(engine, "lasting")
        assert engine.request("GET", "/system/services/lasting/exposed/back", "alice").json()["path"] == "/back"
        assert json.loads(engine.request("GET", "/system/services/lasting", "alice").text)["expose"]["api_port"] == 8770
