"""One federation on Flower's current architecture: `python -m reeflab.training.federated_superlink <folder>`.

Reads `<folder>/server.json` and, in its own process session (stopped as a group):
1. starts `flower-superlink` (TLS with the federation's CA, SuperNode authentication on, state in
   `<folder>/state.db`, Fleet, Control and ServerAppIo/Runtime APIs on one free 127.0.0.1 port in
   flwr 1.41, runtime dependency installation off);
2. registers the SuperNode key of every token of the owner with `flwr supernode register`
   (`<folder>/nodes.json` maps Flower's node ids to token names), and keeps doing so while it runs:
   a new token is registered, a revoked one unregistered, so its SuperNode is refused from then on;
3. runs the built-in Flower App (`flower_app/`) with `flwr run`, the federation's settings as its
   run config; the ServerApp writes `<folder>/history.json` after every round;
4. ends when the run ends: exit 0 once the history says finished, 1 if the run failed.
The Flower CLI talks to the SuperLink through `$FLWR_HOME=<folder>/flwr` (a connection named `fed`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

APP = Path(__file__).parent / "flower_app"
CONNECTION = "fed"
log = logging.getLogger("reeflab.federated")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Federation:
    def __init__(self, folder: Path):
        self.folder = folder
        self.config: dict[str, Any] = json.loads((folder / "server.json").read_text())
        self.home = folder / "flwr"
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # Flower's own commands
        }
        self.nodes_file = folder / "nodes.json"
        self.nodes: dict[str, dict[str, str]] = {}  # node id -> {token_id, name}
        self.tokens_stamp: tuple[int, int] | None = None
        self.superlink: subprocess.Popen | None = None

    # -- the SuperLink ---------------------------------------------------------------

    def start_superlink(self) -> None:
        c, tls = self.config, self.config["tls"]
        self.home.mkdir(mode=0o700, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{c["host"]}:{c["port"]}"\nroot-certificates = "{tls["ca"]}"\n'
        )
        command = [
            sys.executable,
            "-m",
            "reeflab.training.superlink_guard",  # flower-superlink, its Control and runtime APIs for the owner only
            *("--ssl-certfile", tls["cert"], "--ssl-keyfile", tls["key"], "--ssl-ca-certfile", tls["ca"]),
            *("--database", str(self.folder / "state.db"), "--host", c["host"], "--port", str(c["port"])),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",  # never let flwr install an app's dependencies
        ]
        self.superlink = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.superlink.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection((c["host"], c["port"]), timeout=1):
                log.info("SuperLink for %s listening on %s:%s", c["owner"], c["host"], c["port"])
                return
            time.sleep(0.2)
        raise RuntimeError("the SuperLink did not start listening")

    def flwr(self, *args: str) -> dict[str, Any]:
        """A Flower CLI command against this federation's SuperLink, its JSON answer."""
        done = subprocess.run(
            [_bin("flwr"), *args, "--format", "json"],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        try:
            answer = json.loads(done.stdout[done.stdout.find("{") :])
        except json.JSONDecodeError:
            answer = {"success": False, "error-message": (done.stdout + done.stderr)[-2000:]}
        if not answer.get("success"):
            raise RuntimeError(f"flwr {args[0]} {args[1] if len(args) > 1 else ''}: {answer}")
        return answer

    # -- site keys ---------------------------------------------------------------------

    def sync_nodes(self) -> None:
        """Registered SuperNode keys = the owner's tokens now (new ones registered, revoked ones unregistered)."""
        path = Path(self.config["tokens_file"])
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            tokens = json.loads(path.read_text() or "[]")
        except FileNotFoundError:
            stamp, tokens = None, []
        if stamp == self.tokens_stamp:
            return
        self.tokens_stamp = stamp
        wanted = {t["id"]: t for t in tokens if t.get("public_key")}
        for node_id, node in list(self.nodes.items()):
            if node["token_id"] not in wanted:
                self.flwr("supernode", "unregister", node_id, CONNECTION)
                del self.nodes[node_id]
                log.info("token '%s' revoked: SuperNode %s unregistered", node["name"], node_id)
        registered = {node["token_id"] for node in self.nodes.values()}
        for token_id, token in wanted.items():
            if token_id in registered:
                continue
            key_file = self.folder / "keys" / f"{token_id}.pub"
            key_file.parent.mkdir(mode=0o700, exist_ok=True)
            key_file.write_text(token["public_key"] + "\n")
            answer = self.flwr("supernode", "register", str(key_file), CONNECTION, "--name", token_id)
            self.nodes[str(answer["node-id"])] = {"token_id": token_id, "name": token["name"]}
            log.info("token '%s': SuperNode %s registered", token["name"], answer["node-id"])
        tmp = self.nodes_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.nodes, indent=1))
        tmp.replace(self.nodes_file)

    # -- the run -------------------------------------------------------------------------

    def run_app(self) -> str:
        c = self.config
        if c.get("app"):  # the user's own Flower App, with their own run config
            return self._run(c["app"], c.get("run_config") or {}, f"the Flower App in {c['app']}")
        settings = {
            "strategy": c["strategy"],
            "num-server-rounds": c["rounds"],
            "min-clients": c["min_clients"],
            "local-epochs": c["local_epochs"],
            "proximal-mu": float(c["proximal_mu"]),
            "server-learning-rate": float(c["server_learning_rate"]),
            "round-timeout": float(c["round_timeout"]),
            "history-file": str(self.folder / "history.json"),
        }
        return self._run(str(APP), settings, f"the built-in Flower App ({c['strategy']}, {c['rounds']} rounds)")

    def _run(self, app: str, settings: dict[str, Any], what: str) -> str:
        command = ["run", app, CONNECTION]
        if settings:
            overrides = self.folder / "run_config.toml"
            overrides.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()))
            command += ["--run-config", str(overrides)]
        run_id = str(self.flwr(*command)["run-id"])
        log.info("flwr run: run %s of %s", run_id, what)
        (self.folder / "run.json").write_text(json.dumps({"run_id": run_id}))
        return run_id

    def finished(self) -> bool:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return bool(json.loads((self.folder / "history.json").read_text()).get("finished"))
        return False

    def watch(self, run_id: str) -> int:
        checked = time.monotonic()
        while True:
            if self.finished():
                log.info("finished %s rounds", self.config["rounds"])
                return 0
            if self.superlink.poll() is not None:
                log.error("the SuperLink exited with %s", self.superlink.returncode)
                return 1
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.sync_nodes()
            if time.monotonic() - checked > 15:
                checked = time.monotonic()
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    [run] = self.flwr("list", CONNECTION, "--run-id", run_id)["runs"]
                    if run["status"] == "finished:completed" and self.config.get("app"):
                        self.record_end(run)  # a user's own app keeps no history of ours: Flower's own status
                        continue
                    if run["status"].startswith("finished") and not self.finished():
                        time.sleep(1)  # the history's last write may just be landing
                        if not self.finished():
                            log.error("the Flower run ended as %s: %s", run["status"], run.get("status-details"))
                            return 1
            time.sleep(1)

    def record_end(self, run: dict[str, Any]) -> None:
        history = {"rounds": [], "finished": True, "flower": {k: run.get(k) for k in ("status", "compute-time")}}
        (self.folder / "history.json").write_text(json.dumps(history, indent=1))

    def stop(self) -> None:
        if self.superlink is not None and self.superlink.poll() is None:
            self.superlink.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.superlink.wait(5)


def serve(folder: Path) -> int:
    federation = Federation(folder)

    def on_term(signum, frame):
        federation.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        federation.start_superlink()
        federation.sync_nodes()
        return federation.watch(federation.run_app())
    finally:
        federation.stop()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.umask(0o077)
    return serve(Path(sys.argv[1]))


if __name__ == "__main__":
    sys.exit(main())
