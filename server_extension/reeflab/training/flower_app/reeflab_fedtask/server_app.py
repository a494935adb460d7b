"""The ServerApp `flwr run` starts on a federation's SuperLink: the chosen strategy over the default task.

Settings come from the run config (`flwr run --run-config`, written by the platform from the
federation's request). After every round it writes `history-file` (when set): the nodes that
contributed, the examples, the aggregated metrics; the platform names the nodes by the tokens they
were registered with.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx
from reeflab.training import federated_task

app = ServerApp()
STRATEGIES = {"FedAvg": FedAvg, "FedProx": FedProx, "FedAdam": FedAdam}


class History:
    """`history.json` kept true after every round, for the platform and the user to read."""

    def __init__(self, path: str, strategy: str):
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {"strategy": strategy, "rounds": [], "finished": False}
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def stage(self, rnd: int, stage: str, replies: list, metrics) -> None:
        entry = next((e for e in self.data["rounds"] if e["round"] == rnd), None)
        if entry is None:
            entry = {"round": rnd}
            self.data["rounds"].append(entry)
        valid = [r for r in replies if r.has_content()]
        entry[stage] = {
            "nodes": sorted(str(r.metadata.src_node_id) for r in valid),  # 64-bit ids: strings for JSON readers
            "examples": int(sum(r.content["metrics"]["num-examples"] for r in valid)),
            "failures": len(replies) - len(valid),
            "metrics": {k: float(v) for k, v in (metrics or {}).items() if k != "num-examples"},
            "at": round(time.time(), 3),
        }
        self.save()


def recording(base: type, history: History) -> type:
    """The chosen strategy, unchanged, with each round's contributors and aggregates written down."""

    class Recording(base):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            arrays, metrics = super().aggregate_train(server_round, replies)
            history.stage(server_round, "fit", replies, metrics)
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):
            replies = list(replies)
            metrics = super().aggregate_evaluate(server_round, replies)
            history.stage(server_round, "evaluate", replies, metrics)
            return metrics

    return Recording


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    name = str(config["strategy"])
    history = History(str(config["history-file"]), name)
    clients = int(config["min-clients"])
    options: dict[str, Any] = {
        "min_train_nodes": clients,
        "min_evaluate_nodes": clients,
        "min_available_nodes": clients,
    }
    if name == "FedProx":
        options["proximal_mu"] = float(config["proximal-mu"])
    if name == "FedAdam":
        options["eta"] = float(config["server-learning-rate"])
    strategy = recording(STRATEGIES[name], history)(**options)
    started = time.monotonic()
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(federated_task.initial_weights()),
        num_rounds=int(config["num-server-rounds"]),
        timeout=float(config["round-timeout"]),
        train_config=ConfigRecord({"epochs": int(config["local-epochs"])}),
    )
    history.data.update(
        finished=True,
        seconds=round(time.monotonic() - started, 2),
        metrics_distributed={
            key: [[rnd, float(metrics[key])] for rnd, metrics in sorted(result.evaluate_metrics_clientapp.items())]
            for key in ("loss", "accuracy")
        },
    )
    history.save()
