"""Pre-annotation through the serverless engine's warm workers (the user's own OSCAR service for the module).

The user's server talks to the engine as its serverless gateway does (REEFLAB_SERVERLESS_URL, its own hub token:
the engine knows the user). For a module (and a registered version's weights, and the predict options) it keeps
one private service of the user's, `annotate-<module>-<digest>`, made on first use: the module served by warm
workers (REEFLAB_MODULE), started on demand up to the engine's cores and kept warm `warm_seconds` after their
last call (REEFLAB_IDLE_SECONDS), so that the model is loaded once and stays loaded across runs and projects.

A folder of the user's platform bucket is read by the workers themselves, in OSCAR-Batch slices (the key the
engine gives the user's workers reads it; the slices' index sits in `.reeflab-annotation/<run>/` of that bucket
while the run lasts), each slice's JSON answers coming back in its reply (no object read back an image). Any
other image (the user's workspace, another S3 or a WebDAV connection) is read by the server and fed as a
synchronous invocation (`POST /run/<service>`, the image as the body, its name in Content-Disposition), a few
more at once than the service has workers, each JSON answer read back: the workers hold no path to the user's
files nor a connection's keys (at scale they are an OSCAR cluster's pods).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import posixpath
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from ..errors import ReefLabError
from ..serverless.batch import Batch, Engine
from ..serverless.fdl import IDLE_VAR, PREDICT_ARGS_VAR, module_definition
from ..serverless.invocations import BATCH_KEY, content_disposition

PREFIX = "annotate-"
NAME_LENGTH = 39  # OSCAR's longest service name
SLICE_AT_LEAST = 8  # images a slice at least
RUN_FOLDER = ".reeflab-annotation"  # in the user's platform bucket: a run's slice index and answers, while it runs


class EngineFailed(ReefLabError):
    """The engine could not be used for this run (said in the progress document)."""

    status = 502


def service_name(entry: Any, env: dict[str, str], options: dict[str, Any]) -> str:
    """The user's service for this module, these weights and options: `annotate-<module>-<digest>`."""
    slug = re.sub(r"[^a-z0-9]+", "-", entry.id.lower()).strip("-")
    slug = slug[: NAME_LENGTH - len(PREFIX) - 9].strip("-") or "module"
    identity = json.dumps([entry.entry_point, env, options], sort_keys=True)
    return f"{PREFIX}{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


class WarmService:
    """One run's use of the user's pre-annotation service: `ensure()` it, then `submit` the images to a pool."""

    def __init__(self, engine: Engine, entry: Any, options: dict[str, Any], warm_seconds: float):
        self.engine, self.entry, self.options = engine, entry, options
        self.env = dict(entry.deploy_env)  # a registered version: its weights
        self.name = service_name(entry, self.env, options)
        self.warm_seconds = warm_seconds
        self.parallel = 1
        self._local = threading.local()

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        """A call to the engine as the user; its answer whatever the status, EngineFailed if it does not answer."""
        headers = {"Authorization": self.engine.authorization, **kwargs.pop("headers", {})}
        try:
            return self._session().request(method, self.engine.url.rstrip("/") + path, headers=headers, **kwargs)
        except requests.RequestException as error:
            raise EngineFailed(f"the serverless engine did not answer ({type(error).__name__})") from None

    def ensure(self) -> str:
        """The service, made if the user has none for this module yet; sizes the run's parallelism from the
        engine's cores (one worker a core, as `reeflab batch` uses them). Returns its name."""
        status = self._request("GET", "/system/status", timeout=30)
        if not status.ok:
            raise EngineFailed(f"the serverless engine answered {status.status_code}: {status.text.strip()[:300]}")
        cores = status.json()["cluster"]["metrics"]["cpu"].get("total_schedulable_cores", 1000)
        self.parallel = max(1, int(cores) // 1000)
        found = self._request("GET", f"/system/services/{quote(self.name)}", timeout=30)
        if found.ok:
            return self.name
        definition = module_definition(self.entry.entry_point, self.entry.metadata, self.name, cpu="1")
        definition["environment"]["variables"].update(
            {**self.env, PREDICT_ARGS_VAR: json.dumps(self.options), IDLE_VAR: str(int(self.warm_seconds))}
        )
        definition["synchronous"] = {"min_scale": 0, "max_scale": self.parallel}
        made = self._request("POST", "/system/services", json=definition, timeout=60)
        if not made.ok and made.status_code != 409:  # 409: made meanwhile by another of the user's runs
            text = made.text.strip()[:300]
            raise EngineFailed(f"the serverless engine refused the module's service ({made.status_code}): {text}")
        return self.name

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            session = requests.Session()
            session.mount("http://", HTTPAdapter(pool_maxsize=2))
            session.mount("https://", HTTPAdapter(pool_maxsize=2))
            self._local.session = session
        return self._local.session

    def predict_one(self, read: Callable[[], bytes], name: str, timeout: float) -> dict[str, Any]:
        """One image through a warm worker: {"ok": True, "answer": <its JSON>} or {"ok": False, "error"}. An image
        that cannot be read or that the module refuses or fails on is this image's failure; an engine that does
        not answer, or refuses the caller, fails the run (EngineFailed)."""
        try:
            body = read()
        except Exception as error:  # the image alone: its file or object is gone, or unreadable
            return {"ok": False, "error": f"could not be read: {error}"}
        headers = {"Content-Disposition": content_disposition(name)}
        answer = self._request("POST", f"/run/{quote(self.name)}", data=body, headers=headers, timeout=timeout)
        if answer.status_code in (400, 500):  # the module refused this input, or failed on it
            return {"ok": False, "error": answer.text.strip()[:500] or f"status {answer.status_code}"}
        if not answer.ok:
            text = answer.text.strip()[:300]
            raise EngineFailed(f"the serverless engine answered {answer.status_code}: {text}")
        try:
            return {"ok": True, "answer": json.loads(base64.b64decode(answer.content, validate=True))}
        except (binascii.Error, ValueError):
            return {"ok": False, "error": "no JSON answer"}

    def submit(
        self, pool: ThreadPoolExecutor, items: list[tuple[Callable[[], bytes], str]], timeout: float
    ) -> list[Future]:
        """Every image queued on `pool` (its size: the parallelism), in order; futures of [its reply]."""
        return [pool.submit(lambda *a: [self.predict_one(*a)], read, name, timeout) for read, name in items]

    # -- objects the workers read themselves ----------------------------------------------------------------

    def platform_key(self) -> dict[str, str]:
        """The user's key to the platform's S3, as the engine gives it to them and to their services' workers."""
        answer = self._request("GET", "/system/config", timeout=30)
        if not answer.ok:
            raise EngineFailed(f"the serverless engine answered {answer.status_code}: {answer.text.strip()[:300]}")
        return answer.json()["minio_provider"]

    def submit_slices(
        self, pool: ThreadPoolExecutor, client: Any, folder: str, names: list[str], timeout: float, live: set[str]
    ) -> tuple[list[Future], Callable[[], None]]:
        """The objects `names` of `folder` ('bucket/prefix' on the platform's S3, which the service's workers read
        with the user's key) in OSCAR-Batch slices, as `reeflab batch` sends them (slices.py): an index in a run
        folder beside them, each slice a synchronous invocation on `pool` (so the worker reads its objects ahead of
        the model and predicts them in batches) whose reply holds its images' JSON answers (`"reply": "json"`: nothing
        uploaded, nothing read back). Futures of each slice's replies, in order, and what removes the run folder
        (and those left by earlier runs: any not in `live`, the server's runs using theirs, this one's added)."""
        bucket = folder.partition("/")[0]
        run = f"annotate-{uuid.uuid4().hex[:12]}"
        live.add(run)
        scratch = f"{RUN_FOLDER}/{run}"
        index = {"id": run, "service": self.name, "input": folder, "output": f"{bucket}/{scratch}/out", "items": names}
        client.put_object(Bucket=bucket, Key=f"{scratch}/index.json", Body=json.dumps(index).encode())

        def one(start: int, end: int) -> list[dict[str, Any]]:
            descriptor = {"id": run, "index": f"{bucket}/{scratch}/index.json", "start": start, "end": end}
            body = json.dumps({BATCH_KEY: {**descriptor, "reply": "json"}}).encode()  # answers in the reply
            answer = self._request("POST", f"/run/{quote(self.name)}", data=body, timeout=timeout)
            if answer.status_code == 500:  # the slice's invocation failed (its worker died): its images did
                return [{"ok": False, "error": answer.text.strip()[:500]}] * (end - start)
            if not answer.ok:
                raise EngineFailed(f"the serverless engine answered {answer.status_code}: {answer.text.strip()[:300]}")
            try:
                done = json.loads(base64.b64decode(answer.content, validate=True))
                answers, failed = done["answers"], {f["item"]: f["error"] for f in done["failed"]}
            except (binascii.Error, ValueError, KeyError, TypeError):
                raise EngineFailed(f"the serverless engine's slice {start}-{end} gave no answers") from None
            return [
                {"ok": True, "answer": answers[name]}
                if name in answers
                else {"ok": False, "error": failed.get(name, "no JSON answer")}
                for name in names[start:end]
            ]

        def remove() -> None:
            """This run's folder, and any other one no run of this server is using: left by a server that
            stopped mid-run (the user's runs are this server's; a run started again writes a new folder)."""
            live.discard(run)
            remove_run(client, bucket, scratch)
            for left in run_folders(client, bucket) - live:
                remove_run(client, bucket, f"{RUN_FOLDER}/{left}")

        # smaller than a batch's (8 a worker at least, 8 rounds): the last slices' answers, stored
        # after the others, keep the run waiting less
        size = max(SLICE_AT_LEAST, -(-len(names) // (self.parallel * 8)))
        pieces = Batch.slices(len(names), self.parallel, size)
        return [pool.submit(one, start, end) for start, end in pieces], remove


def run_folders(client: Any, bucket: str) -> set[str]:
    """The names of the run folders in `bucket`'s RUN_FOLDER."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{RUN_FOLDER}/", Delimiter="/")
    found = {posixpath.basename(p["Prefix"].rstrip("/")) for page in pages for p in page.get("CommonPrefixes", [])}
    return found - {""}


def remove_run(client: Any, bucket: str, scratch: str) -> None:
    """A run folder's objects, then its folders (SeaweedFS keeps a folder until its own `name/` goes, and only
    once it is empty: the deepest first), and the runs' folder if no other run is in it."""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{scratch}/"):
        keys += [item["Key"] for item in page.get("Contents", [])]
    folders = {posixpath.dirname(key) for key in keys} | {scratch}
    folders |= {parent for folder in folders for parent in _parents(folder, scratch)}
    objects = [{"Key": key} for key in keys if not key.endswith("/")]
    for first in range(0, len(objects), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": objects[first : first + 1000], "Quiet": True})
    ordered = [f"{folder}/" for folder in sorted(folders, key=lambda f: -f.count("/"))] + [f"{RUN_FOLDER}/"]
    for key in ordered:  # one by one, in order (a batch delete may take them in any order)
        with contextlib.suppress(Exception):
            client.delete_object(Bucket=bucket, Key=key)


def _parents(folder: str, top: str) -> list[str]:
    """The folders between `top` and `folder` (both included)."""
    found = []
    while folder.startswith(top) and folder != top:
        found.append(folder)
        folder = posixpath.dirname(folder)
    return [*found, top]
