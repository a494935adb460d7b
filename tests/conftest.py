"""Shared fixtures. Tests that need a server start the real one on 127.0.0.1 and stop it."""

import json

import pytest
from reeflab.files import free_port
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
