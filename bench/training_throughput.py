"""Training throughput of a notebook job vs plain Ultralytics, and job start overhead.

Starts a real Jupyter server with ReefLab (token auth) and submits notebooks/train_yolo.ipynb through
the REST API, as a user does; runs the same `model.train` arguments in this process with plain
Ultralytics. Both measure images/s of the training loop with the same clock (TrainClock: epochs only,
validation excluded). Prints the ratio (target >= 0.98) and the start overhead: submit -> first cell
running, and submit -> the training cell running (kernel start + imports).

    .venv/bin/python bench/training_throughput.py [--epochs 3] [--images 32] [--imgsz 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from reeflab.files import free_port
from reeflab.hub.config import REPO
from reeflab.testing.process import wait_until


def plain(args: argparse.Namespace, data_yaml: Path, work: Path) -> float:
    from reeflab.jobs.toolkit import TrainClock
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    clock = TrainClock(model)
    model.train(**train_args(args, data_yaml), project=str(work / "plain"), name="train", exist_ok=True)
    return clock.images_per_s


def train_args(args: argparse.Namespace, data_yaml: Path) -> dict:
    return dict(data=str(data_yaml), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=0,
                device=args.device, amp=args.device != "cpu", seed=0, plots=False, verbose=False)  # fmt: skip


def in_job(args: argparse.Namespace, data_yaml: Path, root: Path) -> tuple[float, float, float]:
    token, port = secrets.token_hex(16), free_port()
    shutil.copy(REPO / "notebooks" / "train_yolo.ipynb", root / "train_yolo.ipynb")
    command = [
        str(Path(sys.executable).parent / "jupyter"), "server", f"--port={port}", "--ip=127.0.0.1", "--no-browser",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", f"--JobService.root_dir={root}/.jobs",
        "--JobService.poll_interval=0.05", *(["--allow-root"] if os.geteuid() == 0 else []),
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/reeflab/api/jobs"
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    try:
        wait_until(lambda: _ok(session, base), 120, "the Jupyter server")
        parameters = {k: v for k, v in train_args(args, data_yaml).items() if k not in ("verbose",)}
        parameters.update(model="yolov8n.yaml", weights_out="job-best.pt", metrics_out="job_metrics.json")
        start = time.perf_counter()
        job = session.post(base, json={"notebook": "train_yolo.ipynb", "parameters": parameters}).json()
        seen: dict[int, float] = {}

        def progressed() -> bool:
            info = session.get(f"{base}/{job['id']}").json()
            seen.setdefault(info["progress"]["cell"], time.perf_counter() - start)
            return info["state"] not in ("starting", "running")

        wait_until(progressed, 1800, "the training job", 0.02)
        info = session.get(f"{base}/{job['id']}").json()
        assert info["state"] == "completed", info
    finally:
        server.terminate()
        server.wait(30)
    metrics = json.loads((root / "job_metrics.json").read_text())
    first = min(t for cell, t in seen.items() if cell >= 1)
    training = min(t for cell, t in seen.items() if cell >= 5)  # the cell that calls model.train
    return metrics["train_images_per_s"], first, training


def _ok(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=32, help="training images (generated)")
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # neither side logs: the same work on both
        os.environ["YOLO_CONFIG_DIR"] = str(root / "yolo-config")  # shared by this process and the job's kernel
        from reeflab.jobs.toolkit import prepare_ultralytics, tiny_fish_dataset

        prepare_ultralytics()
        data_yaml = tiny_fish_dataset(root / "data", n_train=args.images, n_val=4, imgsz=args.imgsz)
        # plain before and after the job: the machine's load drifts (shared cores); compare with their mean
        before = plain(args, data_yaml, root)
        job_ips, first_s, training_s = in_job(args, data_yaml, root)
        after = plain(args, data_yaml, root)
        plain_ips = (before + after) / 2
    print(
        f"training {args.images} images x {args.epochs} epochs, imgsz {args.imgsz}, batch {args.batch}, {args.device}"
    )
    print(f"plain Ultralytics model.train: {plain_ips:.1f} images/s (before {before:.1f}, after {after:.1f})")
    print(f"notebook job (papermill):      {job_ips:.1f} images/s")
    print(f"ratio job / plain: {job_ips / plain_ips:.3f} (target >= 0.98)")
    print(f"job start overhead: submit -> first cell running {first_s:.2f} s", end="; ")
    print(f"-> training cell running {training_s:.2f} s (kernel start + imports)")


if __name__ == "__main__":
    main()
