"""Shared fixtures. Tests that need a server start the real one on 127.0.0.1 and stop it."""

import pytest

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
