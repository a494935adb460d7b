"""The Flower server process of one federated run: `python -m reeflab.training.federated_server <folder>`.

It reads `<folder>/server.json`, serves Flower's Fleet API (gRPC, bidirectional stream, the transport
Flower's `start_client` speaks) behind the bearer-token interceptor, runs the rounds, and records what
happened in `<folder>/history.json` after every round: which tokens' clients contributed, the number of
examples, the aggregated metrics, and at the end Flower's own History.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from flwr.common import ndarrays_to_parameters
from flwr.proto.transport_pb2_grpc import add_FlowerServiceServicer_to_server
from flwr.server import Server, SimpleClientManager
from flwr.server.strategy import FedAdam, FedAvg, FedProx, Strategy
from flwr.server.superlink.fleet.grpc_bidi.flower_service_servicer import FlowerServiceServicer
from flwr.server.superlink.fleet.grpc_bidi.grpc_client_proxy import GrpcClientProxy
from flwr.supercore.grpc import generic_create_grpc_server

from . import federated_task
from .federated_auth import BearerTokenInterceptor, TokenFile, current

log = logging.getLogger("reeflab.federated")


def weighted(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, float]:
    """Example-weighted mean of every numeric metric the clients report."""
    total = sum(n for n, _ in metrics) or 1
    names = {k for _, m in metrics for k, v in m.items() if isinstance(v, int | float)}
    return {k: sum(n * float(m.get(k, 0.0)) for n, m in metrics) / total for k in sorted(names)}


def make_strategy(config: dict[str, Any]) -> Strategy:
    common = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": config["min_clients"],
        "min_evaluate_clients": config["min_clients"],
        "min_available_clients": config["min_clients"],
        "initial_parameters": ndarrays_to_parameters(federated_task.initial_weights()),
        "fit_metrics_aggregation_fn": weighted,
        "evaluate_metrics_aggregation_fn": weighted,
        "on_fit_config_fn": lambda rnd: {"round": rnd, "epochs": config["local_epochs"]},
    }
    name = config["strategy"]
    if name == "FedProx":
        return FedProx(**common, proximal_mu=config["proximal_mu"])
    if name == "FedAdam":
        return FedAdam(**common, eta=config["server_learning_rate"])
    return FedAvg(**common)


class Recorder:
    """Keeps `history.json` true after every round, for the platform and the user to read."""

    def __init__(self, path: Path, config: dict[str, Any]):
        self.path = path
        self.data: dict[str, Any] = {"strategy": config["strategy"], "rounds": [], "finished": False}
        self.clients: dict[str, str] = {}  # Flower client id -> token name
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def round(self, rnd: int) -> dict[str, Any]:
        for entry in self.data["rounds"]:
            if entry["round"] == rnd:
                return entry
        entry = {"round": rnd}
        self.data["rounds"].append(entry)
        return entry

    def contribution(self, rnd: int, stage: str, results, failures, metrics: dict) -> None:
        entry = self.round(rnd)
        entry[stage] = {
            "clients": sorted(self.clients.get(proxy.cid, "?") for proxy, _ in results),
            "examples": sum(res.num_examples for _, res in results),
            "failures": len(failures),
            "metrics": metrics,
            "at": round(time.time(), 3),
        }
        self.save()
        log.info("round %s %s: %s", rnd, stage, json.dumps(entry[stage]))


class RecordingStrategy(Strategy):
    """The chosen strategy, unchanged, with each round's contributors and aggregates written down."""

    def __init__(self, inner: Strategy, recorder: Recorder):
        self.inner = inner
        self.recorder = recorder

    def __repr__(self) -> str:
        return repr(self.inner)

    def initialize_parameters(self, client_manager):
        return self.inner.initialize_parameters(client_manager)

    def configure_fit(self, server_round, parameters, client_manager):
        return self.inner.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        parameters, metrics = self.inner.aggregate_fit(server_round, results, failures)
        self.recorder.contribution(server_round, "fit", results, failures, metrics)
        return parameters, metrics

    def configure_evaluate(self, server_round, parameters, client_manager):
        return self.inner.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(self, server_round, results, failures):
        loss, metrics = self.inner.aggregate_evaluate(server_round, results, failures)
        self.recorder.contribution(server_round, "evaluate", results, failures, {"loss": loss, **metrics})
        return loss, metrics

    def evaluate(self, server_round, parameters):
        return self.inner.evaluate(server_round, parameters)


def serve(folder: Path) -> int:
    config = json.loads((folder / "server.json").read_text())
    recorder = Recorder(folder / "history.json", config)
    manager = SimpleClientManager()

    def proxy_factory(cid: str, bridge) -> GrpcClientProxy:
        caller = getattr(current, "caller", None)  # set by the interceptor in this gRPC worker thread
        recorder.clients[cid] = caller.token_name if caller else "?"
        log.info("client connected with token '%s'", recorder.clients[cid])
        return GrpcClientProxy(cid=cid, bridge=bridge)

    interceptor = BearerTokenInterceptor(
        TokenFile(config["tokens_file"]), on_reject=lambda why: log.warning("connection refused: %s", why)
    )
    grpc_server = generic_create_grpc_server(
        servicer_and_add_fn=(
            FlowerServiceServicer(manager, grpc_client_proxy_factory=proxy_factory),
            add_FlowerServiceServicer_to_server,
        ),
        server_address=f"{config['host']}:{config['port']}",
        max_concurrent_workers=config["max_workers"],
        interceptors=[interceptor],
    )
    grpc_server.start()
    log.info(
        "Flower server for %s listening on %s:%s (%s, %s rounds, >= %s clients)",
        config["owner"],
        config["host"],
        config["port"],
        config["strategy"],
        config["rounds"],
        config["min_clients"],
    )

    def stop(signum, frame):
        grpc_server.stop(grace=1)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    strategy = RecordingStrategy(make_strategy(config), recorder)
    server = Server(client_manager=manager, strategy=strategy)
    started = time.monotonic()
    history, _ = server.fit(num_rounds=config["rounds"], timeout=config["round_timeout"])
    server.disconnect_all_clients(timeout=config["round_timeout"])
    recorder.data.update(
        finished=True,
        seconds=round(time.monotonic() - started, 2),
        losses_distributed=history.losses_distributed,
        metrics_distributed_fit=history.metrics_distributed_fit,
        metrics_distributed=history.metrics_distributed,
    )
    recorder.save()
    log.info("finished %s rounds", config["rounds"])
    grpc_server.stop(grace=1)
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.umask(0o077)
    return serve(Path(sys.argv[1]))


if __name__ == "__main__":
    sys.exit(main())
