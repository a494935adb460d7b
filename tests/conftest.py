"""Shared fixtures. Tests that need a server start the real one on 127.0.0.1 and stop it: the hub, SeaweedFS
and WebDAV once per module that uses them (a module overrides `hub_users` for other users)."""

import json

import pytest
from reeflab.client import Connection
from reeflab.files import free_port
from reeflab.storage.platform_s3 import PlatformS3
from reeflab.storage.testing import SeaweedProcess, WebDAVProcess
from reeflab.testing.hub import HubProcess
from tornado import web
from tornado.httpserver import HTTPServer

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
