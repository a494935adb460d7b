"""Federated learning from Python: start a federation (a Flower SuperLink running the built-in Flower App),
hand tokens to sites, follow the rounds.

    from reeflab.client import federated
    token = federated.create_token("site-lisbon")["token"]   # shown once: give it to that site
    server = federated.start_server(strategy="FedProx", rounds=5, min_clients=2)
    print(server.join_command)                               # what a site runs (with its token)
    server.wait_finished(); server.history()["rounds"]

At a site (needs flwr==1.41.0, torch and this package): a Flower SuperNode whose key the token derives,

    federated.join(server.address, token, "federation-ca.crt", site=1)   # runs until stopped
"""

from __future__ import annotations

from typing import Any

from ..training.federated_client import FederatedAuthError, join
from .connection import Connection, ReefLabClientError, Resource, default_connection


class FederatedServer(Resource):
    """A handle on one of your Flower servers; `info` is its latest state from the platform."""

    collection, listed_as, log_path = ("federated", "servers"), "servers", "logs"

    @property
    def address(self) -> str:
        """HOST:PORT of the federation's SuperLink, where the sites' SuperNodes connect."""
        return self.info["address"]

    def save_root_certificates(self, path: str) -> str:
        """Write the federation's CA (sites verify the SuperLink with it) to `path`; returns the path."""
        with open(path, "w") as file:
            file.write(self.info["root_certificates"])
        return path

    @property
    def join_command(self) -> str:
        """The command a site runs to join (token in $REEFLAB_FLOWER_TOKEN, the CA saved as federation-ca.crt)."""
        return f"reeflab federated join --superlink {self.address} --root-certificates federation-ca.crt --site N"

    def __repr__(self) -> str:
        return f"<FederatedServer {self.id} {self.info['config']['strategy']} {self.state} at {self.address}>"

    def history(self) -> dict[str, Any]:
        """Rounds so far: for each, the clients (by token name) that contributed and the aggregated metrics."""
        return self.refresh().info.get("history", {})

    def wait_finished(self, timeout: float = 3600, interval: float = 1) -> FederatedServer:
        """Block until all rounds are done; raise with the reason if the server fails or is stopped."""
        self.wait_while(("running",), timeout, interval)
        if self.state != "finished":
            raise ReefLabClientError(409, f"federated server {self.state}: {self.info.get('reason')}")
        return self

    def stop(self) -> FederatedServer:
        self.info = self.connection.post("federated", "servers", self.id, "stop")
        return self

    def delete(self) -> None:
        super().delete()
        self.info = {**self.info, "state": "stopped"}


def start_server(
    *,
    strategy: str = "FedAvg",
    rounds: int = 3,
    min_clients: int = 2,
    connection: Connection | None = None,
    **options: Any,
) -> FederatedServer:
    """Start a Flower server (FedAvg, FedProx or FedAdam); options: title, local_epochs, proximal_mu,
    server_learning_rate, round_timeout."""
    body = {"strategy": strategy, "rounds": rounds, "min_clients": min_clients, **options}
    return FederatedServer.create(body, connection)


def list_servers(connection: Connection | None = None) -> list[FederatedServer]:
    return FederatedServer.all(connection)


def get(server_id: str, connection: Connection | None = None) -> FederatedServer:
    return FederatedServer.fetch(server_id, connection)


def create_token(name: str, connection: Connection | None = None) -> dict[str, Any]:
    """A new client token `{id, name, created, token}`: the value is shown this once, keep it secret."""
    return (connection or default_connection()).post("federated", "tokens", json={"name": name})


def list_tokens(connection: Connection | None = None) -> list[dict[str, Any]]:
    """Your tokens' ids, names and creation dates (never their values)."""
    return (connection or default_connection()).get("federated", "tokens")["tokens"]


def revoke_token(token_id: str, connection: Connection | None = None) -> None:
    """Servers refuse the token from the next connection on."""
    (connection or default_connection()).request("DELETE", "federated", "tokens", token_id)


__all__ = [
    "FederatedAuthError",
    "FederatedServer",
    "join",
    "create_token",
    "get",
    "list_servers",
    "list_tokens",
    "revoke_token",
    "start_server",
]
