"""Serverless from Python: a marketplace module as an OSCAR service, called sync, by upload, or in batch.

    from reeflab.client import serverless
    serverless.create("fish-detector", inputs=["alice/fish-in"], outputs=["alice/fish-out"])
    serverless.invoke("fish-detector", "reef.jpg")             # the module's JSON answer
    serverless.upload_and_wait("fish-detector", "reef.jpg")    # through the bucket, like a sensor would
    serverless.batch("fish-detector", "alice/survey-2024")     # every file under the folder, with progress

The engine is found from REEFLAB_SERVERLESS_URL (the hub sets it for user servers; any OSCAR
endpoint works) and your token (REEFLAB_TOKEN or the server's JUPYTERHUB_API_TOKEN); or pass
`engine=connect(url, token)` or `Engine(url, "Basic ...")` for OSCAR basic auth.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import time
from pathlib import Path
from typing import Any

from ..serverless.batch import Batch, BatchError, BatchResult, Engine
from ..serverless.fdl import module_definition
from ..serverless.invocations import content_disposition
from ..storage.platform_s3 import s3_client, split_path
from .connection import ReefLabClientError
from .oscar import OscarCluster


def connect(url: str | None = None, token: str | None = None) -> Engine:
    """The serverless engine of this platform (or any OSCAR endpoint) with your token."""
    url = url or os.environ.get("REEFLAB_SERVERLESS_URL")
    token = token or os.environ.get("REEFLAB_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        raise ReefLabClientError(0, "No serverless engine: set REEFLAB_SERVERLESS_URL and REEFLAB_TOKEN")
    return Engine(url, f"Bearer {token}")


def _metadata(module: str) -> dict[str, Any]:
    """The module's ai4-metadata: from the marketplace API if reachable, else from this environment."""
    try:
        from . import catalog

        return catalog.get(module).get("metadata") or {}
    except ReefLabClientError:
        from ..catalog.sources import installed_entries

        found = [e for e in installed_entries() if module in (e.id, e.entry_point)]
        return found[0].metadata if found else {}


class Service(dict):
    """A service as the API shows it, without its token: printed in a notebook, it goes into the saved .ipynb.

    The token (to invoke it without your own login, e.g. from a sensor) stays at hand as `service.token`.
    """

    def __init__(self, shown: dict[str, Any]):
        shown = dict(shown)
        self.token: str | None = shown.pop("token", None)
        super().__init__(shown)

    def __repr__(self) -> str:
        hidden = ", token=<hidden: service.token>" if self.token else ""
        return f"Service({super().__repr__()}{hidden})"

    __str__ = __repr__

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython's display of the cell's value
        printer.text(repr(self))


def create(
    module: str,
    name: str | None = None,
    inputs: list[str] = (),
    outputs: list[str] = (),
    engine: Engine | None = None,
    **fields: Any,
) -> Service:
    """Make a marketplace module a serverless service in one call; returns the service as the API shows it,
    its token kept out of sight (`.token`)."""
    definition = module_definition(module, _metadata(module), name, list(inputs), list(outputs), **fields)
    return Service(OscarCluster.of(engine or connect()).deploy(definition))


def services(engine: Engine | None = None) -> list[Service]:
    return [Service(shown) for shown in OscarCluster.of(engine or connect()).services()]


def delete(name: str, engine: Engine | None = None) -> None:
    OscarCluster.of(engine or connect()).delete(name)


def _decoded(answer: str) -> Any:
    """A sync answer: base64 of the output file (JSON is parsed), or the script's log."""
    try:
        data = base64.b64decode(answer, validate=True)
    except ValueError:
        return answer
    try:
        return json.loads(data)
    except ValueError:
        return data


def invoke(name: str, file: str | Path, engine: Engine | None = None) -> Any:
    """A synchronous call with one file: the module's JSON result (or the output file's bytes).

    The file's name goes with it: the module sees it, and an error names it."""
    try:
        return _decoded(OscarCluster.of(engine or connect()).invoke(name, str(file)))
    except ReefLabClientError as error:
        raise ReefLabClientError(error.status, _naming(Path(file).name, error.message)) from None


def submit(name: str, file: str | Path, engine: Engine | None = None) -> str:
    """An asynchronous call with one file; returns the job name (see `logs`). The file's name goes with it."""
    api = engine or connect()
    body = base64.b64encode(Path(file).read_bytes())
    headers = {"Content-Disposition": content_disposition(Path(file).name)}
    try:
        return api.call("POST", f"/job/{name}", data=body, headers=headers).json()["jobName"]
    except BatchError as error:
        raise BatchError(_naming(Path(file).name, str(error))) from None


def _naming(file: str, message: str) -> str:
    """An error about `file` that says which file it is about."""
    return message if file in message else f"{file}: {message}"


def logs(name: str, job: str | None = None, engine: Engine | None = None) -> Any:
    """The service's jobs with their status, or one job's log."""
    api = engine or connect()
    if job:
        return api.call("GET", f"/system/logs/{name}/{job}").text
    return api.call("GET", f"/system/logs/{name}").json()["jobs"]


def metrics(name: str, since: float = 3600, step: float = 60, engine: Engine | None = None) -> dict[str, Any]:
    """Your service's request metrics, counted by the engine: `total` since it was made (requests, errors, items;
    `sync` and `async` apart), `window` the calls of the last `since` seconds (latency_s p50/p95/p99, `step`
    second buckets), `async` jobs' queued-to-finished latency and run_s, `jobs` pending and running now."""
    api = engine or connect()
    return api.call("GET", f"/system/services/{name}/metrics", params={"since": since, "step": step}).json()


def _storage(api: Engine):
    provider = api.call("GET", "/system/config").json()["minio_provider"]
    return s3_client(provider["endpoint"], provider)


def upload_and_wait(name: str, file: str | Path, timeout: float = 300, engine: Engine | None = None) -> Any:
    """Drop a file into the service's input path and wait for its result in the output path."""
    api = engine or connect()
    service = api.call("GET", f"/system/services/{name}").json()
    if not service.get("input") or not service.get("output"):
        raise ReefLabClientError(400, f"service '{name}' needs an input and an output path for uploads")
    s3 = _storage(api)
    in_bucket, in_prefix = split_path(service["input"][0]["path"])
    out_bucket, out_prefix = split_path(service["output"][0]["path"])
    file = Path(file)
    since = time.time() - 1
    s3.upload_file(str(file), in_bucket, posixpath.join(in_prefix, file.name))
    stem = posixpath.join(out_prefix, file.stem)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in s3.list_objects_v2(Bucket=out_bucket, Prefix=stem).get("Contents", []):
            name_part = posixpath.basename(item["Key"])
            if name_part.startswith(file.stem + ".") and item["LastModified"].timestamp() >= since:
                body = s3.get_object(Bucket=out_bucket, Key=item["Key"])["Body"].read()
                try:
                    return json.loads(body)
                except ValueError:
                    return body
        time.sleep(0.5)
    raise ReefLabClientError(504, f"no result for {file.name} in {out_bucket}/{out_prefix} after {timeout:.0f} s")


def batch(
    name: str,
    inputs: str,
    output: str | None = None,
    resume: str | None = None,
    progress: Any = True,
    engine: Engine | None = None,
    **options: Any,
) -> BatchResult:
    """Run the service over every file under `inputs` ('bucket/folder'), in slices, with progress."""
    api = engine or connect()
    return Batch(api, name, inputs, output=output, resume=resume, **options).run(progress=progress)
