"""Join a ReefLab federation as a site: a Flower SuperNode authenticated with the site's token.

`join(superlink, token, root_certificates)` runs Flower's own `flower-supernode` with the SuperNode
key derived from the token (written to a private temporary file for the SuperNode's start, removed
when it stops) and the federation's CA. The SuperNode runs the federation's ClientApp on this site's
data for every run, until it is stopped. A SuperLink that refuses the key (no token, an unknown or a
revoked one) ends it with Flower's exit code 305 (printed, the process exits 1), turned here into `FederatedAuthError`;
so does a token revoked while its SuperNode is connected (the SuperLink answers its next request with 401, the
SuperNode stops itself: ~2-3 s after the revocation here).
Also a command (`reeflab federated join`, `python -m reeflab.training.federated_client`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .federated_auth import node_private_pem

TOKEN_ENV = "REEFLAB_FLOWER_TOKEN"
REFUSED = b"Exit Code: 305"  # flower-supernode: the SuperLink did not let it connect (Flower's exit code)
ENDED = b"SuperNode terminated gracefully"  # flower-supernode stopped: by this site, else refused while connected


class FederatedAuthError(PermissionError):
    """The federation's SuperLink refused this site's SuperNode (no, an unknown or a revoked token)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def supernode_command(
    superlink: str, key_file: str, root_certificates: str, site: int, runtime_port: int, wait: float
) -> list[str]:
    """The `flower-supernode` command line a site runs (what `join` runs)."""
    return [
        str(Path(sys.executable).parent / "flower-supernode"),
        *("--superlink", superlink, "--root-certificates", root_certificates),
        *("--auth-supernode-private-key", key_file),
        *("--node-config", f"site={int(site)}"),
        *("--port", str(runtime_port), "--max-wait-time", str(wait)),
    ]


def join(
    superlink: str,
    token: str | None,
    root_certificates: str | os.PathLike,
    *,
    site: int = 0,
    wait: float = 60,
    log=None,
) -> int:
    """Run this site's SuperNode until it is stopped (SIGTERM/SIGINT); its exit code.

    `superlink` is the federation's HOST:PORT, `root_certificates` the federation's CA file (both
    shown by `reeflab federated server show`), `token` one of the owner's federated tokens (default:
    $REEFLAB_FLOWER_TOKEN). `site` picks the built-in task's generated data partition.
    """
    token = token or os.environ.get(TOKEN_ENV)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env.update({"FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # flower-superexec, flwr-clientapp
    with tempfile.TemporaryDirectory(prefix="reeflab-supernode-") as tmp:
        env.setdefault("FLWR_HOME", str(Path(tmp) / "flwr"))
        key_file = Path(tmp) / "node.key"
        if token:
            key_file.touch(mode=0o600)
            key_file.write_bytes(node_private_pem(token))
        command = supernode_command(superlink, str(key_file), str(root_certificates), site, _free_port(), wait)
        if not token:  # a SuperNode without a key: the SuperLink refuses it, and says so
            command = [part for part in command if part not in ("--auth-supernode-private-key", str(key_file))]
        child = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the SuperNode and the SuperExec it starts end together
        )

        stopping = threading.Event()  # set when this site stops its SuperNode (SIGTERM/SIGINT)

        def forward(signum, frame):
            stopping.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)

        seen = {"refused": False, "ended": False}
        out = log or sys.stdout.buffer

        def relay() -> None:  # the SuperNode's (and its SuperExec's) output, passed on; a refusal recognised
            for line in child.stdout:
                seen["refused"] = seen["refused"] or REFUSED in line
                seen["ended"] = seen["ended"] or ENDED in line
                out.write(line)
                out.flush()

        reader = threading.Thread(target=relay, daemon=True)
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        reader.start()
        try:
            code = child.wait()  # the SuperNode itself: its SuperExec would outlive it, retrying
        finally:
            with contextlib.suppress(ProcessLookupError):  # its SuperExec would wait for a parent that is gone
                os.killpg(child.pid, signal.SIGKILL)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        reader.join(10)
    # refused when connecting (Flower's exit code 305), or cut off while connected: a SuperNode whose key the
    # SuperLink no longer knows gets 401 and stops itself (Flower: SIGINT to itself), with no word of why; one
    # that ended by itself while its SuperLink still answers was cut off (a federation that ended does not answer)
    cut_off = seen["ended"] and not stopping.is_set() and _reachable(superlink)
    if seen["refused"] or cut_off:
        why = "no token was given" if not token else "its token is unknown or was revoked"
        raise FederatedAuthError(
            f"The federation at {superlink} refused this SuperNode: {why}. Ask the federation's owner for a "
            "token (`reeflab federated token create NAME`) and pass it in $REEFLAB_FLOWER_TOKEN or --token-file."
        )
    return code


def spawn_site(
    address: str,
    token: str | None,
    site: int,
    root_certificates: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
    wait: float = 60,
) -> subprocess.Popen:
    """One site's SuperNode in its own process (a demo site on this machine, or a test's); stop it with terminate().

    The token travels in the environment, never on the command line where `ps` would show it.
    """
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token:
        env[TOKEN_ENV] = token
    command = [sys.executable, "-m", "reeflab.training.federated_client", "--superlink", address]
    command += ["--root-certificates", str(root_certificates), "--site", str(site), "--wait", str(wait)]
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        if log_path:
            output.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Join a ReefLab federation as a site (a Flower SuperNode)")
    parser.add_argument("--superlink", required=True, help="HOST:PORT of the federation's SuperLink")
    parser.add_argument("--root-certificates", required=True, help="the federation's CA certificate (PEM file)")
    parser.add_argument("--token-file", help=f"file holding the token (default: ${TOKEN_ENV})")
    parser.add_argument("--site", type=int, default=0, help="which site's generated data the built-in task uses")
    parser.add_argument("--wait", type=float, default=60, help="seconds to keep trying to reach the SuperLink")
    args = parser.parse_args(argv)
    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get(TOKEN_ENV)
    try:
        return join(args.superlink, token, args.root_certificates, site=args.site, wait=args.wait)
    except FederatedAuthError as err:
        print(f"reeflab federated join: {err}", file=sys.stderr)
        return 3
    except ValueError as err:
        print(f"reeflab federated join: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
