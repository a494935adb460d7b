"""Federated learning for real, on Flower's current architecture, all on 127.0.0.1.

A federation is its own `flower-superlink` (TLS, SuperNode authentication) running the built-in Flower
App through `flwr run`. Two sites join with `flower-supernode` and the keys their tokens derive, and
complete the rounds; a SuperNode without a token and one whose token was revoked after the federation
started are refused; another user cannot see or stop the federation; stopping leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import psutil
import pytest
from reeflab.errors import BadRequest, Conflict, NotFound
from reeflab.testing.process import wait_until
from reeflab.training.federated import FederatedService
from reeflab.training.federated_auth import node_public_key
from reeflab.training.federated_models import ServerRequest

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = FederatedService(root_dir=str(tmp_path_factory.mktemp("federated")))
    yield service
    service.stop_all()


def site_process(tmp_path, server, site: int, token: str | None) -> subprocess.Popen:
    """A site as a scientist runs it: its own process, its token in a file, the federation's CA."""
    ca = tmp_path / f"ca-{server.id}.crt"
    ca.write_text(server.root_certificates)
    command = [sys.executable, "-m", "reeflab.training.federated_client", "--superlink", server.address]
    command += ["--root-certificates", str(ca), "--site", str(site), "--wait", "20"]
    if token is not None:
        token_file = tmp_path / f"site{site}.token"
        token_file.write_text(token)
        command += ["--token-file", str(token_file)]
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def stop_site(process: subprocess.Popen) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.communicate(timeout=30)[0]


def session_members(pid: int) -> list[int]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == pid:
                found.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def test_two_supernodes_train_and_bad_tokens_are_refused(service, tmp_path):
    site_a = service.create_token("alice", "site-a")
    site_b = service.create_token("alice", "site-b")
    old = service.create_token("alice", "old-laptop")
    server = service.start("alice", ServerRequest(strategy="FedAvg", rounds=2, min_clients=2, round_timeout=240))
    assert server.address.startswith("127.0.0.1:") and "BEGIN CERTIFICATE" in server.root_certificates
    assert service.wait_listening(server)
    service.revoke_token("alice", old["id"])  # after the federation started: unregistered, refused from then on
    log = lambda: "\n".join(service.logs("alice", server.id, 2000))  # noqa: E731
    wait_until(lambda: "token 'old-laptop' revoked" in log(), 60, "the revoked token's SuperNode unregistered")

    refused = {
        "none": site_process(tmp_path, server, 7, None),
        "revoked": site_process(tmp_path, server, 8, old["token"]),
    }
    sites = {
        "site-a": site_process(tmp_path, server, 1, site_a["token"]),
        "site-b": site_process(tmp_path, server, 2, site_b["token"]),
    }
    try:
        outputs = {name: proc.communicate(timeout=120)[0] for name, proc in refused.items()}
        # refused by the SuperLink, with a message that says what to do
        assert refused["none"].returncode == 3, outputs["none"]
        assert "refused this SuperNode: no token was given" in outputs["none"]
        assert refused["revoked"].returncode == 3, outputs["revoked"]
        assert "unknown or was revoked" in outputs["revoked"]

        finished = wait_until(lambda: (s := service.get("alice", server.id)).state != "running" and s, 300, "rounds")
    finally:
        site_logs = {name: stop_site(proc) for name, proc in sites.items()}
    assert finished.state == "finished", (finished.reason, site_logs)
    history = service.history(finished)
    assert history["finished"] and [r["round"] for r in history["rounds"]] == [1, 2]
    for entry in history["rounds"]:  # both sites contributed to every round, nobody else did
        assert entry["fit"]["clients"] == ["site-a", "site-b"] and entry["fit"]["failures"] == 0
        assert entry["fit"]["examples"] == 2 * 192  # each site's 3/4 of 256 generated samples
        assert entry["evaluate"]["clients"] == ["site-a", "site-b"]
        assert 0 <= entry["evaluate"]["metrics"]["accuracy"] <= 1
    assert [rnd for rnd, _ in history["metrics_distributed"]["accuracy"]] == [1, 2]
    text = log()
    assert "token 'site-a': SuperNode" in text and "flwr run: run" in text
    for secret in (site_a["token"], site_b["token"], old["token"]):
        assert secret not in text
    service.revoke_token("alice", site_a["id"])
    service.revoke_token("alice", site_b["id"])


def test_a_connected_supernode_is_cut_off_once_its_token_is_revoked(service, tmp_path):
    """Revoking a token while its SuperNode takes part: the SuperLink refuses that SuperNode's next request (it
    ends, saying why), and the federation goes on with the other site."""
    kept = service.create_token("grace", "reef-station")
    going = service.create_token("grace", "lost-laptop")
    request = ServerRequest(strategy="FedAvg", rounds=200, min_clients=1, round_timeout=30)
    server = service.start("grace", request)
    assert service.wait_listening(server)
    sites = {
        "kept": site_process(tmp_path, server, 1, kept["token"]),
        "going": site_process(tmp_path, server, 2, going["token"]),
    }

    def rounds() -> list[dict]:
        return [e for e in service.history(service.get("grace", server.id))["rounds"] if "fit" in e]

    try:
        both = ["lost-laptop", "reef-station"]
        wait_until(lambda: any(e["fit"]["clients"] == both for e in rounds()), 180, "a round with both sites")
        assert sites["going"].poll() is None  # connected and training
        service.revoke_token("grace", going["id"])
        revoked_at, last = time.monotonic(), rounds()[-1]["round"]
        output = sites["going"].communicate(timeout=60)[0]  # the bound: the SuperNode is refused well within it
        print(f"the revoked SuperNode was refused {time.monotonic() - revoked_at:.1f} s after the revocation")
        assert sites["going"].returncode == 3, output
        assert "refused this SuperNode: its token is unknown or was revoked" in output

        def alone() -> bool:
            return any(e["round"] > last and e["fit"]["clients"] == ["reef-station"] for e in rounds())

        wait_until(alone, 120, "a round with the remaining site alone")
        assert sites["kept"].poll() is None and service.get("grace", server.id).state == "running"
        log = "\n".join(service.logs("grace", server.id, 2000))
        assert "token 'lost-laptop' revoked" in log and going["token"] not in log
    finally:
        outputs = {name: stop_site(proc) for name, proc in sites.items()}
        service.stop("grace", server.id)
        service.delete("grace", server.id)
        service.revoke_token("grace", kept["id"])
    assert "refused" not in outputs["kept"], outputs["kept"]


OWN_APP = {
    "pyproject.toml": """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "census"
version = "0.1.0"
dependencies = ["flwr"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "tester"

[tool.flwr.app.components]
serverapp = "census.apps:server"
clientapp = "census.apps:client"

[tool.flwr.app.config]
out = ""
nodes = 2
""",
    "census/__init__.py": "",
    "census/apps.py": """
import json
import time

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

server = ServerApp()
client = ClientApp()


@client.query()
def answer(msg: Message, context: Context) -> Message:
    site = int(context.node_config.get("site", -1))
    return Message(content=RecordDict({"answer": MetricRecord({"site": site})}), reply_to=msg)


@server.main()
def main(grid: Grid, context: Context) -> None:
    while len(nodes := list(grid.get_node_ids())) < int(context.run_config["nodes"]):
        time.sleep(1)
    asks = [Message(RecordDict(), dst_node_id=node, message_type="query") for node in nodes]
    sites = sorted(int(reply.content["answer"]["site"]) for reply in grid.send_and_receive(asks, timeout=300))
    with open(str(context.run_config["out"]), "w") as out:
        json.dump(sites, out)
""",
}


def test_a_users_own_flower_app(service, tmp_path):
    app = tmp_path / "census-app"
    for name, text in OWN_APP.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text.lstrip())
    tokens = [service.create_token("gina", name)["token"] for name in ("north", "south")]
    with pytest.raises(BadRequest, match="not a Flower App: no pyproject.toml"):
        service.start("gina", ServerRequest(app=str(tmp_path)))
    with pytest.raises(ValueError, match="run_config is for your own Flower App"):
        ServerRequest(run_config={"out": "x"})
    out = tmp_path / "sites.json"
    server = service.start("gina", ServerRequest(app=str(app), run_config={"out": str(out)}))
    assert server.title == "Flower App census-app"
    assert service.wait_listening(server)
    sites = [site_process(tmp_path, server, 10 + i, token) for i, token in enumerate(tokens)]
    try:
        finished = wait_until(lambda: (s := service.get("gina", server.id)).state != "running" and s, 240, "the run")
    finally:
        site_logs = [stop_site(proc) for proc in sites]
    assert finished.state == "finished", (finished.reason, site_logs)
    assert json.loads(out.read_text()) == [10, 11]  # the user's ServerApp heard from both sites' ClientApps
    assert service.history(finished)["flower"]["status"] == "finished:completed"


GUARDED = "only the federation's owner may use this API of its SuperLink"
CALL = """
import sys, httpx
answer = httpx.post("https://" + sys.argv[1] + sys.argv[2], json={}, verify=False, timeout=30)
print(answer.status_code, answer.text[:300])
"""


def call_superlink(address: str, path: str, account=None) -> str:
    """POST to the SuperLink from a process of this account, or of `account` (another user of the machine)."""
    ids = {"user": account.uid, "group": account.gid} if account else {}
    done = subprocess.run([sys.executable, "-c", CALL, address, path], capture_output=True, text=True, **ids)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="another OS account for the caller needs root (CI runs as root)")
def test_another_account_reaches_only_the_fleet_api_of_a_superlink(service, tmp_path):
    """Open-source Flower's Control API has no login and starts runs of any uploaded app (code that runs as the
    SuperLink's account): only the owner's processes reach it; SuperNodes' Fleet API stays open to all."""
    from reeflab import accounts

    service.create_token("guard-owner", "site")
    server = service.start("guard-owner", ServerRequest(min_clients=2))
    try:
        assert service.wait_listening(server)
        home = tmp_path / "mallory"
        mallory = accounts.ensure_account("superlink-guard-mallory", home)
        try:
            for path in ("/v1/control/list-runs", "/v1/control/start-run", "/v1/runtime/acquire-task"):
                refused = call_superlink(server.address, path, mallory)
                assert refused.startswith("403 ") and GUARDED in refused, (path, refused)
                assert GUARDED not in call_superlink(server.address, path)  # the owner's own flwr gets through
            fleet = call_superlink(server.address, "/v1/fleet/register-node", mallory)
            assert GUARDED not in fleet and not fleet.startswith("2"), fleet  # Flower itself refuses it
        finally:
            accounts.remove_account("superlink-guard-mallory")
    finally:
        service.stop("guard-owner", server.id)
        service.delete("guard-owner", server.id)


def test_stop_leaves_no_process(service):
    service.create_token("bob", "site")
    server = service.start("bob", ServerRequest(min_clients=2))
    assert service.wait_listening(server)
    pid = server.runtime["pid"]
    assert len(session_members(pid)) >= 2  # the supervisor and its SuperLink (and Flower's SuperExec)
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
    [entry] = json.loads(path.read_text())  # what the platform keeps: the hash and the SuperNode's public key
    assert entry["public_key"] == node_public_key(created["token"]) and entry["public_key"].startswith("ecdsa-")
    assert service.list_tokens("dave") == []  # users see only their own
    with pytest.raises(NotFound):
        service.revoke_token("dave", created["id"])
    with pytest.raises(Conflict):
        service.create_token("carol", "site-x")
    service.revoke_token("carol", created["id"])
    assert service.list_tokens("carol") == []


def test_federations_are_per_user_and_need_a_token(service):
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
    assert stat.S_IMODE(service.folder(server.id).joinpath("tls", "server.key").stat().st_mode) == 0o600
    service.stop("erin", server.id)
