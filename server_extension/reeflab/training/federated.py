"""FederatedService: a user's Flower servers (start, stop, status, logs, history) and their client tokens.

On one machine each server is a `python -m reeflab.training.federated_server` process in its own
session, bound to `bind_ip` (127.0.0.1) on a free port. At scale the same process runs in a pod bound
to 0.0.0.0 behind a Kubernetes Service / TLS-passthrough ingress; `public_host` is then the name
remote sites connect to. Tokens are per user: stored as SHA-256 hashes in a 0600 file that the server
processes re-read, so a revoked token is refused from its next connection on.
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
from .federated_auth import PREFIX, token_hash
from .federated_models import FederatedServer, ServerRequest

LOG_FILE = "server.log"


def now() -> datetime:
    return datetime.now(UTC)


class FederatedService(LoggingConfigurable):
    """Per-user Flower servers and bearer tokens; no HTTP here (handlers, client and CLI share it)."""

    root_dir = Unicode(config=True, help="Where federated servers keep their config, logs, history and tokens")

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / "federated")

    bind_ip = Unicode("127.0.0.1", config=True, help="Address Flower servers listen on (0.0.0.0 in a pod)")
    public_host = Unicode(
        config=True,
        help="Host name remote clients use to reach the servers (default: bind_ip); at scale the "
        "DNS name of the Service/ingress in front of them",
    )

    @default("public_host")
    def _default_public_host(self) -> str:
        return self.bind_ip

    python = Unicode(sys.executable, config=True, help="Python that runs the Flower server processes")
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
        entry = {"id": secrets.token_hex(4), "name": name, "created": now().isoformat(), "hash": token_hash(value)}
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
        path = self.folder(server.id) / "history.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"rounds": [], "finished": False}

    def logs(self, owner: str, server_id: str, tail: int = 200) -> list[str]:
        if not 1 <= tail <= 10000:
            raise BadRequest("tail must be between 1 and 10000 lines")
        server = self.get(owner, server_id)
        return tail_lines(self.folder(server.id) / LOG_FILE, tail)

    def start(self, owner: str, request: ServerRequest) -> FederatedServer:
        running = [s for s in self.list(owner) if s.active]
        if len(running) >= self.max_servers:
            raise Forbidden(f"You have {len(running)} federated servers running, the most allowed; stop one first.")
        if not self._tokens(owner):
            raise BadRequest("Create a federated token first: clients cannot connect to a server without one.")
        server_id = secrets.token_hex(4)
        folder = self.folder(server_id)
        folder.mkdir(parents=True, mode=0o700)
        port = free_port(self.bind_ip)
        config = {
            **request.model_dump(),
            "owner": owner,
            "host": self.bind_ip,
            "port": port,
            "tokens_file": str(self.tokens_file(owner)),
            "max_workers": max(16, 4 * request.min_clients),
        }
        write_private(folder / "server.json", json.dumps(config, indent=1))
        env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with open(folder / LOG_FILE, "ab") as log:
            child = subprocess.Popen(
                [self.python, "-m", "reeflab.training.federated_server", str(folder)],
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
            title=request.title or f"{request.strategy}, {request.rounds} rounds",
            config=request,
            address=f"{self.public_host}:{port}",
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

    def wait_listening(self, server: FederatedServer, timeout: float = 30) -> bool:
        """True once the server accepts connections (clients started right after may otherwise wait)."""
        import socket

        deadline = time.monotonic() + timeout
        address = (server.runtime["host"], server.runtime["port"])
        while time.monotonic() < deadline and self._refresh(server).active:
            with contextlib.suppress(OSError), socket.create_connection(address, timeout=1):
                return True
            time.sleep(0.2)
        return False

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
