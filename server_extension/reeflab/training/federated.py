"""FederatedService: a user's federations (start, stop, status, logs, history) and their site tokens.

Each federation runs on Flower's current architecture: a `python -m reeflab.training.federated_superlink`
process in its own session starts the federation's own `flower-superlink` (TLS with a CA made for the
federation, SuperNode authentication on, bound to `bind_ip`, 127.0.0.1, on a free port; state in the
federation's folder), registers the SuperNode keys of the owner's tokens and runs the built-in Flower
App with `flwr run`. Stopping or deleting the federation stops the whole session. At scale the same
process runs in a pod bound to 0.0.0.0 behind a TLS-passthrough Service; `public_host` is then the
name sites connect to. Tokens are per user: their SHA-256 hash and the public SuperNode key derived
from them stored in a 0600 file that running federations follow, so a revoked token's SuperNode is
unregistered and refused from then on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from jupyter_core.paths import jupyter_data_dir
from traitlets import Float, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..files import free_port, write_private
from ..processes import exited, running, tail_lines
from .federated_auth import PREFIX, make_tls, node_public_key, token_hash
from .federated_models import FederatedServer, ServerRequest

LOG_FILE = "server.log"


def now() -> datetime:
    return datetime.now(UTC)


class FederatedService(LoggingConfigurable):
    """Per-user federations (SuperLink + Flower run) and site tokens; no HTTP here (handlers, client, CLI share it)."""

    root_dir = Unicode(config=True, help="Where federated servers keep their config, logs, history and tokens")

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / "federated")

    bind_ip = Unicode("127.0.0.1", config=True, help="Address the federations' SuperLinks listen on (0.0.0.0 in a pod)")
    public_host = Unicode(
        config=True,
        help="Host name remote clients use to reach the servers (default: bind_ip); at scale the "
        "DNS name of the Service/ingress in front of them",
    )

    @default("public_host")
    def _default_public_host(self) -> str:
        return self.bind_ip

    apps_root = Unicode(
        config=True, help="Folder that relative paths of users' own Flower Apps start from (default: the cwd)"
    )

    @default("apps_root")
    def _default_apps_root(self) -> str:
        return os.getcwd()

    python = Unicode(sys.executable, config=True, help="Python (with flwr) that runs the federations' processes")
    max_servers = Int(2, config=True, help="Federated servers a user may have running at once")
    stop_grace = Float(3, config=True, help="Seconds a server gets to stop before it is killed")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(self.root_dir)
        self._servers: dict[str, FederatedServer] = {}
        self._children: dict[str, subprocess.Popen] = {}
        for path in sorted(self.root.glob("servers/*/record.json")):
            server = FederatedServer.model_validate_json(path.read_text())
            self._servers[server.id] = server

    # -- tokens ------------------------------------------------------------------

    def tokens_file(self, owner: str) -> Path:
        folder = self.root / "tokens"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder / f"{hashlib.sha256(owner.encode()).hexdigest()[:24]}.json"

    def _tokens(self, owner: str) -> list[dict[str, Any]]:
        path = self.tokens_file(owner)
        return json.loads(path.read_text()) if path.exists() else []

    def list_tokens(self, owner: str) -> list[dict[str, Any]]:
        """Ids, names and creation times: a token's value is shown once, when created."""
        return [{k: t[k] for k in ("id", "name", "created")} for t in self._tokens(owner)]

    def create_token(self, owner: str, name: str) -> dict[str, Any]:
        tokens = self._tokens(owner)
        if any(t["name"] == name for t in tokens):
            raise Conflict(f"You already have a token named '{name}'; revoke it or choose another name.")
        value = PREFIX + secrets.token_urlsafe(32)
        entry = {
            "id": secrets.token_hex(4),
            "name": name,
            "created": now().isoformat(),
            "hash": token_hash(value),
            "public_key": node_public_key(value),  # the SuperNode key the token derives, for `flwr supernode register`
        }
        write_private(self.tokens_file(owner), json.dumps([*tokens, entry], indent=1))
        return {"id": entry["id"], "name": name, "created": entry["created"], "token": value}

    def revoke_token(self, owner: str, token_id: str) -> None:
        tokens = self._tokens(owner)
        kept = [t for t in tokens if t["id"] != token_id]
        if len(kept) == len(tokens):
            raise NotFound(f"No token '{token_id}'; list yours at /reeflab/api/federated/tokens.")
        write_private(self.tokens_file(owner), json.dumps(kept, indent=1))

    # -- servers -----------------------------------------------------------------

    def folder(self, server_id: str) -> Path:
        return self.root / "servers" / server_id

    def list(self, owner: str) -> list[FederatedServer]:
        servers = [s for s in self._servers.values() if s.owner == owner]
        for server in servers:
            self._refresh(server)
        return sorted(servers, key=lambda s: s.created)

    def get(self, owner: str, server_id: str) -> FederatedServer:
        server = self._servers.get(server_id)
        if server is None or server.owner != owner:  # another user's is as absent as a missing one
            raise NotFound(f"No federated server '{server_id}'; list yours at /reeflab/api/federated/servers.")
        return self._refresh(server)

    def describe(self, owner: str, server_id: str) -> dict[str, Any]:
        """The public record plus the history so far (rounds, contributors, aggregated metrics)."""
        server = self.get(owner, server_id)
        return {**server.public(), "history": self.history(server)}

    def history(self, server: FederatedServer) -> dict[str, Any]:
        """The ServerApp's history, each round's contributing nodes named by the tokens they joined with."""
        folder = self.folder(server.id)
        try:
            history = json.loads((folder / "history.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"rounds": [], "finished": False}
        try:
            nodes = json.loads((folder / "nodes.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            nodes = {}
        for entry in history.get("rounds", []):
            for stage in ("fit", "evaluate"):
                if stage in entry:
                    entry[stage]["clients"] = sorted(
                        nodes.get(str(n), {}).get("name", "?") for n in entry[stage]["nodes"]
                    )
        return history

    def logs(self, owner: str, server_id: str, tail: int = 200) -> list[str]:
        if not 1 <= tail <= 10000:
            raise BadRequest("tail must be between 1 and 10000 lines")
        server = self.get(owner, server_id)
        return tail_lines(self.folder(server.id) / LOG_FILE, tail)

    def start(self, owner: str, request: ServerRequest) -> FederatedServer:
        running = [s for s in self.list(owner) if s.active]
        if len(running) >= self.max_servers:
            raise Forbidden(f"You have {len(running)} federated servers running, the most allowed; stop one first.")
        if not any(t.get("public_key") for t in self._tokens(owner)):  # (tokens made before SuperNode keys: none)
            raise BadRequest("Create a federated token first: sites cannot join a federation without one.")
        app = self._own_app(request.app) if request.app else None
        server_id = secrets.token_hex(4)
        folder = self.folder(server_id)
        folder.mkdir(parents=True, mode=0o700)
        port = free_port(self.bind_ip)
        tls = make_tls(folder / "tls", [self.public_host, self.bind_ip, "localhost"])
        config = {
            **request.model_dump(),
            "owner": owner,
            "host": self.bind_ip,
            "port": port,
            "tokens_file": str(self.tokens_file(owner)),
            "app": app,
            "tls": {name: str(path) for name, path in tls.items()},
        }
        write_private(folder / "server.json", json.dumps(config, indent=1))
        env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with open(folder / LOG_FILE, "ab") as log:
            child = subprocess.Popen(
                [self.python, "-m", "reeflab.training.federated_superlink", str(folder)],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # stopped as a group; survives a restart of the Jupyter server
            )
        server = FederatedServer(
            id=server_id,
            owner=owner,
            title=request.title
            or (f"Flower App {Path(app).name}" if app else f"{request.strategy}, {request.rounds} rounds"),
            config=request,
            address=f"{self.public_host}:{port}",
            root_certificates=tls["ca"].read_text(),
            created=now(),
            runtime={
                "pid": child.pid,
                "started": psutil.Process(child.pid).create_time(),
                "host": self.bind_ip,
                "port": port,
            },
        )
        self._children[server_id] = child
        self._save(server)
        return server

    def _own_app(self, path: str) -> str:
        """The absolute folder of a user's Flower App, checked before anything starts."""
        import tomllib

        folder = Path(self.apps_root, path).expanduser().resolve()
        project = folder / "pyproject.toml"
        try:
            flwr = tomllib.loads(project.read_text()).get("tool", {}).get("flwr", {}).get("app", {})
        except FileNotFoundError:
            raise BadRequest(f"'{path}' is not a Flower App: no pyproject.toml in {folder}") from None
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise BadRequest(f"'{path}': its pyproject.toml cannot be read ({err})") from None
        if not flwr.get("components", {}).get("serverapp") or not flwr.get("components", {}).get("clientapp"):
            raise BadRequest(
                f"'{path}' is not a Flower App: its pyproject.toml needs [tool.flwr.app.components] serverapp and "
                "clientapp (see `flwr new`)"
            )
        return str(folder)

    def wait_listening(self, server: FederatedServer, timeout: float = 120) -> bool:
        """True once the SuperLink listens, the sites' keys are registered and `flwr run` started the run."""
        deadline = time.monotonic() + timeout
        ready = self.folder(server.id) / "run.json"
        while time.monotonic() < deadline and self._refresh(server).active:
            if ready.exists():
                return True
            time.sleep(0.2)
        return ready.exists()

    def stop(self, owner: str, server_id: str) -> FederatedServer:
        server = self.get(owner, server_id)
        if server.active:
            self._kill(server)
            self._finish(server, "stopped", "stopped by its owner")
        return server

    def delete(self, owner: str, server_id: str) -> None:
        server = self.stop(owner, server_id)
        del self._servers[server.id]
        import shutil

        shutil.rmtree(self.folder(server.id), ignore_errors=True)

    def stop_all(self, reason: str = "stopped by the platform") -> list[FederatedServer]:
        """Stop every running server (the platform stopping, tests)."""
        active = [s for s in self._servers.values() if s.active]
        for server in active:
            self._kill(server)
            self._finish(server, "stopped", reason)
        return active

    # -- processes -----------------------------------------------------------------

    def _process(self, server: FederatedServer) -> psutil.Process | None:
        """The server's process while it runs: same pid *and* start time (pids are reused)."""
        child = self._children.get(server.id)
        if child is not None and child.poll() is not None:  # our child exited: reaped by poll()
            return None
        return running(server.runtime)

    def _refresh(self, server: FederatedServer) -> FederatedServer:
        if server.active and self._process(server) is None:
            if self.history(server).get("finished"):
                self._finish(server, "finished", None)
            else:
                lines = "\n".join(tail_lines(self.folder(server.id) / LOG_FILE, 15))
                self._finish(server, "failed", f"the server stopped unexpectedly. Last lines of its log:\n{lines}")
        return server

    def _kill(self, server: FederatedServer) -> None:
        process = self._process(server)
        if process is None:
            return
        group = os.getpgid(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace  # (psutil's wait() of an orphan waits for its reaping)
        while not exited(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):  # nothing of its session may stay behind
            os.killpg(group, signal.SIGKILL)
        child = self._children.pop(server.id, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)

    def _finish(self, server: FederatedServer, state: str, reason: str | None) -> None:
        server.state = state
        server.reason = reason
        server.stopped_at = now()
        self._children.pop(server.id, None)
        self._save(server)

    def _save(self, server: FederatedServer) -> None:
        self._servers[server.id] = server
        write_private(self.folder(server.id) / "record.json", server.model_dump_json(indent=1))
