"""Connect a Flower client to a ReefLab federated server from anywhere: a notebook, a script, another site.

`connect(address, token, client)` runs Flower's own client loop (`flwr.client.start_client`, the
gRPC bidirectional transport) with `x-authorization: Bearer <token>` added to its gRPC calls, and
turns the server's refusal into a `FederatedAuthError` that says what to do. Also a command:
`python -m reeflab.training.federated_client --server HOST:PORT --token-file F --site N` trains the
default task (used by the tests and handy to try a server).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from .federated_auth import BearerTokenClientInterceptor

TOKEN_ENV = "REEFLAB_FLOWER_TOKEN"
_patch_lock = threading.Lock()


class FederatedAuthError(PermissionError):
    """The federated server refused this client's token (missing, wrong or revoked)."""


@contextlib.contextmanager
def _bearer_channels(token: str) -> Iterator[None]:
    """Flower's client builds its channel with `create_channel`; add our interceptor to what it returns."""
    from flwr.compat.client.grpc_client import connection

    original = connection.create_channel

    def create_channel(*args, **kwargs):
        return grpc.intercept_channel(original(*args, **kwargs), BearerTokenClientInterceptor(token))

    with _patch_lock:
        connection.create_channel = create_channel
        try:
            yield
        finally:
            connection.create_channel = original


def connect(
    address: str,
    token: str | None,
    client,
    *,
    root_certificates: bytes | str | None = None,
    insecure: bool | None = None,
    wait: float = 60,
) -> None:
    """Take part in the server's rounds until it ends them; `client` is a `flwr.client.NumPyClient` or `Client`.

    `address` is the `HOST:PORT` your platform shows for the server; `token` one of your federated
    tokens (default: $REEFLAB_FLOWER_TOKEN). Waits up to `wait` seconds for an unreachable server.
    """
    from flwr.client import NumPyClient, start_client

    token = token or os.environ.get(TOKEN_ENV)
    as_client = client.to_client() if isinstance(client, NumPyClient) else client
    deadline = time.monotonic() + wait
    while True:
        try:
            if token:
                with _bearer_channels(token):
                    start_client(
                        server_address=address, client=as_client, root_certificates=root_certificates, insecure=insecure
                    )
            else:
                start_client(
                    server_address=address, client=as_client, root_certificates=root_certificates, insecure=insecure
                )
            return
        except grpc.RpcError as err:
            code = err.code() if callable(getattr(err, "code", None)) else None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise FederatedAuthError(
                    f"The federated server at {address} refused this client: {err.details()}. "
                    "Create a token with `reeflab federated token create NAME` (or the panel) and pass it."
                ) from None
            if code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline:
                time.sleep(1)
                continue
            raise


def spawn_site(address: str, token: str | None, site: int, log_path: str | os.PathLike | None = None, wait: float = 60):
    """Run the default task as one site in its own process (a demo site on this machine, or a test's).

    The token travels in the environment, never on the command line where `ps` would show it.
    """
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env.update({"FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1"})
    if token:
        env[TOKEN_ENV] = token
    command = [
        sys.executable,
        "-m",
        "reeflab.training.federated_client",
        "--server",
        address,
        "--site",
        str(site),
        "--wait",
        str(wait),
    ]
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        if log_path:
            output.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train ReefLab's default federated task as one site")
    parser.add_argument("--server", required=True, help="HOST:PORT of the federated server")
    parser.add_argument("--token-file", help=f"file holding the token (default: ${TOKEN_ENV})")
    parser.add_argument("--site", type=int, default=0, help="which site's generated data to train on")
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    from .federated_task import TaskClient

    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get(TOKEN_ENV)
    try:
        connect(args.server, token, TaskClient(site=args.site), wait=args.wait)
    except FederatedAuthError as err:
        print(f"reeflab federated client: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
