"""Batch (OSCAR-Batch style) over a few hundred images in a real SeaweedFS through a real engine."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from reeflab.modules.fish_detector.evaluate import greedy_match
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.serverless.batch import Batch, Engine

SAMPLES = Path(__file__).parents[1] / "server_extension/reeflab/modules/fish_detector/samples"
COPIES = 40  # 6 samples x 40 folders = 240 images


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("batch") / "state"
    with EngineProcess(state, users=["alice", "bob"], args=["--ServerlessApp.max_workers=3"], s3=True) as engine:
        yield engine


def login(engine, user: str) -> Engine:
    return Engine(engine.url, f"Bearer {engine.tokens[user]}")


def test_batch_over_a_folder_resumes_without_redoing_finished_slices(engine):
    s3 = engine.s3("alice")
    names = sorted(p.name for p in SAMPLES.glob("*.jpg"))
    for copy in range(COPIES):
        for name in names:
            s3.upload_file(str(SAMPLES / name), "alice", f"survey/dive-{copy:02d}/{name}")
    s3.put_object(Bucket="alice", Key="survey/.DS_Store", Body=b"hidden files are not inputs")
    service = {
        "name": "fish-batch",
        "image": "ai4oshub/ignored-locally",
        "cpu": "0.5",
        "memory": "1Gi",
        "environment": {"variables": {"REEFLAB_MODULE": "fish-detector"}},
        "output": [{"storage_provider": "minio.default", "path": "alice/survey-results"}],
    }
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    total = COPIES * len(names)

    first = Batch(login(engine, "alice"), "fish-batch", "alice/survey", slice_size=20)

    def stop_halfway(done: int, of: int) -> None:
        assert of == total
        if done >= total // 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        first.run(progress=stop_halfway)
    index = json.loads(s3.get_object(Bucket="alice", Key=f"survey-results/.batch/{first.id}/index.json")["Body"].read())
    assert len(index["items"]) == total and ".DS_Store" not in json.dumps(index)

    # slices already sent finish in the engine; the resumed batch sends only the others
    seen = []
    resumed = Batch(login(engine, "alice"), "fish-batch", "alice/survey", resume=first.id, slice_size=20)
    result = resumed.run(progress=lambda done, of: seen.append(done))
    assert (result.total, result.processed, result.failed) == (total, total, [])
    assert seen[0] >= total // 3 and seen[-1] == total and seen == sorted(seen)
    jobs = engine.request("GET", "/system/logs/fish-batch", "alice").json()["jobs"]
    assert len(jobs) == total // 20, "each slice ran once: none was redone on resume"

    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="alice", Prefix="survey-results/dive-")
    results = [item["Key"] for page in pages for item in page.get("Contents", [])]
    assert len(results) == total
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"]
    answer = json.loads(s3.get_object(Bucket="alice", Key="survey-results/dive-07/fish_02.json")["Body"].read())
    boxes, scores = [d["box"] for d in answer["detections"]], [d["confidence"] for d in answer["detections"]]
    assert all(iou is not None for iou in greedy_match(truth["fish_02.jpg"]["boxes"], boxes, scores)[0])


def test_parallelism_follows_free_resources_and_the_service_request(engine):
    service = {"name": "sized", "image": "alpine", "script": "true\n", "cpu": "0.25", "memory": "128Mi"}
    service["output"] = [{"storage_provider": "minio.default", "path": "alice/sized-out"}]
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    status = engine.request("GET", "/system/status", "alice").json()["cluster"]["metrics"]
    expected = min(0.8 * status["cpu"]["total_free_cores"] / 250, 0.8 * status["memory"]["total_free_bytes"] / 2**27)
    assert abs(Batch(login(engine, "alice"), "sized", "alice/any").parallelism() - int(expected)) <= 1


def test_only_the_owner_sends_batch_slices(engine):
    """A public service's workers read S3 as its owner: nobody else may point them at an index."""
    service = {
        "name": "open-fish",
        "image": "x",
        "visibility": "public",
        "environment": {"variables": {"REEFLAB_MODULE": "fish-detector"}},
    }
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    descriptor = {"reeflab_batch": {"id": "x", "index": "alice/survey-results/any.json", "start": 0, "end": 5}}
    body = base64.b64encode(json.dumps(descriptor).encode())
    answer = engine.request("POST", "/run/open-fish", "bob", data=body)
    assert answer.status_code == 400 and "owner" in answer.text


def test_the_python_client_makes_a_module_serverless_and_calls_it_every_way(engine, monkeypatch, tmp_path):
    from reeflab.client import serverless

    monkeypatch.setenv("REEFLAB_SERVERLESS_URL", engine.url)
    monkeypatch.setenv("REEFLAB_TOKEN", engine.tokens["bob"])
    monkeypatch.setenv("REEFLAB_URL", "http://127.0.0.1:9")  # no Jupyter server: metadata from this environment
    created = serverless.create("fish-detector", inputs=["bob--fish/in"], outputs=["bob--fish/out"], cpu="0.5")
    assert created["name"] == "fish-detector" and created["owner"] == "bob"
    assert created["memory"] == "1000M" and created["environment"]["variables"]["REEFLAB_MODULE"] == "fish-detector"
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"]

    answer = serverless.invoke("fish-detector", SAMPLES / "fish_03.jpg")
    boxes, scores = [d["box"] for d in answer["detections"]], [d["confidence"] for d in answer["detections"]]
    assert all(iou is not None for iou in greedy_match(truth["fish_03.jpg"]["boxes"], boxes, scores)[0])
    through_bucket = serverless.upload_and_wait("fish-detector", SAMPLES / "fish_04.jpg", timeout=120)
    assert through_bucket["file"] == "fish_04.jpg"
    assert any(job for job in serverless.logs("fish-detector").values() if job["status"] == "Succeeded")

    s3 = engine.s3("bob")
    for name in ("fish_05.jpg", "fish_06.jpg"):
        s3.upload_file(str(SAMPLES / name), "bob", f"photos/{name}")
    bars = []
    result = serverless.batch(
        "fish-detector", "bob/photos", output="bob/photos-out", progress=lambda done, total: bars.append(done)
    )
    assert (result.processed, result.failed, bars[-1]) == (2, [], 2)
    assert s3.get_object(Bucket="bob", Key="photos-out/fish_05.json")["Body"].read()
    serverless.delete("fish-detector")
    assert "fish-detector" not in [s["name"] for s in serverless.services()]


def test_the_cli_runs_a_batch_and_explains_failures(engine):
    import os
    import subprocess
    import sys

    env = {**os.environ, "REEFLAB_SERVERLESS_URL": engine.url, "REEFLAB_TOKEN": engine.tokens["alice"]}
    s3 = engine.s3("alice")
    s3.upload_file(str(SAMPLES / "fish_01.jpg"), "alice", "cli-in/a/fish_01.jpg")
    s3.put_object(Bucket="alice", Key="cli-in/b/readme.txt", Body=b"not an image")
    reeflab = [sys.executable, "-m", "reeflab.cli"]
    done = subprocess.run(
        [*reeflab, "batch", "fish-batch", "alice/cli-in", "--output", "alice/cli-out"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "1 of 2 files done" in done.stdout
    assert "b/readme.txt" in done.stderr and "--resume" in done.stderr
    assert s3.get_object(Bucket="alice", Key="cli-out/a/fish_01.json")["Body"].read()
    unknown = subprocess.run(
        [*reeflab, "serverless", "invoke", "no-such", str(SAMPLES / "fish_01.jpg")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2 and "no service named 'no-such'" in unknown.stderr


def test_a_file_removed_during_a_batch_fails_alone_with_the_reason(engine):
    """An input deleted after the batch listed it (here: from the index of a batch resumed by its id) is reported
    as failed with S3's reason; the slice's other files get their results."""
    s3 = engine.s3("alice")
    for name in ("fish_01.jpg", "fish_02.jpg"):
        s3.upload_file(str(SAMPLES / name), "alice", f"gone/{name}")
    service = {
        "name": "fish-gone",
        "image": "ai4oshub/ignored-locally",
        "cpu": "0.5",
        "memory": "1Gi",
        "environment": {"variables": {"REEFLAB_MODULE": "fish-detector"}},
        "output": [{"storage_provider": "minio.default", "path": "alice/gone-results"}],
    }
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    index = {"id": "gone-1", "service": "fish-gone", "input": "alice/gone", "output": "alice/gone-results"}
    index["items"] = ["fish_01.jpg", "deleted.jpg", "fish_02.jpg"]
    s3.put_object(Bucket="alice", Key="gone-results/.batch/gone-1/index.json", Body=json.dumps(index).encode())
    result = Batch(login(engine, "alice"), "fish-gone", "alice/gone", resume="gone-1").run(progress=False)
    assert result.processed == 2
    assert [f["item"] for f in result.failed] == ["deleted.jpg"]
    assert "could not download it" in result.failed[0]["error"] and "NoSuchKey" in result.failed[0]["error"]
    written = s3.list_objects_v2(Bucket="alice", Prefix="gone-results/")["Contents"]
    assert {"gone-results/fish_01.json", "gone-results/fish_02.json"} <= {item["Key"] for item in written}
    answer = json.loads(s3.get_object(Bucket="alice", Key="gone-results/fish_02.json")["Body"].read())
    assert answer["file"] == "fish_02.jpg" and answer["detections"]
    engine.request("DELETE", "/system/services/fish-gone", "alice")


def test_a_slice_answers_in_its_reply_when_asked(engine, tmp_path):
    """`"reply": "json"` (pre-annotation's slices): a synchronous slice's answers come back in its reply, each file's
    JSON by its name (two files with the same stem apart), a missing one listed as failed, and nothing is written
    to S3; any other value of `reply` is refused with the field named."""
    from PIL import Image

    s3 = engine.s3("alice")
    Image.open(SAMPLES / "fish_01.jpg").save(tmp_path / "fish_01.png")
    s3.upload_file(str(SAMPLES / "fish_01.jpg"), "alice", "reply/fish_01.jpg")
    s3.upload_file(str(tmp_path / "fish_01.png"), "alice", "reply/fish_01.png")
    service = {
        "name": "fish-reply",
        "image": "ai4oshub/ignored-locally",
        "cpu": "0.5",
        "memory": "1Gi",
        "environment": {"variables": {"REEFLAB_MODULE": "fish-detector"}},
    }
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
    index = {"id": "reply-1", "service": "fish-reply", "input": "alice/reply", "output": "alice/reply-results"}
    index["items"] = ["fish_01.jpg", "deleted.jpg", "fish_01.png"]
    s3.put_object(Bucket="alice", Key="reply-index/index.json", Body=json.dumps(index).encode())
    descriptor = {"id": "reply-1", "index": "alice/reply-index/index.json", "start": 0, "end": 3}

    def run(**extra):
        body = base64.b64encode(json.dumps({"reeflab_batch": {**descriptor, **extra}}).encode())
        return engine.request("POST", "/run/fish-reply", "alice", data=body, timeout=120)

    answer = run(reply="json")
    assert answer.status_code == 200, answer.text
    done = json.loads(base64.b64decode(answer.content))
    assert sorted(done["answers"]) == ["fish_01.jpg", "fish_01.png"]
    assert [answer["file"] for answer in done["answers"].values()] == ["fish_01.jpg", "fish_01.png"]
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"]["fish_01.jpg"]["boxes"]
    for answer in done["answers"].values():
        boxes, scores = [d["box"] for d in answer["detections"]], [d["confidence"] for d in answer["detections"]]
        assert all(iou is not None for iou in greedy_match(truth, boxes, scores)[0])
    assert [f["item"] for f in done["failed"]] == ["deleted.jpg"] and done["processed"] == 2
    assert s3.list_objects_v2(Bucket="alice", Prefix="reply-results/").get("KeyCount") == 0, "nothing uploaded"

    refused = run(reply="s3")
    assert refused.status_code == 400 and "reeflab_batch.reply" in refused.text
    engine.request("DELETE", "/system/services/fish-reply", "alice")
