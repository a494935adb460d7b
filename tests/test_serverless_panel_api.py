"""What the panel's serverless forms rely on, through the user's server against a real engine and SeaweedFS.

A service made with an input and an output folder finds both in its owner's bucket; an upload into the
input folder makes a job that names the uploaded file and says where its result went; a sync call names
the caller's file; a batch needs an output and, once it ended, can be removed without touching its results;
the Python client never prints a service's token.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from IPython.lib.pretty import pretty
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.serverless.batch import Engine
from reeflab.testing.process import wait_until
from tornado.httpclient import HTTPClientError

SAMPLES = Path(__file__).parents[1] / "server_extension/reeflab/modules/fish_detector/samples"
SERVICE = "reef-fish"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("panel-api") / "state"
    with EngineProcess(state, users=["alice"], args=["--ServerlessApp.max_workers=2"], s3=True) as engine:
        yield engine


@pytest.fixture
def jp_server_config(jp_server_config, engine):
    return {**jp_server_config, "ServerlessGateway": {"url": engine.url, "token": engine.tokens["alice"]}}


async def call(jp_fetch, method: str, *path: str, **kwargs):
    try:
        answer = await jp_fetch("reeflab", "api", "serverless", *path, method=method, **kwargs)
    except HTTPClientError as error:
        return error.code, json.loads(error.response.body) if error.response.body else None
    return answer.code, json.loads(answer.body) if answer.body else None


async def batch_ended(jp_fetch, batch_id: str) -> dict:
    for _ in range(240):
        state = (await call(jp_fetch, "GET", "batches", batch_id))[1]
        if state["finished"]:
            return state
        await asyncio.sleep(0.5)
    raise AssertionError(f"batch {batch_id} did not end: {state}")


def keys(engine: EngineProcess, prefix: str) -> list[str]:
    listing = engine.s3("alice").list_objects_v2(Bucket="alice", Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


async def test_a_service_with_folders_runs_a_job_per_upload_named_after_the_file(jp_fetch, engine):
    request = {
        "module": "fish-detector",
        "name": SERVICE,
        "cpu": "1",
        "memory": "2000M",  # the panel's GB, as decimal megabytes
        "inputs": [f"alice/{SERVICE}/in"],
        "outputs": [f"alice/{SERVICE}/out"],
    }
    code, made = await call(jp_fetch, "POST", "services", body=json.dumps(request))
    assert code == 201, made
    assert [io["path"] for io in made["input"]] == [f"alice/{SERVICE}/in"] and made["memory"] == "2000M"
    # both folders exist before anything is in them, so that people see where to upload and where results go
    assert keys(engine, f"{SERVICE}/") == [f"{SERVICE}/in/", f"{SERVICE}/out/"]

    engine.s3("alice").upload_file(str(SAMPLES / "fish_02.jpg"), "alice", f"{SERVICE}/in/fish_02.jpg")

    def succeeded():
        jobs = engine.request("GET", f"/system/logs/{SERVICE}", "alice").json()["jobs"]
        return next((job for job in jobs.values() if job["status"] in ("Succeeded", "Failed")), None)

    job = wait_until(succeeded, 180, "the job of the upload")
    assert job["status"] == "Succeeded", job
    assert job["file"] == "fish_02.jpg" and job["input"] == f"alice/{SERVICE}/in/fish_02.jpg"
    assert job["outputs"] == [f"alice/{SERVICE}/out/fish_02.json"]
    result = json.loads(engine.s3("alice").get_object(Bucket="alice", Key=f"{SERVICE}/out/fish_02.json")["Body"].read())
    assert result["file"] == "fish_02.jpg" and result["detections"]

    # a sync call from the panel sends the file's name: the answer and the errors are about that file
    named = {"Content-Disposition": "attachment; filename*=UTF-8''r%C3%A9cif%201.jpg"}
    image = base64.b64encode((SAMPLES / "fish_01.jpg").read_bytes())
    answer = await jp_fetch(
        "reeflab", "api", "serverless", "oscar", "run", SERVICE, method="POST", body=image, headers=named
    )
    assert json.loads(base64.b64decode(answer.body))["file"] == "récif 1.jpg"
    code, refused = await call(jp_fetch, "POST", "oscar", "run", SERVICE, body=base64.b64encode(b"no"), headers=named)
    assert code == 400 and "récif 1.jpg" in refused["message"] and "event-file-" not in refused["message"]

    # jobs sent by code with a name carry it too
    code, sent = await call(jp_fetch, "POST", "oscar", "job", SERVICE, body=image, headers=named)
    assert code == 201
    jobs = engine.request("GET", f"/system/logs/{SERVICE}", "alice").json()["jobs"]
    assert jobs[sent["jobName"]]["file"] == "récif 1.jpg" and "input" not in jobs[sent["jobName"]]


async def test_a_batch_needs_an_output_and_an_ended_one_can_be_removed(jp_fetch, engine):
    made = {"module": "fish-detector", "name": "fish-batch", "cpu": "1", "memory": "2000M"}  # no folders
    assert (await call(jp_fetch, "POST", "services", body=json.dumps(made)))[0] == 201

    # no output folder, none given: refused at once, with what to give (no failed batch left behind)
    nowhere = {"service": "fish-batch", "inputs": "alice/x"}
    code, refused = await call(jp_fetch, "POST", "batches", body=json.dumps(nowhere))
    assert code == 400 and "'fish-batch' has no output folder" in refused["message"], refused
    assert "'output'" in refused["message"]
    code, refused = await call(jp_fetch, "POST", "batches", body=json.dumps({"service": "nope", "inputs": "alice/x"}))
    assert code == 404 and "no service named 'nope'" in refused["message"]
    assert (await call(jp_fetch, "GET", "batches"))[1] == []

    s3 = engine.s3("alice")
    s3.upload_file(str(SAMPLES / "fish_03.jpg"), "alice", "survey/fish_03.jpg")
    good = {"service": "fish-batch", "inputs": "alice/survey", "output": "alice/counts"}
    code, kept = await call(jp_fetch, "POST", "batches", body=json.dumps(good))
    assert code == 201 and kept["output"] == "alice/counts"
    # nothing to read: this one fails
    empty = {"service": "fish-batch", "inputs": "alice/nothing-here", "output": "alice/counts-2"}
    code, failing = await call(jp_fetch, "POST", "batches", body=json.dumps(empty))
    assert code == 201
    code, refused = await call(jp_fetch, "DELETE", "batches", kept["id"])
    assert code in (204, 409)  # 409 while it runs: a running batch is not forgotten
    if code == 409:
        assert "still running" in refused["message"]

    failed = await batch_ended(jp_fetch, failing["id"])
    assert failed["status"] == "failed" and "no input files" in failed["message"]
    assert (await batch_ended(jp_fetch, kept["id"]))["status"] == "succeeded"
    assert (await call(jp_fetch, "DELETE", "batches", failing["id"]))[0] == 204
    assert (await call(jp_fetch, "GET", "batches", failing["id"]))[0] == 404
    # the other batch and its results stay
    assert [b["id"] for b in (await call(jp_fetch, "GET", "batches"))[1]] == [kept["id"]]
    assert json.loads(s3.get_object(Bucket="alice", Key="counts/fish_03.json")["Body"].read())["detections"]
    assert (await call(jp_fetch, "DELETE", "batches", "0badbad0"))[0] == 404


def test_the_python_client_never_prints_a_services_token(engine, monkeypatch):
    from reeflab.client import serverless

    monkeypatch.setenv("REEFLAB_URL", "http://127.0.0.1:9")  # no Jupyter server: metadata from this environment
    alice = Engine(engine.url, f"Bearer {engine.tokens['alice']}")
    made = serverless.create("fish-detector", name="token-shy", inputs=["alice/shy/in"], engine=alice)
    try:
        token = engine.request("GET", "/system/services/token-shy", "alice").json()["token"]
        assert made.token == token and made["name"] == "token-shy" and "token" not in made
        # what a notebook cell shows (IPython), print(), str() and JSON of it: never the token
        for shown in (pretty(made), repr(made), str(made), json.dumps(made)):
            assert token not in shown and "shy/in" in shown
        assert "service.token" in repr(made)
        assert all(token not in repr(s) for s in serverless.services(engine=alice))
    finally:
        serverless.delete("token-shy", engine=alice)
