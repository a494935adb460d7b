"""Serverless from the user's server (what the panel calls): OSCAR routes forwarded, module -> service, batches.

A real engine with SeaweedFS; the Jupyter server reaches it with a token the engine knows as alice.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.serverless.invocations import content_disposition
from test_serverless_exposed import exposed
from tornado.httpclient import HTTPClientError

SAMPLES = Path(__file__).parents[1] / "server_extension/reeflab/modules/fish_detector/samples"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("gateway") / "state"
    with EngineProcess(state, users=["alice"], args=["--ServerlessApp.max_workers=2"], s3=True) as engine:
        yield engine


@pytest.fixture
def jp_server_config(jp_server_config, engine):
    return {
        **jp_server_config,
        "ServerlessGateway": {"url": engine.url, "token": engine.tokens["alice"]},
    }


async def call(jp_fetch, method: str, *path: str, **kwargs):
    try:
        answer = await jp_fetch("reeflab", "api", "serverless", *path, method=method, **kwargs)
    except HTTPClientError as error:
        return error.code, json.loads(error.response.body)
    return answer.code, answer.body


async def test_the_panel_makes_a_module_serverless_calls_it_and_batches(jp_fetch, engine):
    code, body = await call(
        jp_fetch, "POST", "services", body=json.dumps({"module": "fish-detector", "outputs": ["alice/gw-out"]})
    )
    assert code == 201 and json.loads(body)["owner"] == "alice"
    code, body = await call(jp_fetch, "GET", "oscar", "system", "services")
    assert [s["name"] for s in json.loads(body)] == ["fish-detector"]
    image = base64.b64encode((SAMPLES / "fish_01.jpg").read_bytes())
    code, body = await call(jp_fetch, "POST", "oscar", "run", "fish-detector", body=image, request_timeout=300)
    assert code == 200 and json.loads(base64.b64decode(body))["detections"]
    named = {"Content-Disposition": content_disposition("dive log, day 2.txt")}  # the caller's file name goes along
    code, body = await call(jp_fetch, "POST", "oscar", "run", "fish-detector", body=b"bm90IGFuIGltYWdl", headers=named)
    assert code == 400 and "dive log, day 2.txt" in body["message"], body

    engine.s3("alice").upload_file(str(SAMPLES / "fish_02.jpg"), "alice", "gw-in/fish_02.jpg")
    code, body = await call(
        jp_fetch, "POST", "batches", body=json.dumps({"service": "fish-detector", "inputs": "alice/gw-in"})
    )
    assert code == 201
    batch = json.loads(body)["id"]

    for _ in range(240):  # the panel polls the batch for its progress bar
        state = json.loads((await call(jp_fetch, "GET", "batches", batch))[1])
        if state["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.5)
    assert state and (state["status"], state["done"], state["total"]) == ("succeeded", 1, 1), state
    assert engine.s3("alice").get_object(Bucket="alice", Key="gw-out/fish_02.json")["Body"].read()


async def test_credentials_and_other_routes_are_not_forwarded(jp_fetch):
    code, body = await call(jp_fetch, "GET", "oscar", "system", "config")
    assert code == 404 and "not an OSCAR route" in body["message"]
    code, body = await call(jp_fetch, "POST", "services", body=json.dumps({"module": "no-such-module"}))
    assert code == 404
    code, body = await call(jp_fetch, "GET", "oscar", "system", "services", "nope")
    assert code == 404 and "no service named 'nope'" in body["message"]
    code, body = await call(jp_fetch, "POST", "batches", body=json.dumps({"service": "x"}))
    assert code == 400 and "inputs" in body["message"]


async def test_oscar_v4_routes_are_forwarded(jp_fetch, engine):
    """What the panel and the OSCAR dashboard call besides services/run/job: the engine's own answers."""
    script = {"name": "gw-v4", "image": "alpine", "cpu": "0.5", "memory": "256Mi", "script": "#!/bin/sh\necho hi\n"}
    code, _ = await call(jp_fetch, "POST", "oscar", "system", "services", body=json.dumps(script))
    assert code == 201
    try:
        code, body = await call(jp_fetch, "GET", "oscar", "system", "services", "gw-v4", "deployment")
        assert code == 200 and json.loads(body)["service_name"] == "gw-v4"
        code, body = await call(jp_fetch, "GET", "oscar", "system", "services", "gw-v4", "deployment", "logs")
        assert code == 200 and isinstance(json.loads(body)["entries"], list)
        for action, state in [("stop", "stopped"), ("start", None), ("restart", None)]:
            code, body = await call(jp_fetch, "POST", "oscar", "system", "services", "gw-v4", action, body=b"")
            assert code == 200 and json.loads(body)["service_name"] == "gw-v4", action
            assert state is None or json.loads(body)["state"] == state

        code, body = await call(jp_fetch, "GET", "oscar", "system", "logs")
        assert code == 200 and "logs" in json.loads(body)
        code, body = await call(jp_fetch, "GET", "oscar", "system", "buckets")
        assert code == 200 and "alice" in [b["bucket_name"] for b in json.loads(body)]
        presign = json.dumps({"object_key": "gw/note.txt", "operation": "upload"})
        code, body = await call(jp_fetch, "POST", "oscar", "system", "buckets", "alice", "presign", body=presign)
        assert code == 200 and json.loads(body)["method"] == "PUT" and json.loads(body)["url"].startswith("http")
        code, body = await call(jp_fetch, "GET", "oscar", "system", "buckets", "alice")
        assert code == 200 and json.loads(body)["owner"] == "alice"

        code, body = await call(jp_fetch, "GET", "oscar", "system", "metrics")
        assert code == 200 and json.loads(body)["totals"]["services_count_total"] >= 1
        code, body = await call(jp_fetch, "GET", "oscar", "system", "metrics", "gw-v4")
        assert code == 200 and json.loads(body)["metrics"]
        code, body = await call(jp_fetch, "GET", "oscar", "system", "quotas", "user")
        assert code == 200 and json.loads(body)["user_id"] == "alice"

        # reaches the engine (its own answer, not the gateway's): a service with no `expose` has none
        code, body = await call(jp_fetch, "GET", "oscar", "system", "services", "gw-v4", "exposed", "x")
        assert code == 404 and "no exposed service named 'gw-v4'" in body["message"]
    finally:
        await call(jp_fetch, "DELETE", "oscar", "system", "services", "gw-v4")


async def test_an_exposed_service_through_the_users_server(jp_fetch):
    service = exposed("gw-echo", 8775, set_auth=True)  # the server's own login (its hub token) is enough
    code, _ = await call(jp_fetch, "POST", "oscar", "system", "services", body=json.dumps(service))
    assert code == 201
    try:
        for _ in range(120):
            code, body = await call(jp_fetch, "GET", "oscar", "system", "services", "gw-echo", "deployment")
            if json.loads(body)["state"] == "ready":
                break
            await asyncio.sleep(0.5)
        code, body = await call(
            jp_fetch,
            "POST",
            "oscar",
            "system",
            "services",
            "gw-echo",
            "exposed",
            "reef",
            params={"depth": 3},
            body=b"x",
        )
        seen = json.loads(body)
        assert code == 201 and (seen["method"], seen["path"], seen["query"], seen["body"]) == (
            "POST",
            "/reef",
            "depth=3",
            "x",
        )
        assert "AUTHORIZATION" not in seen["headers"]  # the server's token stays with the engine
    finally:
        await call(jp_fetch, "DELETE", "oscar", "system", "services", "gw-echo")
