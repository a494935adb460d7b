"""Upload-triggered jobs: a real SeaweedFS posts upload events to a real engine; outputs land in S3.

oscar-python uploads with the user's own S3 key from /system/config, exactly as against OSCAR.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from pathlib import Path

import psutil
import pytest
from botocore.exceptions import ClientError
from reeflab.modules.fish_detector.evaluate import greedy_match
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.testing.process import wait_until

SAMPLES = Path(__file__).parents[1] / "server_extension/reeflab/modules/fish_detector/samples"
SIZE_SCRIPT = """\
#!/bin/sh
sleep 0.05
wc -c < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH").size"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("triggers") / "state"
    args = ["--ServerlessApp.max_workers=4", "--ServerlessApp.reconcile_seconds=2"]
    with EngineProcess(state, users=["alice", "bob"], args=args, s3=True) as engine:
        yield engine


def fish_service(name: str, inputs: str, outputs: str) -> dict:
    return {
        "name": name,
        "image": "ai4oshub/ignored-locally",
        "cpu": "1",
        "memory": "2Gi",
        "script": "",
        "environment": {"variables": {"REEFLAB_MODULE": "fish-detector"}},
        "input": [{"storage_provider": "minio.default", "path": inputs, "suffix": [".jpg", ".png", ".txt"]}],
        "output": [{"storage_provider": "minio.default", "path": outputs}],
    }


def objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    # not the folder itself (`fish-out/`: made with the service, as OSCAR makes it)
    keys = [item["Key"] for page in pages for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def test_uploads_to_the_input_path_become_results_in_the_output_path(engine, tmp_path):
    alice = engine.client("alice")
    assert alice.create_service(fish_service("fish", "alice/fish-in", "alice/fish-out")).status_code == 201
    storage = alice.create_storage_client("fish")
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"]
    for name in ("fish_01.jpg", "fish_02.jpg"):
        storage.upload_file("minio.default", str(SAMPLES / name), "alice/fish-in/dive-3")
    (tmp_path / "notes.txt").write_text("not an image")
    storage.upload_file("minio.default", str(tmp_path / "notes.txt"), "alice/fish-in")

    s3 = engine.s3("alice")
    results = wait_until(
        lambda: (found := objects(s3, "alice", "fish-out/")) and len(found) == 2 and found,
        180,
        "both results in alice/fish-out",
    )
    assert set(results) == {"fish-out/dive-3/fish_01.json", "fish-out/dive-3/fish_02.json"}
    for key, body in results.items():
        answer = json.loads(body)
        expected = truth[answer["file"]]["boxes"]
        boxes = [d["box"] for d in answer["detections"]]
        matched, _ = greedy_match(expected, boxes, [d["confidence"] for d in answer["detections"]])
        assert all(iou is not None for iou in matched), f"{key}: a fish was missed"
    # the text file failed alone, with the reason in its log; the images succeeded

    def finished() -> dict[str, str] | None:
        states = {name: job["status"] for name, job in alice.list_jobs("fish").json()["jobs"].items()}
        return states if len(states) == 3 and all(s in ("Succeeded", "Failed") for s in states.values()) else None

    states = wait_until(finished, 120, "three finished jobs")
    assert sorted(states.values()) == ["Failed", "Succeeded", "Succeeded"]
    failed = next(name for name, state in states.items() if state == "Failed")
    assert "notes.txt" in alice.get_job_logs("fish", failed).text
    assert "files" in alice.get_job_logs("fish", failed).text  # the module's argument that refused it
    # bob sees neither the service nor the bucket
    assert "fish" not in [s["name"] for s in engine.client("bob").list_services().json()]
    with pytest.raises(ClientError):
        engine.s3("bob").list_objects_v2(Bucket="alice", Prefix="fish-out/")
    alice.remove_service("fish")


def test_storage_paths_must_be_the_users_own(engine):
    for bad, message in (
        (fish_service("stolen", "bob/in", "alice/out"), "is not yours"),
        (fish_service("loop", "alice/in", "alice/in/out"), "inside an input path"),
    ):
        answer = engine.request("POST", "/system/services", "alice", json=bad)
        assert answer.status_code == 400 and message in answer.text
    assert engine.request("GET", "/system/services/stolen", "alice").status_code == 404


def test_storage_events_need_the_servers_token(engine):
    event = {"event_type": "create", "key": "/buckets/alice/in/x.jpg", "message": {"new_entry": {"name": "x.jpg"}}}
    assert engine.request("POST", "/system/storage-events", json=event).status_code == 403
    assert engine.request("POST", "/system/storage-events", "alice", json=event).status_code == 403


def test_a_changed_input_path_triggers_at_once_and_the_old_one_no_longer(engine):
    """The engine keeps the services' parsed definitions between upload events: a change is seen by the next one."""
    service = {
        "name": "moved",
        "image": "alpine",
        "script": SIZE_SCRIPT,
        "cpu": "0.2",
        "input": [{"storage_provider": "minio.default", "path": "alice/moved-a"}],
        "output": [{"storage_provider": "minio.default", "path": "alice/moved-out"}],
    }
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    s3 = engine.s3("alice")
    s3.put_object(Bucket="alice", Key="moved-a/one.dat", Body=b"12345")
    wait_until(lambda: objects(s3, "alice", "moved-out/").get("moved-out/one.dat.size"), 60, "the first result")
    moved = {**service, "input": [{"storage_provider": "minio.default", "path": "alice/moved-b"}]}
    assert engine.request("PUT", "/system/services/moved", "alice", json=moved).ok
    s3.put_object(Bucket="alice", Key="moved-a/two.dat", Body=b"12")
    s3.put_object(Bucket="alice", Key="moved-b/three.dat", Body=b"123")
    wait_until(lambda: objects(s3, "alice", "moved-out/").get("moved-out/three.dat.size"), 60, "the new path's result")
    time.sleep(1)  # the old path's event came first: had it made a job, that job would be listed by now
    jobs = engine.request("GET", "/system/logs/moved", "alice").json()["jobs"]
    assert len(jobs) == 2 and "moved-out/two.dat.size" not in objects(s3, "alice", "moved-out/")
    assert engine.request("DELETE", "/system/services/moved", "alice").status_code == 204


def _worker_pids(engine) -> list[int]:
    children = psutil.Process(engine.proc.pid).children(recursive=True)
    return [p.pid for p in children if "reeflab.oscar_engine.worker" in " ".join(p.cmdline())]


def test_two_hundred_uploads_none_lost_through_a_worker_kill_and_an_engine_restart(engine, tmp_path):
    alice = engine.client("alice")
    service = {
        "name": "sizes",
        "image": "alpine",
        "script": SIZE_SCRIPT,
        "cpu": "0.2",
        "input": [{"storage_provider": "minio.default", "path": "alice--many/in"}],
        "output": [{"storage_provider": "minio.default", "path": "alice--many/out"}],
        "synchronous": {"max_scale": 3},
    }
    assert alice.create_service(service).status_code == 201
    s3 = engine.s3("alice")
    total = 200
    uploaded = threading.Event()

    def upload():
        for i in range(total):
            s3.put_object(Bucket="alice--many", Key=f"in/file-{i:03d}.dat", Body=b"x" * (i + 1))
            time.sleep(0.02)
        uploaded.set()

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        victim = wait_until(lambda: _worker_pids(engine), 60, "a warm worker")[0]
        psutil.Process(victim).kill()
        wait_until(lambda: len(objects(s3, "alice--many", "out/")) >= 40, 120, "40 results")
        engine.stop()  # uploads go on while the engine is down
        time.sleep(1.5)
        engine.start()
    finally:
        uploader.join()
    assert uploaded.is_set()
    results = wait_until(
        lambda: len(found := objects(s3, "alice--many", "out/")) >= total and found, 240, f"{total} results"
    )
    assert set(results) == {f"out/file-{i:03d}.dat.size" for i in range(total)}
    assert all(int(results[f"out/file-{i:03d}.dat.size"]) == i + 1 for i in range(total))
    jobs, page = {}, ""
    while True:
        listing = alice.list_jobs("sizes", page=page).json()
        jobs.update(listing["jobs"])
        page = listing["next_page"]
        if not page:
            break
    assert len(jobs) == total, "each upload makes exactly one job"
    assert {job["status"] for job in jobs.values()} == {"Succeeded"}
    alice.remove_service("sizes")


def _serving_pids(engine) -> list[int]:
    """Processes serving invocations: workers, or the workers a zygote forked (not the zygote itself)."""
    found = []
    for process in psutil.Process(engine.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())
            parent = " ".join(process.parent().cmdline())
            if "reeflab.oscar_engine.worker" in command or (
                "reeflab.oscar_engine.zygote" in command and "reeflab.oscar_engine.zygote" in parent
            ):
                found.append(process.pid)
    return found


def test_queued_uploads_run_together_each_its_own_job_through_a_worker_kill_and_a_restart(engine):
    """Uploads queued faster than a module's workers take them go to a worker several at a time (one forward
    pass); each still makes one job, gets its own result (its own file's answer), and a worker killed or an
    engine restarted in the middle loses or doubles none; a file the module refuses fails alone in its group."""
    alice = engine.client("alice")
    service = {**fish_service("grouped", "alice--grouped/in", "alice--grouped/out"), "synchronous": {"max_scale": 2}}
    assert alice.create_service(service).status_code == 201
    s3 = engine.s3("alice")
    samples = sorted(SAMPLES.glob("*.jpg"))
    total = 48
    names = [f"{i:03d}-{samples[i % len(samples)].name}" for i in range(total)]
    for name in names[:24]:
        s3.put_object(Bucket="alice--grouped", Key=f"in/{name}", Body=(SAMPLES / name[4:]).read_bytes())
    s3.put_object(Bucket="alice--grouped", Key="in/notes.txt", Body=b"not an image")
    wait_until(lambda: objects(s3, "alice--grouped", "out/"), 180, "a first result")
    victim = wait_until(lambda: _serving_pids(engine), 60, "a serving worker")[0]
    psutil.Process(victim).kill()
    for name in names[24:]:
        s3.put_object(Bucket="alice--grouped", Key=f"in/{name}", Body=(SAMPLES / name[4:]).read_bytes())
    engine.stop()
    engine.start()
    results = wait_until(
        lambda: len(found := objects(s3, "alice--grouped", "out/")) >= total and found, 300, f"{total} results"
    )
    assert set(results) == {f"out/{Path(name).stem}.json" for name in names}
    alone = {}  # each sample's answer, predicted alone: a grouped job's result is its own file's
    for sample in samples:
        reply = engine.request("POST", "/run/grouped", "alice", data=base64.b64encode(sample.read_bytes()))
        alone[sample.name] = json.loads(base64.b64decode(reply.text))
    for name in names:
        answer = json.loads(results[f"out/{Path(name).stem}.json"])
        assert answer["file"] == name
        expected = alone[name[4:]]
        assert [d["box"] for d in answer["detections"]] == [d["box"] for d in expected["detections"]], name

    def finished() -> dict[str, dict] | None:
        jobs, page = {}, ""
        while True:
            listing = alice.list_jobs("grouped", page=page).json()
            jobs.update(listing["jobs"])
            page = listing["next_page"]
            if not page:
                break
        done = len(jobs) == total + 1 and all(j["status"] in ("Succeeded", "Failed") for j in jobs.values())
        return jobs if done else None

    jobs = wait_until(finished, 120, "every job finished")
    assert sorted(j["status"] for j in jobs.values()) == ["Failed"] + ["Succeeded"] * total, "one job an upload"
    logs = {name: alice.get_job_logs("grouped", name).text for name in jobs}
    failed = next(name for name, job in jobs.items() if job["status"] == "Failed")
    assert "notes.txt" in logs[failed]
    assert any("in one invocation with" in text for text in logs.values()), "queued uploads ran together"
    alice.remove_service("grouped")
