"""The usage service (hub service `reeflab-usage`, the platform's account): hub admins see each user's usage over
time and what each runs; other users are refused; its rows survive a restart of the service."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
import requests
from reeflab.client import Connection, ReefLabClientError, deploy, monitoring
from reeflab.modules.fish_detector import model as fish
from reeflab.testing.hub import HubProcess, run_in_kernel
from reeflab.testing.process import wait_until

ADMIN, USERS = "usage-ada", ("usage-ben", "usage-cyd")
PANEL_ADMIN, PANEL_USER = "usage-eve", "usage-fay"  # the admins' view through their servers (the last test)
BUSY_S = 3  # CPU seconds each user's kernel burns
PREDICTIONS = 3  # usage-ben's requests to his deployment
IMAGE = Path(fish.model_path()).parents[1] / "samples" / "fish_04.jpg"
BURN = f"import time\nt = time.process_time()\nwhile time.process_time() - t < {BUSY_S}: pass\nprint('burnt')"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    env = {
        "REEFLAB_USAGE_INTERVAL": "1",
        "REEFLAB_ADMINS": f"{ADMIN},{PANEL_ADMIN}",
    }  # the hub makes its admins at start
    with HubProcess(tmp_path_factory.mktemp("hub"), env=env) as hub:
        for name in USERS:
            hub.api("POST", f"users/{name}").raise_for_status()
        yield hub
        for name in USERS:
            hub.api("DELETE", f"users/{name}/server")


def usage(hub: HubProcess, token: str, query: str = "") -> requests.Response:
    headers = {"Authorization": f"token {token}"}
    return requests.get(f"{hub.url}services/reeflab-usage/usage{query}", headers=headers, timeout=30)


def service_process(hub: HubProcess) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "reeflab.usage" in cmdline and f"--state-dir={hub.state / 'usage'}" in cmdline:
            return proc
    return None


def test_an_admin_sees_each_users_usage_and_what_they_run_others_are_refused(hub):
    admin = hub.user_token(ADMIN)
    urls = {}
    for name in USERS:
        urls[name] = url = hub.spawn(name)
        assert run_in_kernel(url, hub.user_token(name), BURN, timeout=120).strip() == "burnt"
    ben = USERS[0]
    deployment = deploy("image-classifier", connection=Connection(urls[ben], hub.user_token(ben)))
    deployment.wait_ready(timeout=180, progress=False)
    for _ in range(PREDICTIONS):
        deployment.predict(files=[IMAGE])

    def counted():
        users = usage(hub, admin, "?since=7200&step=3600").json()["users"]
        burnt = all(users.get(name, {}).get("cpu_hours", 0) * 3600 >= BUSY_S * 0.9 for name in USERS)
        return users if burnt and users[ben]["requests"] >= PREDICTIONS else None

    users = wait_until(counted, 60, "the usage service to count both users' CPU")
    assert users[ben]["requests"] == PREDICTIONS and users[USERS[1]]["requests"] == 0
    for name in USERS:
        row = users[name]
        assert row["cpu_hours"] * 3600 < 300, row  # their processes' seconds, not the machine's
        assert row["gpu_hours"] == 0
        assert row["buckets"] and row["buckets"][-1]["memory_max_MB"] > 10  # a server and a kernel hold memory
    assert users.get(ADMIN, {"cpu_hours": 0})["cpu_hours"] == 0  # never started anything

    status = requests.get(
        f"{hub.url}services/reeflab-usage/status", headers={"Authorization": f"token {admin}"}, timeout=30
    ).json()
    by_name = {entry["user"]: entry for entry in status["users"]}
    for name in USERS:
        assert by_name[name]["servers"]["default"]["ready"] is True
    assert [d["id"] for d in by_name[ben]["running"]["deployments"]] == [deployment.id]
    assert by_name[USERS[1]]["running"] == {"deployments": [], "jobs": [], "pipelines": [], "checks": []}
    deployment.delete()  # its store goes with it; the hour's requests stay counted (next test)
    assert by_name[ADMIN]["admin"] is True and by_name[ADMIN]["servers"] == {}
    assert status["machine"]["cpu"]["count"] == psutil.cpu_count()
    assert 0 < status["machine"]["memory_MB"]["available"] <= status["machine"]["memory_MB"]["total"]

    # a user (not an admin) hears why not; a token the hub does not know is no caller at all
    refused = usage(hub, hub.user_token(USERS[0]))
    assert refused.status_code == 403 and "Only hub admins" in refused.json()["message"]
    assert usage(hub, "not-a-token").status_code in (401, 403)
    bad = usage(hub, admin, "?step=5400")
    assert bad.status_code == 400 and "multiple of 3600" in bad.json()["message"]
    assert usage(hub, admin, "?since=soon").status_code == 400
    assert "between 3600 and" in usage(hub, admin, "?step=90").json()["message"]


def test_the_rows_survive_a_restart_of_the_service(hub):
    admin = hub.user_token(ADMIN)
    before = usage(hub, admin, "?since=7200").json()["users"]
    assert all(before[name]["cpu_hours"] > 0 for name in USERS)
    old = service_process(hub)
    assert old is not None
    os.kill(old.pid, signal.SIGTERM)
    old.wait(30)

    def restarted():  # the hub starts a managed service again when it ends
        proc = service_process(hub)
        if proc is None or proc.pid == old.pid:
            return None
        try:
            answer = usage(hub, admin, "?since=7200")
        except requests.RequestException:
            return None
        return answer.json()["users"] if answer.ok else None

    after = wait_until(restarted, 60, "the hub to restart the usage service")
    for name in USERS:  # what was counted is kept, and counting goes on from there (never lower)
        assert after[name]["cpu_hours"] >= before[name]["cpu_hours"]
    assert after[USERS[0]]["requests"] == PREDICTIONS  # though the deployment that counted them is gone


def test_the_admins_platform_view_through_their_server(hub):
    """The panel's Platform section asks its user's server (GET /reeflab/api/platform/...), which asks the usage
    service with the server's own token: an admin's server answers the platform's status and usage, a user's
    server passes on the service's refusal."""
    admin, user = PANEL_ADMIN, PANEL_USER  # an admin the hub made at its start, and a user
    hub.api("POST", f"users/{user}").raise_for_status()
    try:
        urls = {name: hub.spawn(name) for name in (admin, user)}
        connection = Connection(urls[admin], hub.user_token(admin))
        status = monitoring.platform_status(connection)
        by_name = {entry["user"]: entry for entry in status["users"]}
        assert by_name[admin]["admin"] is True and by_name[user]["admin"] is False
        for name in (admin, user):  # both servers, as the hub knows them
            assert by_name[name]["servers"]["default"]["ready"] is True
        assert status["machine"]["cpu"]["count"] == psutil.cpu_count()
        assert 0 < status["machine"]["memory_MB"]["available"] <= status["machine"]["memory_MB"]["total"]

        # usage over the last two hours: what the service itself answers an admin, hour by hour
        mine = monitoring.platform_usage(since=7200, step=3600, connection=connection)
        assert mine["step_s"] == 3600
        direct = usage(hub, hub.user_token(admin), "?since=7200&step=3600").json()
        assert set(mine["users"]) == set(direct["users"]) and mine["since"] == direct["since"]
        for name, row in mine["users"].items():  # sampled again in between: never lower
            assert row["cpu_hours"] <= direct["users"][name]["cpu_hours"] + 1e-9
            assert all(bucket["start"] >= mine["since"] for bucket in row["buckets"])

        # bad input: a clear 400 saying what to fix (this server's check, then the service's)
        with pytest.raises(ReefLabClientError) as bad:
            connection.get("platform", "usage", since="yesterday")
        assert bad.value.status == 400 and "'since' must be a whole number" in str(bad.value)
        with pytest.raises(ReefLabClientError) as bad:
            monitoring.platform_usage(since=86400, step=5400, connection=connection)
        assert bad.value.status == 400 and "multiple of 3600" in str(bad.value)

        # a user's server: the service's refusal, in its words, on both routes
        theirs = Connection(urls[user], hub.user_token(user))
        for call in (monitoring.platform_status, monitoring.platform_usage):
            with pytest.raises(ReefLabClientError) as refused:
                call(connection=theirs)
            assert refused.value.status == 403 and "Only hub admins" in str(refused.value)
    finally:
        for name in (admin, user):
            hub.api("DELETE", f"users/{name}/server")
