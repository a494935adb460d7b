"""OSCAR's contract on the local engine, and no 5xx from anything a caller sends.

A real engine (with a real SeaweedFS) runs for the module: OSCAR-format FDL files as OSCAR's examples
write them, OSCAR's input file naming, bad and fuzzed bodies answered with a 4xx and words, services that
could never run refused at creation, one job per upload, S3 keys that reach workers made before them.
"""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reeflab.files import free_port
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.serverless.batch import Batch, BatchError, Engine
from reeflab.testing.process import wait_until

EVENT_FILE = re.compile(r"event-file-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NAME_SCRIPT = 'echo "input: $(basename "$INPUT_FILE_PATH")"\n'
LEAKS = ("Traceback", 'File "', "/site-packages/", "/tmp/")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("contract") / "state"
    args = ["--ServerlessApp.max_workers=4", "--ServerlessApp.reconcile_seconds=2"]
    with EngineProcess(state, users=["alice", "bob", "carol"], args=args, s3=True) as engine:
        engine.request("POST", "/system/services", "alice", json=script("names", NAME_SCRIPT)).raise_for_status()
        yield engine


def script(name: str, body: str, **extra) -> dict:
    return {"name": name, "image": "ghcr.io/example/alpine", "cpu": "0.25", "memory": "128Mi", "script": body, **extra}


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def no_leak(answer: requests.Response) -> None:
    assert answer.status_code < 500, f"{answer.status_code}: {answer.text[:300]}"
    assert not any(leak in answer.text for leak in LEAKS), answer.text[:300]


def test_oscar_example_fdl_files_are_accepted(engine, tmp_path):
    # as OSCAR's examples write them: a file for oscar-cli / oscar-python, `Variables` capitalised
    (tmp_path / "script.sh").write_text('echo "$GREETING from $(basename "$INPUT_FILE_PATH")"\n')
    service = {
        "name": "cowsay-like",
        "cpu": "0.5",
        "memory": "256Mi",
        "image": "ghcr.io/example/cowsay",
        "script": "script.sh",
        "log_level": "CRITICAL",
        "vo": "vo.example.eu",
        "environment": {"Variables": {"GREETING": "hello", "DEBUG": 1}},
    }
    (tmp_path / "cowsay.yaml").write_text(yaml.safe_dump({"functions": {"oscar": [{"reeflab": service}]}}))
    alice = engine.client("alice")
    assert alice.create_service(str(tmp_path / "cowsay.yaml")).status_code == 201
    shown = alice.get_service("cowsay-like").json()
    assert shown["environment"]["variables"] == {"GREETING": "hello", "DEBUG": "1"} and shown["vo"] == "vo.example.eu"
    assert alice.run_service("cowsay-like", input="x").text.startswith("hello from event-file-")

    # a bare definition, keys in any case (Go's binding), through the raw API
    bare = {"Name": "any-case", "Script": "echo ok\n", "CPU": "0.5", "Memory": "128Mi"}
    bare["Environment"] = {"Variables": {"A": "b"}, "Secrets": {"S": "t"}}
    assert engine.request("POST", "/system/services", "alice", json=bare).status_code == 201
    assert engine.request("GET", "/system/services/any-case", "alice").json()["environment"]["variables"] == {"A": "b"}
    twice = engine.request("POST", "/system/services", "alice", json={**script("twice", "echo\n"), "SCRIPT": "x"})
    assert twice.status_code == 400 and "given twice" in twice.text
    # the whole file is not a service: the route says what to send (as OSCAR's takes one service)
    whole = engine.request("POST", "/system/services", "alice", json={"functions": {"oscar": [{"reeflab": service}]}})
    assert whole.status_code == 400 and "functions.oscar" in whole.text


def test_inputs_are_named_as_oscar_names_them_unless_the_caller_names_them(engine):
    alice = engine.client("alice")
    answer = alice.run_service("names", input="some text").text
    assert EVENT_FILE.fullmatch(answer.strip().removeprefix("input: ")), answer
    job = alice.run_service("names", input="some text", async_call=True).json()["jobName"]
    wait_until(lambda: alice.list_jobs("names").json()["jobs"][job]["status"] == "Succeeded", 60, "the job")
    assert EVENT_FILE.search(alice.get_job_logs("names", job).text)
    # a module sees (and its errors name) the caller's own file name
    module = {**script("named-module", ""), "cpu": "1", "memory": "2Gi"}
    module["environment"] = {"variables": {"REEFLAB_MODULE": "image-classifier"}}
    engine.request("POST", "/system/services", "alice", json=module).raise_for_status()
    headers = {"Content-Disposition": 'attachment; filename="notes-from-dive.txt"'}
    refused = engine.request("POST", "/run/named-module", "alice", data=b64(b"not an image"), headers=headers)
    assert refused.status_code == 400 and "notes-from-dive.txt" in refused.text, refused.text
    no_leak(refused)


@pytest.mark.parametrize(
    "disposition, name",
    [
        ('attachment; filename="reef.jpg"', "reef.jpg"),
        ("attachment; filename=reef.jpg", "reef.jpg"),
        ("attachment; filename*=UTF-8''plong%C3%A9e%2C%20jour%202%3A%20notes.txt", "plongée, jour 2: notes.txt"),
        ("attachment; filename=\"fallback.txt\"; filename*=utf-8''r%C3%A9cif.jpg", "récif.jpg"),  # RFC 6266: * wins
        ("attachment; filename*=ISO-8859-1''r%E9cif.jpg", "récif.jpg"),
        ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd"),  # a base name only
        ("attachment; filename*=UTF-8''%FF%FE", None),  # not UTF-8
        ("attachment; filename*=no-such-charset''x.jpg", None),
        ("attachment; filename*=UTF-8''a%0Ab", None),  # control characters
        ("attachment", None),
    ],
)
def test_the_callers_file_name_is_read_from_content_disposition(disposition, name):
    from reeflab.serverless.invocations import content_disposition, given_name

    assert given_name(disposition) == name
    if name:
        assert given_name(content_disposition(name)) == name and "," not in content_disposition(name)


def test_the_python_client_sends_the_files_own_name(engine, tmp_path):
    """serverless.invoke (through oscar-python) and submit name the file: the module and its errors see that name."""
    from reeflab.client import serverless
    from reeflab.client.connection import ReefLabClientError

    module = {**script("client-names", ""), "cpu": "1", "memory": "2Gi"}
    module["environment"] = {"variables": {"REEFLAB_MODULE": "image-classifier"}}
    engine.request("POST", "/system/services", "alice", json=module).raise_for_status()
    alice = Engine(engine.url, f"Bearer {engine.tokens['alice']}")
    notes = tmp_path / "plongée, jour 2: notes.txt"  # a comma and a colon: oscar-python splits its headers on them
    notes.write_text("not an image")
    with pytest.raises(ReefLabClientError) as refused:
        serverless.invoke("client-names", notes, engine=alice)
    assert refused.value.status == 400 and notes.name in refused.value.message
    assert "event-file-" not in refused.value.message

    job = serverless.submit("client-names", notes, engine=alice)
    wait_until(lambda: serverless.logs("client-names", engine=alice)[job]["status"] == "Failed", 120, "the job")
    assert notes.name in serverless.logs("client-names", job, engine=alice)

    image = tmp_path / "reef photo.png"
    Image.new("RGB", (64, 64), (0, 90, 160)).save(image)
    answer = serverless.invoke("client-names", image, engine=alice)
    assert answer  # the module's answer for a real image
    with pytest.raises(BatchError) as missing:
        serverless.submit("no-such-service", image, engine=alice)
    assert "reef photo.png" in str(missing.value) and "404" in str(missing.value)
    engine.request("DELETE", "/system/services/client-names", "alice")


@pytest.mark.parametrize("route", ["/system/services", "/run/names", "/job/names"])
def test_deeply_nested_bodies_are_answered_without_a_500(engine, route):
    for body in (b"[" * 2048, b"[" * 1024 + b"]" * 1024, b'{"a":' * 700 + b"1" + b"}" * 700):
        answer = engine.request("POST", route, "alice", data=body)
        no_leak(answer)
        if route == "/system/services":
            assert answer.status_code == 400 and "nest" in answer.text


@pytest.mark.parametrize("route", ["/run/names", "/job/names"])
def test_bad_batch_slices_are_refused_with_the_field(engine, route):
    bad = [
        ({"id": "b1", "index": "alice/x/index.json", "start": "a", "end": 2}, "reeflab_batch.start"),
        ({"id": "../../x", "index": "alice/x/index.json", "start": 0, "end": 2}, "reeflab_batch.id"),
        ({"id": "b1", "index": "../index.json", "start": 0, "end": 2}, "reeflab_batch.index"),
        ({"id": "b1", "index": "alice/x/index.json", "start": 5, "end": 2}, "reeflab_batch.end"),
    ]
    for descriptor, field in bad:
        answer = engine.request("POST", route, "alice", data=b64(json.dumps({"reeflab_batch": descriptor}).encode()))
        assert answer.status_code == 400 and field in answer.text, answer.text
        no_leak(answer)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries(
    {"name": st.sampled_from(["fuzzed", "names", "Bad Name", ""])},
    optional={
        "script": st.text(max_size=20),
        "cpu": st.one_of(st.text(max_size=6), st.integers(-2, 4), st.floats(allow_nan=False)),
        "memory": st.one_of(st.text(max_size=6), st.integers(-2, 2**40)),
        "environment": JSON,
        "Environment": st.fixed_dictionaries({"Variables": st.dictionaries(st.text(max_size=8), JSON, max_size=3)}),
        "input": JSON,
        "synchronous": JSON,
        "visibility": JSON,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(
        [
            ("POST", "/system/services"),
            ("PUT", "/system/services"),
            ("PUT", "/system/services/fuzzed"),
            ("POST", "/run/names"),
            ("POST", "/job/names"),
        ]
    ),
    body=st.one_of(
        FIELDS.map(lambda d: json.dumps(d).encode()),
        JSON.map(lambda d: json.dumps(d).encode()),
        JSON.map(lambda d: b64(json.dumps({"reeflab_batch": d}).encode())),
        st.binary(max_size=64),
    ),
)
def test_fuzzed_bodies_never_get_a_5xx(engine, route, body):
    method, path = route
    no_leak(engine.request(method, path, "alice", data=body))


def test_services_that_could_never_run_are_refused(engine):
    module = {**script("picky-module", ""), "cpu": "1", "memory": "2Gi"}
    module["environment"] = {
        "variables": {"REEFLAB_MODULE": "image-classifier", "REEFLAB_PREDICT_ARGS": '{"no_such_option": 3}'}
    }
    answer = engine.request("POST", "/system/services", "alice", json=module)
    assert answer.status_code == 400 and "REEFLAB_PREDICT_ARGS" in answer.text and "no_such_option" in answer.text
    for field, value in (("memory", "0"), ("cpu", "0"), ("cpu", 0), ("memory", "0Mi")):
        never = script("never", "echo\n", **{field: value})
        answer = engine.request("POST", "/system/services", "alice", json=never)
        assert answer.status_code == 400, answer.text
        assert answer.text.startswith(f"invalid service definition: {field}:"), answer.text


def test_workers_get_the_owners_s3_key_once_it_exists(engine):
    env = script("carol-env", 'env | grep -c "^AWS_ACCESS_KEY_ID=" || true\n')
    assert engine.request("POST", "/system/services", "carol", json=env).status_code == 201
    assert engine.request("POST", "/run/carol-env", "carol", data=b64(b"x")).text.strip() == "0"
    engine.request("GET", "/system/config", "carol").raise_for_status()  # makes carol's key
    assert engine.request("POST", "/run/carol-env", "carol", data=b64(b"x")).text.strip() == "1"


def test_two_uploads_of_one_key_within_a_second_are_two_jobs(engine):
    service = script("every-upload", 'cat "$INPUT_FILE_PATH"\n')
    service["input"] = [{"storage_provider": "minio.default", "path": "bob/uploads"}]
    assert engine.request("POST", "/system/services", "bob", json=service).status_code == 201
    s3 = engine.s3("bob")
    began = time.time()
    s3.put_object(Bucket="bob", Key="uploads/same.txt", Body=b"first")
    s3.put_object(Bucket="bob", Key="uploads/same.txt", Body=b"again")  # same size, same second
    assert time.time() - began < 1

    def jobs() -> dict | None:
        found = engine.request("GET", "/system/logs/every-upload", "bob").json()["jobs"]
        return found if len(found) >= 2 and all(j["status"] == "Succeeded" for j in found.values()) else None

    done = wait_until(jobs, 60, "a job for each upload")
    time.sleep(4)  # the catch-up listing (every 2 s) sees the second upload again: no third job
    assert len(engine.request("GET", "/system/logs/every-upload", "bob").json()["jobs"]) == len(done) == 2


class Interrupted(Exception):
    pass


def test_a_batch_resumed_without_options_processes_each_file_once(engine):
    s3 = engine.s3("alice")
    total = 12
    for i in range(total):
        path = f"/tmp/contract-{i}.png"
        Image.new("RGB", (16, 16), (i * 20, 90, 160)).save(path)
        s3.upload_file(path, "alice", f"frames/f{i:02d}.png")
    service = {**script("batcher", ""), "cpu": "0.5", "memory": "1Gi"}
    service["environment"] = {"variables": {"REEFLAB_MODULE": "image-classifier"}}
    service["output"] = [{"storage_provider": "minio.default", "path": "alice/frames-out"}]
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    login = Engine(engine.url, f"Bearer {engine.tokens['alice']}")
    first = Batch(login, "batcher", "alice/frames", slice_size=4, parallel=1)

    def killed(done: int, of: int) -> None:
        if done:
            raise Interrupted

    with pytest.raises(Interrupted):
        first.run(progress=killed, poll=0.2)
    result = Batch(login, "batcher", "alice/frames", resume=first.id).run(progress=False, poll=0.2)
    assert (result.total, result.processed, result.failed, result.slices) == (total, total, [], 3)
    jobs = engine.request("GET", "/system/logs/batcher", "alice").json()["jobs"]
    assert len(jobs) == 3, "each slice ran once: the resumed batch kept the first run's plan"
    assert sum(m["processed"] for m in first.done_markers().values()) == total


def test_a_batch_whose_engine_is_gone_says_so_in_words():
    gone = Engine(f"http://127.0.0.1:{free_port()}", "Bearer nobody")
    with pytest.raises(BatchError, match="did not answer"):
        Batch(gone, "anything", "alice/frames")
