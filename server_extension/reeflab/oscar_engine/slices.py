"""OSCAR-Batch slices inside a warm worker: one invocation processes inputs `start`..`end` of an index.

The coordinator (batch.py) writes the index — the input files of the batch — to S3 and sends
`{"reeflab_batch": {"id", "index": "bucket/key", "start", "end"}}` as an invocation. The worker,
whose model is already loaded, downloads the slice's files (all requested at once, TRANSFERS at a time, with
the MinIO SDK over connections kept from slice to slice) while the model takes them in forward passes of
CHUNK, uploads each result below the output path (same sub-folders as the input) meanwhile, and
finally writes a marker `<output>/.batch/<id>/done/<start>-<end>.json` with what it did: a
resumed batch skips the slices that have one. A file that fails is listed there; the rest go on.
A descriptor with `"reply": "json"` (pre-annotation: a synchronous invocation waits for its answers) uploads
nothing: the marker's summary and each file's JSON result (`answers`: {item: its JSON}) are the invocation's
output, which the engine returns in the reply, so the caller reads no object back.
S3 is reached with the service owner's key (the AWS_* environment the engine gives workers).
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..serverless.invocations import BATCH_KEY, marker_key
from .inputs import sniff_json
from .payload import output_files

CHUNK = 16  # files per forward pass when the module offers predict_batch
TRANSFERS = 8  # S3 GETs and PUTs in flight at once (each a thread; boto3 releases the GIL while it waits)
_BATCH_ID = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_indexes: OrderedDict[str, dict[str, Any]] = OrderedDict()  # index key -> index, kept for the worker's next slices
KEPT_INDEXES = 4  # the latest batches' indexes a warm worker keeps (every pre-annotation run writes a new one)
_clients: dict[tuple[str, ...], Objects] = {}  # one per worker process: its connections serve every slice
_clients_lock = threading.Lock()


def split(path: str) -> tuple[str, str]:
    bucket, _, prefix = path.strip("/").partition("/")
    return bucket, prefix.strip("/")


def read_slice(path: Path) -> dict[str, Any] | None:
    """The slice an input file describes, or None when it is an ordinary input (check it with `slice_problem`)."""
    try:
        if path.stat().st_size > 4096:
            return None
        return slice_of(path.read_bytes())
    except OSError:
        return None


def slice_problem(descriptor: dict[str, Any]) -> str | None:
    """What is wrong with a slice descriptor (None: nothing), in words naming the field, before any S3 call."""
    batch, index = descriptor.get("id"), descriptor.get("index")
    start, end = descriptor.get("start"), descriptor.get("end")
    if not isinstance(batch, str) or not _BATCH_ID.match(batch):
        return f"{BATCH_KEY}.id: a batch id is 1-64 letters, digits, '.', '_' or '-' (no '..'), e.g. 20240501-1200-ab12"
    if not isinstance(index, str) or "/" not in index.strip("/") or ".." in index.split("/"):
        return f"{BATCH_KEY}.index: give the batch's index.json as 'bucket/key'"
    for field, value in (("start", start), ("end", end)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{BATCH_KEY}.{field}: a position in the index (a whole number, 0 or more), not {str(value)[:40]!r}"
    if end < start:
        return f"{BATCH_KEY}.end: {end} is before start {start}"
    if descriptor.get("reply", "json") != "json":
        return f'{BATCH_KEY}.reply: give "json" (the results in the reply) or leave it out (uploaded)'
    return None


def slice_of(data: bytes) -> dict[str, Any] | None:
    """The slice descriptor an invocation's input is, or None when it is an ordinary input."""
    if len(data) > 4096 or not data.lstrip().startswith(b"{"):
        return None
    parsed = sniff_json(data)
    descriptor = parsed.get(BATCH_KEY) if isinstance(parsed, dict) else None
    return descriptor if isinstance(descriptor, dict) else None


class Objects:
    """GET and PUT of whole objects with the MinIO SDK: a third of boto3's CPU per request (~0.4 against ~1.2 ms
    here, measured), which a worker spends beside its model on every file of a slice; thread-safe."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str, connections: int = TRANSFERS + 2):
        import urllib3
        from minio import Minio

        url = urlsplit(endpoint)
        retries = urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504])
        pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60), maxsize=connections, retries=retries, block=False
        )
        self.client = Minio(
            url.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=url.scheme == "https",
            region=region,  # given: no request asks the bucket's location first
            http_client=pool,
        )

    def get(self, bucket: str, key: str) -> bytes:
        response = self.client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(bucket, key, io.BytesIO(body), len(body), content_type=content_type)


def s3_client() -> Objects:
    """The worker's S3 access (the service owner's key, from the AWS_* environment the engine gives workers), made
    once: its connections are kept open from one slice to the next."""
    names = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    key = tuple(os.environ.get(name, "") for name in names)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = Objects(key[0], key[1], key[2], key[3] or "us-east-1")
        return _clients[key]


def _index(s3: Objects, location: str) -> dict[str, Any]:
    if location not in _indexes:
        bucket, key = split(location)
        _indexes[location] = json.loads(s3.get(bucket, key))
        while len(_indexes) > KEPT_INDEXES:
            _indexes.popitem(last=False)
    _indexes.move_to_end(location)
    return _indexes[location]


def run_slice(
    descriptor: dict[str, Any],
    predict: Callable[[Path, str, Path], dict[str, Any]],
    predict_many: Callable[[list[tuple[Path, str, Path]]], list[dict[str, Any]]] | None = None,
    output_dir: Path | None = None,
) -> dict[str, Any]:
    """Process one slice (`predict_many`: CHUNK files per call); ok unless the slice itself is unreadable.
    `output_dir`: the invocation's, where a `"reply": "json"` slice writes its summary and answers."""
    entered = time.time()
    s3 = s3_client()
    try:
        index = _index(s3, descriptor["index"])
    except Exception as error:
        return {"ok": False, "kind": "input", "error": f"could not read the batch index {descriptor['index']}: {error}"}
    if not (
        isinstance(index, dict)
        and isinstance(index.get("items"), list)
        and all(isinstance(index.get(key), str) for key in ("input", "output"))
    ):
        problem = f"{descriptor['index']} is not a batch index (items, input, output)"
        return {"ok": False, "kind": "input", "error": problem}
    start, end = int(descriptor["start"]), int(descriptor["end"])
    items = index["items"][start:end]
    in_bucket, in_prefix = split(index["input"])
    out_bucket, out_prefix = split(index["output"])
    # the slice's files in a private temporary folder (in the sandbox: its own tmpfs /tmp), not on the disk:
    # creating and removing a few hundred small files and folders a second there costs more than the forward pass
    scratch = Path(tempfile.mkdtemp(prefix="reeflab-slice-"))
    failed: list[dict[str, str]] = []
    began, predicted = time.perf_counter(), 0.0
    chunk = CHUNK if predict_many else 1
    answers: dict[str, Any] | None = {} if descriptor.get("reply") == "json" and output_dir is not None else None

    def fetch(position: int) -> Path:
        target = scratch / f"{position}-{posixpath.basename(items[position])}"
        body = s3.get(in_bucket, posixpath.join(in_prefix, items[position]))
        target.write_bytes(body)
        return target

    try:
        # every download starts at once (a slice is a few dozen files), TRANSFERS at a time, in the order the model
        # takes them; uploads have threads of their own, so a result never waits behind the next downloads
        with ThreadPoolExecutor(TRANSFERS) as gets, ThreadPoolExecutor(TRANSFERS) as puts:
            downloads = [gets.submit(fetch, i) for i in range(len(items))]
            uploads = []
            for first in range(0, len(items), chunk):
                group = []
                for position in range(first, min(first + chunk, len(items))):
                    try:
                        group.append((position, downloads[position].result()))
                    except Exception as error:
                        failed.append({"item": items[position], "error": f"could not download it: {error}"})
                work = [(path, posixpath.basename(items[p]), scratch / f"out-{p}") for p, path in group]
                predicting = time.perf_counter()
                replies = predict_many(work) if predict_many else [predict(*work[0])] if work else []
                predicted += time.perf_counter() - predicting
                for (position, path), reply in zip(group, replies, strict=True):
                    path.unlink(missing_ok=True)
                    item, out = items[position], scratch / f"out-{position}"
                    if not reply.get("ok"):
                        failed.append({"item": item, "error": reply.get("error") or "failed"})
                        continue
                    folder = posixpath.join(out_prefix, posixpath.dirname(item))
                    results = reply.get("outputs") or [(f.relative_to(out).as_posix(), f) for f in output_files(out)]
                    if answers is not None:
                        answer = _json_answer(results)
                        if answer is None:
                            failed.append({"item": item, "error": "no JSON answer"})
                        else:
                            answers[item] = answer
                        continue
                    for name, body in results:
                        data = body if isinstance(body, bytes) else body.read_bytes()
                        key = posixpath.join(folder, name)
                        uploads.append((item, puts.submit(s3.put, out_bucket, key, data)))
            for item, upload in uploads:
                try:
                    upload.result()
                except Exception as error:
                    failed.append({"item": item, "error": f"could not upload its result: {error}"})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {
        "start": start,
        "end": end,
        "processed": len(items) - len(failed),
        "failed": failed,
        "seconds": round(time.perf_counter() - began, 3),
        # when and where it ran (wall clock, worker pid): what a worker waited between slices (bench/serverless.py)
        "ran": [round(entered, 3), round(time.time(), 3), os.getpid()],
        "predicting": round(predicted, 3),  # of `seconds`: the rest waited for downloads, or uploaded and wrote files
    }
    if answers is not None:
        (output_dir / "slice.json").write_text(json.dumps({**summary, "answers": answers}))
    else:
        marker = marker_key(out_prefix, descriptor["id"], start, end)
        s3.put(out_bucket, marker, json.dumps(summary).encode(), "application/json")
    print(f"batch {descriptor['id']} slice {start}-{end}: {summary['processed']} done, {len(failed)} failed")
    return {"ok": True}


def _json_answer(results: list[tuple[str, bytes | Path]]) -> Any:
    """A file's JSON result among its outputs ((name, bytes or file)), parsed; None if it has none."""
    for name, body in results:
        if name.endswith(".json"):
            try:
                return json.loads(body if isinstance(body, bytes) else body.read_bytes())
            except ValueError:
                return None
    return None
