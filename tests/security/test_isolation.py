"""Red team, one machine: from bob's own kernel, try to reach ana and the platform. Each try must fail.

A real hub as root (as `make up` runs on a lab server) with its managed services (SeaweedFS, the
serverless engine, MLflow); ana and bob each have a running server, and bob runs code in his
kernel exactly as he would from a notebook.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
from reeflab import accounts
from reeflab.testing.hub import HubProcess, run_in_kernel

pytestmark = pytest.mark.skipif(
    not accounts.isolation_available(), reason="per-user OS accounts need root (CI and `make up` run as root)"
)

PROBE = r"""
import json, os, signal, subprocess
targets = json.loads({targets!r})
results = {{}}
def attempt(name, action):
    try:
        results[name] = "CROSSED: " + repr(action())[:120]
    except OSError as err:
        results[name] = type(err).__name__
for name, path in targets["read"].items():
    attempt("read " + name, lambda path=path: open(path, "rb").read(64))
for name, path in targets["list"].items():
    attempt("list " + name, lambda path=path: os.listdir(path))
for name, pid in targets["signal"].items():
    attempt("signal " + name, lambda pid=pid: os.kill(pid, signal.SIGTERM))
results["whoami"] = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
print(json.dumps(results))
"""


def _pid(predicate) -> int:
    found = [p for p in psutil.process_iter(["pid", "username", "cmdline"]) if p.info["cmdline"] and predicate(p.info)]
    assert found, "process not found"
    return found[0].info["pid"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubProcess(tmp_path_factory.mktemp("hub"), env={"REEFLAB_USERS": "ana,bob"}) as hub:
        yield hub
        for user in ("ana", "bob"):
            hub.api("DELETE", f"users/{user}/server")


@pytest.fixture(scope="module")
def hub_users():
    return ("ana", "bob")


def test_bob_cannot_reach_ana_or_the_platform_from_his_kernel(hub, servers):
    (ana_url, ana_token), (bob_url, bob_token) = servers["ana"], servers["bob"]
    # ana keeps something private in her home, as a notebook of hers would
    run_in_kernel(ana_url, ana_token, "open('diary.txt', 'w').write('ana only')")

    state = hub.state
    ana_home = hub.homes / "ana"
    ana_account = accounts.account_name("ana")
    ana_server = _pid(lambda p: p["username"] == ana_account and "jupyterhub-singleuser" in " ".join(p["cmdline"]))
    engine = _pid(
        lambda p: "reeflab.oscar_engine" in p["cmdline"] and f"--state-dir={state / 'serverless'}" in p["cmdline"]
    )
    targets = {
        "read": {
            "hub cookie secret": str(state / "jupyterhub_cookie_secret"),
            "proxy token": str(state / "proxy_token"),
            "hub database": str(state / "jupyterhub.sqlite"),
            "S3 admin key": str(state / "s3-admin-key.json"),
            "S3 events token": str(state / "s3-events-token"),
            "ana's file": str(ana_home / "diary.txt"),
            "ana's server environment": f"/proc/{ana_server}/environ",
            "hub environment": f"/proc/{hub.proc.pid}/environ",
            "engine environment": f"/proc/{engine}/environ",
        },
        "list": {
            "engine state": str(state / "serverless"),
            "S3 data": str(state / "s3"),
            "MLflow state": str(state / "mlflow"),
            "ana's home": str(ana_home),
            "all homes": str(hub.homes),
        },
        "signal": {"ana's server": ana_server, "the hub": hub.proc.pid, "the engine": engine},
    }
    printed = run_in_kernel(bob_url, bob_token, PROBE.format(targets=json.dumps(targets)))
    results = json.loads(printed.strip().splitlines()[-1])

    assert results.pop("whoami") == accounts.account_name("bob"), "bob's kernel runs under bob's own account"
    crossed = {name: outcome for name, outcome in results.items() if outcome != "PermissionError"}
    assert not crossed, f"bob got through: {crossed}"
    assert psutil.pid_exists(ana_server) and psutil.Process(ana_server).status() != psutil.STATUS_ZOMBIE


def test_each_server_runs_under_its_own_account_with_a_private_home(hub, servers):
    home = hub.homes / "ana"
    account = accounts.lookup("ana")
    assert account is not None and account.name == accounts.account_name("ana")
    assert home.stat().st_uid == account.uid and home.stat().st_mode & 0o777 == 0o700
    running = [
        p
        for p in psutil.process_iter(["username", "cmdline", "cwd"])
        if "jupyterhub-singleuser" in " ".join(p.info["cmdline"] or []) and str(hub.homes) in (p.info["cwd"] or "")
    ]
    assert len(running) == 2 and all(p.info["username"].startswith(accounts.PREFIX) for p in running), running
    # the platform's state: nobody but its owner may enter it; users pass through the homes folder, never list it
    assert Path(hub.state).stat().st_mode & 0o077 == 0
    assert hub.homes.stat().st_mode & 0o777 == 0o711
    # each server runs in its own cgroup, delegated to its account (its deployments and jobs nest inside)
    for process in running:
        account = process.info["username"]
        assert f"/reeflab-user-{account}" in Path(f"/proc/{process.pid}/cgroup").read_text()


def test_names_never_share_an_account():
    names = ["ana", "ana-b", "ana.b", "ana_b", "ANA", "ana-lab", "a" * 40, "a" * 41]
    made = {accounts.account_name(n) for n in names}
    assert len(made) == len(names)
    assert all(len(n) <= 32 and n.startswith(accounts.PREFIX) for n in made)
