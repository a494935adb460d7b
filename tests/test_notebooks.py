"""The shipped notebooks (notebooks/*.ipynb), each run for real by papermill on tiny generated data."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import warnings
from pathlib import Path

import nbformat
import pytest
from PIL import Image
from reeflab.hub.config import REPO
from reeflab.modules.fish_detector.synth import generate_samples
from reeflab.modules.fish_detector.train_weights import WEIGHTS

NOTEBOOKS = REPO / "notebooks"

with warnings.catch_warnings():  # papermill loads its engine entry points, Elyra's among them, which warns
    warnings.simplefilter("ignore", DeprecationWarning)
    import papermill


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """What a job's kernel gets: offline Ultralytics with its own config dir (the kernel inherits it)."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("GITHUB_ACTIONS", "GITHUB_WORKFLOW", "RUNNER_OS"):  # see run()
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run(name: str, cwd, **parameters) -> nbformat.NotebookNode:
    # Ultralytics turns MLflow logging off when it sees pytest or CI in the environment; the kernel stands
    # for a user's, so it must not see them (pytest sets this variable for the test's call itself)
    current = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        return papermill.execute_notebook(
            str(NOTEBOOKS / name),
            str(cwd / f"out-{name}"),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(cwd),
            progress_bar=False,
        )
    finally:
        if current is not None:
            os.environ["PYTEST_CURRENT_TEST"] = current


@pytest.mark.parametrize("name", ["train_yolo.ipynb", "evaluate.ipynb", "batch_inference.ipynb"])
def test_every_notebook_has_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # shipped clean


def test_train_yolo_trains_logs_to_mlflow_and_saves_weights(kernel_env, monkeypatch):
    uri = f"sqlite:///{kernel_env / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "fish-smoke")
    run("train_yolo.ipynb", kernel_env, epochs=1, imgsz=96, batch=4, weights_out="out/fish.pt")

    metrics = json.loads((kernel_env / "train_metrics.json").read_text())
    assert metrics["images_seen"] == 8 and metrics["train_images_per_s"] > 0
    assert (kernel_env / "out" / "fish.pt").stat().st_size > 100_000
    assert not (kernel_env / "mlflow.db-journal").exists()

    # what the MLflow server/UI shows, read straight from its store (the mlflow client warns under pytest)
    with contextlib.closing(sqlite3.connect(kernel_env / "mlflow.db")) as db:
        runs = db.execute(
            "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e USING (experiment_id) WHERE e.name = ?",
            ("fish-smoke",),
        ).fetchall()
        assert len(runs) == 1 and runs[0][1] == "FINISHED"
        params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (runs[0][0],)).fetchall())
        metrics = {key for (key,) in db.execute("SELECT key FROM metrics WHERE run_uuid = ?", (runs[0][0],))}
    assert params["epochs"] == "1" and params["imgsz"] == "96"
    assert any(key.startswith("metrics/mAP50") for key in metrics)


def test_train_yolo_without_tracking_writes_no_mlflow_files(kernel_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what a job on a CPU profile gets: the default device is the CPU
    run("train_yolo.ipynb", kernel_env, epochs=1, imgsz=64, batch=4)
    assert (kernel_env / "weights" / "best.pt").is_file()
    assert not (kernel_env / "mlflow.db").exists() and not (kernel_env / "mlruns").exists()
    assert "device: cpu" in (kernel_env / "runs" / "train" / "args.yaml").read_text().splitlines()
    metrics = json.loads((kernel_env / "train_metrics.json").read_text())
    assert "metrics/mAP50(B)" in metrics and metrics["images_seen"] == 8


def test_the_modules_train_entry_trains_on_the_cpu_of_a_cpu_profile(kernel_env, monkeypatch):
    from reeflab.jobs.toolkit import tiny_fish_dataset
    from reeflab.modules.fish_detector import model

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    data = tiny_fish_dataset(kernel_env / "data", n_train=4, n_val=2, imgsz=64)
    done = model.train(data=str(data), epochs=1, imgsz=64, batch=4, project=str(kernel_env / "runs"))
    assert Path(done["weights"]).is_file() and "metrics/mAP50(B)" in done["metrics"]
    assert "device: cpu" in (Path(done["save_dir"]) / "args.yaml").read_text().splitlines()


@pytest.mark.parametrize(
    ("asked", "visible", "device"),
    [
        ("", "0,1", [0, 1]),  # a profile with 2 GPUs: Ultralytics' own DDP on both (not torchrun around it)
        ("", "GPU-5e1c,GPU-9a2f,GPU-77b0", [0, 1, 2]),  # UUIDs (a Kubernetes device plugin's)
        ("", "3", 0),  # one GPU: Ultralytics on it, no DDP
        ("", "", "cpu"),  # a CPU profile's job
        ("", "-1", "cpu"),
        ("", "0,-1,1", 0),  # CUDA stops at the first invalid entry
        ("cpu", "0,1", "cpu"),  # what the user asked wins
        ("0,1", "", "0,1"),
        ("auto", "0,1,2,3", [0, 1, 2, 3]),
    ],
)
def test_the_training_device_is_every_gpu_of_the_job_else_the_cpu(asked, visible, device):
    from reeflab.modules.ultra import training_device

    assert training_device(asked, {"CUDA_VISIBLE_DEVICES": visible}) == device


def test_without_cuda_visible_devices_the_gpus_are_cudas_own_count():
    import torch
    from reeflab.modules.ultra import training_device

    count = torch.cuda.device_count()  # 0 on this machine
    assert training_device("", {}) == ("cpu" if count == 0 else 0 if count == 1 else list(range(count)))


def test_train_metrics_read_the_metrics_object_or_the_ddp_checkpoints_dict():
    from types import SimpleNamespace

    from reeflab.modules.ultra import train_metrics

    assert train_metrics(SimpleNamespace(results_dict={"fitness": 0.5})) == {"fitness": 0.5}
    assert train_metrics({"metrics/mAP50(B)": 0.25}) == {"metrics/mAP50(B)": 0.25}  # under Ultralytics' DDP
    assert train_metrics(None) == {}


def test_evaluate_writes_metrics_pr_curve_and_confusion_matrix(kernel_env):
    run("evaluate.ipynb", kernel_env, weights=str(WEIGHTS), imgsz=256, out_dir="eval")
    out = kernel_env / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["map50"] > 0.5, metrics  # the shipped fish detector finds generated fish
    assert set(metrics["per_class_map50_95"]) == {"fish"}
    for plot in ("pr_curve.png", "confusion_matrix.png"):
        with Image.open(out / plot) as image:
            assert image.format == "PNG" and image.width > 200


def test_batch_inference_writes_csv_json_and_annotated_images(kernel_env):
    truth = json.loads(generate_samples(kernel_env / "reef", n=5, seed=77).read_text())
    nb = run("batch_inference.ipynb", kernel_env, input="reef", output="results", batch=2)
    out = kernel_env / "results"
    per_image = json.loads((out / "results.json").read_text())
    assert sorted(per_image) == sorted(truth["images"])
    assert sum(len(found) for found in per_image.values()) >= 5  # at least one fish in each scene, in all
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(found) for found in per_image.values()) and rows[0]["label"] == "fish"
    annotated = sorted(p.name for p in (out / "annotated").iterdir())
    assert annotated == sorted(truth["images"])
    progress = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr")
    assert "5/5" in progress  # the tqdm progress bar reached the end
