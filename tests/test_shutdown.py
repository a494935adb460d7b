"""Ctrl-C of `make up` stops everything, in seconds, and says what: a user's server, their deployment and
their mount of their platform bucket, SeaweedFS, MLflow, the serverless engine and the proxy. Nothing of
the platform or of the user's account is left running, and no FUSE mount is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from reeflab import accounts
from reeflab.client import Connection, deploy
from reeflab.client import storage as client_storage
from reeflab.hub import leftovers
from reeflab.storage.rclone import rclone_binary
from reeflab.testing.hub import HubProcess, form_post
from reeflab.testing.process import wait_until
from reeflab.workloads import REASON

pytestmark = pytest.mark.timeout(600)

NAME = "ctrlc"  # a name of this test alone: its OS account is checked for leftovers
PASSWORD = "c0ral-Reef-42"
VENV_BIN = Path(sys.executable).parent


class ReefLabUp(HubProcess):
    """`reeflab up` as the README runs it (`make up`), on free ports, in a process group of its own."""

    what = "reeflab up"

    def command(self) -> list[str]:
        self.state.mkdir(parents=True, exist_ok=True)
        return [str(VENV_BIN / "reeflab"), "up"]


def hub_api(session: requests.Session, hub: HubProcess, method: str, path: str, **kwargs) -> requests.Response:
    """The hub's REST API as the logged-in user's browser calls it (cookie and XSRF header)."""
    headers = {"X-XSRFToken": session.cookies.get("_xsrf", "")}
    return session.request(method, hub.url + "hub/api/" + path, headers=headers, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """One platform: NAME logs in, starts their server, a deployment and a mount; then Ctrl-C."""
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # as the Makefile exports it
        "YOLO_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "REEFLAB_ADMINS": NAME,
        "REEFLAB_CULL_TIMEOUT": "3600",  # the default: the idle culler runs too
    }
    up = ReefLabUp(tmp_path_factory.mktemp("up"), env=env)
    with up:
        session = requests.Session()
        form_post(session, up.url + "hub/login", {"username": NAME, "password": PASSWORD})  # first login: sets it
        assert hub_api(session, up, "GET", "user").json()["name"] == NAME
        # the engine hands out users' S3 keys (their platform bucket): it answers a few seconds after the hub
        engine = up.url + "services/reeflab-serverless/health"
        wait_until(lambda: requests.get(engine, timeout=5).ok, 60, "the serverless engine")
        assert hub_api(session, up, "POST", f"users/{NAME}/server", json={}).status_code in (201, 202)
        server = wait_until(
            lambda: (hub_api(session, up, "GET", "user").json()["servers"].get("") or {}).get("ready"),
            180,
            f"the server of {NAME}",
        )
        assert server
        token = hub_api(session, up, "POST", f"users/{NAME}/tokens", json={"note": "ctrl-c"}).json()["token"]
        me = Connection(up.url + f"user/{NAME}/", token)
        deployment = deploy("image-classifier", title="Left running", connection=me).wait_ready(180, progress=False)
        assert client_storage.get("reeflab", connection=me).mount()["state"] == "mounted"
        mountpoint = up.homes / NAME / "storage" / "reeflab"
        assert mountpoint in leftovers.fuse_mounts(up.homes)

        before = psutil.Process(up.proc.pid).children(recursive=True)
        account = accounts.lookup(NAME)
        assert account is not None  # the hub runs as root: the user has an OS account
        assert sum(p.uids().real == account.uid for p in before) >= 3  # their server, deployment and rclone
        started = time.monotonic()
        os.killpg(up.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal of `make up`
        try:
            up.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"reeflab up still runs 60 s after Ctrl-C:\n{up.log_tail(60)}")
        took = time.monotonic() - started
        # what `reeflab up` printed, not what the harness sweeps up in its own stop
        output = up.log_path.read_text(errors="replace")
        yield {
            "took": took,
            "output": output,
            "before": before,
            "account": account,
            "deployment": deployment.id,
            "mountpoint": mountpoint,
            "homes": up.homes,
            "state": up.state,
        }


def test_it_stops_in_seconds_and_says_what_it_stopped(stopped):
    output = stopped["output"]
    stop = output[output.index("Stopping ReefLab") :]
    for line in (
        f"stopped the server of {NAME}",
        f"{NAME}: stopped deployment 'Left running' ({stopped['deployment']})",
        f"{NAME}: unmounted storage 'reeflab' (storage/reeflab; mounted again at the next start)",
        "stopped the serverless engine",
        "stopped MLflow",
        "stopped the idle culler",
        "stopped the S3 server (SeaweedFS)",
        "stopped the proxy",
    ):
        assert f"  {line}\n" in stop, stop
    assert "leftover" not in stop, stop  # each part stopped what it had started: nothing for the sweep
    assert "ReefLab stopped in" in stop
    assert stopped["took"] < 30, stop  # measured about 6 s on 2 cores; JupyterHub alone took 43 s


def test_no_process_of_the_platform_or_of_the_users_account_remains(stopped):
    alive = [p for p in stopped["before"] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
    uid = stopped["account"].uid
    left = [p.info for p in psutil.process_iter(["pid", "uids", "cmdline"]) if p.info["uids"].real == uid]
    assert left == []
    assert leftovers.processes(stopped["homes"], stopped["state"]) == []


def test_no_fuse_mount_remains_and_the_user_is_told_why_their_deployment_stopped(stopped):
    mounts = Path("/proc/mounts").read_text()
    assert str(stopped["homes"]) not in mounts and leftovers.fuse_mounts(stopped["homes"]) == []
    assert not os.path.ismount(stopped["mountpoint"])
    # what their panel shows at the next start
    folder = stopped["homes"] / NAME / ".local/share/jupyter/reeflab/deployments" / stopped["deployment"]
    saved = json.loads((folder / "deployment.json").read_text())
    assert saved["state"] == "stopped" and saved["reason"] == REASON


def test_the_harness_sweeps_up_what_a_failed_test_left(tmp_path):
    """A hub test that fails still leaves nothing: processes living in its homes, and dead FUSE mounts."""
    homes = tmp_path / "homes"
    home, data = homes / "ana", tmp_path / "data"
    for folder in (home / "storage" / "data", data):
        folder.mkdir(parents=True)
    (data / "counts.csv").write_text("site,fish\nA,3\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    sleeper = subprocess.Popen(["sleep", "600"], env=env, cwd="/", start_new_session=True)
    rclone = subprocess.Popen(
        [rclone_binary(), "mount", f":local:{data}", str(home / "storage" / "data")],
        env=env,
        cwd=home,
        start_new_session=True,
    )
    mountpoint = home / "storage" / "data"
    wait_until(lambda: os.path.ismount(mountpoint), 30, "the rclone mount")
    rclone.kill()  # a crash: the mount stays, dead ("Transport endpoint is not connected")
    rclone.wait()
    assert mountpoint in leftovers.fuse_mounts(homes)

    lines = leftovers.sweep(homes)
    sleeper.wait(10)  # (the sweep may have reaped it already: it is this test's child)
    assert not psutil.pid_exists(sleeper.pid)
    assert leftovers.fuse_mounts(homes) == [] and not os.path.ismount(mountpoint)
    assert any(f"process {sleeper.pid} (sleep 600)" in line for line in lines), lines
    assert f"unmounted leftover FUSE mount {mountpoint}" in lines
