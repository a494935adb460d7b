"""Built-in modules run unchanged under the real `deepaas-run` (the DEEPaaS v2 API)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image
from reeflab.files import free_port
from reeflab.modules.contract import CONTRACT, missing_functions
from reeflab.modules.fish_detector import model as fish
from reeflab.modules.fish_detector.evaluate import IOU_MATCH, greedy_match
from reeflab.modules.image_classifier import model as classifier
from reeflab.modules.yolo_detector import model as detector
from reeflab.testing.process import wait_until

DEEPAAS_RUN = str(Path(sys.executable).parent / "deepaas-run")


@contextlib.contextmanager
def serve(model: str, folder: Path):
    """`deepaas-run --model-name <model>` on a free port, as a user would run it; stopped at the end."""
    port = free_port()
    log = folder / f"deepaas-{model}.log"
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(folder / "yolo")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [DEEPAAS_RUN, "--model-name", model, "--listen-ip", "127.0.0.1", "--listen-port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}/v2/"

    def up():
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return requests.get(base + "models/", timeout=2).ok
        except requests.ConnectionError:
            return False

    try:
        wait_until(up, 120, f"deepaas-run {model} to answer")
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def deepaas(tmp_path_factory):
    with serve("yolo-detector", tmp_path_factory.mktemp("deepaas")) as base:
        yield base


@pytest.fixture(scope="module")
def fish_deepaas(tmp_path_factory):
    with serve("fish-detector", tmp_path_factory.mktemp("fish")) as base:
        yield base


def image_bytes(fmt: str = "JPEG", size=(320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (20, 90, 120)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("module", [detector, classifier, fish], ids=["detector", "classifier", "fish"])
def test_builtin_modules_implement_the_whole_contract(module):
    assert missing_functions(module) == []
    assert set(CONTRACT) <= set(dir(module))
    assert module.get_metadata()["ai4_metadata"]["metadata_version"].startswith("2.")


def test_deepaas_lists_the_module_with_its_metadata(deepaas):
    models = requests.get(deepaas + "models/", timeout=10).json()["models"]
    assert [m["id"] for m in models] == ["yolo-detector"]
    assert models[0]["name"] == "YOLO object detector"
    assert models[0]["ai4_metadata"]["tasks"] == ["Computer Vision", "Other"]


def test_predict_answers_json_for_an_image(deepaas):
    r = requests.post(
        deepaas + "models/yolo-detector/predict/",
        params={"conf": 0.25},
        files={"files": ("reef.jpg", image_bytes(), "image/jpeg")},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    prediction = r.json()["predictions"]
    assert prediction["file"] == "reef.jpg"
    assert (prediction["width"], prediction["height"]) == (320, 240)
    assert isinstance(prediction["detections"], list)


def test_predict_returns_an_annotated_png_on_request(deepaas):
    r = requests.post(
        deepaas + "models/yolo-detector/predict/",
        headers={"accept": "image/png"},
        files={"files": ("reef.png", image_bytes("PNG"), "image/png")},
        timeout=120,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/png")
    assert Image.open(io.BytesIO(r.content)).size == (320, 240)


@pytest.mark.parametrize(
    "params, files, says",
    [
        ({}, {"files": ("notes.txt", b"not an image", "text/plain")}, "'notes.txt' is not an image"),
        ({"conf": 2}, {"files": ("reef.jpg", image_bytes(), "image/jpeg")}, "conf"),
        ({}, {}, "files"),
    ],
)
def test_bad_input_is_refused_with_a_message(deepaas, params, files, says):
    r = requests.post(deepaas + "models/yolo-detector/predict/", params=params, files=files or None, timeout=60)
    assert 400 <= r.status_code < 500 and says in r.text


SAMPLES = Path(fish.model_path()).parents[1] / "samples"


def test_the_fish_detector_finds_the_fish_in_its_samples(fish_deepaas):
    """Every fish of the bundled samples is found through the real DEEPaaS API.

    A fish counts as found when a box overlaps it with IoU >= 0.5 (the PASCAL VOC / mAP50
    criterion: boxes from a 256-px model on ~40-px fish differ by a few pixels at the edges,
    which 0.5 tolerates while a box on the wrong fish does not reach it). Boxes matching no
    fish are false alarms; at least 80% of the boxes must be fish (precision >= 0.8).
    """
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"]
    fish_total = found = boxes = 0
    for name, expected in truth.items():
        r = requests.post(
            fish_deepaas + "models/fish-detector/predict/",
            files={"files": (name, (SAMPLES / name).read_bytes(), "image/jpeg")},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        detections = r.json()["predictions"]["detections"]
        assert all(d["label"] == "fish" for d in detections)
        ious, _ = greedy_match(expected["boxes"], [d["box"] for d in detections], [d["confidence"] for d in detections])
        assert all(v is not None and v >= IOU_MATCH for v in ious), f"{name}: missed a fish ({ious})"
        fish_total += len(ious)
        found += len(ious)
        boxes += len(detections)
    assert found == fish_total >= 10
    assert found / boxes >= 0.8, f"{boxes - found} false alarms for {found} fish"


def test_the_confidence_threshold_is_a_predict_argument(fish_deepaas):
    """Try's slider asks again with `conf`: the answer keeps only boxes at or above it and says which it applied."""

    def predict(**params) -> dict:
        r = requests.post(
            fish_deepaas + "models/fish-detector/predict/",
            params=params,
            files={"files": ("fish_04.jpg", (SAMPLES / "fish_04.jpg").read_bytes(), "image/jpeg")},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        return r.json()["predictions"]

    default, strict = predict(), predict(conf=0.8)
    assert default["conf"] == fish.conf == 0.25 and strict["conf"] == 0.8
    assert all(d["confidence"] >= 0.8 for d in strict["detections"])
    assert len(strict["detections"]) < len(default["detections"])
