"""The shipped pipelines with Elyra itself: `elyra-pipeline run` (local runtime) and the Kubeflow Pipelines export."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from kfp.components import load_component_from_file
from reeflab.hub.config import REPO
from reeflab.pipelines.export import export_kfp
from reeflab.storage.testing import SeaweedProcess

NOTEBOOKS = REPO / "notebooks"
SAMPLES = REPO / "server_extension" / "reeflab" / "modules" / "fish_detector" / "samples"


def singleuser_image() -> str:
    """name:version of the single-user image, from its Dockerfile's labels (images/)."""
    text = (REPO / "images" / "singleuser.Dockerfile").read_text()
    name = re.search(r'io\.reeflab\.image="([^"]+)"', text).group(1)
    version = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', text).group(1)
    return f"{name}:{version}"


def test_elyra_pipeline_run_executes_the_shipped_pipeline(tmp_path):
    """What a user gets from the editor's Run button or `elyra-pipeline run`: the report, in its run's folder."""
    shutil.copytree(NOTEBOOKS / "pipelines", tmp_path / "pipelines")
    shutil.copy(NOTEBOOKS / "detect_classify.pipeline", tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("fish_01.jpg", "fish_02.jpg"):
        shutil.copy(SAMPLES / name, photos / name)
    env = {**os.environ, "IMAGES_DIR": str(photos), "VIA": "local", "YOLO_OFFLINE": "1"}
    env.pop("REEFLAB_SERVERLESS_URL", None)
    elyra = Path(sys.executable).parent / "elyra-pipeline"
    done = subprocess.run(
        [str(elyra), "run", "detect_classify.pipeline"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"]
    # in a folder of this run's own (report/<run name>/): a second run never overwrites it
    reports = list((tmp_path / "pipelines" / "report").glob("*/report.csv"))
    assert len(reports) == 1, reports
    with open(reports[0]) as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({r["file"] for r in rows}) == ["fish_01.jpg", "fish_02.jpg"]
    assert len(rows) >= sum(len(truth[n]["boxes"]) for n in ("fish_01.jpg", "fish_02.jpg"))
    assert len(list((reports[0].parent / "annotated").glob("*.png"))) == 2


def test_the_shipped_pipeline_exports_to_kubeflow_pipelines(tmp_path):
    with SeaweedProcess(tmp_path / "s3") as s3:
        s3.client().create_bucket(Bucket="pipelines")
        out = export_kfp(
            NOTEBOOKS / "detect_classify.pipeline", tmp_path / "detect_classify.yaml", s3.endpoint, "pipelines", s3.key
        )
        uploaded = [o["Key"] for o in s3.client().list_objects_v2(Bucket="pipelines").get("Contents", [])]
    # every node's notebook travels as an archive through object storage
    assert sorted(k.rsplit("/", 1)[1] for k in uploaded) == [
        "classify-classify.tar.gz",
        "crop-crop.tar.gz",
        "detect-detect.tar.gz",
        "report-report.tar.gz",
    ]
    spec = load_component_from_file(str(out)).pipeline_spec  # kfp's own loader: a valid pipeline spec
    tasks = spec.root.dag.tasks
    assert len(tasks) == 4
    chain = sorted(len(task.dependent_tasks) for task in tasks.values())
    assert chain == [0, 1, 1, 1]  # detect first, then one after another
    text = out.read_text()
    images = set(re.findall(r"image: (\S+)", text))
    assert images == {singleuser_image()}
    assert "detect.ipynb" in text and "report.ipynb" in text
    assert s3.key["secret_key"] not in text and s3.key["access_key"] not in text  # keys come from a Secret


def test_the_retraining_pipeline_exports_to_kubeflow_pipelines(tmp_path):
    with SeaweedProcess(tmp_path / "s3") as s3:
        s3.client().create_bucket(Bucket="pipelines")
        out = export_kfp(NOTEBOOKS / "retrain.pipeline", tmp_path / "retrain.yaml", s3.endpoint, "pipelines", s3.key)
        uploaded = [o["Key"] for o in s3.client().list_objects_v2(Bucket="pipelines").get("Contents", [])]
    names = ["train", "evaluate", "gate", "register", "deploy"]
    assert sorted(k.rsplit("/", 1)[1] for k in uploaded) == sorted(f"{n}-{n}.tar.gz" for n in names)
    tasks = load_component_from_file(str(out)).pipeline_spec.root.dag.tasks
    assert sorted(len(task.dependent_tasks) for task in tasks.values()) == [0, 1, 1, 1, 1]  # one after another
    text = out.read_text()
    assert set(re.findall(r"image: (\S+)", text)) == {singleuser_image()}
    assert "MIN_MAP50" in text and "gate.ipynb" in text  # the parameters travel as the nodes' environment
    assert s3.key["secret_key"] not in text and s3.key["access_key"] not in text
