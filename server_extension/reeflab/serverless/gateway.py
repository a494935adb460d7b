"""The serverless engine as seen from a user's server: what the panel and the REST API call.

The user's server talks to the OSCAR-compatible engine (REEFLAB_SERVERLESS_URL, set by the hub)
with its own hub token, so the engine knows which user calls; the browser never holds an engine
credential. OSCAR routes (v4's logs, buckets and presigned URLs, deployment, start/stop/restart,
exposed services, metrics and quotas included; ReefLab's per-service request metrics too) are forwarded
as they are, except /system/config (it carries the user's S3 key and login: the panel has no use for
them, and API answers never carry credentials).
Batches started here run in this server (threads), so they go on when the browser tab closes.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import BadRequest, Conflict, NotFound, ReefLabError
from .batch import Batch, BatchError, Engine
from .fdl import module_definition

_V4 = (  # OSCAR v4's user routes (routes_v4.py): the engine checks who may do what
    r"logs|buckets|buckets/[^/]+|buckets/[^/]+/presign"
    r"|services/[^/]+/(deployment|deployment/logs|start|stop|restart|metrics)"
    r"|metrics|metrics/[^/]+|quotas/user|quotas/user/[^/]+"
)
FORWARDED = re.compile(
    r"^(health|run/[^/]+|job/[^/]+"
    rf"|system/(info|status|services|services/[^/]+|logs/[^/]+|logs/[^/]+/[^/]+|{_V4})/?"
    r"|system/services/[^/]+/exposed(/.*)?)$"
)


class EngineUnavailable(ReefLabError):
    status = 503


@dataclass
class BatchState:
    id: str
    service: str
    inputs: str
    output: str
    status: str = "starting"  # starting, running, succeeded, failed
    done: int = 0
    total: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    message: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None


class ServerlessGateway(LoggingConfigurable):
    url = Unicode(config=True, help="The OSCAR API (default: $REEFLAB_SERVERLESS_URL, set by the hub)")
    token = Unicode(config=True, help="Token for it (default: $REEFLAB_SERVERLESS_TOKEN, else this server's hub token)")

    @default("url")
    def _default_url(self) -> str:
        return os.environ.get("REEFLAB_SERVERLESS_URL", "")

    @default("token")
    def _default_token(self) -> str:
        return os.environ.get("REEFLAB_SERVERLESS_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._batches: dict[str, BatchState] = {}

    def engine(self) -> Engine:
        if not self.url:
            raise EngineUnavailable("no serverless engine is configured for this server (REEFLAB_SERVERLESS_URL)")
        return Engine(self.url, f"Bearer {self.token}")

    def target(self, path: str) -> str:
        """The engine URL for an OSCAR path the panel may use (query kept); 404 for any other."""
        path, _, query = path.lstrip("/").partition("?")  # a trailing slash is kept: exposed services see it
        if not FORWARDED.match(path):
            raise NotFound(
                f"'{path}' is not an OSCAR route offered here (services, run, job, logs, buckets, deployment, "
                "start/stop/restart, exposed, metrics, quotas, info, status)"
            )
        return self.engine().url.rstrip("/") + "/" + path + (f"?{query}" if query else "")

    def owned_metrics(self) -> list[dict[str, Any]]:
        """The request metrics of this user's own services (GET /system/services/<name>/metrics; others' shared
        services answer 403 and are left out); [] where no engine is configured or it does not answer."""
        if not self.url:
            return []
        api = self.engine()
        try:
            names = [s.get("name", "") for s in api.call("GET", "/system/services", timeout=10).json()]
        except BatchError as error:
            self.log.warning("serverless metrics left out: %s", error)
            return []
        found = []
        for name in names:
            try:
                found.append(api.call("GET", f"/system/services/{quote(name)}/metrics", timeout=10).json())
            except BatchError:  # not this user's, or deleted meanwhile
                continue
        return found

    # -- services from modules ------------------------------------------------------------

    def from_module(self, request: Any, metadata: dict[str, Any]) -> dict[str, Any]:
        """The FDL for `{module, name?, inputs?, outputs?, cpu?, memory?}` (the module checked by the caller)."""
        fields = {key: request[key] for key in ("cpu", "memory") if request.get(key)}
        return module_definition(
            request["module"],
            metadata,
            request.get("name") or None,
            list(request.get("inputs") or []),
            list(request.get("outputs") or []),
            **fields,
        )

    # -- batches ------------------------------------------------------------------------

    def start_batch(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not request.get("service") or not request.get("inputs"):
            raise BadRequest("give 'service' (a service name) and 'inputs' (bucket/folder of the files to process)")
        service, output = str(request["service"]), str(request.get("output") or "").strip().strip("/")
        if not output and not self._service(service).get("output"):
            raise BadRequest(
                f"service '{service}' has no output folder: give 'output' (bucket/folder) for the batch's results"
            )
        state = BatchState(uuid.uuid4().hex[:8], service, request["inputs"], output)
        self._batches[state.id] = state
        threading.Thread(target=self._run, args=(state,), name=f"batch-{state.id}", daemon=True).start()
        return asdict(state)

    def _run(self, state: BatchState) -> None:
        def progress(done: int, total: int) -> None:
            state.status, state.done, state.total = "running", done, total

        try:
            batch = Batch(self.engine(), state.service, state.inputs, output=state.output or None)
            state.output = batch.output
            result = batch.run(progress=progress)
            state.failed = result.failed
            state.status = "failed" if result.failed else "succeeded"
            state.message = f"{result.processed} of {result.total} files in {result.seconds:.0f} s (batch {result.id})"
        except Exception as error:  # the panel shows why; nothing else depends on this thread
            state.status, state.message = "failed", str(error)
        state.finished = time.time()

    def batches(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in sorted(self._batches.values(), key=lambda s: -s.started)]

    def batch(self, batch_id: str) -> dict[str, Any]:
        return asdict(self._batch(batch_id))

    def remove_batch(self, batch_id: str) -> None:
        """Forget a batch that ended (its results and the files it read stay in storage)."""
        state = self._batch(batch_id)
        if state.finished is None:
            raise Conflict(f"batch '{batch_id}' is still running: remove it once it has ended")
        del self._batches[batch_id]

    def _batch(self, batch_id: str) -> BatchState:
        if batch_id not in self._batches:
            raise NotFound(f"no batch '{batch_id}' in this server: GET /reeflab/api/serverless/batches lists them")
        return self._batches[batch_id]

    def _service(self, name: str) -> dict[str, Any]:
        """The service's definition as the engine shows it to this user (404 with the engine's words if none)."""
        engine = self.engine()
        try:
            answer = engine.session.get(
                self.target(f"system/services/{quote(name, safe='')}"),
                headers={"Authorization": engine.authorization},
                timeout=30,
            )
        except requests.RequestException as error:
            raise EngineUnavailable(f"the serverless engine did not answer: {type(error).__name__}") from None
        if answer.status_code == 404:
            raise NotFound(answer.text.strip() or f"no service named '{name}'")
        if not answer.ok:
            raise ReefLabError(f"the serverless engine refused: {answer.status_code} {answer.text.strip()[:300]}")
        return answer.json()
