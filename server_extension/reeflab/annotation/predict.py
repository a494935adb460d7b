"""`python -m reeflab.annotation.predict SPEC RESULT`: a module's predict over a project's images, in its own process.

The module is loaded and called as the serverless engine's warm workers do (oscar_engine/worker.py's
ModuleRunner: its own argument schema validates each image, `predict_batch` in chunks when it has one), with
the environment of the catalogue entry (a registered version's weights). SPEC (JSON) names the module, the
images (a path, or `s3://bucket/key` read with the connection's AWS_* keys a chunk at a time, so nothing is
copied first) and the predict options. RESULT receives JSON lines, written as they are known so that the
platform shows progress: first {"task", "labels", "weights", "imgsz"} (weights: what the module serves now,
which retraining continues from; None when it is not an Ultralytics module), or {"error"}; then one
{"results": [one predict answer an image]} a chunk.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import sources

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


def fetch(items: list[tuple[str, str, Path]], scratch: Path) -> tuple[list[tuple[Path, str, Path]], list[str | None]]:
    """Each item as a local file: the `s3://bucket/key` and `webdav:<path>` ones read into `scratch` together (one
    GET each, a thread each: sources.py, with the connection's environment); the local items and, for each, why it
    could not be read (None: it was)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[str, str, Path]) -> tuple[Path, str | None]:
        path, name, out = item
        if not sources.is_remote(path):
            return Path(path), None
        target = scratch / "in" / out.name / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.write_bytes(sources.read(path))
            return target, None
        except OSError as error:
            return target, str(error)

    sources.clients_for([path for path, _, _ in items])  # made once, before the threads share them
    with ThreadPoolExecutor(max_workers=CHUNK) as pool:
        read = list(pool.map(one, items))
    local = [(where, name, out) for (where, _), (_, name, out) in zip(read, items, strict=True)]
    return local, [error for _, error in read]


def run(spec: dict[str, Any], result: Any) -> None:
    from ..oscar_engine.worker import ModuleRunner

    runner = ModuleRunner({"module": spec["module"], "predict_args": spec.get("options") or {}})
    task, labels = module_task(runner.model)
    model_path = getattr(runner.model, "model_path", None)
    weights = model_path() if callable(model_path) else None
    imgsz = getattr(runner.model, "imgsz", None)
    write(result, {"task": task, "labels": labels, "weights": weights, "imgsz": imgsz})
    files = spec.get("files") or []
    if spec.get("expect") and task is not None and task != spec["expect"]:
        files = []  # a detector for a classification project, or the reverse: nothing to predict
    with tempfile.TemporaryDirectory(prefix="reeflab-preannotate-") as scratch:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            items = [(path, name, Path(scratch) / str(start + i)) for i, (path, name) in enumerate(chunk)]
            items, unread = fetch(items, Path(scratch))
            readable = [item for item, error in zip(items, unread, strict=True) if error is None]
            if callable(getattr(runner.model, "predict_batch", None)):
                replies = iter(runner.predict_files(readable))
            else:
                replies = iter([runner.predict_file(*item) for item in readable])
            results: list[dict[str, Any]] = []
            for (path, name, out), error in zip(items, unread, strict=True):
                reply = next(replies) if error is None else {"ok": False, "error": error}
                found = sorted(out.glob("*.json")) if out.exists() else []
                if reply.get("ok") and found:
                    results.append({"file": name, "ok": True, "answer": json.loads(found[0].read_text())})
                else:
                    results.append({"file": name, "ok": False, "error": reply.get("error", "no JSON answer")})
                if path.is_relative_to(Path(scratch) / "in"):
                    path.unlink(missing_ok=True)  # read images do not pile up
            write(result, {"results": results})


def write(result: Any, line: dict[str, Any]) -> None:
    result.write(json.dumps(line) + "\n")
    result.flush()


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text())
    with open(result_path, "a") as result:
        try:
            run(spec, result)
        except Exception as error:  # the module could not be loaded, or failed: say why
            text = str(error) if isinstance(error, RuntimeError) else f"{type(error).__name__}: {error}"
            write(result, {"error": text})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
