"""Federated learning: what a round costs on top of the sites' own training (one run, real processes).

Starts a ReefLab federation (its Flower SuperLink running the built-in Flower App with `flwr run`,
FedAvg) and two SuperNodes joined with valid tokens, and reads the ServerApp's own round timings.
The limit is the sites' compute: the same fit + evaluate calls made in this process, per round (the
two sites run in parallel, so the slower one sets the pace). Also times what a site's token costs
(deriving its SuperNode key). Prints seconds per round, the ratio to the compute limit, and that cost.

    .venv/bin/python bench/federated.py [--rounds 5] [--epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from reeflab.testing.process import wait_until
from reeflab.training.federated import FederatedService
from reeflab.training.federated_auth import node_private_pem
from reeflab.training.federated_client import spawn_site
from reeflab.training.federated_models import ServerRequest
from reeflab.training.federated_task import TaskClient


def compute_limit(rounds: int, epochs: int) -> float:
    """Seconds the two sites' fit + evaluate take by themselves, the slower site per round."""
    sites = [TaskClient(site=1, epochs=epochs), TaskClient(site=2, epochs=epochs)]
    weights = sites[0].get_parameters({})
    for site in sites:  # warm up, as round 1 of the federated run is left out too
        site.fit(weights, {"epochs": epochs})
    total = 0.0
    for _ in range(rounds):
        spent = []
        for site in sites:
            start = time.perf_counter()
            site.fit(weights, {"epochs": epochs})
            site.evaluate(weights, {})
            spent.append(time.perf_counter() - start)
        total += max(spent)
    return total


def clientapp_start_s(runs: int = 2) -> float:
    """What Flower's process isolation costs a site per message: a fresh Python importing the ClientApp."""
    import subprocess
    import sys

    command = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import reeflab_fedtask.client_app"]
    app = str(Path(__file__).parent.parent / "server_extension/reeflab/training/flower_app")
    start = time.perf_counter()
    for _ in range(runs):
        subprocess.run([*command, app], check=True)
    return (time.perf_counter() - start) / runs


def key_derivation_ms(token: str, runs: int = 200) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        node_private_pem(token)
    return (time.perf_counter() - start) / runs * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        service = FederatedService(root_dir=str(Path(tmp) / "federated"))
        tokens = [service.create_token("bench", name)["token"] for name in ("site-1", "site-2")]
        request = ServerRequest(rounds=args.rounds, min_clients=2, local_epochs=args.epochs)
        started = time.perf_counter()
        server = service.start("bench", request)
        service.wait_listening(server)
        listening = time.perf_counter() - started
        ca = Path(tmp) / "ca.crt"
        ca.write_text(server.root_certificates)
        sites = [spawn_site(server.address, token, i + 1, ca) for i, token in enumerate(tokens)]
        try:
            wait_until(lambda: service.get("bench", server.id).state != "running", 1200, "the rounds")
        finally:
            for site in sites:
                site.terminate()
                site.wait(60)
            service.stop_all()
        history = service.history(server)
        assert history.get("finished"), service.logs("bench", server.id, 30)
        ends = [entry["evaluate"]["at"] for entry in history["rounds"]]
        per_round = (ends[-1] - ends[0]) / (len(ends) - 1)  # after round 1, which waits for the sites to start
        limit = compute_limit(args.rounds, args.epochs) / args.rounds
        derive = key_derivation_ms(tokens[0])
        cold = clientapp_start_s()
    print(f"SuperLink up, 2 site keys registered, run submitted with flwr run after {listening:.2f} s")
    print(f"{args.rounds} rounds, 2 sites, {args.epochs} local epochs: {history['seconds']:.2f} s in the ServerApp")
    print(f"  rounds 2-{args.rounds} (round 1 waits for the sites to start): {per_round:.3f} s per round")
    print(f"sites' own fit+evaluate per round (the slower site): {limit:.3f} s")
    print(f"ratio per round, federated / compute limit: {per_round / limit:.2f}x")
    print(f"a ClientApp process's start (Flower starts one per message: 2 a round): {cold:.2f} s")
    print(f"a site's SuperNode key from its token: {derive:.2f} ms (once, when the site joins)")


if __name__ == "__main__":
    main()
