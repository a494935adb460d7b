"""Shared fixtures. Tests that need a server start the real one on 127.0.0.1 and stop it: the hub, SeaweedFS
and WebDAV once per module that uses them (a module overrides `hub_users` for other users)."""

import asyncio
import json
import socket
from types import SimpleNamespace

import pytest
from reeflab.client import Connection
from reeflab.files import free_port
from reeflab.hub.config import REPO, configure_kubernetes
from reeflab.hub.spawners import ReefLabKubeSpawner
from reeflab.storage.platform_s3 import PlatformS3
from reeflab.storage.testing import SeaweedProcess, WebDAVProcess
from reeflab.testing.hub import HubProcess
from reeflab.testing.oidc import MOCK_PYTHON, OIDCProviderProcess
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(jp_server_config):
    """The server as users get it: ReefLab enabled, anonymous access refused everywhere."""
    return {
        "ServerApp": {
            "jpserver_extensions": {"reeflab": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        },
    }


@pytest.fixture
def tiny_profiles(tmp_path):
    """The shipped hardware profiles and 'tiny' (1 CPU, 1G): a file for ReefLabApp.profiles_file."""
    profiles = tmp_path / "profiles.yaml"
    tiny = "  - {slug: tiny, display_name: Tiny, cpu: 1, memory: 1G}\n"
    profiles.write_text((REPO / "hub_config" / "profiles.yaml").read_text() + tiny)
    return profiles


@pytest.fixture
def activity_hub():
    """What the hub's activity endpoint receives (the request jupyterhub-singleuser sends): (url, received)."""
    received: list[tuple[str, dict]] = []

    class Activity(web.RequestHandler):
        def post(self):
            received.append((self.request.headers.get("Authorization", ""), json.loads(self.request.body)))
            self.set_status(204)

    port = free_port()
    server = HTTPServer(web.Application([(r"/hub/api/users/me/activity", Activity)]))
    server.listen(port, "127.0.0.1")
    yield f"http://127.0.0.1:{port}/hub/api/users/me/activity", received
    server.stop()


@pytest.fixture
def server_url(jp_serverapp, jp_base_url, http_server):
    """The test server's URL; requesting `http_server` makes pytest-jupyter accept connections on it."""
    return f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}"


@pytest.fixture
def connection(jp_serverapp, server_url):
    """The Python client's connection to the test server."""
    return Connection(server_url, jp_serverapp.identity_provider.token)


@pytest.fixture(scope="module")
def hub_users():
    return ("alice", "bob")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, hub_users):
    """The real hub (local mode) with `hub_users`; their servers are stopped at the end."""
    with HubProcess(tmp_path_factory.mktemp("hub")) as hub:
        for name in hub_users:
            hub.api("POST", f"users/{name}")
        yield hub
        for name in hub_users:
            hub.api("DELETE", f"users/{name}/server")


@pytest.fixture(scope="module")
def servers(hub, hub_users):
    """Each user's server URL and token, as a notebook on the hub gets them."""
    return {name: (hub.spawn(name), hub.user_token(name)) for name in hub_users}


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """A real OIDC provider (oidc-provider-mock): its issuer URL."""
    if not MOCK_PYTHON.exists():
        pytest.fail("no .venv-oidc with oidc-provider-mock: run make install-test")
    with OIDCProviderProcess(tmp_path_factory.mktemp("oidc") / "provider.log") as running:
        yield running.issuer


@pytest.fixture(scope="module")
def dav(tmp_path_factory):
    """A WebDAV server (wsgidav) with user 'ana', as a Nextcloud has."""
    with WebDAVProcess(tmp_path_factory.mktemp("webdav"), user="ana") as server:
        yield server


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """SeaweedFS, and user 'ana' with her own bucket and key (as the platform makes them)."""
    with SeaweedProcess(tmp_path_factory.mktemp("seaweed") / "s3") as server:
        server.ana_key = PlatformS3(server.endpoint, server.key).user_key("ana")
        yield server


@pytest.fixture
def no_network(monkeypatch):
    """Any network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def kubespawner(monkeypatch, jp_asyncio_loop):
    """kubespawner(profiles_file, name="alice", groups=(), user_id=7, **traits): a ReefLabKubeSpawner as the hub
    config makes it, with no kubeconfig (the default client config, never used, will do)."""
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kwargs: None)

    def make(profiles_file, name: str = "alice", groups=(), user_id: int = 7, **traits) -> ReefLabKubeSpawner:
        c = Config()
        c.Spawner.environment = {"REEFLAB_PROFILES_FILE": str(profiles_file)}
        configure_kubernetes(c)
        c.ReefLabKubeSpawner.profiles_file = str(profiles_file)
        for key, value in traits.items():
            setattr(c.ReefLabKubeSpawner, key, value)
        memberships = [SimpleNamespace(name=group) for group in groups]
        user = SimpleNamespace(name=name, id=user_id, url=f"/user/{name}/", groups=memberships)
        return ReefLabKubeSpawner(_mock=True, user=user, config=c)

    yield make

    async def close_clients():  # KubeSpawner's shared API client lives in a task that closes it when cancelled
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # the tests run in pytest-jupyter's loop; close in the same one
    jp_asyncio_loop.run_until_complete(close_clients())
