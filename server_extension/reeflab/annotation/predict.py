"""`python -m reeflab.annotation.predict SPEC RESULT`: a module's predict over a project's images, in its own process.

The module is loaded and called as the serverless engine's warm workers do (oscar_engine/worker.py's
ModuleRunner: its own argument schema validates each image, `predict_batch` in chunks when it has one), with
the environment of the catalogue entry (a registered version's weights). SPEC (JSON) names the module, the
images and the predict options; RESULT receives {"task", "labels", "results": [one predict answer an image], "weights",
"imgsz"} (weights: what the module serves now, which retraining continues from; None when it is not an
Ultralytics module).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

CHUNK = 8  # images per forward pass, as the serverless engine's slices


def module_task(model: Any) -> tuple[str | None, list[str]]:
    """('detect' | 'classify' | None, class names) of a loaded module: Ultralytics modules say both."""
    task = getattr(model, "task", None)
    labels: list[str] = []
    network = getattr(model, "network", None)
    if callable(network):
        names = getattr(network(), "names", None) or {}
        labels = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    return (task if task in ("detect", "classify") else None), labels


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from ..oscar_engine.worker import ModuleRunner

    runner = ModuleRunner({"module": spec["module"], "predict_args": spec.get("options") or {}})
    task, labels = module_task(runner.model)
    results: list[dict[str, Any]] = []
    files = spec.get("files") or []
    if spec.get("expect") and task is not None and task != spec["expect"]:
        files = []  # a detector for a classification project, or the reverse: nothing to predict
    with tempfile.TemporaryDirectory(prefix="reeflab-preannotate-") as scratch:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            items = [(Path(path), name, Path(scratch) / str(start + i)) for i, (path, name) in enumerate(chunk)]
            if callable(getattr(runner.model, "predict_batch", None)):
                replies = runner.predict_files(items)
            else:
                replies = [runner.predict_file(*item) for item in items]
            for (_, name, out), reply in zip(items, replies, strict=True):
                found = sorted(out.glob("*.json")) if out.exists() else []
                if reply.get("ok") and found:
                    results.append({"file": name, "ok": True, "answer": json.loads(found[0].read_text())})
                else:
                    results.append({"file": name, "ok": False, "error": reply.get("error", "no JSON answer")})
    model_path = getattr(runner.model, "model_path", None)
    weights = model_path() if callable(model_path) else None
    imgsz = getattr(runner.model, "imgsz", None)
    return {"task": task, "labels": labels, "results": results, "weights": weights, "imgsz": imgsz}


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text())
    try:
        answer = run(spec)
    except Exception as error:  # the module could not be loaded: say why
        answer = {"error": str(error) if isinstance(error, RuntimeError) else f"{type(error).__name__}: {error}"}
    Path(result_path).write_text(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
