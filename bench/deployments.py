"""Deploy-to-ready time, and the latency the authenticated route adds over calling DEEPaaS directly.

Starts a real Jupyter server with ReefLab (token auth), deploys MODULE through the REST API,
then times N requests of each kind, alternating: straight to DEEPaaS on its Unix socket, and
through /reeflab/deployments/<id>/ (jupyter-server auth + jupyter-server-proxy). Prints
medians/p95 and the added latency (target: p50 <= 5 ms added).

    .venv/bin/python bench/deployments.py [--module fish-detector] [-n 200]
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import requests.adapters
import urllib3
from PIL import Image
from reeflab.files import free_port
from reeflab.testing.process import wait_until


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="yolo-detector")
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    token, port = secrets.token_hex(16), free_port()
    with tempfile.TemporaryDirectory() as root:
        command = [
            str(Path(sys.executable).parent / "jupyter"), "server", f"--port={port}", "--ip=127.0.0.1",
            "--no-browser", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--DeploymentService.root_dir={root}/deployments", *(["--allow-root"] if os.geteuid() == 0 else []),
        ]  # fmt: skip
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}/"
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        try:
            wait_until(lambda: _ok(session, base + "api/status"), 120, "the Jupyter server")
            start = time.perf_counter()
            created = session.post(base + "reeflab/api/deployments", json={"module": args.module}).json()
            api = base + f"reeflab/api/deployments/{created['id']}"
            wait_until(lambda: session.get(api).json()["state"] in ("ready", "failed"), 600, "the deployment", 0.1)
            deploy_s = time.perf_counter() - start
            info = session.get(api).json()
            assert info["state"] == "ready", info
            session.mount(DIRECT, UnixSocketAdapter(_runtime_socket(root, created["id"])))
            direct = DIRECT + "v2/models/"
            proxied = base + f"reeflab/deployments/{created['id']}/v2/models/"
            times = {"direct": [], "proxied": []}
            for _ in range(args.n):
                for name, url in (("direct", direct), ("proxied", proxied)):
                    t0 = time.perf_counter()
                    assert session.get(url).ok
                    times[name].append((time.perf_counter() - t0) * 1000)
            predict = _predict_times(session, direct, proxied, info["entry_point"], max(20, args.n // 10))
            session.delete(api)
        finally:
            server.terminate()
            server.wait(30)
    print(f"deploy-to-ready of {args.module} (local backend, CPU): {deploy_s:.1f} s")
    for label, series in (("GET /v2/models/", times), ("predict 64x48 JPEG", predict)):
        d50, p50 = statistics.median(series["direct"]), statistics.median(series["proxied"])
        d95, p95 = percentile(series["direct"], 0.95), percentile(series["proxied"], 0.95)
        print(f"{label}: direct p50 {d50:.2f} ms p95 {d95:.2f} ms", end=" | ")
        print(f"through the route p50 {p50:.2f} ms p95 {p95:.2f} ms")
        print(f"  added by the route: p50 {p50 - d50:+.2f} ms (target <= 5 ms), ratio p50 {p50 / d50:.2f}")


def _ok(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False


def _runtime_socket(root: str, deployment_id: str) -> str:
    import json

    return json.loads(Path(root, "deployments", deployment_id, "deployment.json").read_text())["runtime"]["socket"]


DIRECT = "http://deployment.socket/"  # requests to this host go to the deployment's Unix socket


class _UnixConnection(urllib3.connection.HTTPConnection):
    def __init__(self, path: str, *args, **kwargs):
        super().__init__("localhost", *args, **kwargs)
        self.path = path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        return sock


class _UnixPool(urllib3.HTTPConnectionPool):
    def __init__(self, path: str):
        super().__init__("localhost")
        self.path = path

    def _new_conn(self) -> _UnixConnection:
        return _UnixConnection(self.path)


class UnixSocketAdapter(requests.adapters.HTTPAdapter):
    """requests over a Unix socket (keep-alive, like the route's own connection to it)."""

    def __init__(self, path: str):
        super().__init__()
        self.pool = _UnixPool(path)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self.pool


def _predict_times(session, direct: str, proxied: str, entry_point: str, n: int) -> dict[str, list[float]]:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 80, 140)).save(buffer, format="JPEG")
    times = {"direct": [], "proxied": []}
    for _ in range(n):
        for name, url in (("direct", direct), ("proxied", proxied)):
            t0 = time.perf_counter()
            files = {"files": ("a.jpg", buffer.getvalue(), "image/jpeg")}
            r = session.post(f"{url}{entry_point}/predict/", files=files)
            assert r.ok, r.text
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


if __name__ == "__main__":
    main()
