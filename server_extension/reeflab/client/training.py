"""Training from Python: your MLflow runs and publishing a trained model to the marketplace.

    from reeflab.client import training
    run = training.runs()[0]            # newest first, with params, metrics and a link
    training.run_url(run)               # the MLflow UI page of the run, through your server
    training.register("reef-fish", "1.0.0", run_id=run["id"])   # now in the marketplace, deployable

Inside a ReefLab server, MLflow itself is already set up (MLFLOW_TRACKING_URI and your account
are in the environment): `mlflow.start_run()` and Ultralytics training log to your experiments.
"""

from __future__ import annotations

from typing import Any

from .connection import Connection, default_connection


def _conn(connection: Connection | None) -> Connection:
    return connection or default_connection()


def info(connection: Connection | None = None) -> dict[str, Any]:
    """Where runs are tracked, your MLflow account name and your experiment prefix."""
    return _conn(connection).get("training")


def experiment(name: str, connection: Connection | None = None) -> dict[str, Any]:
    """Your experiment `<you>/<name>` (created if needed): `{"id", "name", "path"}`.

    Use its name as MLFLOW_EXPERIMENT_NAME (or `mlflow.set_experiment`) to log runs into it.
    """
    return _conn(connection).post("training", "experiments", json={"name": name})


def experiments(connection: Connection | None = None) -> list[dict[str, Any]]:
    return _conn(connection).get("training", "experiments")["experiments"]


def runs(experiment: str | None = None, max_results: int = 100, connection: Connection | None = None) -> list[dict]:
    """Your runs, newest first (of one experiment if named)."""
    params: dict[str, Any] = {"max_results": max_results}
    if experiment:
        params["experiment"] = experiment
    return _conn(connection).get("training", "runs", **params)["runs"]


def run(run_id: str, connection: Connection | None = None) -> dict[str, Any]:
    """One run: params, metrics (latest values), artifacts and its UI path."""
    return _conn(connection).get("training", "runs", run_id)


def run_url(run: dict[str, Any], connection: Connection | None = None) -> str:
    """The MLflow UI page of a run, opened through your server (you are logged in as yourself)."""
    return _conn(connection).url + run["path"]


def register(
    name: str,
    version: str,
    *,
    run_id: str | None = None,
    weights: str | None = None,
    base_module: str = "yolo-detector",
    title: str | None = None,
    summary: str | None = None,
    training_data: str | None = None,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, str | int | float] | None = None,
    connection: Connection | None = None,
) -> dict[str, Any]:
    """Publish trained weights (an MLflow run's weights/best.pt, or a .pt in your folder) as version
    `version` of the marketplace module `name`, served by `base_module`'s code; `lineage`: where it comes from
    (e.g. the annotation project and its number of new images)."""
    body = {
        "name": name,
        "version": version,
        "base_module": base_module,
        "run_id": run_id,
        "weights": weights,
        "title": title,
        "summary": summary,
        "training_data": training_data,
        "metrics": metrics,
        "lineage": lineage,
    }
    return _conn(connection).post("training", "models", json={k: v for k, v in body.items() if v is not None})


def models(connection: Connection | None = None) -> list[dict[str, Any]]:
    """Your registered models with their versions (metrics, training data, run)."""
    return _conn(connection).get("training", "models")["models"]


def delete_model(name: str, connection: Connection | None = None) -> None:
    """Remove a registered model (all its versions) from your marketplace."""
    _conn(connection).request("DELETE", "training", "models", name)
