"""TrackingService: a user's MLflow experiments and runs, as ReefLab's API and client show them.

The user's server talks to MLflow with the account the hub gave it (MLFLOW_TRACKING_* in its
environment), so MLflow itself guarantees that only runs the account may read are seen. Which
experiments are the user's is MLflow's record, not their names: those the account holds MANAGE
on (its creator's permission, or the platform's grant for `<user>/default`). ReefLab still names
new ones `<user>/<name>`, a namespace the tracking server keeps for that account.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import BadRequest, Conflict, NotFound, ReefLabError


class TrackingUnavailable(ReefLabError):
    status = 503


class TrackingService(LoggingConfigurable):
    tracking_uri = Unicode(config=True, help="MLflow tracking server. Default: $MLFLOW_TRACKING_URI")

    @default("tracking_uri")
    def _default_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI", "")

    ui_path = Unicode(
        "reeflab/mlflow/",
        config=True,
        help="Where users open the MLflow UI, relative to their server URL (the authenticated proxy route)",
    )

    def client(self):
        if not self.tracking_uri.startswith(("http://", "https://")):
            raise TrackingUnavailable(
                "MLflow tracking is not set up for this server: the hub gives MLFLOW_TRACKING_URI to the "
                "servers it starts (or set it to an MLflow server URL)."
            )
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def info(self, owner: str) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri or None,
            "account": os.environ.get("MLFLOW_TRACKING_USERNAME"),
            "experiment_prefix": f"{owner}/",
            "default_experiment": os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"{owner}/default",
            "ui": self.ui_path,
        }

    # -- experiments -------------------------------------------------------------

    def experiment_name(self, owner: str, name: str) -> str:
        name = name.strip()
        if name.startswith(f"{owner}/"):
            name = name[len(owner) + 1 :]
        if not name or "/" in name or len(name) > 100:
            raise BadRequest("An experiment name is 1-100 characters without '/'; ReefLab prefixes it with your name.")
        return f"{owner}/{name}"

    def experiment(self, owner: str, name: str) -> dict[str, Any]:
        """Your experiment `<owner>/<name>`, created if needed; one of that name you do not own is refused."""
        full = self.experiment_name(owner, name)
        client = self.client()
        try:
            found = self._call(client.get_experiment_by_name, full)
        except NotFound:  # it exists, and this account may not even read it
            found = None
            owned = False
        else:
            owned = found is None or found.experiment_id in self.owned_ids()
        if not owned:
            raise Conflict(f"An experiment named '{full}' exists and is not yours: choose another name.")
        experiment_id = found.experiment_id if found else self._call(client.create_experiment, full)
        return {"id": experiment_id, "name": full, "path": self.ui_path + f"#/experiments/{experiment_id}"}

    def owned_ids(self) -> set[str]:
        """Ids of the experiments this server's MLflow account holds MANAGE on."""
        import requests

        from .accounts import managed_experiments

        auth = (os.environ.get("MLFLOW_TRACKING_USERNAME", ""), os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        url = self.tracking_uri.rstrip("/") + "/api/3.0/mlflow/users/current/permissions"
        try:
            answer = requests.get(url, auth=auth if auth[0] else None, timeout=30)
        except requests.RequestException as err:
            raise TrackingUnavailable(f"MLflow at {self.tracking_uri} could not be used: {err}") from None
        if answer.status_code == 401:
            raise TrackingUnavailable("MLflow refused this server's account: restart your server so the hub renews it.")
        if not answer.ok:
            raise TrackingUnavailable(f"MLflow at {self.tracking_uri} could not list your permissions: {answer.text}")
        return managed_experiments(answer.json())

    def experiments(self, owner: str) -> list:
        """Your experiments: those your account MANAGEs (whatever their names)."""
        self.client()  # a clear 503 when tracking is not set up
        owned = self.owned_ids()
        if not owned:
            return []
        found = self._call(self.client().search_experiments, max_results=1000)
        return [e for e in found if e.experiment_id in owned]

    # -- runs ------------------------------------------------------------------------

    def runs(self, owner: str, experiment: str | None = None, max_results: int = 100) -> list[dict[str, Any]]:
        """Your runs, newest first (of one experiment if named)."""
        experiments = self.experiments(owner)
        if experiment:
            full = self.experiment_name(owner, experiment)
            experiments = [e for e in experiments if e.name == full]
        if not experiments:
            return []
        names = {e.experiment_id: e.name for e in experiments}
        runs = self._call(
            self.client().search_runs,
            list(names),
            max_results=max_results,
            order_by=["attributes.start_time DESC"],
        )
        return [self.describe(run, names[run.info.experiment_id]) for run in runs]

    def run(self, owner: str, run_id: str) -> dict[str, Any]:
        run, experiment = self.get_run(owner, run_id)
        described = self.describe(run, experiment.name)
        described["artifacts"] = [a.path for a in self._call(self.client().list_artifacts, run_id)]
        return described

    def get_run(self, owner: str, run_id: str):
        """The run and its experiment; a run of someone else is as absent as a missing one."""
        client = self.client()
        missing = NotFound(f"No run '{run_id}' among yours; list them at /reeflab/api/training/runs.")
        try:
            run = self._call(client.get_run, run_id)
            experiment = self._call(client.get_experiment, run.info.experiment_id)
        except NotFound:
            raise missing from None
        if experiment.experiment_id not in self.owned_ids():
            raise missing
        return run, experiment

    def download(self, owner: str, run_id: str, artifact: str, destination: Path) -> Path:
        self.get_run(owner, run_id)
        try:
            path = self._call(self.client().download_artifacts, run_id, artifact, str(destination))
        except NotFound:
            raise NotFound(f"Run '{run_id}' has no artifact '{artifact}'.") from None
        return Path(path)

    def describe(self, run, experiment_name: str) -> dict[str, Any]:
        info = run.info
        return {
            "id": info.run_id,
            "name": info.run_name,
            "experiment": experiment_name,
            "experiment_id": info.experiment_id,
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
            "path": self.ui_path + f"#/experiments/{quote(info.experiment_id)}/runs/{quote(info.run_id)}",
        }

    def _call(self, func, *args, **kwargs):
        """An MLflow client call, its failures as ReefLab errors (not found, forbidden, unreachable)."""
        from mlflow.exceptions import MlflowException

        try:
            return func(*args, **kwargs)
        except MlflowException as err:
            # MLflow's basic-auth answers 403 for others' things: as absent as missing ones
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED", "NOT_FOUND"):
                raise NotFound("Not found among your MLflow experiments and runs.") from None
            if err.error_code == "INVALID_PARAMETER_VALUE":
                raise BadRequest(f"MLflow refused the request: {err.message}") from None
            if err.error_code == "UNAUTHENTICATED":
                raise TrackingUnavailable(
                    "MLflow refused this server's account: restart your server so the hub renews it."
                ) from None
            raise TrackingUnavailable(f"MLflow at {self.tracking_uri} could not be used: {err.message}") from None
