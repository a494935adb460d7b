"""MonitoringService: what the authenticated route to a deployment saw of its requests, and drift of its inputs.

The route (handlers/deployments.py) calls `record` after each predict request, with the uploaded files; the
store lives in the deployment's own folder (private to its owner, removed with it), so it survives restarts of
the user's server and inputs never leave it: only their features are kept, never the images.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sqlite3
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Any as AnyTrait
from traitlets import Bool, Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from ..errors import BadRequest, ReefLabError
from ..modules.contract import ENTRY_POINT_GROUP
from .drift import MIN_REFERENCE, DriftDetector
from .features import image_features
from .models import DriftRequest
from .store import BUCKETS, MetricsStore

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
MAX_REFERENCE = 2000


class MonitoringService(LoggingConfigurable):
    deployments = AnyTrait(help="The DeploymentService whose deployments are monitored")
    workspace = Unicode(help="The user's Jupyter root: reference folders are named relative to it")
    tracking = AnyTrait(None, help="The TrackingService drift alerts are logged to (MLflow); None: not logged")
    experiment = Unicode("monitoring", config=True, help="MLflow experiment (<user>/<this>) of drift alerts")
    enabled = Bool(True, config=True, help="Count deployments' predict requests at their route (False: not at all)")
    retention_days = Float(30, config=True, help="Days of per-request rows kept; older ones become running totals")
    webhook_timeout = Float(5, config=True, help="Seconds a drift webhook may take to answer, each try")
    webhook_tries = Int(3, config=True, help="Tries of a drift webhook (1 s, then 2 s, ... apart) before giving up")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._stores: dict[str, MetricsStore] = {}
        self._detectors: dict[str, DriftDetector] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._pending: dict[str, int] = {}  # requests whose inputs are still being looked at, by deployment

    def store(self, owner: str, deployment_id: str) -> MetricsStore:
        """The deployment's store (NotFound for another user's or a missing one)."""
        deployment = self.deployments.get(owner, deployment_id)
        store = self._stores.get(deployment.id)
        if store is None or not store.path.exists():  # deleted meanwhile and made again: a new file
            for gone in [i for i in self._stores if i not in {d.id for d in self.deployments.list(owner)}]:
                self._stores.pop(gone).close()
                self._detectors.pop(gone, None)
            store = self._stores[deployment.id] = MetricsStore(self.deployments.folder(deployment), self.retention_days)
        return store

    # -- requests --------------------------------------------------------------------

    def record(self, owner: str, deployment_id: str, status: int, latency: float, files: list[bytes]) -> None:
        """One predict request through the route; its files go on to drift detection (after the answer)."""
        store = self.store(owner, deployment_id)
        store.record(status, latency, max(1, len(files)))
        settings = store.get_config("drift") if files and status < 400 else None
        if settings and settings.get("enabled"):
            self._background(deployment_id, self._observe(owner, deployment_id, store, settings, files))

    def _background(self, deployment_id: str, work) -> None:
        """Run `work` after the answer; `pending` counts it until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        self._pending[deployment_id] = self._pending.get(deployment_id, 0) + 1

        def done(task: asyncio.Task) -> None:
            self._tasks.discard(task)
            self._pending[deployment_id] -= 1
            if not task.cancelled() and task.exception() is not None:
                self.log.error("drift of deployment %s: %r", deployment_id, task.exception())

        task.add_done_callback(done)

    def metrics(self, owner: str, deployment_id: str, since: float = 3600, step: float = 60) -> dict[str, Any]:
        store = self.store(owner, deployment_id)
        totals = store.totals()
        return {
            "deployment": deployment_id,
            "total": {k: totals[k] for k in ("requests", "errors", "items")},
            "window": store.summary(since, step),
            "drift": self._drift_state(store),
        }

    def prometheus(self, owner: str, serverless: list[dict[str, Any]] = ()) -> bytes:
        """The owner's deployments' metrics in Prometheus' text format, and their serverless services' (`serverless`:
        what the engine answers for each, ServerlessGateway.owned_metrics)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, owner))
        if serverless:
            registry.register(_ServerlessCollector(serverless))
        return generate_latest(registry)

    # -- drift -----------------------------------------------------------------------

    def drift(self, owner: str, deployment_id: str) -> dict[str, Any]:
        store = self.store(owner, deployment_id)
        return {
            **self._drift_state(store),
            "pending": self._pending.get(deployment_id, 0),
            "mlflow_run": store.get_config("mlflow_run"),
            "evaluations": store.evaluations(),
            "events": store.events(),
        }

    def badge(self, owner: str, deployment_id: str) -> dict[str, bool] | None:
        """Whether drift is watched and alerting now (a deployment's row); None where monitoring is off."""
        if not self.enabled:
            return None
        state = self._drift_state(self.store(owner, deployment_id))
        return {"enabled": bool(state["settings"].get("enabled")), "alert": state["alert"]}

    def _drift_state(self, store: MetricsStore) -> dict[str, Any]:
        settings = store.get_config("drift") or {"enabled": False}
        last = store.evaluations(1)
        return {"settings": settings, "alert": bool(last and last[0]["drift"]), "last": last[0] if last else None}

    async def configure_drift(self, owner: str, deployment_id: str, request: DriftRequest) -> dict[str, Any]:
        store = self.store(owner, deployment_id)
        key = self.deployments.get(owner, deployment_id).id
        async with self._locks.setdefault(key, asyncio.Lock()):
            settings = request.model_dump()
            settings["every"] = request.every or request.window
            if request.enabled:
                if request.module_samples:
                    deployment = self.deployments.get(owner, deployment_id)
                    folder, source = _module_samples(deployment.module, deployment.entry_point), "its module's samples"
                else:
                    folder, source = self._reference_folder(request.reference), f"'{request.reference}'"
                reference = await asyncio.to_thread(_reference_features, folder)
                detector = await asyncio.to_thread(DriftDetector, reference, request.permutations)
                store.set_config("reference", reference)
                self._detectors[key] = detector
                settings["reference_images"] = len(reference)
                message = f"drift monitoring on: {len(reference)} reference images from {source}"
            else:
                self._detectors.pop(key, None)
                message = "drift monitoring off"
            store.clear_inputs()
            store.set_config("drift", settings)
            store.add_event("drift-settings", message)
        return self.drift(owner, deployment_id)

    def _reference_folder(self, name: str) -> Path:
        root = Path(self.workspace).resolve()
        folder = (root / name).resolve()
        if not folder.is_relative_to(root):
            raise BadRequest(f"reference: '{name}' is outside your files; name a folder below your Jupyter root")
        if not folder.is_dir():
            raise BadRequest(f"reference: no folder '{name}' in your files")
        return folder

    async def _observe(
        self, owner: str, deployment_id: str, store: MetricsStore, settings: dict, files: list[bytes]
    ) -> None:
        features = await asyncio.to_thread(lambda: [f for f in map(image_features, files) if f is not None])
        if not features:
            return
        async with self._locks.setdefault(deployment_id, asyncio.Lock()):
            window, every = settings["window"], settings["every"]
            added = store.add_inputs(features, keep=window)
            if added < window or (added // every) == ((added - len(features)) // every):
                return  # the window is not full yet, or no evaluation is due
            detector = self._detectors.get(deployment_id)
            if detector is None:  # after a restart of the server: from the reference's stored features
                reference = store.get_config("reference")
                detector = await asyncio.to_thread(DriftDetector, reference, settings["permutations"])
                self._detectors[deployment_id] = detector
            was = self._drift_state(store)["alert"]
            result = await asyncio.to_thread(detector.evaluate, store.window(window))
            drifted = result.p_value < settings["alpha"]
            store.add_evaluation(result.statistic, result.p_value, result.size, drifted)
            data = {"statistic": result.statistic, "p_value": result.p_value, "window": result.size}
            if drifted != was:  # MLflow may be slow or down: not while this deployment's inputs wait
                log = asyncio.to_thread(self._log_to_mlflow, owner, deployment_id, store, data, drifted)
                self._background(deployment_id, log)
            if drifted and not was:
                message = (
                    f"drift detected: the last {result.size} inputs differ from the reference "
                    f"(MMD {result.statistic:.4g}, p = {result.p_value:.4g} < {settings['alpha']:g})"
                )
                store.add_event("drift-alert", message, data)
                self.log.warning("deployment %s: %s", deployment_id, message)
                self._notify(deployment_id, store, settings, "drift-alert", message, data)
            elif was and not drifted:
                message = f"inputs look like the reference again (p = {result.p_value:.4g})"
                store.add_event("drift-cleared", message, data)
                self._notify(deployment_id, store, settings, "drift-cleared", message, data)

    def _notify(self, deployment_id: str, store: MetricsStore, settings: dict, kind: str, message: str, data: dict):
        """POST the change to the owner's webhook, after the answer and apart from the inputs' work (a slow
        receiver never holds predictions or evaluations); a delivery that fails every try is an event."""
        url = settings.get("webhook")
        if not url:
            return
        payload = {"event": kind, "deployment": deployment_id, "message": message, "ts": time.time(), **data}
        task = asyncio.ensure_future(self._deliver(url, payload, store, deployment_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict, store: MetricsStore, deployment_id: str) -> None:
        client = AsyncHTTPClient()
        why = ""
        for attempt in range(self.webhook_tries):
            if attempt:
                await asyncio.sleep(2 ** (attempt - 1))
            request = HTTPRequest(
                url,
                method="POST",
                body=json.dumps(payload),
                headers={"Content-Type": "application/json", "User-Agent": "ReefLab drift monitoring"},
                request_timeout=self.webhook_timeout,
                connect_timeout=self.webhook_timeout,
                follow_redirects=False,
            )
            try:
                await client.fetch(request)
                return
            except HTTPClientError as err:
                why = f"HTTP {err.code}" if err.code != 599 else str(err.message or err)
            except OSError as err:
                why = str(err) or type(err).__name__
        host = urlparse(url).netloc
        message = f"{payload['event']} not delivered to the webhook at {host} after {self.webhook_tries} tries: {why}"
        with contextlib.suppress(sqlite3.ProgrammingError):  # deleted meanwhile: its store is closed
            store.add_event("webhook-failed", message, {"event": payload["event"]})
        self.log.warning("deployment %s: %s", deployment_id, message)

    def _log_to_mlflow(
        self, owner: str, deployment_id: str, store: MetricsStore, data: dict, drifted: bool
    ) -> str | None:
        """Log an alert (or its end) to the owner's MLflow experiment `<owner>/monitoring`, a run per deployment
        (drift_alert, drift_p_value, drift_statistic; the step is the evaluation's number); its run id, or None
        where tracking is not set up or fails (the alert stands in the events all the same)."""
        if self.tracking is None or not self.tracking.tracking_uri:
            return None
        try:
            deployment = self.deployments.get(owner, deployment_id)
            client = self.tracking.client()
            run_id = store.get_config("mlflow_run")
            if run_id is None:
                experiment = self.tracking.experiment(deployment.owner, self.experiment)
                run = self.tracking._call(
                    client.create_run,
                    experiment["id"],
                    run_name=f"{deployment.module} {deployment.id}",
                    tags={"reeflab.deployment": deployment.id, "reeflab.module": deployment.module},
                )
                run_id = run.info.run_id
                store.set_config("mlflow_run", run_id)
            step = len(store.evaluations(100000))
            for key, value in (("drift_p_value", data["p_value"]), ("drift_statistic", data["statistic"])):
                self.tracking._call(client.log_metric, run_id, key, value, step=step)
            self.tracking._call(client.log_metric, run_id, "drift_alert", float(drifted), step=step)
            return run_id
        except Exception as err:  # MLflow's client raises its own errors and requests' too
            why = err.message if isinstance(err, ReefLabError) else repr(err)
            self.log.warning("deployment %s: drift alert not logged to MLflow: %s", deployment_id, why)
            return None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _module_samples(module: str, entry_point: str) -> Path:
    """The samples folder the deployed module ships beside its code (where its DEEPaaS entry point's module lives),
    if it holds enough images for a reference; else a 400 saying how many it has and how many are needed."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == entry_point]
    spec = importlib.util.find_spec(found[0].module) if found else None
    origin = Path(spec.origin).parent if spec and spec.origin else None
    places = (origin, origin.parent) if origin else ()
    folder = next((d / "samples" for d in places if (d / "samples").is_dir()), None)
    count = len(_images(folder)) if folder else 0
    if count < MIN_REFERENCE:
        raise BadRequest(
            f"module_samples: the module '{module}' ships {count} images"
            f"{' in its samples folder' if folder else ''}; a reference needs at least {MIN_REFERENCE}: "
            "name a folder of yours with 'reference' instead"
        )
    return folder


def _reference_features(folder: Path) -> np.ndarray:
    paths = _images(folder)[:MAX_REFERENCE]
    features = [f for f in (image_features(p.read_bytes()) for p in paths) if f is not None]
    if len(features) < MIN_REFERENCE:
        raise BadRequest(
            f"reference: '{folder.name}' has {len(features)} readable images; drift needs at least {MIN_REFERENCE}"
        )
    return np.array(features)


class _Collector:
    """Reads the stores at each scrape (prometheus_client's custom collector protocol)."""

    def __init__(self, service: MonitoringService, owner: str):
        self.service, self.owner = service, owner

    def collect(self):
        labels = ["deployment", "module"]
        requests = CounterMetricFamily(
            "reeflab_deployment_requests", "Predict requests through the route", labels=labels
        )
        errors = CounterMetricFamily("reeflab_deployment_errors", "Predict requests answered >= 400", labels=labels)
        items = CounterMetricFamily("reeflab_deployment_items", "Inputs (files) predicted on", labels=labels)
        latency = HistogramMetricFamily(
            "reeflab_deployment_request_duration_seconds", "Predict latency at the route", labels=labels
        )
        p_value = GaugeMetricFamily("reeflab_deployment_drift_p_value", "Last drift test's p-value", labels=labels)
        alert = GaugeMetricFamily("reeflab_deployment_drift_alert", "1 while inputs have drifted", labels=labels)
        for deployment in self.service.deployments.list(self.owner):
            store = self.service.store(self.owner, deployment.id)
            values = [deployment.id, deployment.module]
            totals = store.totals()
            requests.add_metric(values, totals["requests"])
            errors.add_metric(values, totals["errors"])
            items.add_metric(values, totals["items"])
            buckets = [(str(b), totals[f"le_{b}"]) for b in BUCKETS] + [("+Inf", totals["requests"])]
            latency.add_metric(values, buckets, totals["latency_sum"])
            state = self.service._drift_state(store)
            if state["last"] is not None:
                p_value.add_metric(values, state["last"]["p_value"])
            alert.add_metric(values, float(state["alert"]))
        yield from (requests, errors, items, latency, p_value, alert)


class _ServerlessCollector:
    """Serverless services' counts as the engine keeps them (reeflab.oscar_engine.metrics)."""

    def __init__(self, shown: list[dict[str, Any]]):
        self.shown = shown

    def collect(self):
        labels = ["service", "kind"]
        requests = CounterMetricFamily("reeflab_serverless_requests", "Calls (async: jobs finished)", labels=labels)
        errors = CounterMetricFamily("reeflab_serverless_errors", "Calls answered >= 400 or jobs failed", labels=labels)
        latency = GaugeMetricFamily(
            "reeflab_serverless_latency_seconds",
            "Latency over the last hour (sync: request to answer; async: queued to finished)",
            labels=[*labels, "quantile"],
        )
        for shown in self.shown:
            for kind in ("sync", "async"):
                values = [shown["service"], kind]
                requests.add_metric(values, shown["total"][kind]["requests"])
                errors.add_metric(values, shown["total"][kind]["errors"])
                for name, quantile in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99")):
                    if (value := shown[kind]["latency_s"][name]) is not None:
                        latency.add_metric([*values, quantile], value)
        yield from (requests, errors, latency)
