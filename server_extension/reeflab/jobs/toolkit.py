"""Helpers the shipped notebooks (notebooks/*.ipynb) share: offline Ultralytics, data paths, tiny datasets.

Kept here rather than inside the notebooks so each notebook stays short and the same code is tested
once. Storage connections appear as plain folders (~/storage/<name>); `s3://bucket/prefix` also works
(boto3 with the usual AWS_* variables or ~/.aws config, and AWS_ENDPOINT_URL for SeaweedFS/MinIO).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def prepare_ultralytics(config_dir: str | os.PathLike | None = None) -> bool:
    """Ultralytics offline (own config dir with a font, no downloads); MLflow logging on iff a URI is set.

    Call before importing ultralytics. Returns whether training runs will be logged to MLflow.
    """
    from ..modules.fish_detector.train_weights import offline_ultralytics

    config_dir = config_dir or os.environ.get("YOLO_CONFIG_DIR") or Path(jupyter_data_dir()) / "reeflab" / "yolo"
    offline_ultralytics(Path(config_dir))
    tracking = bool(os.environ.get("MLFLOW_TRACKING_URI"))
    from ultralytics import settings

    settings.update({"mlflow": tracking})  # without a URI, Ultralytics would write mlflow.db in the cwd
    return tracking


def _s3(url: str) -> tuple[object, str, str]:
    import boto3

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None), bucket, prefix


def local_path(path: str, cache: str | os.PathLike = "s3-cache") -> Path:
    """A local path for a plain path or an `s3://bucket/prefix` (its objects are downloaded into `cache`)."""
    if not str(path).startswith("s3://"):
        return Path(path).expanduser()
    client, bucket, prefix = _s3(path)
    target = Path(cache) / bucket / prefix
    found = False
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found = True
            dest = Path(cache) / bucket / item["Key"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(dest))
    if not found:
        raise FileNotFoundError(f"nothing under {path}")
    return target


def publish(folder: str | os.PathLike, destination: str) -> str:
    """Copy a results folder to `destination` when it is an `s3://` URL; a plain path is left as it is."""
    if not destination.startswith("s3://"):
        return str(folder)
    client, bucket, prefix = _s3(destination)
    for file in sorted(Path(folder).rglob("*")):
        if file.is_file():
            client.upload_file(str(file), bucket, f"{prefix.rstrip('/')}/{file.relative_to(folder)}".lstrip("/"))
    return destination


def images_in(folder: str | os.PathLike) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def tiny_fish_dataset(out_dir: str | os.PathLike, n_train: int = 8, n_val: int = 4, imgsz: int = 128) -> Path:
    """A small YOLO dataset of generated underwater scenes (the fish detector's generator); its data.yaml."""
    from ..modules.fish_detector.synth import generate_dataset

    data_yaml = Path(out_dir) / "data.yaml"
    if data_yaml.exists():
        return data_yaml
    return generate_dataset(out_dir, n_train, n_val, imgsz=imgsz, seed=0)


class TrainClock:
    """Images/s of the training loop itself (epochs, without validation): the same measure in a job and outside.

    `clock = TrainClock(model)` before `model.train(...)`; then `clock.images_per_s`.
    """

    def __init__(self, model):
        self.seconds = 0.0
        self.images = 0
        self._start = 0.0
        model.add_callback("on_train_epoch_start", self._epoch_start)
        model.add_callback("on_train_epoch_end", self._epoch_end)

    def _epoch_start(self, trainer) -> None:
        self._start = time.perf_counter()

    def _epoch_end(self, trainer) -> None:
        self.seconds += time.perf_counter() - self._start
        self.images += len(trainer.train_loader.dataset)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0
