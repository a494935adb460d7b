"""OSCAR-Batch slices inside a warm worker: one invocation processes inputs `start`..`end` of an index.

The coordinator (batch.py) writes the index — the input files of the batch — to S3 and sends
`{"reeflab_batch": {"id", "index": "bucket/key", "start", "end"}}` as an invocation. The worker,
whose model is already loaded, downloads the slice's files a few at a time ahead of the model,
predicts each, uploads each result below the output path (same sub-folders as the input), and
finally writes a marker `<output>/.batch/<id>/done/<start>-<end>.json` with what it did: a
resumed batch skips the slices that have one. A file that fails is listed there; the rest go on.
S3 is reached with the service owner's key (the AWS_* environment the engine gives workers).
"""

from __future__ import annotations

import json
import posixpath
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .payload import output_files

BATCH_KEY = "reeflab_batch"
PREFETCH = 4
_indexes: dict[str, dict[str, Any]] = {}  # index key -> index, kept for the worker's next slices


def split(path: str) -> tuple[str, str]:
    bucket, _, prefix = path.strip("/").partition("/")
    return bucket, prefix.strip("/")


def marker_key(output_prefix: str, batch: str, start: int, end: int) -> str:
    return posixpath.join(output_prefix, ".batch", batch, "done", f"{start:09d}-{end:09d}.json")


def read_slice(path: Path) -> dict[str, Any] | None:
    """The slice an input file describes, or None when it is an ordinary input."""
    try:
        if path.stat().st_size > 4096:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    descriptor = data.get(BATCH_KEY) if isinstance(data, dict) else None
    if not isinstance(descriptor, dict):
        return None
    if not {"id", "index", "start", "end"} <= set(descriptor):
        return None
    return descriptor


def _index(s3, location: str) -> dict[str, Any]:
    if location not in _indexes:
        bucket, key = split(location)
        _indexes[location] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return _indexes[location]


def run_slice(
    descriptor: dict[str, Any], predict: Callable[[Path, str, Path], dict[str, Any]], workdir: Path
) -> dict[str, Any]:
    """Process one slice; the reply is ok unless the slice itself could not be read or recorded."""
    import boto3

    s3 = boto3.client("s3")
    try:
        index = _index(s3, descriptor["index"])
    except Exception as error:
        return {"ok": False, "kind": "input", "error": f"could not read the batch index {descriptor['index']}: {error}"}
    start, end = int(descriptor["start"]), int(descriptor["end"])
    items = index["items"][start:end]
    in_bucket, in_prefix = split(index["input"])
    out_bucket, out_prefix = split(index["output"])
    scratch = workdir / "slice"
    scratch.mkdir(parents=True, exist_ok=True)
    failed: list[dict[str, str]] = []
    began = time.perf_counter()

    def fetch(position: int, item: str) -> Path:
        target = scratch / f"{position}-{posixpath.basename(item)}"
        s3.download_file(in_bucket, posixpath.join(in_prefix, item), str(target))
        return target

    with ThreadPoolExecutor(PREFETCH) as pool:
        downloads = {}
        uploads = []
        for position, item in enumerate(items):
            for ahead in range(position, min(position + PREFETCH + 1, len(items))):
                if ahead not in downloads:
                    downloads[ahead] = pool.submit(fetch, ahead, items[ahead])
            try:
                path = downloads.pop(position).result()
            except Exception as error:
                failed.append({"item": item, "error": f"could not download it: {error}"})
                continue
            out = scratch / f"out-{position}"
            reply = predict(path, posixpath.basename(item), out)
            path.unlink(missing_ok=True)
            if not reply.get("ok"):
                failed.append({"item": item, "error": reply.get("error") or "failed"})
                continue
            folder = posixpath.join(out_prefix, posixpath.dirname(item))
            for result in output_files(out):
                key = posixpath.join(folder, result.relative_to(out).as_posix())
                uploads.append((item, pool.submit(s3.upload_file, str(result), out_bucket, key)))
        for item, upload in uploads:
            try:
                upload.result()
            except Exception as error:
                failed.append({"item": item, "error": f"could not upload its result: {error}"})
    shutil.rmtree(scratch, ignore_errors=True)
    summary = {
        "start": start,
        "end": end,
        "processed": len(items) - len(failed),
        "failed": failed,
        "seconds": round(time.perf_counter() - began, 3),
    }
    s3.put_object(
        Bucket=out_bucket,
        Key=marker_key(out_prefix, descriptor["id"], start, end),
        Body=json.dumps(summary).encode(),
        ContentType="application/json",
    )
    print(f"batch {descriptor['id']} slice {start}-{end}: {summary['processed']} done, {len(failed)} failed")
    return {"ok": True}
