"""The batch coordinator (OSCAR-Batch): a folder of inputs through a service, in slices, resumable.

1. list the input files under `bucket/prefix` and write the index to
   `<output>/.batch/<id>/index.json` (the service's first output path unless one is given);
2. size the parallelism from the engine's free CPU and memory: 80% of what is free divided by
   what one invocation of the service requests (its FDL `cpu` and `memory`), as OSCAR-Batch does;
3. cut the index into `{start, end}` slices and keep twice that many slices in flight as async jobs (one
   running and one queued a worker: a worker that finishes one takes the next at once, whenever this client
   looks next); each is processed by a warm worker that loaded the model once (slices.py);
4. show progress from the slices' job statuses (one listing a poll, every POLL seconds at first, less often
   while nothing ends, at most MAX_POLL apart: tqdm, or a callback), retry a failed slice once; read the
   slices' done markers (what each did) once, at the end.

A batch started again with the same id (`resume=`) skips every slice that has a done marker, and
reuses the slice plan saved in its index: the same slices, whatever the cluster's free CPU is now.
It talks to any OSCAR-compatible endpoint with the user's own login (hub token or basic auth).
"""

from __future__ import annotations

import base64
import json
import math
import posixpath
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from ..storage.platform_s3 import s3_client
from ..storage.platform_s3 import split_path as split
from .invocations import BATCH_KEY, marker_key

MAX_SLICE = 64
RETRIES = 1
POLL = 0.1  # seconds between the first looks at the slices' jobs; doubled while none ends, up to MAX_POLL and
MAX_POLL = 1.0  # to half the time the queued slices last at the rate slices end (a progress bar lags at most 1 s)
QUEUED = 1  # slices queued a worker beside the one it runs


class BatchError(Exception):
    pass


@dataclass
class BatchResult:
    id: str
    total: int
    processed: int
    failed: list[dict[str, str]]
    slices: int
    parallel: int
    seconds: float

    @property
    def throughput(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0


@dataclass
class Engine:
    """An OSCAR API endpoint and the caller's Authorization header."""

    url: str
    authorization: str
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": self.authorization, **kwargs.pop("headers", {})}
        timeout = kwargs.pop("timeout", 60)
        try:
            answer = self.session.request(
                method, self.url.rstrip("/") + path, headers=headers, timeout=timeout, **kwargs
            )
        except requests.RequestException as error:
            problem = f"the engine at {self.url} did not answer ({type(error).__name__})"
            raise BatchError(f"{method} {path}: {problem}") from None
        if not answer.ok:
            raise BatchError(f"{method} {path}: {answer.status_code} {answer.text.strip()[:300]}")
        return answer


class Batch:
    """`Batch(engine, "fish", "alice/survey-2024").run()`; `resume="<id>"` continues an earlier one."""

    def __init__(
        self,
        engine: Engine,
        service: str,
        inputs: str,
        output: str | None = None,
        resume: str | None = None,
        slice_size: int | None = None,
        parallel: int | None = None,
    ):
        self.engine, self.service, self.inputs = engine, service, inputs.strip("/")
        self.definition = engine.call("GET", f"/system/services/{service}").json()
        outputs = [o["path"] for o in self.definition.get("output") or []]
        if not output and not outputs:
            raise BatchError(f"service '{service}' has no output path: give one (bucket/folder) for the results")
        self.output = (output or outputs[0]).strip("/")
        provider = engine.call("GET", "/system/config").json()["minio_provider"]
        self.s3 = s3_client(provider["endpoint"], provider)
        self.id = resume or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.slice_size, self.parallel_wanted = slice_size, parallel
        self._markers: dict[tuple[int, int], dict[str, Any]] = {}
        self._page = ""  # the jobs listing's page where this batch's jobs were found last (its older jobs skipped)

    # -- plan ---------------------------------------------------------------------------

    def _index_location(self) -> tuple[str, str]:
        bucket, prefix = split(self.output)
        return bucket, posixpath.join(prefix, ".batch", self.id, "index.json")

    def index(self) -> dict[str, Any]:
        """The batch's index: read back when resuming, else listed and written now."""
        bucket, key = self._index_location()
        try:
            return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            pass
        in_bucket, prefix = split(self.inputs)
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=in_bucket, Prefix=prefix + "/" if prefix else ""
        )
        items = []
        for page in pages:
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) + 1 :] if prefix else item["Key"]
                if relative and not any(part.startswith(".") for part in relative.split("/")):
                    items.append(relative)
        if not items:
            raise BatchError(f"no input files under {self.inputs}")
        index = {"id": self.id, "service": self.service, "input": self.inputs, "output": self.output, "items": items}
        self.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(index).encode(), ContentType="application/json")
        return index

    def parallelism(self) -> int:
        """80% of the engine's free CPU and memory over what one invocation requests."""
        if self.parallel_wanted:
            return self.parallel_wanted
        from ..profiles import memory_bytes
        from .fdl import cpu_millicores

        metrics = self.engine.call("GET", "/system/status").json()["cluster"]["metrics"]
        try:  # per invocation; a service stored before 0 was refused still divides by at least 1
            per_cpu = max(1, cpu_millicores(str(self.definition.get("cpu") or "0.2")))
            per_memory = max(1, memory_bytes(str(self.definition.get("memory") or "256Mi")))
        except ValueError as error:
            raise BatchError(f"service '{self.service}': {error}") from None
        cpu = 0.8 * metrics["cpu"]["total_free_cores"] / per_cpu  # millicores, as OSCAR reports them
        memory = 0.8 * metrics["memory"]["total_free_bytes"] / per_memory
        return max(1, math.floor(min(cpu, memory)))

    @staticmethod
    def slices(total: int, parallel: int, size: int | None) -> list[tuple[int, int]]:
        """Slices small enough for progress and resuming (4 per parallel invocation, at most MAX_SLICE)."""
        size = size or max(1, min(MAX_SLICE, math.ceil(total / (parallel * 4))))
        return [(start, min(start + size, total)) for start in range(0, total, size)]

    # -- run ----------------------------------------------------------------------------

    def done_markers(self) -> dict[tuple[int, int], dict[str, Any]]:
        """The slices done so far, each with its summary (read once)."""
        bucket, prefix = split(self.output)
        folder = posixpath.dirname(marker_key(prefix, self.id, 0, 0)) + "/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
            for item in page.get("Contents", []):
                start, _, end = posixpath.basename(item["Key"]).removesuffix(".json").partition("-")
                piece = (int(start), int(end))
                if piece not in self._markers:
                    body = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    self._markers[piece] = json.loads(body)
        return dict(self._markers)

    def _sent_folder(self) -> tuple[str, str]:
        bucket, prefix = split(self.output)
        return bucket, posixpath.join(prefix, ".batch", self.id, "sent") + "/"

    def _submit(self, index_key: str, start: int, end: int) -> str:
        """Send one slice as an async job, and note its job name next to the index (for a resume)."""
        descriptor = {BATCH_KEY: {"id": self.id, "index": index_key, "start": start, "end": end}}
        body = base64.b64encode(json.dumps(descriptor).encode())
        job = self.engine.call("POST", f"/job/{self.service}", data=body).json()["jobName"]
        bucket, folder = self._sent_folder()
        self.s3.put_object(Bucket=bucket, Key=f"{folder}{start:09d}-{end:09d}", Body=job.encode())
        return job

    def _in_flight(self) -> dict[str, tuple[int, int]]:
        """Slices an earlier run sent whose jobs are still queued or running: wait for them, not again."""
        bucket, folder = self._sent_folder()
        sent = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
            for item in page.get("Contents", []):
                start, _, end = posixpath.basename(item["Key"]).partition("-")
                job = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
                sent[job] = (int(start), int(end))
        if not sent:
            return {}
        statuses = self._statuses(set(sent))
        return {job: piece for job, piece in sent.items() if statuses.get(job) in ("Pending", "Running")}

    def _statuses(self, jobs: set[str]) -> dict[str, str]:
        """The jobs' statuses: the engine lists a service's jobs oldest first, so the listing starts at the page
        where they were found last time (one request a poll however many jobs the service kept); from the first
        page again if some were not found from there (older jobs deleted meanwhile shift the pages)."""
        found: dict[str, str] = {}
        start = page = self._page
        while True:
            listing = self.engine.call("GET", f"/system/logs/{self.service}", params={"page": page}).json()
            here = {name: job["status"] for name, job in listing["jobs"].items() if name in jobs}
            if here and not found:
                self._page = page
            found.update(here)
            page = listing.get("next_page") or ""
            if len(found) == len(jobs):
                return found
            if not page:
                if not start:
                    return found
                start = page = self._page = ""

    def plan(self, index: dict[str, Any]) -> tuple[int, list[tuple[int, int]]]:
        """(parallelism, slices): the plan saved in the index when resuming, else made now and saved there.

        Done markers name slices by their bounds, so a resumed batch must cut the index exactly as before.
        """
        saved = index.get("plan")
        if isinstance(saved, dict) and isinstance(saved.get("slices"), list) and saved["slices"]:
            slices = [(int(start), int(end)) for start, end in saved["slices"]]
            return self.parallel_wanted or int(saved.get("parallel") or 1), slices
        parallel = self.parallelism()
        slices = self.slices(len(index["items"]), parallel, self.slice_size)
        index["plan"] = {"slice_size": slices[0][1] - slices[0][0], "parallel": parallel, "slices": slices}
        bucket, key = self._index_location()
        self.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(index).encode(), ContentType="application/json")
        return parallel, slices

    def run(self, progress: bool | Callable[[int, int], None] = True, poll: float = POLL) -> BatchResult:
        """Process the batch; if the engine or S3 stops answering, the error names the batch id to resume.
        `poll`: the first seconds between looks at the slices' jobs (doubled while none ends, up to MAX_POLL)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._run(progress, poll)
        except (BatchError, BotoCoreError, ClientError, requests.RequestException) as error:
            if isinstance(error, BatchError) and str(error).startswith("no input files"):
                raise
            raise BatchError(
                f"batch {self.id} stopped: {error}\n  resume it with: reeflab batch {self.service} {self.inputs} "
                f"--resume {self.id}"
            ) from None

    def _run(self, progress: bool | Callable[[int, int], None], poll: float) -> BatchResult:
        began = time.perf_counter()
        index = self.index()
        total = len(index["items"])
        parallel, plan = self.plan(index)
        index_key = "/".join(self._index_location())
        # job statuses before done markers: a slice's job writes its marker before it ends, so a slice whose
        # job ended after this is seen by both reads, never by neither (which would send it again)
        in_flight = self._in_flight()
        done = self.done_markers()
        running = {job: piece for job, piece in in_flight.items() if piece not in done}
        waiting = [s for s in plan if s not in done and s not in running.values()]
        tries: dict[tuple[int, int], int] = dict.fromkeys(running.values(), 1)
        # a slice whose job succeeded wrote its marker (its files processed or failed): counted from the job's status
        finished = sum(m["processed"] + len(m["failed"]) for m in done.values())
        report = _progress(progress, total, finished)
        wait, looking, ends = poll, time.perf_counter(), 0
        while waiting or running:
            while waiting and len(running) < parallel * (1 + QUEUED):
                piece = waiting.pop(0)
                tries[piece] = tries.get(piece, 0) + 1
                running[self._submit(index_key, *piece)] = piece
            time.sleep(wait)
            ended = 0
            for job, status in self._statuses(set(running)).items():
                if status in ("Succeeded", "Failed"):
                    piece, ended = running.pop(job), ended + 1
                    if status == "Succeeded":
                        finished += piece[1] - piece[0]
                    elif tries[piece] <= RETRIES:
                        waiting.append(piece)
            report(finished)
            # looked at half as often while nothing ends, but twice before the queued slices may run out, and every
            # `poll` seconds once the last slices run (the batch's end is not seen late)
            ends += ended
            rate = ends / (time.perf_counter() - looking)
            drained = parallel * QUEUED / rate if rate else MAX_POLL
            wait = max(poll, min(MAX_POLL, drained / 2, wait if ended else wait * 2))
            if not waiting and len(running) <= parallel:
                wait = poll
        report(None)
        done = self.done_markers()
        failed = [f for marker in done.values() for f in marker["failed"]]
        lost = [s for s in plan if s not in done]
        for start, end in lost:  # slices whose invocation failed on every try
            failed += [
                {"item": item, "error": "its slice failed: see the job logs"} for item in index["items"][start:end]
            ]
        processed = sum(m["processed"] for m in done.values())
        return BatchResult(self.id, total, processed, failed, len(plan), parallel, time.perf_counter() - began)


def _progress(progress: bool | Callable[[int, int], None], total: int, initial: int) -> Callable[[int | None], None]:
    """A function taking the number of files done so far (None: finished), drawing tqdm or calling back."""
    if callable(progress):
        return lambda done: progress(total if done is None else done, total)
    if not progress:
        return lambda done: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, unit="file", desc="batch")

    def update(done: int | None) -> None:
        if done is None:
            bar.close()
        elif done > bar.n:
            bar.update(done - bar.n)

    return update
