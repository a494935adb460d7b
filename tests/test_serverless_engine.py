"""The local OSCAR engine as users meet it: oscar-python unchanged, several users, bad input, crashes.

Each test drives a real engine process (`python -m reeflab.oscar_engine`) on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal

import psutil
import pytest
import requests
import yaml
from PIL import Image
from reeflab.files import free_port
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.storage.platform_s3 import s3_client
from reeflab.testing.hub import HubProcess
from reeflab.testing.process import wait_until

UPPER_SCRIPT = """\
#!/bin/sh
echo "processing $(basename "$INPUT_FILE_PATH")"
tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/upper.txt"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("serverless") / "state"
    with EngineProcess(state, users=["alice", "bob"], args=["--ServerlessApp.max_workers=6"]) as engine:
        yield engine


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "reef.jpg"
    Image.new("RGB", (96, 64), (20, 110, 170)).save(path, format="JPEG")
    return path


def script_service(name: str, script: str = UPPER_SCRIPT, **extra) -> dict:
    return {"name": name, "image": "ghcr.io/example/alpine", "cpu": "0.5", "memory": "256Mi", "script": script, **extra}


def module_service(name: str, module: str) -> dict:
    return {
        "name": name,
        "image": "ai4oshub/ignored-locally",
        "cpu": "1",
        "memory": "2Gi",
        "script": "",
        "environment": {"variables": {"REEFLAB_MODULE": module}},
    }


def wait_jobs(client, service: str, names: list[str], timeout: float = 120) -> dict[str, str]:
    """Poll the job list until every named job finished; returns name -> status."""

    def finished():
        jobs = client.list_jobs(service).json()["jobs"]
        states = {name: jobs[name]["status"] for name in names if name in jobs}
        done = len(states) == len(names) and all(s in ("Succeeded", "Failed") for s in states.values())
        return states if done else None

    return wait_until(finished, timeout, f"jobs of {service} to finish", interval=0.2)


def submit(client, service: str, path) -> str:
    answer = client.run_service(service, input=str(path), async_call=True)
    assert answer.status_code == 201
    return answer.json()["jobName"]


def test_oscar_python_drives_a_module_service(engine, image, tmp_path):
    alice = engine.client("alice")
    assert alice.health_check().text == "Ok"
    assert alice.get_cluster_info().json()["serverless_backend"]["name"] == "reeflab-local"
    assert set(alice.get_cluster_config().json()["minio_provider"]) >= {"endpoint", "access_key", "secret_key"}

    assert alice.create_service(module_service("classify", "image-classifier")).status_code == 201
    assert "classify" in [s["name"] for s in alice.list_services().json()]
    service = alice.get_service("classify").json()
    assert service["owner"] == "alice" and len(service["token"]) == 64
    with pytest.raises(ValueError, match="already present"):
        alice.create_service(module_service("classify", "image-classifier"))
    storage = alice.create_storage_client("classify")  # reads the service and /system/config/
    assert set(storage.storage_providers["minio"]["default"]) >= {"endpoint", "access_key", "secret_key"}

    out = tmp_path / "result.json"
    answer = alice.run_service("classify", input=str(image), output=str(out), timeout=180)
    assert answer.status_code == 200
    result = json.loads(out.read_text())
    assert (result["width"], result["height"]) == (96, 64) and len(result["classes"]) == 5

    jobs = [submit(alice, "classify", image) for _ in range(2)]
    assert wait_jobs(alice, "classify", jobs) == dict.fromkeys(jobs, "Succeeded")
    log = alice.get_job_logs("classify", jobs[0]).text
    assert '"classes"' in log and log.count("job succeeded") == 1

    alice.remove_job("classify", jobs[0])
    assert list(alice.list_jobs("classify").json()["jobs"]) == [jobs[1]]
    with pytest.raises(requests.HTTPError) as missing:
        alice.get_job_logs("classify", jobs[0])
    assert missing.value.response.status_code == 404
    alice.remove_all_jobs("classify")
    assert alice.list_jobs("classify").json() == {"jobs": {}, "next_page": "", "remaining_jobs": 0}
    alice.remove_service("classify")
    assert "classify" not in [s["name"] for s in alice.list_services().json()]


def test_script_service_from_an_fdl_file_sync_and_async(engine, tmp_path):
    (tmp_path / "upper.sh").write_text(UPPER_SCRIPT)
    fdl = {"functions": {"oscar": [{"reeflab": {**script_service("upper"), "script": "upper.sh", "cpu": 0.5}}]}}
    (tmp_path / "upper.yaml").write_text(yaml.safe_dump(fdl))
    alice = engine.client("alice")
    alice.create_service(str(tmp_path / "upper.yaml"))
    (tmp_path / "note.txt").write_text("parrotfish at 12 m")

    out = tmp_path / "upper.txt"
    alice.run_service("upper", input=str(tmp_path / "note.txt"), output=str(out))
    assert out.read_text() == "PARROTFISH AT 12 M"
    job = submit(alice, "upper", tmp_path / "note.txt")
    assert wait_jobs(alice, "upper", [job]) == {job: "Succeeded"}
    assert "processing event-file-" in alice.get_job_logs("upper", job).text  # OSCAR's name for the input

    # no output file: the answer is what the script printed (OSCAR's rule)
    alice.update_service("upper", script_service("upper", script="echo hello from $(hostname)\n"))
    answer = alice.run_service("upper", input=str(tmp_path / "note.txt"))
    assert answer.text.startswith("hello from ")
    alice.remove_service("upper")


def test_users_see_and_use_only_their_own_or_public_services(engine, tmp_path):
    alice, bob = engine.client("alice"), engine.client("bob")
    alice.create_service(script_service("alice-private"))
    alice.create_service(script_service("alice-public", visibility="public"))
    try:
        listed = [s["name"] for s in bob.list_services().json()]
        assert "alice-private" not in listed and "alice-public" in listed
        for method, path in [
            ("GET", "/system/services/alice-private"),
            ("PUT", "/system/services/alice-private"),
            ("DELETE", "/system/services/alice-private"),
            ("POST", "/run/alice-private"),
            ("POST", "/job/alice-private"),
            ("GET", "/system/logs/alice-private"),
            ("DELETE", "/system/logs/alice-private"),
        ]:
            answer = engine.request(method, path, "bob", json=script_service("alice-private"))
            assert answer.status_code == 404, (method, path, answer.text)
            assert "no service named 'alice-private'" in answer.text

        (tmp_path / "in.txt").write_text("bob was here")
        assert base64.b64decode(bob.run_service("alice-public", input=str(tmp_path / "in.txt")).text) == b"BOB WAS HERE"
        # oscar-python invokes with the service token (acting as the owner); with his own login bob's job is his
        bobs = engine.request("POST", "/job/alice-public", "bob", data=b"Ym9i").json()["jobName"]
        alices = submit(alice, "alice-public", tmp_path / "in.txt")
        wait_jobs(alice, "alice-public", [bobs, alices])
        assert list(bob.list_jobs("alice-public").json()["jobs"]) == [bobs]
        assert "outputs: upper.txt (3 bytes)" in bob.get_job_logs("alice-public", bobs).text
        assert engine.request("GET", f"/system/logs/alice-public/{alices}", "bob").status_code == 404
        assert engine.request("DELETE", "/system/services/alice-public", "bob").status_code == 403
        taken = engine.request("POST", "/system/services", "bob", json=script_service("alice-private"))
        assert taken.status_code == 409

        assert engine.request("GET", "/system/services").status_code == 401
        alices_password = engine.login("alice")["auth_password"]
        for login in [("bob", "wrong"), ("bob", alices_password)]:
            assert requests.get(engine.url + "/system/services", auth=login, timeout=10).status_code == 401
        wrong_token = {"Authorization": "Bearer " + "0" * 64}
        assert engine.request("POST", "/run/alice-private", headers=wrong_token).status_code == 401
        token = alice.get_service("alice-private").json()["token"]
        assert engine.request("POST", "/run/alice-private", headers={"Authorization": f"Bearer {token}"}).ok
    finally:
        alice.remove_service("alice-private")
        alice.remove_service("alice-public")


def test_secrets_are_masked_in_the_api_but_reach_the_script(engine):
    alice, bob = engine.client("alice"), engine.client("bob")
    webdav = {"webdav": {"nas": {"hostname": "https://nas.example.org", "login": "alice", "password": "nas-pass"}}}
    service = script_service(
        "keyed",
        script='echo "key=$API_KEY"\n',
        visibility="public",
        environment={"secrets": {"API_KEY": "s3cr3t"}},
        storage_providers=webdav,
    )
    alice.create_service(service)
    try:
        shown = alice.get_service("keyed").json()
        assert shown["environment"]["secrets"] == {"API_KEY": "********"} and "s3cr3t" not in json.dumps(shown)
        assert shown["storage_providers"] == webdav  # the owner's own, as oscar-python's storage client needs
        assert bob.get_service("keyed").json()["storage_providers"] == {}
        alice.update_service("keyed", {**shown, "script": 'echo "still key=$API_KEY"\n'})  # sent back masked
        assert alice.run_service("keyed").text.strip() == "still key=s3cr3t"
    finally:
        alice.remove_service("keyed")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Fish_Detector"}, "name:"),
        ({"cpu": "lots"}, "cpu:"),
        ({"memory": "1 bucket"}, "memory:"),
        ({"script": ""}, "script"),
        ({"environment": {"variables": {"REEFLAB_MODULE": "no-such-module"}}}, "REEFLAB_MODULE: no module named"),
        ({"synchronous": {"min_scale": 3, "max_scale": 1}}, "max_scale"),
        ({"visibility": "everyone"}, "visibility:"),
    ],
)
def test_a_malformed_service_is_refused_with_the_field_to_fix(engine, change, field):
    answer = engine.request("POST", "/system/services", "alice", json={**script_service("fine-name"), **change})
    assert answer.status_code == 400 and field in answer.text, answer.text
    assert engine.request("GET", "/system/services/fine-name", "alice").status_code == 404


def test_unknown_services_and_bad_bodies_get_4xx(engine):
    for method, path in [("GET", "/system/services/nope"), ("POST", "/run/nope"), ("GET", "/system/logs/nope")]:
        answer = engine.request(method, path, "alice")
        assert answer.status_code == 404 and "no service named 'nope'" in answer.text
    answer = engine.request("POST", "/system/services", "alice", data=b"name: not json")
    assert answer.status_code == 400 and "not valid JSON" in answer.text


def test_a_poison_input_fails_alone_with_its_reason(engine, image, tmp_path):
    alice = engine.client("alice")
    alice.create_service(module_service("detect", "yolo-detector"))
    alice.create_service(script_service("picky", script='grep -q good "$INPUT_FILE_PATH" || exit 3\necho ok\n'))
    try:
        notes = tmp_path / "notes.txt"
        notes.write_text("a text file, not a photo")
        good, bad = submit(alice, "detect", image), submit(alice, "detect", notes)
        assert wait_jobs(alice, "detect", [good, bad], timeout=180) == {good: "Succeeded", bad: "Failed"}
        assert '"detections"' in alice.get_job_logs("detect", good).text
        reason = alice.get_job_logs("detect", bad).text
        assert re.search(r"job failed: files: .*(not an image|could not read the input file)", reason), reason

        answer = engine.request("POST", "/run/detect", "alice", data=base64.b64encode(notes.read_bytes()))
        assert answer.status_code == 400 and answer.text.startswith("files: ")

        (tmp_path / "good.txt").write_text("good")
        ok, failing = submit(alice, "picky", tmp_path / "good.txt"), submit(alice, "picky", notes)
        assert wait_jobs(alice, "picky", [ok, failing]) == {ok: "Succeeded", failing: "Failed"}
        assert "the service script exited with status 3" in alice.get_job_logs("picky", failing).text
        assert alice.get_job_logs("picky", failing).text.count("attempt ") == 1  # a script error is not retried
    finally:
        alice.remove_service("detect")
        alice.remove_service("picky")


def running(client, service: str, job: str) -> bool:
    return client.list_jobs(service).json()["jobs"].get(job, {}).get("status") == "Running"


def test_a_worker_killed_mid_job_is_retried(engine, tmp_path):
    # a sandboxed script keeps nothing between attempts: the test kills the first one while it sleeps
    script = 'sleep 4\necho recovered > "$TMP_OUTPUT_DIR/out.txt"\n'
    alice = engine.client("alice")
    alice.create_service(script_service("fragile", script=script))
    try:
        (tmp_path / "in.txt").write_text("x")
        job = submit(alice, "fragile", tmp_path / "in.txt")
        workers = wait_until(lambda: running(alice, "fragile", job) and worker_pids(engine, "fragile"), 30, "the job")
        worker = next(iter(workers))
        assert "reeflab.oscar_engine.worker" in " ".join(psutil.Process(worker).cmdline())
        os.kill(worker, signal.SIGKILL)
        assert wait_jobs(alice, "fragile", [job]) == {job: "Succeeded"}
        log = alice.get_job_logs("fragile", job).text
        assert "killed by signal 9" in log and "attempt 2 of 3 started" in log and log.count("job succeeded") == 1
    finally:
        alice.remove_service("fragile")


def worker_pids(engine, service: str) -> set[int]:
    """The engine's live worker processes (their sandboxes) of one service: their working folder is the service's."""
    pids = set()
    for child in psutil.Process(engine.proc.pid).children():
        try:  # a worker may exit while we look at it
            if child.status() != psutil.STATUS_ZOMBIE and child.cwd().endswith("/" + service):
                pids.add(child.pid)
        except (psutil.Error, OSError):
            continue
    return pids


def test_workers_stay_warm_scale_to_zero_and_keep_min_scale(engine, tmp_path):
    alice = engine.client("alice")
    idle = {"variables": {"REEFLAB_IDLE_SECONDS": "1"}}
    # each worker (sandbox) has a home of its own: the first call there names the worker
    named = '[ -f "$HOME/id" ] || od -An -N8 -tx1 /dev/urandom | tr -d " \\n" > "$HOME/id"\ncat "$HOME/id"\n'
    alice.create_service(script_service("warm", script=named, environment=idle))
    alice.create_service(script_service("kept", environment=idle, synchronous={"min_scale": 1}))
    try:
        (tmp_path / "in.txt").write_text("x")
        first, second = (alice.run_service("warm", input=str(tmp_path / "in.txt")).text for _ in range(2))
        assert first == second and len(worker_pids(engine, "warm")) == 1  # one warm worker served both
        wait_until(lambda: not worker_pids(engine, "warm"), 15, "the idle worker to stop")
        assert alice.run_service("warm", input=str(tmp_path / "in.txt")).text != first  # a fresh one
        kept = wait_until(lambda: worker_pids(engine, "kept"), 15, "min_scale to start a worker")
        with pytest.raises(TimeoutError):
            wait_until(lambda: worker_pids(engine, "kept") != kept, 3, "")
    finally:
        alice.remove_service("warm")
        alice.remove_service("kept")
    wait_until(lambda: not worker_pids(engine, "kept"), 15, "the workers of a removed service to stop")


def test_deleting_a_running_job_stops_it(engine, tmp_path):
    alice = engine.client("alice")
    alice.create_service(script_service("long", script="exec sleep 60\n"))
    try:
        (tmp_path / "in.txt").write_text("x")
        job = submit(alice, "long", tmp_path / "in.txt")
        workers = wait_until(lambda: running(alice, "long", job) and worker_pids(engine, "long"), 30, "the job")
        alice.remove_job("long", job)
        assert job not in alice.list_jobs("long").json()["jobs"]
        wait_until(lambda: not any(psutil.pid_exists(pid) for pid in workers), 10, "its worker to stop")
    finally:
        alice.remove_service("long")


def test_jobs_survive_an_engine_killed_mid_queue(tmp_path):
    script = 'sleep 1\ncat "$INPUT_FILE_PATH"\ncp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR"\n'
    state, port = tmp_path / "state", free_port()
    inputs = {}
    with EngineProcess(state, users=["alice"], port=port) as engine:
        alice = engine.client("alice")
        alice.create_service(script_service("slow", script=script, synchronous={"max_scale": 2}))
        for i in range(8):
            (tmp_path / f"item-{i}").write_text(f"item number {i}")
            inputs[submit(alice, "slow", tmp_path / f"item-{i}")] = f"item number {i}"

        def two_done():
            statuses = [job["status"] for job in alice.list_jobs("slow").json()["jobs"].values()]
            return statuses if statuses.count("Succeeded") >= 2 else None

        assert wait_until(two_done, 60, "two jobs to finish", interval=0.05).count("Succeeded") < 8
        workers = psutil.Process(engine.proc.pid).children()
        engine.kill()
        wait_until(lambda: not any(w.is_running() and w.status() != "zombie" for w in workers), 10, "workers to exit")

    with EngineProcess(state, users=["alice"], port=port) as engine:
        alice = engine.client("alice")
        assert wait_jobs(alice, "slow", list(inputs)) == dict.fromkeys(inputs, "Succeeded")
        for job, content in inputs.items():
            log = alice.get_job_logs("slow", job).text
            assert content in log and log.count("job succeeded; outputs: event-file-") == 1, log  # each ran once


def test_under_the_hub_hub_tokens_and_basic_logins_reach_the_engine(tmp_path):
    from oscar_python.client import Client

    with HubProcess(tmp_path / "hub") as hub:  # local mode runs the engine as a hub service
        for name in ("ana", "ben"):
            hub.api("POST", f"users/{name}").raise_for_status()
        base = hub.url + "services/reeflab-serverless"
        wait_until(lambda: requests.get(base + "/health", timeout=5).ok, 60, "the engine behind the proxy")

        def call(token, path, method="GET", **kwargs):
            headers = {"Authorization": f"token {token}"}
            return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)

        ana_token, ben_token = hub.user_token("ana"), hub.user_token("ben")
        assert call("not-a-hub-token", "/system/services").status_code == 401
        narrow = hub.api("POST", "users/ana/tokens", json={"scopes": ["read:users:name!user=ana"]}).json()["token"]
        assert call(narrow, "/system/services").status_code == 401  # a hub token without the service's scope
        login = call(ana_token, "/system/config").json()["oscar_cluster"]
        assert login["auth_user"] == "ana" and login["endpoint"] == base
        ana = Client(
            {"cluster_id": "hub", "endpoint": base, "user": "ana", "password": login["auth_password"], "ssl": 0}
        )
        ana.create_service(script_service("ana-upper"))
        assert [s["name"] for s in ana.list_services().json()] == ["ana-upper"]
        assert call(ben_token, "/system/services").json() == []
        assert call(ben_token, "/run/ana-upper", method="POST", data=b"aGk=").status_code == 404
        assert call(ana_token, "/run/ana-upper", method="POST", data=b"aGk=").text == base64.b64encode(b"HI").decode()
        ana.create_service(script_service("ana-env", script="env\n"))
        environment = call(ana_token, "/run/ana-env", method="POST").text
        assert "INPUT_FILE_PATH=" in environment and "JUPYTERHUB_API_TOKEN" not in environment
        # the hub also runs SeaweedFS: an upload into ana's input path comes back processed
        storage_paths = {
            "input": [{"storage_provider": "minio.default", "path": "ana/in"}],
            "output": [{"storage_provider": "minio.default", "path": "ana/out"}],
        }
        ana.create_service(script_service("ana-triggered", **storage_paths))
        (tmp_path / "note.txt").write_text("grouper")
        storage = ana.create_storage_client("ana-triggered")
        storage.upload_file("minio.default", str(tmp_path / "note.txt"), "ana/in")
        provider = call(ana_token, "/system/config").json()["minio_provider"]
        s3 = s3_client(provider["endpoint"], provider)
        wait_until(lambda: s3.list_objects_v2(Bucket="ana", Prefix="out/upper").get("KeyCount"), 120, "the output")
        assert s3.get_object(Bucket="ana", Key="out/upper.txt")["Body"].read() == b"GROUPER"
