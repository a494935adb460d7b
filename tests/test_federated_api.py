"""Federated learning through the REST API, the Python client, the CLI and the notebooks (run by papermill).

Each federation is a real Flower SuperLink running the built-in Flower App; sites are real SuperNodes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from reeflab.client import federated
from reeflab.training.federated_client import spawn_site
from tornado.httpclient import HTTPClientError

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
pytestmark = pytest.mark.timeout(480)


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {**jp_server_config, "FederatedService": {"root_dir": str(tmp_path / "federated")}}


@pytest.fixture
def platform_env(jp_serverapp, server_url):
    """The environment a user's terminal or notebook kernel has: where the platform is, and a token for it."""
    return {
        **os.environ,
        "REEFLAB_URL": server_url,
        "REEFLAB_TOKEN": jp_serverapp.identity_provider.token,
        "FLWR_TELEMETRY_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture
def stop_servers(jp_serverapp):
    yield
    jp_serverapp.web_app.settings["reeflab"].federated.stop_all()


async def off_loop(func, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


async def run(command: list[str], env: dict[str, str], timeout: float = 240) -> tuple[int, str]:
    """A command as a user types it, while this loop keeps serving the platform's API."""
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(errors="replace")


async def papermill(notebook: str, out: Path, env: dict[str, str], **parameters) -> nbformat.NotebookNode:
    command = [sys.executable, "-m", "papermill", str(NOTEBOOKS / notebook), str(out), "--cwd", str(out.parent)]
    for name, value in parameters.items():
        command += ["-y", f"{name}: {json.dumps(value)}"]
    code, output = await run(command, env)
    assert code == 0, output[-3000:]
    return nbformat.read(out, as_version=4)


def text_of(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )


async def test_tokens_and_bad_requests_over_rest(jp_fetch):
    response = await jp_fetch("reeflab", "api", "federated", "tokens", method="POST", body=json.dumps({"name": "x"}))
    created = json.loads(response.body)
    assert response.code == 201 and created["token"].startswith("rlf_")
    assert response.headers["Cache-Control"] == "no-store"
    listed = json.loads((await jp_fetch("reeflab", "api", "federated", "tokens")).body)["tokens"]
    assert listed == [{"id": created["id"], "name": "x", "created": created["created"]}]  # never the value again

    for path, body, status, says in [
        (("tokens",), {"name": ""}, 400, "name"),
        (("tokens",), {"name": "x"}, 409, "already have a token named 'x'"),
        (("servers",), {"strategy": "FedSGD"}, 400, "strategy"),
        (("servers",), {"rounds": 0}, 400, "rounds"),
        (("servers",), {"min_clients": 2, "colour": "red"}, 400, "colour"),
        (("servers",), {"run_config": {"lr": 0.1}}, 400, "run_config is for your own Flower App"),
        (("servers",), {"app": "/nowhere/app"}, 400, "'/nowhere/app' is not a Flower App: no pyproject.toml"),
    ]:
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("reeflab", "api", "federated", *path, method="POST", body=json.dumps(body))
        assert err.value.code == status and says in json.loads(err.value.response.body)["message"]
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("reeflab", "api", "federated", "servers", "0123abcd")
    assert err.value.code == 404 and "No federated server" in json.loads(err.value.response.body)["message"]

    response = await jp_fetch("reeflab", "api", "federated", "tokens", created["id"], method="DELETE")
    assert response.code == 204
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("reeflab", "api", "federated", "tokens", created["id"], method="DELETE")
    assert err.value.code == 404


async def test_client_notebook_and_a_second_site_train_together(connection, platform_env, tmp_path, stop_servers):
    """The federation from the Python client; one site runs the client notebook, another a SuperNode of its own."""
    lab = await off_loop(federated.create_token, "lab", connection=connection)
    boat = await off_loop(federated.create_token, "boat", connection=connection)
    server = await off_loop(federated.start_server, rounds=1, min_clients=2, connection=connection)
    assert server.state == "running" and server.address.startswith("127.0.0.1:")
    assert [s.id for s in await off_loop(federated.list_servers, connection=connection)] == [server.id]
    ca = server.save_root_certificates(str(tmp_path / "federation-ca.crt"))
    assert f"--superlink {server.address}" in server.join_command

    other_site = spawn_site(server.address, boat["token"], 3, ca, log_path=tmp_path / "boat.log")
    try:
        env = {**platform_env, "REEFLAB_FLOWER_TOKEN": lab["token"]}
        notebook = await papermill(
            "federated_client.ipynb",
            tmp_path / "client.ipynb",
            env,
            superlink_address=server.address,
            root_certificates=ca,
            site=1,
            federation_id=server.id,
        )
    finally:
        other_site.terminate()
        await off_loop(other_site.wait, 60)
    assert "Site 1 took part: 2 ClientApp runs" in text_of(notebook)
    assert lab["token"] not in json.dumps(notebook)  # the token stays out of the saved notebook

    await off_loop(server.wait_finished, 60)
    [entry] = (await off_loop(server.history))["rounds"]
    assert entry["fit"]["clients"] == ["boat", "lab"] and "accuracy" in entry["evaluate"]["metrics"]


async def test_server_notebook_with_demo_sites_and_the_cli(platform_env, tmp_path, stop_servers):
    notebook = await papermill(
        "federated_server.ipynb",
        tmp_path / "server.ipynb",
        platform_env,
        rounds=1,
        min_clients=2,
        demo_sites=2,
        revoke_tokens_at_end=True,
    )
    output = text_of(notebook)
    assert "round 1: clients ['site-a " in output and "accuracy" in output

    cli = [sys.executable, "-m", "reeflab.cli", "federated"]
    code, listed = await run([*cli, "server", "list"], platform_env)
    assert code == 0 and "finished" in listed
    server_id = listed.split()[0]
    code, shown = await run([*cli, "server", "show", server_id], platform_env)
    assert code == 0 and json.loads(shown)["history"]["finished"] is True
    code, tokens = await run([*cli, "token", "list"], platform_env)
    assert code == 0 and tokens.strip() == ""  # the notebook revoked what it created
    code, created = await run([*cli, "token", "create", "ship"], platform_env)
    assert code == 0 and "rlf_" in created and "reeflab federated join --superlink" in created
    code, ca = await run([*cli, "server", "ca", server_id], platform_env)
    assert code == 0 and ca.startswith("-----BEGIN CERTIFICATE-----")
    code, refused = await run([*cli, "server", "stop", "0123abcd"], platform_env)
    assert code == 2 and "No federated server '0123abcd'" in refused
