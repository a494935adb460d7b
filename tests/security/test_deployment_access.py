"""Red team: a deployment answers only through its authenticated route, `/reeflab/deployments/<id>/`.

Its DEEPaaS serves on a Unix socket (0600, in a 0700 folder) and on no TCP port, so neither
another user's process nor jupyter-server-proxy's generic `/proxy/<port>/` route (turned off
on user servers) can reach it; another user's token on the route is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import tempfile
from pathlib import Path

import psutil
import pytest
import requests
from reeflab import accounts
from reeflab.client import Connection, deploy
from reeflab.errors import Conflict
from reeflab.hub.config import REPO
from reeflab.processes import socket_path
from reeflab.testing.hub import run_in_kernel
from tornado.httpclient import HTTPClientError

MODULE = "image-classifier"  # the quickest built-in module to become ready


def _connections(process: psutil.Process, kind: str) -> list:
    method = getattr(process, "net_connections", None) or process.connections  # psutil < 6: connections()
    return method(kind=kind)


def listening_network(pid: int) -> list:
    """The network sockets the process or any of its children listens on: TCP in LISTEN, any bound UDP."""
    process = psutil.Process(pid)
    found = []
    for member in [process, *process.children(recursive=True)]:
        found += [
            c for c in _connections(member, "inet") if c.status == psutil.CONN_LISTEN or c.type == socket.SOCK_DGRAM
        ]
    return found


def unix_socket_paths(pid: int) -> set[str]:
    """Paths of the named Unix sockets the process has open (the one it listens on, and what it accepted)."""
    return {c.laddr for c in _connections(psutil.Process(pid), "unix") if c.laddr}


def assert_private_socket(path: Path, owner_uid: int) -> None:
    """A socket file of mode 0600 in a folder of mode 0700, both the deployment owner's."""
    found, folder = path.stat(), path.parent.stat()
    assert stat.S_ISSOCK(found.st_mode) and stat.S_IMODE(found.st_mode) == 0o600, oct(found.st_mode)
    assert stat.S_IMODE(folder.st_mode) == 0o700, oct(folder.st_mode)
    assert found.st_uid == folder.st_uid == owner_uid


async def echo_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A one-request HTTP server that answers with the names and values of the headers it got, as JSON."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")[1:]
    body = json.dumps(dict(line.split(": ", 1) for line in head if line)).encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n")
    writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


# -- one Jupyter server (pytest-jupyter), its deployment service and the real DEEPaaS process ----------------


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {
        **jp_server_config,
        "DeploymentService": {"root_dir": str(tmp_path / "deployments"), "poll_interval": 0.5},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture
def service(jp_serverapp, jp_asyncio_loop):
    """The server's deployment service; what a test leaves running is stopped."""
    deployments = jp_serverapp.web_app.settings["reeflab"].deployments
    yield deployments
    jp_asyncio_loop.run_until_complete(deployments.stop_all())


async def api(jp_fetch, method: str, *path: str, body: dict | None = None) -> dict:
    payload = json.dumps(body) if body is not None else ("" if method == "POST" else None)
    response = await jp_fetch("reeflab", "api", "deployments", *path, method=method, body=payload)
    return json.loads(response.body) if response.body else {}


async def ready(jp_fetch, deployment_id: str, timeout: float = 180) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while (found := await api(jp_fetch, "GET", deployment_id))["state"] not in ("ready", "failed"):
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.5)
    assert found["state"] == "ready", found["reason"]
    return found


async def test_a_deployment_answers_on_its_route_and_listens_on_no_tcp_port(jp_fetch, service):
    created = await api(jp_fetch, "POST", body={"module": MODULE})
    found = await ready(jp_fetch, created["id"])
    route = await jp_fetch("reeflab", "deployments", created["id"], "v2", "models/")
    assert route.code == 200 and json.loads(route.body)["models"][0]["id"] == MODULE

    runtime = service.get(found["owner"], created["id"]).runtime
    assert "port" not in runtime and "127.0.0.1" not in " ".join(psutil.Process(runtime["pid"]).cmdline())
    assert listening_network(runtime["pid"]) == [], "DEEPaaS or a worker of it listens on a network port"
    assert unix_socket_paths(runtime["pid"]) == {runtime["socket"]}
    assert_private_socket(Path(runtime["socket"]), os.getuid())
    assert Path(runtime["socket"]).parent == service.folder(service.get(found["owner"], created["id"]))

    # what the module receives through the route: never the user's Jupyter token or cookies
    echo = Path(runtime["socket"]).with_name("echo.sock")
    server = await asyncio.start_unix_server(echo_headers, str(echo))
    real, runtime["socket"] = runtime["socket"], str(echo)
    try:
        headers = {"Cookie": "_xsrf=abc; session=s3cret", "X-XSRFToken": "abc", "X-Custom": "kept"}
        echoed = await jp_fetch("reeflab", "deployments", created["id"], "v2/models/", headers=headers)
    finally:
        runtime["socket"] = real
        server.close()
    seen = {name.lower() for name in json.loads(echoed.body)}
    assert "x-custom" in seen and not seen & {"authorization", "cookie", "x-xsrftoken"}, seen

    await api(jp_fetch, "DELETE", created["id"])
    assert not Path(runtime["socket"]).exists()  # DEEPaaS removes its socket when it stops


async def test_a_deployment_started_on_a_tcp_port_by_an_older_version_must_be_restarted(jp_fetch, service):
    created = await api(jp_fetch, "POST", body={"module": MODULE})
    found = await ready(jp_fetch, created["id"])
    deployment = service.get(found["owner"], created["id"])
    socket_file = deployment.runtime.pop("socket")
    deployment.runtime["port"] = 5000  # as stored before deployments used sockets
    with pytest.raises(Conflict, match="restart it"):
        service.endpoint(found["owner"], created["id"])  # the route does not connect anywhere
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("reeflab", "deployments", created["id"], "v2", "models/")
    assert err.value.code == 409

    deadline = asyncio.get_running_loop().time() + 30  # the watcher's next round stops it and says why
    while (stopped := await api(jp_fetch, "GET", created["id"]))["state"] == "ready":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    assert stopped["state"] == "failed" and "older ReefLab" in stopped["reason"]
    await api(jp_fetch, "POST", created["id"], "restart")
    await ready(jp_fetch, created["id"])
    assert service.get(found["owner"], created["id"]).runtime["socket"] == socket_file


def test_a_folder_too_deep_for_a_socket_path_gets_a_private_one_of_this_account(tmp_path, monkeypatch):
    deep = tmp_path.joinpath(*["nested-folder"] * 8)
    assert socket_path(tmp_path, "d3adb33f") == tmp_path / "api.sock"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = socket_path(deep, "d3adb33f")
    assert path == tmp_path / "tmp" / f"reeflab-{os.getuid()}" / "d3adb33f.sock" and len(str(path)) < 108
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.parent.chmod(0o755)  # made (or squatted) so that others may enter: refused, never used
    with pytest.raises(RuntimeError, match="not a private folder"):
        socket_path(deep, "d3adb33f")


def test_user_servers_have_no_generic_proxy_route_in_their_configuration():
    shipped = json.loads((REPO / "server_extension/jupyter-config/jupyter_server_config.d/reeflab.json").read_text())
    assert shipped["ServerApp"]["jpserver_extensions"]["jupyter_server_proxy"] is False


# -- the real hub: ana deploys, bob tries ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_users():
    return ("ana", "bob")


@pytest.fixture(scope="module")
def anas_deployment(hub, servers):
    """Ana's ready deployment, and its runtime as her server stored it (socket, pid)."""
    url, token = servers["ana"]
    deployment = deploy(MODULE, connection=Connection(url, token))
    try:
        deployment.wait_ready(timeout=180, progress=False)
        homes = Path(hub.env.get("REEFLAB_HOMES") or hub.state / "homes")
        [stored] = homes.rglob(f"deployments/{deployment.id}/deployment.json")
        yield deployment, json.loads(stored.read_text())["runtime"]
    finally:
        deployment.delete()


def test_the_owners_token_reaches_it_and_the_socket_is_hers_alone(servers, anas_deployment):
    url, token = servers["ana"]
    deployment, runtime = anas_deployment
    route = requests.get(
        f"{url}reeflab/deployments/{deployment.id}/v2/models/", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert route.status_code == 200 and route.json()["models"][0]["id"] == MODULE
    assert listening_network(runtime["pid"]) == []
    deepaas = psutil.Process(runtime["pid"])
    assert_private_socket(Path(runtime["socket"]), deepaas.uids().real)
    if accounts.isolation_available():
        assert deepaas.username() == accounts.account_name("ana")


def test_another_users_token_is_refused_on_the_route(servers, anas_deployment):
    url, _ = servers["ana"]
    _, bob_token = servers["bob"]
    deployment, _ = anas_deployment
    for path in ("v2/models/", "api", "swagger.json"):
        route = requests.get(
            f"{url}reeflab/deployments/{deployment.id}/{path}",
            headers={"Authorization": f"token {bob_token}"},
            allow_redirects=False,
            timeout=30,
        )
        assert route.status_code in (403, 404), (path, route.status_code, route.text[:200])


def test_no_proxy_route_reaches_a_local_port(hub, servers):
    """`/proxy/<port>/` and its variants answer 404 on a user server, for ports where something real listens."""
    bob_url, bob_token = servers["bob"]
    ports = [hub.port, int(hub.env["REEFLAB_HUB_API_PORT"]), int(hub.env["REEFLAB_MLFLOW_PORT"])]
    listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert hub.port in listening
    for port in ports:
        for route in (f"proxy/{port}", f"proxy/absolute/{port}", f"proxy/127.0.0.1:{port}", f"proxy/localhost:{port}"):
            for path in ("/", "/hub/api/", "/hub/api"):
                answer = requests.get(
                    bob_url + route + path, headers={"Authorization": f"token {bob_token}"}, timeout=30
                )  # redirects followed (Jupyter drops trailing slashes): where they end counts
                assert answer.status_code in (403, 404), (route + path, answer.status_code, answer.text[:200])
                assert answer.url.startswith(bob_url) and '"version"' not in answer.text, answer.url


@pytest.mark.skipif(not accounts.isolation_available(), reason="users share one OS account without root")
def test_bobs_kernel_can_neither_open_anas_socket_nor_enter_its_folder(servers, anas_deployment):
    bob_url, bob_token = servers["bob"]
    _, runtime = anas_deployment
    probe = f"""
import json, os, socket
results = {{}}
def attempt(name, action):
    try:
        results[name] = "CROSSED: " + repr(action())[:80]
    except OSError as err:
        results[name] = type(err).__name__
attempt("connect", lambda: socket.socket(socket.AF_UNIX).connect({runtime["socket"]!r}))
attempt("list", lambda: os.listdir({str(Path(runtime["socket"]).parent)!r}))
print(json.dumps(results))
"""
    printed = run_in_kernel(bob_url, bob_token, probe)
    results = json.loads(printed.strip().splitlines()[-1])
    assert results == {"connect": "PermissionError", "list": "PermissionError"}, results
    # and root (the test) can: the socket is there, DEEPaaS listens on it
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(runtime["socket"])
