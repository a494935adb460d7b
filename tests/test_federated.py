"""Federated learning for real: a Flower server process and client processes on 127.0.0.1.

Two sites with valid tokens complete the rounds; a client without a token and one whose token was
revoked after the server started are refused (an error at the client, nothing from them at the
server); stopping a server leaves no process behind.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import psutil
import pytest
from reeflab.errors import BadRequest, Conflict, NotFound
from reeflab.testing.process import wait_until
from reeflab.training.federated import FederatedService
from reeflab.training.federated_models import ServerRequest

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def service(tmp_path):
    service = FederatedService(root_dir=str(tmp_path / "federated"))
    yield service
    service.stop_all()


def client_process(tmp_path, address: str, site: int, token: str | None) -> subprocess.Popen:
    """A site as a scientist runs it: its own process, its token in a file, the default task."""
    command = [sys.executable, "-m", "reeflab.training.federated_client", "--server", address, "--site", str(site)]
    if token is not None:
        token_file = tmp_path / f"site{site}.token"
        token_file.write_text(token)
        command += ["--token-file", str(token_file)]
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def session_members(pid: int) -> list[int]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == pid:
                found.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def test_two_sites_train_and_bad_tokens_are_refused(service, tmp_path):
    site_a = service.create_token("alice", "site-a")
    site_b = service.create_token("alice", "site-b")
    old = service.create_token("alice", "old-laptop")
    server = service.start("alice", ServerRequest(strategy="FedAvg", rounds=2, min_clients=2, round_timeout=120))
    assert server.address.startswith("127.0.0.1:")
    assert service.wait_listening(server)
    service.revoke_token("alice", old["id"])  # after the server started: refused from the next connection on

    clients = {
        "none": client_process(tmp_path, server.address, 7, None),
        "revoked": client_process(tmp_path, server.address, 8, old["token"]),
        "site-a": client_process(tmp_path, server.address, 1, site_a["token"]),
        "site-b": client_process(tmp_path, server.address, 2, site_b["token"]),
    }
    outputs = {name: proc.communicate(timeout=180)[0] for name, proc in clients.items()}
    codes = {name: proc.returncode for name, proc in clients.items()}

    # refused at the client, with a message that says what to do
    assert codes["none"] == 3, outputs["none"]
    assert "refused this client" in outputs["none"] and "no bearer token" in outputs["none"]
    assert codes["revoked"] == 3, outputs["revoked"]
    assert "invalid or revoked token" in outputs["revoked"]
    assert codes["site-a"] == 0 and codes["site-b"] == 0, outputs

    server = wait_until(lambda: (s := service.get("alice", server.id)).state != "running" and s, 30, "the end")
    assert server.state == "finished", server.reason
    history = service.history(server)
    assert history["finished"] and [r["round"] for r in history["rounds"]] == [1, 2]
    for entry in history["rounds"]:  # both sites contributed to every round, nobody else did
        assert entry["fit"]["clients"] == ["site-a", "site-b"] and entry["fit"]["failures"] == 0
        assert entry["evaluate"]["clients"] == ["site-a", "site-b"]
        assert 0 <= entry["evaluate"]["metrics"]["accuracy"] <= 1
    assert [rnd for rnd, _ in history["metrics_distributed"]["accuracy"]] == [1, 2]
    assert len(history["losses_distributed"]) == 2
    log = "\n".join(service.logs("alice", server.id, 1000))
    assert "connection refused: no bearer token" in log
    assert "connection refused: invalid or revoked token" in log
    assert "client connected with token 'old-laptop'" not in log
    assert log.count("client connected with token") == 2
    for secret in (site_a["token"], site_b["token"], old["token"]):
        assert secret not in log


def test_stop_leaves_no_process(service):
    service.create_token("bob", "site")
    server = service.start("bob", ServerRequest(min_clients=2))
    assert service.wait_listening(server)
    pid = server.runtime["pid"]
    assert session_members(pid)
    stopped = service.stop("bob", server.id)
    assert stopped.state == "stopped" and stopped.reason == "stopped by its owner"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert session_members(pid) == []
    service.delete("bob", server.id)
    with pytest.raises(NotFound):
        service.get("bob", server.id)


def test_tokens_are_private_hashed_and_shown_once(service):
    created = service.create_token("carol", "site-x")
    assert created["token"].startswith("rlf_") and len(created["token"]) > 40
    assert service.list_tokens("carol") == [{k: created[k] for k in ("id", "name", "created")}]
    path = service.tokens_file("carol")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert created["token"] not in path.read_text()
    assert service.list_tokens("dave") == []  # users see only their own
    with pytest.raises(NotFound):
        service.revoke_token("dave", created["id"])
    with pytest.raises(Conflict):
        service.create_token("carol", "site-x")
    service.revoke_token("carol", created["id"])
    assert service.list_tokens("carol") == []


def test_servers_are_per_user_and_need_a_token(service):
    with pytest.raises(BadRequest, match="token first"):
        service.start("erin", ServerRequest())
    service.create_token("erin", "site")
    server = service.start("erin", ServerRequest(strategy="FedAdam", min_clients=3))
    assert [s.id for s in service.list("erin")] == [server.id]
    assert service.list("frank") == []
    with pytest.raises(NotFound):
        service.get("frank", server.id)
    with pytest.raises(NotFound):
        service.stop("frank", server.id)
    assert service.get("erin", server.id).state == "running"
    assert stat.S_IMODE(service.folder(server.id).joinpath("server.json").stat().st_mode) == 0o600
