"""Ultralytics YOLO models (detect, classify) behind the DEEPaaS v2 model contract.

A built-in module is one `UltralyticsModule` object named `model` in its package, registered
as a `deepaas.v2.model` entry point, so `deepaas-run --model-name <id>` serves it unchanged.
DEEPaaS runs predict/train in spawned worker processes: the object pickles as a reference to
its package, and each worker loads the network once and reuses it.
"""

from __future__ import annotations

import importlib
import io
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .metadata import load_module_metadata


def training_device(asked: Any = "", environ: Mapping[str, str] | None = None) -> str | int | list[int]:
    """The `device` for Ultralytics' `train`: what was asked if anything ("cpu", "0", "0,1", [0, 1]), else every GPU
    this process may use: [0, 1, ...] with several (Ultralytics then starts its own DDP workers, one per GPU, and
    is not wrapped in torchrun), 0 with one, "cpu" with none. The GPUs are those of CUDA_VISIBLE_DEVICES (a job's
    are its profile's; empty on a CPU profile; CUDA stops at the first negative entry), else CUDA's own count."""
    if asked not in (None, "", "auto"):
        return asked
    visible = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        import torch

        count = torch.cuda.device_count()
    else:
        count = 0
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry.startswith("-"):
                break
            count += 1
    return "cpu" if count == 0 else 0 if count == 1 else list(range(count))


def train_metrics(results: Any) -> dict[str, float]:
    """What Ultralytics' `train` returned, as {metric: value}: its metrics' `results_dict` on one device; under its
    own DDP (several GPUs) validation ran in the workers and `train` returns the checkpoint's metrics dict."""
    found = getattr(results, "results_dict", results) or {}
    return {k: float(v) for k, v in found.items()}


def _resolve(package: str, attribute: str) -> UltralyticsModule:
    return getattr(importlib.import_module(package), attribute)


def ultralytics_offline() -> None:
    """Keep Ultralytics from reaching the network: no downloads, no telemetry, own config dir."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "reeflab-yolo")))
    font = config_dir / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        # plotting and training look for this font and would download it
        import matplotlib

        font.parent.mkdir(parents=True, exist_ok=True)
        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        font.write_bytes(source.read_bytes())


def check_image(upload: Any) -> bool:
    """marshmallow validator for uploaded files: refuse anything that is not a readable image."""
    from marshmallow import ValidationError
    from PIL import Image, UnidentifiedImageError

    name = getattr(upload, "filename", None) or "the file"
    stream = getattr(upload, "file", None)
    if stream is None:
        raise ValidationError("send an image file (multipart form field 'files')")
    try:
        with Image.open(stream) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ImportError):
        # ImportError: Ultralytics patches Image.open to try optional HEIF support (pi_heif) on unknown data
        raise ValidationError(f"'{name}' is not an image this model can read; send a JPEG, PNG, TIFF or BMP") from None
    finally:
        stream.seek(0)
    return True


def drop_large_boxes(result: Any, max_area: float | None) -> Any:
    """A detection result without the boxes that cover more than `max_area` of the image (None: all kept)."""
    boxes = result.boxes
    if max_area is None or boxes is None or not len(boxes):
        return result
    height, width = result.orig_shape
    xyxy = boxes.xyxy
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / (width * height)
    return result[area <= max_area]


class UltralyticsModule:
    """A YOLO detector or classifier: metadata from the package, weights shipped or built from yaml.

    `max_box_area` (detectors): boxes covering more than this fraction of the image are dropped, for a
    detector trained on objects that never fill the frame (a box that does is never one of them).
    """

    def __init__(
        self,
        package: str,
        task: str,
        model: str,
        imgsz: int = 640,
        conf: float = 0.25,
        max_box_area: float | None = None,
        iou: float = 0.7,
    ):
        self.package = package
        self.conf = conf
        self.iou = iou  # NMS: boxes overlapping a better one more than this are the same object
        self.task = task  # "detect" or "classify"
        self.default_model = model  # weights file inside the package, or an Ultralytics yaml
        self.imgsz = imgsz
        self.max_box_area = max_box_area
        self._network = None

    @property
    def trained(self) -> bool:
        """Whether it serves trained weights: shipped ones (.pt) or a registered model's, not a network
        built from a yaml with random weights (the catalogue offers training instead of a try then)."""
        return bool(os.environ.get("REEFLAB_WEIGHTS")) or self.default_model.endswith(".pt")

    @property
    def retrain_parameters(self) -> dict[str, str] | None:
        """What notebooks/retrain.pipeline needs to train this module's own network: detectors only."""
        return {"BASE_WEIGHTS": self.default_model} if self.task == "detect" and not self.trained else None

    def __reduce__(self):
        return (_resolve, (self.package, "model"))

    # -- DEEPaaS v2 contract -------------------------------------------------

    def get_metadata(self) -> dict:
        metadata = load_module_metadata(self.package)
        return {
            "name": metadata.get("title", self.package),
            "description": metadata.get("summary", ""),
            "license": metadata.get("license", ""),
            "version": metadata.get("version", ""),
            "author": ", ".join(metadata.get("authors", [])) if isinstance(metadata.get("authors"), list) else "",
            "url": (metadata.get("links") or {}).get("source_code", ""),
            "ai4_metadata": metadata,
        }

    def warm(self) -> None:
        """Load the weights and set up the predictor once (the first predict would otherwise pay it)."""
        from PIL import Image

        self.network().predict(Image.new("RGB", (64, 64)), imgsz=self.imgsz, verbose=False)

    def get_predict_args(self) -> dict:
        from marshmallow.warnings import ChangedInMarshmallow4Warning
        from webargs import fields, validate

        # DEEPaaS finds file arguments as exactly `fields.Field` with metadata type "file" (deepaas-cli too),
        # which marshmallow 3.24+ warns about at every start: that warning says nothing to a module's user
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ChangedInMarshmallow4Warning)
            files = fields.Field(
                required=True,
                validate=check_image,
                metadata={"type": "file", "location": "form", "description": "Image to analyse (JPEG, PNG, TIFF, BMP)"},
            )
        args = {
            "files": files,
            "imgsz": fields.Int(
                load_default=self.imgsz,
                validate=validate.Range(32, 4096),
                metadata={"description": "Inference image size (pixels)"},
            ),
            "accept": fields.Str(
                load_default="application/json",
                validate=validate.OneOf(["application/json", "image/png"]),
                metadata={"location": "headers", "description": "JSON results, or the image annotated with them"},
            ),
        }
        if self.task == "detect":
            args["conf"] = fields.Float(
                load_default=self.conf,
                validate=validate.Range(0, 1),
                metadata={
                    "description": "Confidence threshold (0-1): boxes below it are left out; lower finds more, "
                    "with more false alarms"
                },
            )
            args["iou"] = fields.Float(
                load_default=self.iou,
                validate=validate.Range(0, 1),
                metadata={"description": "Overlap (IoU, 0-1) above which two boxes are taken for one object"},
            )
        else:
            args["top_k"] = fields.Int(
                load_default=5, validate=validate.Range(1, 100), metadata={"description": "Classes returned"}
            )
        return args

    def predict(self, **kwargs) -> Any:
        upload = kwargs["files"]
        options = {"imgsz": kwargs.get("imgsz", self.imgsz), "verbose": False}
        if self.task == "detect":
            options.update(conf=kwargs.get("conf", self.conf), iou=kwargs.get("iou", self.iou))
        from PIL import Image

        # DEEPaaS hands over a temp file without extension, which Ultralytics would refuse
        with Image.open(upload.filename) as image:
            rgb = image.convert("RGB")
        start = time.perf_counter()
        result = self._postprocess(self.network().predict(rgb, **options)[0])
        elapsed_ms = (time.perf_counter() - start) * 1000
        if kwargs.get("accept") == "image/png":
            return self._annotated_png(result)
        name = getattr(upload, "original_filename", None) or Path(upload.filename).name
        return self.describe(result, name, elapsed_ms, kwargs.get("top_k", 5), options.get("conf"))

    def predict_batch(self, paths: list[str], names: list[str], **kwargs) -> list[dict]:
        """Several images in one forward pass (ReefLab's batch jobs): for each, what `predict` answers in JSON."""
        from PIL import Image

        options = {"imgsz": kwargs.get("imgsz", self.imgsz), "verbose": False, "batch": len(paths)}
        if self.task == "detect":
            options.update(conf=kwargs.get("conf", self.conf), iou=kwargs.get("iou", self.iou))
        images = []
        for path in paths:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        start = time.perf_counter()
        results = [self._postprocess(r) for r in self.network().predict(images, **options)]
        each_ms = (time.perf_counter() - start) * 1000 / max(1, len(paths))
        top_k, conf = kwargs.get("top_k", 5), options.get("conf")
        return [self.describe(r, n, each_ms, top_k, conf) for r, n in zip(results, names, strict=True)]

    def get_train_args(self) -> dict:
        from webargs import fields, validate

        return {
            "data": fields.Str(
                required=True,
                metadata={
                    "description": "Dataset: a data.yaml (detection) or a folder with train/ and val/ (classification)"
                },
            ),
            "epochs": fields.Int(load_default=10, validate=validate.Range(1, 10000)),
            "imgsz": fields.Int(load_default=self.imgsz, validate=validate.Range(32, 4096)),
            "batch": fields.Int(load_default=16, validate=validate.Range(1, 1024)),
            "model": fields.Str(
                load_default="",
                metadata={
                    "description": "Model yaml (e.g. yolov8n.yaml) or previous weights (.pt); default: this module's"
                },
            ),
            "device": fields.Str(
                load_default="",
                metadata={"description": "'cpu', '0', '0,1' ...; default: every GPU (several: DDP), else cpu"},
            ),
            "project": fields.Str(load_default="", metadata={"description": "Folder for runs; default: ./runs"}),
        }

    def train(self, **kwargs) -> dict:
        from ultralytics import YOLO

        ultralytics_offline()
        network = YOLO(kwargs.get("model") or self.model_path(), task=self.task)
        options = {k: kwargs[k] for k in ("data", "epochs", "imgsz", "batch") if k in kwargs}
        options["device"] = training_device(kwargs.get("device"))  # several GPUs: Ultralytics' own DDP
        if kwargs.get("project"):
            options["project"] = kwargs["project"]
        results = network.train(amp=False, plots=False, exist_ok=True, **options)
        trainer = network.trainer
        return {
            "weights": str(trainer.best if Path(trainer.best).exists() else trainer.last),
            "save_dir": str(trainer.save_dir),
            "metrics": train_metrics(results),
        }

    # -- helpers ---------------------------------------------------------------

    def model_path(self) -> str:
        """The weights to serve: $REEFLAB_WEIGHTS (a registered model's deployment), else the
        shipped weights as a file path, or the yaml name Ultralytics builds from."""
        if os.environ.get("REEFLAB_WEIGHTS"):
            return os.environ["REEFLAB_WEIGHTS"]
        if self.default_model.endswith(".pt"):
            return str(resources.files(self.package).joinpath(self.default_model))
        return self.default_model

    def _postprocess(self, result: Any) -> Any:
        return drop_large_boxes(result, self.max_box_area) if self.task == "detect" else result

    def network(self):
        if self._network is None:
            from ultralytics import YOLO

            ultralytics_offline()
            self._network = YOLO(self.model_path(), task=self.task)
        return self._network

    def describe(self, result, name: str, elapsed_ms: float, top_k: int = 5, conf: float | None = None) -> dict:
        """JSON results of one image: boxes for a detector (with the confidence threshold applied), top-k
        classes for a classifier."""
        height, width = result.orig_shape
        out: dict[str, Any] = {
            "file": name,
            "width": int(width),
            "height": int(height),
            "time_ms": round(elapsed_ms, 1),
        }
        if self.task == "detect":
            boxes = result.boxes
            out["conf"] = self.conf if conf is None else conf
            out["detections"] = [
                {
                    "class_id": int(cls),
                    "label": result.names[int(cls)],
                    "confidence": round(float(conf), 4),
                    "box": [round(float(v), 1) for v in xyxy],
                }
                for xyxy, conf, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True)
            ]
        else:
            probs = result.probs
            order = probs.data.argsort(descending=True)[:top_k].tolist()
            out["classes"] = [
                {"class_id": i, "label": result.names[i], "probability": round(float(probs.data[i]), 4)} for i in order
            ]
        return out

    def _annotated_png(self, result) -> io.BufferedReader:
        from PIL import Image

        plotted = result.plot()[..., ::-1]  # BGR -> RGB
        handle, path = tempfile.mkstemp(suffix=".png")
        os.close(handle)
        Image.fromarray(plotted).save(path, format="PNG")
        return open(path, "rb")  # noqa: SIM115 (DEEPaaS streams and closes it)
