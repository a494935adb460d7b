"""Annotation with a real Label Studio: alice's server starts her own (once for this module), she labels a folder of
generated scenes with the fish detector's help, corrects a box as an annotator does, and exports a YOLO dataset;
bob neither sees nor opens her project; bad inputs get messages that say what to fix."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import time

import pytest
import requests
import yaml
from reeflab.client import Connection, ReefLabClientError, annotation
from reeflab.modules.fish_detector.synth import generate_samples

SCENES = 6


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def pixels(region: dict) -> list[float]:
    """A Label Studio rectangle (percent of the image) as pixel [x1, y1, x2, y2]."""
    v, w, h = region["value"], region["original_width"], region["original_height"]
    return [v["x"] * w / 100, v["y"] * h / 100, (v["x"] + v["width"]) * w / 100, (v["y"] + v["height"]) * h / 100]


def assert_fish_found(ls, tasks: list[dict], scenes: dict) -> None:
    """At least 80 % of the generated fish of these tasks' scenes are matched (IoU > 0.5) by a predicted box."""
    found = matched = 0
    for task in tasks:
        predictions = ls.get(ls.base + "/api/predictions", params={"task": task["id"]}, timeout=30).json()
        boxes = [pixels(r) for r in predictions[0]["result"]]
        for truth in scenes[task["data"]["file"].split("/")[-1]]["boxes"]:
            found += 1
            matched += any(iou(truth, box) > 0.5 for box in boxes)
    assert matched / found >= 0.8, f"{matched} of {found} fish found"


@pytest.fixture(scope="module")
def hub_users():
    # names of their own: OS accounts are per hub user name, and another module's hub retires an account of
    # the same name (killing what runs as it) when it creates its user
    return ("ann", "ben")


@pytest.fixture(scope="module")
def alice(servers) -> Connection:
    return Connection(*servers["ann"])


@pytest.fixture(scope="module")
def bob(servers) -> Connection:
    return Connection(*servers["ben"])


def upload(user: Connection, path: str, data: bytes | None) -> None:
    """A file (None: a folder) into the user's files, as the file browser uploads it (the contents API)."""
    url = user.url + "api/contents/" + path
    body = (
        {"type": "directory"}
        if data is None
        else {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    )
    user.session.put(url, json=body, timeout=30).raise_for_status()


@pytest.fixture(scope="module")
def scenes(alice, tmp_path_factory) -> dict:
    """Generated underwater scenes in alice's folder 'scenes'; their ground truth (pixel boxes by file name)."""
    local = tmp_path_factory.mktemp("scenes")
    truth = json.loads(generate_samples(local, n=SCENES, seed=77).read_text())["images"]
    upload(alice, "scenes", None)
    for name in truth:
        upload(alice, f"scenes/{name}", (local / name).read_bytes())
    return truth


class StudioSession(requests.Session):
    """Her Label Studio's API with her token; `base`, its address, read from her data folder each time (it starts
    again on another port after her server restarts)."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder
        self.headers["Authorization"] = "Token " + json.loads((folder / "credentials.json").read_text())["token"]

    @property
    def base(self) -> str:
        return json.loads((self.folder / "server.json").read_text())["url"]


@pytest.fixture(scope="module")
def studio(hub, alice, scenes):
    """Alice's project over her scenes (her Label Studio starts for it) and that Label Studio's API, as her own
    tools reach it (its address and token are in her data folder only)."""
    project = annotation.create("Reef survey", "scenes", module="fish-detector", connection=alice)
    folder = hub.homes / "ann" / ".local" / "share" / "jupyter" / "reeflab" / "annotation"
    yield project, StudioSession(folder)
    project.delete()


def test_a_project_over_a_folder_takes_the_module_labels(studio, scenes):
    project, _ = studio
    assert project.info["labels"] == ["fish"]  # the fish detector's classes
    assert project.info["kind"] == "detection"
    assert (project.info["total"], project.info["labelled"], project.info["preannotated"]) == (SCENES, 0, 0)


def test_preannotation_labelling_and_yolo_export(alice, studio, scenes, hub):
    project, ls = studio
    project.preannotate("fish-detector", conf=0.9)
    done = project.preannotate("fish-detector")  # again: it replaces the first one's predictions
    assert done["predicted"] == SCENES and not done["failed"]
    listed = {p.id: p.info for p in annotation.projects(connection=alice)}
    assert listed[project.id]["preannotated"] == SCENES

    # the predictions are the detector's boxes, with scores, close to the generated fish
    tasks = ls.get(ls.base + "/api/tasks", params={"project": project.id, "page_size": 100}, timeout=30).json()["tasks"]
    found = matched = 0
    first = None
    for task in tasks:
        name = task["data"]["file"].split("/")[-1]
        predictions = ls.get(ls.base + "/api/predictions", params={"task": task["id"]}, timeout=30).json()
        assert len(predictions) == 1 and predictions[0]["model_version"] == "fish-detector"
        regions = predictions[0]["result"]
        assert all(0 < r["score"] <= 1 and r["value"]["rectanglelabels"] == ["fish"] for r in regions)
        boxes = [pixels(r) for r in regions]
        for truth in scenes[name]["boxes"]:
            found += 1
            matched += any(iou(truth, box) > 0.5 for box in boxes)
        if first is None and regions:
            first = (task, name, regions)
    assert matched / found >= 0.8, f"{matched} of {found} fish found"

    # an annotator accepts two images' predictions and corrects one box of a third, through Label Studio's API
    task, name, regions = first
    corrected = json.loads(json.dumps(regions))
    for region in corrected:
        region.pop("score", None)
    corrected[0]["value"].update(x=10.0, y=20.0, width=30.0, height=25.0)  # the box the annotator drew
    ls.post(ls.base + f"/api/tasks/{task['id']}/annotations", json={"result": corrected}, timeout=30).raise_for_status()
    for other in [t for t in tasks if t["id"] != task["id"]][:2]:
        accepted = ls.get(ls.base + "/api/predictions", params={"task": other["id"]}, timeout=30).json()[0]["result"]
        ls.post(
            ls.base + f"/api/tasks/{other['id']}/annotations", json={"result": accepted}, timeout=30
        ).raise_for_status()
    assert project.refresh().info["labelled"] == 3

    exported = project.export("datasets/reef", val_fraction=0.34)
    assert (exported["train"], exported["val"], exported["names"]) == (2, 1, ["fish"])
    root = hub.homes / "ann"
    data = yaml.safe_load((root / exported["data"]).read_text())
    assert data["names"] == {0: "fish"} and data["train"] == "images/train" and data["val"] == "images/val"
    dataset = root / "datasets" / "reef"
    stem = name.rsplit(".", 1)[0]
    label = next(dataset.glob(f"labels/*/{stem}.txt"))
    assert (label.parent.parent.parent / "images" / label.parent.name / name).is_file()
    lines = [[float(v) for v in line.split()] for line in label.read_text().splitlines()]
    assert len(lines) == len(regions)
    # YOLO: class, centre and size as fractions of the image; the corrected box is there as drawn
    assert any(
        c == 0 and abs(x - 0.25) < 1e-3 and abs(y - 0.325) < 1e-3 and abs(w - 0.30) < 1e-3 and abs(h - 0.25) < 1e-3
        for c, x, y, w, h in lines
    )
    assert len(list(dataset.glob("images/*/*.jpg"))) == 3  # the labelled images only

    with pytest.raises(ReefLabClientError) as again:
        project.export("datasets/reef")
    assert again.value.status == 409 and "not empty" in again.value.message


def test_train_on_the_project_registers_a_new_version_with_its_lineage(alice, studio, scenes, hub):
    """After the labelling above (3 images): the retraining pipeline starts from the fish detector's weights on a
    fresh YOLO export of them, its train node trains on exactly that dataset, and past the quality gate a new
    version is in the marketplace with the project, its new images and the metrics before and after."""
    project, ls = studio
    assert project.refresh().info["module"] == "fish-detector"  # the module that pre-annotated it
    # the annotator puts the box moved above where the fish is (it may be held out to evaluate the weights)
    tasks = ls.get(ls.base + "/api/tasks", params={"project": project.id, "page_size": 100}, timeout=30).json()["tasks"]
    for task in tasks:
        for made in ls.get(ls.base + f"/api/tasks/{task['id']}/annotations", timeout=30).json():
            moved = [r for r in made["result"] if (r["value"]["x"], r["value"]["y"]) == (10.0, 20.0)]
            if moved:
                others = [pixels(r) for r in made["result"] if r not in moved]
                truth = scenes[task["data"]["file"].split("/")[-1]]["boxes"]
                x1, y1, x2, y2 = min(truth, key=lambda box: max((iou(box, o) for o in others), default=0.0))
                w, h = moved[0]["original_width"], moved[0]["original_height"]
                moved[0]["value"].update(
                    x=100 * x1 / w, y=100 * y1 / h, width=100 * (x2 - x1) / w, height=100 * (y2 - y1) / h
                )
                answer = ls.patch(
                    ls.base + f"/api/annotations/{made['id']}", json={"result": made["result"]}, timeout=30
                )
                answer.raise_for_status()
    run = project.train(epochs=1, min_map50=0.3)
    try:
        info, params = run.info, run.info["parameters"]
        assert info["pipeline"] == "notebooks/retrain.pipeline" and "3 labelled images" in info["title"]
        assert (params["ANNOTATION_PROJECT"], params["LABELLED_IMAGES"]) == (str(project.id), "3")
        assert (params["NEW_IMAGES"], params["MIN_MAP50"]) == ("3", "0.3")  # none was trained on before
        assert params["EPOCHS"] == "1"
        assert (params["BASE_MODULE"], params["MODEL_NAME"]) == ("fish-detector", "fish-detector-retrained")
        assert params["BASE_WEIGHTS"].endswith("fish-yolo.pt")  # continuing from its current weights
        assert "Reef survey" in params["TRAINING_DATA"] and "3 labelled images" in params["TRAINING_DATA"]
        home = hub.homes / "ann"
        dataset = info["dataset"]
        assert dataset["train"] + dataset["val"] == 3 and params["DATA"].endswith(dataset["data"])
        assert len(list((home / dataset["folder"]).glob("images/*/*.jpg"))) == 3
        deadline = time.monotonic() + 300
        while run.nodes()["train"]["state"] in ("pending", "running") and time.monotonic() < deadline:
            time.sleep(2)
            run.refresh()
        assert run.nodes()["train"]["state"] == "completed", (run.info, run.logs(node="train"))
        trained = json.loads(next(home.glob(f"notebooks/pipelines/work/{run.info['run_name']}/train.json")).read_text())
        assert trained["data"].endswith(dataset["data"]) and trained["epochs"] == 1
        assert trained["base"] == params["BASE_WEIGHTS"] and trained["training_data"] == params["TRAINING_DATA"]

        deadline = time.monotonic() + 300
        while run.info["state"] in ("pending", "running") and time.monotonic() < deadline:
            time.sleep(2)
            run.refresh()
        assert run.info["state"] == "completed", (run.info, run.logs(node="register"))
        models = {m["name"]: m for m in alice.get("training", "models")["models"]}
        version = models["fish-detector-retrained"]["versions"][-1]
        assert version["lineage"] == {
            "base_weights": "fish-yolo.pt",
            "epochs": 1,
            "annotation_project": project.id,
            "labelled_images": 3,
            "new_images": 3,
        }
        assert {"map50", "map50_before", "recall", "recall_before"} <= set(version["metrics"])
        assert "Reef survey" in version["training_data"]
        card = alice.get("catalog", "modules", "fish-detector-retrained")  # in the marketplace
        assert card["source"] == "registered" and version["version"] in card["versions"]
    finally:
        with contextlib.suppress(ReefLabClientError):  # ended already
            run.cancel()


def test_a_classification_project_exports_image_folders_and_trains_a_classifier(alice, studio, hub):
    """Pre-annotated with the fish classifier, accepted, exported as image folders; Train on this project runs the
    retraining pipeline on them from the classifier's weights (one short epoch on the small crops it classifies)
    and, past its gate on top-1 accuracy, registers a new version with its lineage and the metrics before/after."""
    _, ls = studio
    project = annotation.create(
        "Fish colours", "scenes", kind="classification", module="fish-classifier", connection=alice
    )
    try:
        assert {"no-fish", "red", "blue"} <= set(project.info["labels"])  # the fish classifier's classes
        with pytest.raises(ReefLabClientError) as wrong:
            project.preannotate("fish-detector")
        assert wrong.value.status == 400 and "is not a classifier" in wrong.value.message
        assert project.preannotate("fish-classifier")["predicted"] == SCENES
        tasks = ls.get(ls.base + "/api/tasks", params={"project": project.id}, timeout=30).json()["tasks"]
        chosen = {}
        for task in tasks:  # the annotator accepts each prediction
            result = ls.get(ls.base + "/api/predictions", params={"task": task["id"]}, timeout=30).json()[0]["result"]
            assert result[0]["type"] == "choices" and 0 < result[0]["score"] <= 1
            chosen[task["data"]["file"].split("/")[-1]] = result[0]["value"]["choices"][0]
            ls.post(ls.base + f"/api/tasks/{task['id']}/annotations", json={"result": result}, timeout=30)
        exported = project.export("datasets/colours")
        assert exported["train"] + exported["val"] == SCENES and exported["val"] >= 1
        images = list((hub.homes / "ann" / "datasets" / "colours").glob("*/*/*.jpg"))
        assert sorted(i.name for i in images) == sorted(chosen)
        assert all(i.parent.name == chosen[i.name] and i.parent.parent.name in ("train", "val") for i in images)
        labels = set(project.info["labels"])
        assert {p.name for p in (hub.homes / "ann" / "datasets" / "colours" / "train").iterdir()} == labels
        with pytest.raises(ReefLabClientError) as detector:
            project.train(module="fish-detector", epochs=1)
        assert detector.value.status == 400 and "is not a classifier" in detector.value.message

        run = project.train(epochs=1, min_top1=0.0)  # the module that pre-annotated it: the fish classifier
        try:
            params = run.info["parameters"]
            assert (params["BASE_MODULE"], params["MODEL_NAME"]) == ("fish-classifier", "fish-classifier-retrained")
            assert params["BASE_WEIGHTS"].endswith("fish-cls.pt") and params["GATE_METRIC"] == "top1"
            assert (params["LABELLED_IMAGES"], params["IMGSZ"]) == (str(SCENES), "64")
            dataset = hub.homes / "ann" / run.info["dataset"]["folder"]
            assert params["DATA"].endswith(run.info["dataset"]["folder"]) and (dataset / "train").is_dir()
            run.wait_while(("pending", "starting", "running"), timeout=600, interval=2)
            assert run.info["state"] == "completed", (run.info, run.logs(node="train"), run.logs(node="evaluate"))
            models = {m["name"]: m for m in alice.get("training", "models")["models"]}
            version = models["fish-classifier-retrained"]["versions"][-1]
            assert version["lineage"] == {
                "base_weights": "fish-cls.pt",
                "epochs": 1,
                "annotation_project": project.id,
                "labelled_images": SCENES,
                "new_images": SCENES,
            }
            assert {"top1", "top1_before", "top5", "top5_before"} <= set(version["metrics"]), version["metrics"]
            assert all(0 <= version["metrics"][k] <= 1 for k in ("top1", "top1_before"))
            card = alice.get("catalog", "modules", "fish-classifier-retrained")  # in the marketplace
            assert card["source"] == "registered" and version["version"] in card["versions"]
        finally:
            with contextlib.suppress(ReefLabClientError):  # ended already
                run.cancel()
    finally:
        project.delete()


def test_another_user_neither_sees_nor_opens_the_project(studio, alice, bob, servers):
    project, _ = studio
    assert annotation.projects(connection=bob) == []
    with pytest.raises(ReefLabClientError) as missing:
        annotation.get(project.id, connection=bob)
    assert missing.value.status == 404 and "no annotation project" in missing.value.message
    # bob's token on alice's server: the hub refuses it
    intruder = Connection(servers["ann"][0], servers["ben"][1])
    with pytest.raises(ReefLabClientError) as refused:
        annotation.get(project.id, connection=intruder)
    assert refused.value.status == 403


def workers_started(hub, service: str) -> int:
    """How many workers the serverless engine started for the service (each loads the module): its log, in the
    hub's (a hub-managed service)."""
    return len(re.findall(rf"started worker \d+ for service {re.escape(service)}\b", hub.log_path.read_text()))


def test_preannotation_runs_on_warm_serverless_workers_of_her_own(alice, bob, studio, hub):
    """Pre-annotation goes through ann's own service for the module on the serverless engine, fed by her server:
    its workers load the module once and stay warm, so another run starts none; the engine counted each image as
    a call; bob neither sees, reads nor calls that service."""
    project, _ = studio
    first = project.preannotate("fish-detector")
    service = first["service"]
    assert service.startswith("annotate-fish-detector-") and first["slices"] == 0  # her workspace: fed by her server
    assert (first["state"], first["predicted"], first["failed"]) == ("completed", SCENES, [])
    started = workers_started(hub, service)
    assert started >= 1, hub.log_tail()
    calls = alice.get("serverless", "oscar", "system", "services", service, "metrics")["total"]["requests"]
    assert calls >= SCENES

    again = project.preannotate("fish-detector")
    assert (again["service"], again["predicted"]) == (service, SCENES)
    assert workers_started(hub, service) == started  # the warm workers answered: the module was not loaded again
    metrics = alice.get("serverless", "oscar", "system", "services", service, "metrics")["total"]
    assert (metrics["requests"], metrics["errors"]) == (calls + SCENES, 0)

    assert service in [s["name"] for s in alice.get("serverless", "oscar", "system", "services")]  # hers
    assert service not in [s["name"] for s in bob.get("serverless", "oscar", "system", "services")]
    for method, path in (("GET", ("system", "services", service)), ("POST", ("run", service))):
        with pytest.raises(ReefLabClientError) as hidden:
            bob.request(method, "serverless", "oscar", *path, data=b"x")
        assert hidden.value.status == 404, (method, path, hidden.value.message)


def test_a_platform_folder_is_read_by_the_workers_in_slices(alice, studio, scenes, hub, tmp_path):
    """A project over a folder of her platform bucket (the `reeflab` connection, whose key her services' workers
    have): the workers read the objects themselves in slices, as `reeflab batch` does, and the predictions match
    the generated fish, also for two images of the same name but their suffix; the run's slice index leaves her
    bucket afterwards, and so does a run folder left there by a server that stopped mid-run."""
    from PIL import Image
    from reeflab.client import storage

    _, ls = studio
    platform = storage.get("reeflab", connection=alice)
    generate_samples(tmp_path, n=SCENES, seed=77)
    first, second = sorted(scenes)[:2]
    twin = first.rsplit(".", 1)[0] + ".png"  # another scene under the first's stem: answers must not mix up
    Image.open(tmp_path / second).save(tmp_path / twin)
    truth = {**scenes, twin: scenes[second]}
    for name in truth:
        platform.upload(tmp_path / name, f"platform-scenes/{name}")
    (tmp_path / "left.json").write_text("{}")
    for left in ("index.json", "out/fish.json"):
        platform.upload(tmp_path / "left.json", f".reeflab-annotation/annotate-left0000/{left}")
    project = annotation.create(
        "Reef survey platform", "reeflab:platform-scenes", module="fish-detector", connection=alice
    )
    try:
        done = project.preannotate("fish-detector")
        assert (done["state"], done["predicted"], done["failed"]) == ("completed", SCENES + 1, [])
        assert done["slices"] >= 1 and done["service"].startswith("annotate-fish-detector-")
        tasks = ls.get(ls.base + "/api/tasks", params={"project": project.id, "page_size": 100}, timeout=30).json()
        assert_fish_found(ls, tasks["tasks"], truth)
        for name in (first, twin):  # each of the two has its own scene's fish
            assert_fish_found(ls, [t for t in tasks["tasks"] if t["data"]["file"].endswith("/" + name)], truth)
        deadline = time.monotonic() + 30
        while platform.ls(".reeflab-annotation") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert platform.ls(".reeflab-annotation") == []
    finally:
        project.delete()


def test_bad_inputs_say_what_to_fix(alice, studio):
    upload(alice, "empty", None)
    upload(alice, "mixed", None)
    upload(alice, "mixed/notes.txt", b"not an image")
    cases = [
        ({"folder": "empty"}, "holds no images"),
        ({"folder": "mixed"}, "'notes.txt'"),
        ({"folder": "no-such-folder"}, "is not a folder of your workspace"),
        ({"folder": "../.."}, "outside your workspace"),
        ({"folder": "scenes", "module": "fish-classifier"}, "is not a detector"),
        ({"folder": "scenes", "labels": []}, "give the labels"),
        ({"folder": "scenes", "kind": "segmentation", "labels": ["fish"]}, "kind"),
    ]
    for body, message in cases:
        with pytest.raises(ReefLabClientError) as refused:
            alice.post("annotation", "projects", json={"title": "Bad project", **body})
        assert refused.value.status == 400 and message in refused.value.message, (body, refused.value.message)
    project, _ = studio
    with pytest.raises(ReefLabClientError) as wrong:
        project.preannotate("fish-classifier")
    assert wrong.value.status == 400 and "is not a detector" in wrong.value.message
    with pytest.raises(ReefLabClientError) as unknown:
        project.preannotate("no-such-module")
    assert unknown.value.status == 404
    with pytest.raises(ReefLabClientError) as untrainable:
        project.train(module="fish-classifier", epochs=1)
    assert untrainable.value.status == 400 and "is not a detector" in untrainable.value.message
    unlabelled = annotation.create("Nothing labelled", "scenes", labels=["fish"], connection=alice)
    try:
        with pytest.raises(ReefLabClientError) as empty:
            unlabelled.train(module="fish-detector", epochs=1)
        assert empty.value.status == 400 and "no image of this project is labelled" in empty.value.message
    finally:
        unlabelled.delete()


@pytest.fixture(scope="module")
def survey(s3, alice, scenes, tmp_path_factory):
    """The same generated scenes in alice's bucket on a real SeaweedFS (folder 'scenes'), a connection 'survey' to
    it made as she makes one (her own key), and a project over that folder."""
    from reeflab.client import storage
    from reeflab.storage.platform_s3 import PlatformS3, s3_client, user_bucket

    key = PlatformS3(s3.endpoint, s3.key).user_key("ann")
    bucket = user_bucket("ann")
    client = s3_client(s3.endpoint, key)
    local = tmp_path_factory.mktemp("scenes-s3")
    generate_samples(local, n=SCENES, seed=77)
    for name in scenes:
        client.upload_file(str(local / name), bucket, f"scenes/{name}")
    client.put_object(Bucket=bucket, Key="mixed/notes.txt", Body=b"not an image")
    client.put_object(Bucket=bucket, Key="mixed/a.jpg", Body=(local / next(iter(scenes))).read_bytes())
    connection = storage.connect(
        "survey",
        endpoint=s3.endpoint,
        bucket=bucket,
        access_key=key["access_key"],
        secret_key=key["secret_key"],
        connection=alice,
    )
    project = annotation.create("Reef survey S3", "survey:scenes", module="fish-detector", connection=alice)
    yield project, client, bucket, local
    project.delete()
    connection.remove()


def test_a_project_over_a_storage_folder_reads_the_objects_in_place(alice, studio, survey, scenes, hub):
    """Tasks reference the objects (nothing copied); Label Studio hands each image to the annotator from the
    bucket; pre-annotation runs in the background with its progress, reads the objects, and matches the truth;
    a corrected box is exported to YOLO with the images read from the bucket."""
    project, client, bucket, local = survey
    _, ls = studio
    assert (project.info["folder"], project.info["total"], project.info["labels"]) == (
        "survey:scenes",
        SCENES,
        ["fish"],
    )
    tasks = ls.get(ls.base + "/api/tasks", params={"project": project.id, "page_size": 100}, timeout=30).json()["tasks"]
    assert sorted(t["data"]["file"] for t in tasks) == sorted(f"survey:scenes/{n}" for n in scenes)
    # what the annotator's browser is given: Label Studio's own address for the object (under whatever origin it
    # is served from), answering the object's bytes
    shown = ls.get(ls.base + f"/api/tasks/{tasks[0]['id']}", timeout=30).json()["data"]["image"]
    assert f"/tasks/{tasks[0]['id']}/resolve/" in shown and "s3://" not in shown, shown
    name = tasks[0]["data"]["file"].split("/")[-1]
    image = ls.get(ls.base + shown[shown.index("/tasks/") :], timeout=30)
    assert image.status_code == 200 and image.content == (local / name).read_bytes()
    assert not (hub.homes / "ann" / "survey").exists()  # nothing copied into her files

    started = project.preannotate("fish-detector", wait=False)  # 202: the progress document
    assert (started["state"], started["total"], started["module"]) == ("running", SCENES, "fish-detector")
    seen = [started["done"]]
    done = started
    deadline = time.monotonic() + 600
    while done["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.3)
        done = project.progress()
        seen.append(done["done"])
    assert done["state"] == "completed", done
    assert (done["done"], done["predicted"], done["failed"]) == (SCENES, SCENES, [])
    assert seen == sorted(seen) and project.refresh().info["preannotation"]["state"] == "completed"

    assert_fish_found(ls, tasks, scenes)

    task = tasks[0]
    regions = ls.get(ls.base + "/api/predictions", params={"task": task["id"]}, timeout=30).json()[0]["result"]
    corrected = [{k: v for k, v in r.items() if k != "score"} for r in regions]
    corrected[0]["value"].update(x=10.0, y=20.0, width=30.0, height=25.0)
    ls.post(ls.base + f"/api/tasks/{task['id']}/annotations", json={"result": corrected}, timeout=30).raise_for_status()
    exported = project.export("datasets/reef-s3", val_fraction=0)
    assert (exported["train"], exported["val"], exported["names"]) == (1, 0, ["fish"])
    dataset = hub.homes / "ann" / "datasets" / "reef-s3"
    assert (dataset / "images" / "train" / name).read_bytes() == (local / name).read_bytes()  # read from the bucket
    lines = (dataset / "labels" / "train" / f"{name.rsplit('.', 1)[0]}.txt").read_text().splitlines()
    assert len(lines) == len(regions) and any(line.startswith("0 0.25 0.325 0.3 0.25") for line in lines), lines


def test_a_storage_project_refuses_bad_folders(alice, survey):
    cases = [
        ({"folder": "survey:nothing-here"}, "holds no images"),
        ({"folder": "survey:mixed"}, "'notes.txt'"),
        ({"folder": "nosuch:scenes"}, "no storage connection 'nosuch'"),
        ({"folder": "survey:../other"}, "'..' is not allowed"),
    ]
    for body, message in cases:
        with pytest.raises(ReefLabClientError) as refused:
            alice.post("annotation", "projects", json={"title": "Bad project", "labels": ["fish"], **body})
        assert refused.value.status == 400 and message in refused.value.message, (body, refused.value.message)
    project, *_ = survey
    project.preannotate("fish-detector", wait=False)
    with pytest.raises(ReefLabClientError) as busy:  # one pre-annotation of a project at a time
        project.preannotate("fish-detector", wait=False)
    assert busy.value.status == 409 and "being pre-annotated" in busy.value.message
    while project.progress()["state"] == "running":
        time.sleep(0.3)


def test_projects_outlive_a_restart_of_the_server(hub, alice, studio):
    """Label Studio stops with the user's server; the next call starts it again on the same database."""
    project, _ = studio
    before = project.refresh().info
    hub.stop_server("ann")
    hub.spawn("ann")
    again = annotation.get(project.id, connection=alice).info
    assert (again["title"], again["total"], again["labelled"], again["preannotated"]) == (
        before["title"],
        before["total"],
        before["labelled"],
        before["preannotated"],
    )


@pytest.fixture(scope="module")
def cloud(dav, alice, scenes, tmp_path_factory):
    """The same generated scenes in a folder 'scenes' of a real WebDAV server (wsgidav, Nextcloud-style), alice's
    connection 'cloud' to it made as she makes one, and a project over that folder."""
    from reeflab.client import storage

    local = tmp_path_factory.mktemp("scenes-dav")
    generate_samples(local, n=SCENES, seed=77)
    (dav.root / "scenes").mkdir()
    (dav.root / "mixed").mkdir()
    for name in scenes:
        (dav.root / "scenes" / name).write_bytes((local / name).read_bytes())
    (dav.root / "mixed" / "notes.txt").write_text("not an image")
    connection = storage.connect("cloud", url=dav.url, user=dav.user, password=dav.password, connection=alice)
    project = annotation.create("Reef survey WebDAV", "cloud:scenes", module="fish-detector", connection=alice)
    yield project, local
    project.delete()
    connection.remove()


def test_a_project_over_a_webdav_folder_reads_the_files_in_place(alice, bob, servers, studio, cloud, scenes, dav, hub):
    """Label Studio reads no WebDAV: each task's image is the user's own server's download route, which the
    annotator's page (same origin) reads with her login and which streams the file from WebDAV (the password never
    reaches the page); pre-annotation reads the files from WebDAV; export copies the labelled ones."""
    project, local = cloud
    _, ls = studio
    assert (project.info["folder"], project.info["total"], project.info["labels"]) == ("cloud:scenes", SCENES, ["fish"])
    tasks = ls.get(ls.base + "/api/tasks", params={"project": project.id, "page_size": 100}, timeout=30).json()["tasks"]
    assert sorted(t["data"]["file"] for t in tasks) == sorted(f"cloud:scenes/{n}" for n in scenes)
    task = tasks[0]
    name = task["data"]["file"].split("/")[-1]
    shown = ls.get(ls.base + f"/api/tasks/{task['id']}", timeout=30).json()["data"]["image"]
    assert shown == f"/user/ann/reeflab/api/storage/connections/cloud/file?path=scenes/{name}", shown
    assert dav.password not in json.dumps(tasks) and dav.url not in json.dumps(tasks)
    image = alice.session.get(hub.url.rstrip("/") + shown, timeout=30)  # as her page reads it (her hub login)
    assert image.status_code == 200 and image.content == (local / name).read_bytes()
    intruder = requests.get(hub.url.rstrip("/") + shown, headers={"Authorization": f"token {servers['ben'][1]}"})
    assert intruder.status_code == 403 and intruder.content != image.content
    assert not (hub.homes / "ann" / "cloud").exists()  # nothing copied into her files

    done = project.preannotate("fish-detector")
    assert (done["state"], done["done"], done["predicted"], done["failed"]) == ("completed", SCENES, SCENES, [])
    assert_fish_found(ls, tasks, scenes)

    regions = ls.get(ls.base + "/api/predictions", params={"task": task["id"]}, timeout=30).json()[0]["result"]
    accepted = [{k: v for k, v in r.items() if k != "score"} for r in regions]
    ls.post(ls.base + f"/api/tasks/{task['id']}/annotations", json={"result": accepted}, timeout=30).raise_for_status()
    exported = project.export("datasets/reef-dav", val_fraction=0)
    assert (exported["train"], exported["val"]) == (1, 0)
    dataset = hub.homes / "ann" / "datasets" / "reef-dav"
    assert (dataset / "images" / "train" / name).read_bytes() == (local / name).read_bytes()  # read from WebDAV
    assert len((dataset / "labels" / "train" / f"{name.rsplit('.', 1)[0]}.txt").read_text().splitlines()) == len(
        regions
    )

    for body, message in [
        ({"folder": "cloud:mixed"}, "'notes.txt'"),
        ({"folder": "cloud:nothing-here"}, "holds no images"),
    ]:
        with pytest.raises(ReefLabClientError) as refused:
            alice.post("annotation", "projects", json={"title": "Bad project", "labels": ["fish"], **body})
        assert refused.value.status == 400 and message in refused.value.message, (body, refused.value.message)
    assert annotation.projects(connection=bob) == []


def test_a_preannotation_cut_off_by_a_restart_says_so_and_continues(hub, alice, studio, tmp_path_factory):
    """The user's server stops while a pre-annotation runs: after it starts again the progress document says
    `interrupted` and what was done (what it counts is stored in Label Studio); pre-annotating again with the same
    module predicts only the images that have no prediction yet, and keeps the others.

    To cut it off at a known point, her Label Studio is paused (SIGSTOP) right after the run starts: no
    prediction can be stored any more, as when the server stops before the first answers are stored. The images
    an earlier cut-off run had stored are then made with Label Studio's API (predictions of the same module, as
    that run stores them), unless the run stored some before the pause."""
    _, ls = studio
    local = tmp_path_factory.mktemp("many")
    names = sorted(json.loads(generate_samples(local, n=24, seed=5).read_text())["images"])
    upload(alice, "many", None)
    for name in names:
        upload(alice, f"many/{name}", (local / name).read_bytes())
    project = annotation.create("Many scenes", "many", labels=["fish"], connection=alice)
    try:
        progress = project.preannotate("fish-detector", wait=False)
        assert progress["state"] == "running" and progress["total"] == len(names)
        studio_group = json.loads((ls.folder / "server.json").read_text())["pid"]  # its own process group
        os.killpg(studio_group, signal.SIGSTOP)
        try:
            hub.stop_server("ann")  # (the paused Label Studio is killed with the server)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(studio_group, signal.SIGCONT)
        hub.spawn("ann")

        cut = project.progress()
        assert cut["state"] == "interrupted" and cut["done"] < len(names) and cut["ended"], cut
        assert f"after {cut['done']} of {len(names)} images" in cut["error"] and "continue" in cut["error"]
        assert project.refresh().info["preannotation"]["state"] == "interrupted"
        tasks = ls.get(ls.base + "/api/tasks", params={"project": project.id, "page_size": 100}, timeout=30).json()
        tasks = sorted(tasks["tasks"], key=lambda t: t["id"])
        before = {}
        for task in tasks:
            made = ls.get(ls.base + "/api/predictions", params={"task": task["id"]}, timeout=30).json()
            if made:
                before[task["id"]] = [p["id"] for p in made]
        assert len(before) == cut["predicted"]  # what it says was done, and only that, is in Label Studio
        if not before:  # what a run cut off later had stored: the first five images' predictions
            for task in tasks[:5]:
                box = {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["fish"]}
                region = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": box}
                made = {"task": task["id"], "model_version": "fish-detector", "result": [region], "score": 0.9}
                answer = ls.post(ls.base + "/api/predictions", json=made, timeout=30)
                answer.raise_for_status()
                before[task["id"]] = [answer.json()["id"]]

        done = project.preannotate("fish-detector")
        assert (done["state"], done["done"], done["total"]) == ("completed", len(names), len(names))
        assert done["continued"] == len(before) and done["predicted"] == len(names) and not done["failed"]
        for task in tasks:
            answer = ls.get(ls.base + "/api/predictions", params={"task": task["id"]}, timeout=30).json()
            made = [p["id"] for p in answer]
            assert len(made) == 1 and made == before.get(task["id"], made)  # the first ones kept, not redone

        again = project.preannotate("fish-detector", restart=True)  # asked to: every image again
        assert (again["state"], again["continued"], again["predicted"]) == ("completed", 0, len(names))
        redone = ls.get(ls.base + "/api/predictions", params={"task": tasks[0]["id"]}, timeout=30).json()
        assert len(redone) == 1 and [redone[0]["id"]] != before.get(tasks[0]["id"])
    finally:
        project.delete()
