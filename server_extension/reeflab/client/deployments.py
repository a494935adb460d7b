"""Deployments from Python: `d = deploy("fish-detector"); d.wait_ready(); d.predict(files=["reef.jpg"])`."""

from __future__ import annotations

import contextlib
import mimetypes
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .connection import Connection, ReefLabClientError, Resource


class Deployment(Resource):
    """A handle on one deployment; `info` is its latest state from the server."""

    collection, listed_as, log_path = ("deployments",), "deployments", "logs"

    @property
    def url(self) -> str:
        """The DEEPaaS API of the deployment, through your server (send your token with it)."""
        return self.connection.url + self.info["path"]

    def __repr__(self) -> str:
        return f"<Deployment {self.id} {self.info['module']} {self.state}>"

    def wait_ready(self, timeout: float = 600, progress: bool = True) -> Deployment:
        """Block until it is ready; raise with the reason if it fails or stops."""
        with tqdm(desc=f"{self.info['module']}: starting", bar_format="{desc} {elapsed}", disable=not progress) as bar:
            self.wait_while(("queued", "starting"), timeout, tick=bar.update)
            bar.set_description(f"{self.info['module']}: {self.state}")
        if self.state != "ready":
            raise ReefLabClientError(409, f"deployment {self.state}: {self.info.get('reason')}")
        return self

    def predict(self, files: list[str | Path] | str | Path, accept: str = "application/json", **params) -> list[Any]:
        """Predict on each file (the module's `files` argument); JSON results, or PNG bytes with accept='image/png'."""
        files = [files] if isinstance(files, str | Path) else files
        return [self.call({"files": path}, accept, **params) for path in files]

    def call(self, files: dict[str, str | Path], accept: str = "application/json", **params) -> Any:
        """One prediction with a file per argument, for a module whose predict takes several:
        `d.call({"before": "a.tif", "after": "b.tif"}, label="T1")`."""
        url = f"{self.url}v2/models/{self.info['entry_point']}/predict/"
        with contextlib.ExitStack() as stack:
            parts = {}
            for argument, path in files.items():
                path = Path(path)
                content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                parts[argument] = (path.name, stack.enter_context(open(path, "rb")), content_type)
            response = self.connection.session.post(
                url, params=params, headers={"accept": accept}, files=parts, timeout=self.connection.timeout
            )
        if not response.ok:
            names = ", ".join(Path(path).name for path in files.values())
            raise ReefLabClientError(response.status_code, f"{names}: {response.text[:500]}")
        return response.json()["predictions"] if accept == "application/json" else response.content

    def restart(self, hardware: dict[str, Any] | None = None) -> Deployment:
        """Start it again; `hardware` changes what it gets, e.g. `{"memory_MB": 2000}` (within its profile).
        After it was stopped for lack of memory, `d.info["suggestion"]` holds what to restart it with."""
        body = {"hardware": hardware} if hardware else {}
        self.info = self.connection.post("deployments", self.id, "restart", json=body)
        return self

    def metrics(self, since: int = 3600, step: int | None = None) -> dict[str, Any]:
        """Its predict requests as the platform counted them: `total` (requests, errors, items since it was
        created), `window` (the last `since` seconds: counts, latency_s p50/p95/p99, and `buckets` of `step`
        seconds) and `drift` (settings, alert, last evaluation)."""
        params = {"since": since, **({"step": step} if step else {})}
        return self.connection.get("deployments", self.id, "metrics", **params)

    def drift(self) -> dict[str, Any]:
        """Drift detection: its settings, `alert`, the `evaluations` (statistic, p-value) and `events`."""
        return self.connection.get("deployments", self.id, "drift")

    def monitor_drift(self, reference: str | None = None, enabled: bool = True, **options: Any) -> dict[str, Any]:
        """Watch its inputs for drift against `reference`, a folder of your files with images like the training
        data (at least 20), e.g. `d.monitor_drift("data/reference", window=50, alpha=0.01)`; `enabled=False`
        stops it. Only image statistics are kept of the inputs, never the images."""
        body = {"enabled": enabled, "reference": reference, **options}
        return self.connection.request("PUT", "deployments", self.id, "drift", json=body)

    def delete(self) -> None:
        super().delete()
        self.info = {**self.info, "state": "stopped"}


def deploy(
    module: str,
    *,
    profile: str | None = None,
    title: str | None = None,
    kind: str = "deployment",
    hardware: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    connection: Connection | None = None,
) -> Deployment:
    """Deploy a marketplace module and return its handle (`wait_ready()`, `predict(...)`, `delete()`).

    module: its marketplace id, e.g. "fish-detector".
    kind: "deployment" (runs until you delete it) or "try" (stops by itself after 10 minutes).
    profile: a hardware profile slug (`catalog.form(module)` lists yours); default: your default profile.
    hardware: any of `cpu` (CPUs, fractions allowed), `memory_MB` (megabytes: 2000 is 2 GB) and `gpu`
        (whole GPUs); what you leave out is what the module recommends, within the profile.
        E.g. `{"memory_MB": 2000}`. Less than the module recommends is allowed, with a warning in `info["warnings"]`.
    env: extra environment variables for the module.
    """
    body = {"module": module, "kind": kind, "profile": profile, "title": title, "hardware": hardware, "env": env or {}}
    return Deployment.create(body, connection)


def list_deployments(connection: Connection | None = None) -> list[Deployment]:
    return Deployment.all(connection)


def get(deployment_id: str, connection: Connection | None = None) -> Deployment:
    return Deployment.fetch(deployment_id, connection)
