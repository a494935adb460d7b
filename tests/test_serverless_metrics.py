"""Serverless services' request metrics, counted by the engine: what its owner sees after real calls.

A real engine process (`python -m reeflab.oscar_engine`) on 127.0.0.1, restarted on the same state.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import pytest
import requests
from reeflab.client import serverless
from reeflab.files import free_port
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.serverless.batch import Engine
from reeflab.testing.process import wait_until
from tornado.httpclient import HTTPClientError

PICKY = 'grep -q good "$INPUT_FILE_PATH" || exit 3\necho ok\n'


def service(name: str, **extra) -> dict:
    return {"name": name, "image": "ghcr.io/example/alpine", "cpu": "0.5", "memory": "256Mi", "script": PICKY, **extra}


def call(engine: EngineProcess, user: str, path: str, text: str) -> requests.Response:
    return engine.request("POST", path, user, data=base64.b64encode(text.encode()))


def metrics(engine: EngineProcess, user: str, name: str, **params) -> requests.Response:
    return engine.request("GET", f"/system/services/{name}/metrics", user, params=params)


def test_calls_errors_and_latencies_are_counted_kept_and_removed_with_the_service(tmp_path):
    state, port = tmp_path / "state", free_port()
    with EngineProcess(state, users=["alice", "bob"], port=port) as engine:
        engine.request("POST", "/system/services", "alice", json=service("picky", visibility="public"))
        statuses = [call(engine, "alice", "/run/picky", text).status_code for text in ["good"] * 3 + ["bad"] * 2]
        statuses.append(call(engine, "bob", "/run/picky", "good too").status_code)  # a user of a public service
        assert statuses == [200, 200, 200, 500, 500, 200]
        jobs = [call(engine, "alice", "/job/picky", text).json()["jobName"] for text in ("good", "good", "bad")]

        def finished():
            listed = engine.request("GET", "/system/logs/picky", "alice").json()["jobs"]
            done = [listed[job]["status"] for job in jobs if listed[job]["status"] in ("Succeeded", "Failed")]
            return sorted(done) if len(done) == len(jobs) else None

        assert wait_until(finished, 120, "the jobs to finish", interval=0.2) == ["Failed", "Succeeded", "Succeeded"]

        seen = metrics(engine, "alice", "picky").json()
        assert seen["total"] == {
            "requests": 9,
            "errors": 3,
            "items": 9,
            "sync": {"requests": 6, "errors": 2, "items": 6},
            "async": {"requests": 3, "errors": 1, "items": 3},
        }
        window = seen["window"]
        assert (window["requests"], window["errors"]) == (9, 3)
        assert sum(b["requests"] for b in window["buckets"]) == 9
        assert 0 < window["latency_s"]["p50"] <= window["latency_s"]["p95"] <= window["latency_s"]["p99"] < 120
        assert (seen["sync"]["requests"], seen["async"]["requests"]) == (6, 3)
        # a job's latency runs from queued to finished: never shorter than its run
        assert 0 < seen["async"]["run_s"]["p50"] <= seen["async"]["latency_s"]["p99"]
        assert seen["jobs"] == {"pending": 0, "running": 0}
        # OSCAR v4's own metrics route counts the sync calls too
        v4 = engine.request("GET", "/system/metrics/picky", "alice").json()["metrics"]
        values = {m["metric"]: m["value"] for m in v4}
        assert (values["requests-sync-per-service"], values["requests-async-per-service"]) == (6, 3)

        # only the owner: a user of the public service is refused, another one's private service is not there
        assert metrics(engine, "bob", "picky").status_code == 403
        assert metrics(engine, "bob", "nope").status_code == 404
        assert engine.request("GET", "/system/services/picky/metrics").status_code == 401
        refused = metrics(engine, "alice", "picky", since="soon")
        assert refused.status_code == 400 and "since and step are numbers of seconds" in refused.text
        assert metrics(engine, "alice", "picky", since=60, step=0.001).status_code == 400

        # the Python client (the user's server: the last test)
        client = Engine(engine.url, f"Bearer {engine.tokens['alice']}")
        assert serverless.metrics("picky", since=600, step=600, engine=client)["total"]["requests"] == 9
        env = {**os.environ, "REEFLAB_SERVERLESS_URL": engine.url, "REEFLAB_TOKEN": engine.tokens["alice"]}
        reeflab = [sys.executable, "-m", "reeflab.cli", "serverless", "metrics"]
        shown = subprocess.run([*reeflab, "picky"], env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "picky: 9 calls, 3 errors since it was made" in shown.stdout, shown.stderr
        assert "sync  last 3600 s: 6 calls, 2 errors; latency p50 " in shown.stdout
        env["REEFLAB_TOKEN"] = engine.tokens["bob"]
        refused = subprocess.run([*reeflab, "picky"], env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "only the owner of service 'picky'" in refused.stderr
        assert call(engine, "alice", "/run/picky", "good at the end").status_code == 200  # not read before the stop

    # the same state, a new process that keeps calls one by one for under a second: older ones become totals
    time.sleep(1)
    retention = ["--ServerlessApp.metrics_retention_days=0.00001"]
    with EngineProcess(state, users=["alice", "bob"], port=port, args=retention) as engine:
        kept = metrics(engine, "alice", "picky").json()["total"]
        assert (kept["requests"], kept["sync"]["requests"], kept["errors"]) == (10, 7, 3)

        def folded():
            shown = metrics(engine, "alice", "picky").json()
            return shown if shown["window"]["requests"] == 0 else None

        pruned = wait_until(folded, 10, "the kept calls to be folded into the totals")
        assert pruned["total"] == kept and pruned["window"]["buckets"] == []
        assert engine.request("DELETE", "/system/services/picky", "alice").status_code == 204
        assert metrics(engine, "alice", "picky").status_code == 404
        engine.request("POST", "/system/services", "alice", json=service("picky"))  # a namesake starts from zero
        fresh = metrics(engine, "alice", "picky").json()
        assert fresh["total"]["requests"] == 0 and fresh["window"]["buckets"] == []
        assert fresh["window"]["latency_s"] == {"p50": None, "p95": None, "p99": None}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with EngineProcess(tmp_path_factory.mktemp("metrics") / "state", users=["alice"]) as engine:
        yield engine


@pytest.fixture
def jp_server_config(jp_server_config, engine):
    return {**jp_server_config, "ServerlessGateway": {"url": engine.url, "token": engine.tokens["alice"]}}


async def test_the_users_server_forwards_the_owners_metrics(jp_fetch, engine):
    async def gateway(method: str, *path: str, **kwargs):
        try:
            answer = await jp_fetch("reeflab", "api", "serverless", "oscar", *path, method=method, **kwargs)
        except HTTPClientError as error:
            return error.code, json.loads(error.response.body)
        return answer.code, json.loads(answer.body) if answer.body.startswith(b"{") else answer.body

    code, _ = await gateway("POST", "system", "services", body=json.dumps(service("gw-picky")))
    assert code == 201
    assert (await gateway("POST", "run", "gw-picky", body=base64.b64encode(b"good")))[0] == 200
    assert (await gateway("POST", "run", "gw-picky", body=base64.b64encode(b"bad")))[0] == 500
    code, shown = await gateway("GET", "system", "services", "gw-picky", "metrics", params={"since": 600})
    assert code == 200 and shown["total"]["sync"] == {"requests": 2, "errors": 1, "items": 2}
    assert shown["window"]["since_s"] == 600
    code, refused = await gateway("GET", "system", "services", "gw-picky", "metrics", params={"step": "x"})
    assert code == 400 and "since and step" in refused["message"]

    # and in the Prometheus text the user's server exposes, beside its deployments'
    text = (await jp_fetch("reeflab", "api", "metrics")).body.decode()
    assert 'reeflab_serverless_requests_total{kind="sync",service="gw-picky"} 2.0' in text
    assert 'reeflab_serverless_errors_total{kind="sync",service="gw-picky"} 1.0' in text
    assert 'reeflab_serverless_requests_total{kind="async",service="gw-picky"} 0.0' in text
    assert 'reeflab_serverless_latency_seconds{kind="sync",quantile="0.99",service="gw-picky"}' in text
