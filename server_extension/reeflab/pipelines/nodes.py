"""Helpers for pipeline nodes (the notebooks in notebooks/pipelines/): parameters, module calls, files.

Elyra hands a node its parameters as environment variables (the node's and the pipeline's
`env_vars`, which ReefLab runs may override), and nodes pass files to each other through the
pipeline's folder (Elyra's local runtime runs every node there; on Kubeflow Pipelines the node's
declared `outputs` travel through object storage). So a node reads `param("NAME", default)`,
calls a module with `module(name)`, and writes its results under `run_folder(WORK_DIR)`: a folder of
each run's own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def param(name: str, default: str = "") -> str:
    """A node parameter: the environment variable `name` (set by Elyra from the pipeline), else `default`."""
    value = os.environ.get(name, "")
    return value if value.strip() else default


def run_folder(folder: str | os.PathLike) -> Path:
    """`folder`/<this run's name> when the pipeline runs here (ReefLab's runs and the Elyra editor's Run set
    ELYRA_RUN_NAME, the same for every node of a run), so two runs of one pipeline never write into each
    other's files; `folder` itself elsewhere (Kubeflow Pipelines runs each node in a pod of its own, and moves
    the declared outputs between them)."""
    name = os.environ.get("ELYRA_RUN_NAME", "")
    local = os.environ.get("ELYRA_RUNTIME_ENV", "local") == "local"
    return Path(folder) / name if name and local and "/" not in name else Path(folder)


def sample_images() -> Path:
    """The fish detector's sample scenes: what a pipeline runs on when no image folder is given."""
    from importlib import resources

    return Path(str(resources.files("reeflab.modules.fish_detector").joinpath("samples")))


def images_in(folder: str | os.PathLike) -> list[Path]:
    """The images in `folder` (not recursive), sorted; a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder '{folder}': set IMAGES_DIR to a folder of images")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images in '{folder}' ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def write_json(path: str | os.PathLike, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' is missing: did the node before this one run (same WORK_DIR)?")
    return json.loads(path.read_text())


def via_default() -> str:
    """serverless when the platform's engine is known, else the module in this process."""
    return "serverless" if os.environ.get("REEFLAB_SERVERLESS_URL") else "local"


def module(name: str, via: str = "", **options: Any) -> Callable[[Path], Any]:
    """A function image-path -> the module's JSON answer.

    via="serverless": an OSCAR service of the module (created the first time, reused after) on the
    platform's engine; "deployment": a dedicated deployment (started if none runs, kept for later
    runs); "local": the module's DEEPaaS predict in this process (no platform needed).
    """
    via = via or via_default()
    if via == "serverless":
        return _serverless(name)
    if via == "deployment":
        return _deployment(name, **options)
    if via == "local":
        return _local(name, **options)
    raise ValueError(f"via must be 'serverless', 'deployment' or 'local', not '{via}'")


def _serverless(name: str) -> Callable[[Path], Any]:
    from ..client import serverless

    engine = serverless.connect()
    if name not in {s["name"] for s in serverless.services(engine=engine)}:
        serverless.create(name, engine=engine)
    return lambda path: serverless.invoke(name, path, engine=engine)


def _deployment(name: str, **options: Any) -> Callable[[Path], Any]:
    from ..client import deploy, deployments

    running = [d for d in deployments.list_deployments() if d.info.get("module") == name and d.state == "ready"]
    target = running[0] if running else deploy(name, **options).wait_ready(progress=False)
    return lambda path: target.predict(files=[path])[0]


class _Upload:
    """What DEEPaaS hands to predict: a file with its original name."""

    def __init__(self, path: Path):
        self.filename = str(path)
        self.original_filename = path.name


def _local(name: str, **options: Any) -> Callable[[Path], Any]:
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="deepaas.v2.model") if ep.name == name]
    if not found:
        raise LookupError(f"no module '{name}' installed here; list them with reeflab.client.catalog.search()")
    model = found[0].load()
    model.warm()
    return lambda path: model.predict(files=_Upload(Path(path)), **options)


# -- the retraining pipeline (notebooks/retrain.pipeline) -----------------------------------------------


def flag(name: str, default: bool = False) -> bool:
    """A yes/no node parameter: true, 1, yes, on (any case) are yes."""
    value = param(name)
    return value.strip().lower() in ("1", "true", "yes", "on") if value else default


def fish_detector_weights() -> Path:
    """The fish detector's shipped weights: what the retraining pipeline fine-tunes when given no base."""
    from importlib import resources

    return Path(str(resources.files("reeflab.modules.fish_detector").joinpath("weights", "fish-yolo.pt")))


def root_relative(path: str | os.PathLike) -> str:
    """`path` relative to the Jupyter root folder, the form the REST API takes for files.

    The root is REEFLAB_ROOT_DIR (set by ReefLab's pipeline runner), else the root folder of the
    Jupyter server this kernel belongs to (e.g. under `elyra-pipeline run` next to a local server).
    """
    root = os.environ.get("REEFLAB_ROOT_DIR")
    if not root:
        from jupyter_server.serverapp import list_running_servers

        root = next((s.get("root_dir") for s in list_running_servers() if s.get("root_dir")), None) or os.getcwd()
    path, root_path = Path(path).resolve(), Path(root).resolve()
    if not path.is_relative_to(root_path):
        raise ValueError(f"'{path}' is outside your Jupyter root folder '{root_path}': set WORK_DIR to a folder in it")
    return str(path.relative_to(root_path))


def next_version(versions: list[str]) -> str:
    """1.0.0 for a new model, else the newest numeric version with its last number raised (1.0.4 -> 1.0.5)."""
    numeric = [tuple(int(p) for p in v.split(".")) for v in versions if all(p.isdigit() for p in v.split("."))]
    if not numeric:
        return "1.0.0"
    newest = max(numeric)
    return ".".join(str(p) for p in (*newest[:-1], newest[-1] + 1))


class QualityGateFailed(Exception):
    """The trained model is below the pipeline's quality threshold: nothing after the gate runs."""


def quality_gate(metrics: dict[str, Any], metric: str, minimum: float) -> float:
    """`metrics[metric]` if it reaches `minimum`; else QualityGateFailed naming the metric, its value and the bar."""
    if metric not in metrics:
        raise KeyError(f"no metric '{metric}' in the evaluation; it has {', '.join(sorted(metrics))}")
    value = float(metrics[metric])
    if value < minimum:
        raise QualityGateFailed(
            f"{metric} {value:.4f} is below the threshold {minimum:g}: the model is not registered or deployed"
        )
    return value
