"""Monitoring of deployments: the latency it adds to a predict, the cost of drift detection, its false alarms.

1. Added latency. Starts two real Jupyter servers with ReefLab (token auth), one with monitoring off
   (--MonitoringService.enabled=False), one with it on; each deploys MODULE. Then N predicts of generated
   underwater scenes are sent through each route, alternating: off, on (request metrics), on with drift
   detection (features of every input, an evaluation every window). Prints p50/p99 of each and what monitoring
   adds (target: p50 <= 2 ms or <= 5 %, whichever is larger).
   Two servers differ by a few ms between themselves, so the route's own work per request is also timed
   in-process: parsing the upload and inserting its row.
2. Cost of drift work, in this process: image features per input, one evaluation (reference 200, window 50,
   500 permutations).
3. False alarms: a pool of in-distribution scenes' features (generated from other random streams than the
   reference); WINDOWS windows of 50 drawn from it at random, each tested at alpha 0.01: the share that alarms
   (expected about alpha). And the share of shifted windows (colour cast, blur) that alarm (power).
4. The usage service's sample (reeflab.usage): one pass over this machine's processes (CPU times, memory, whose
   each is), timed; its share of the 60 s between samples.

    .venv/bin/python bench/monitoring.py [--module fish-detector] [-n 200] [--windows 1000] [--pool 1000]
    .venv/bin/python bench/monitoring.py --usage-only
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image, ImageFilter
from reeflab.files import free_port
from reeflab.modules.fish_detector.synth import SAMPLE_SIZE, _rng, render_scene
from reeflab.monitoring.drift import DriftDetector
from reeflab.monitoring.features import image_features
from reeflab.testing.process import wait_until

WINDOW, REFERENCE, ALPHA = 50, 200, 0.01


def scene_jpeg(index: int, split: str = "check", seed: int = 11, shift: str = "") -> bytes:
    image = render_scene(_rng(seed, split, index), *SAMPLE_SIZE).image
    if shift == "cast":
        pixels = np.asarray(image).astype(float)
        pixels[..., 0] = pixels[..., 0] * 1.3 + 20
        pixels[..., 2] *= 0.85
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    elif shift == "blur":
        image = image.filter(ImageFilter.GaussianBlur(2))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _features(args: tuple[int, str, int, str]) -> np.ndarray:
    return image_features(scene_jpeg(*args))


def features(indices, split: str, seed: int, shift: str = "") -> np.ndarray:
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        return np.array(list(pool.map(_features, [(i, split, seed, shift) for i in indices], chunksize=16)))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


class Server:
    """A real Jupyter server with ReefLab, and one deployment of `module` on it."""

    def __init__(self, root: str, module: str, monitoring: bool):
        token, port = secrets.token_hex(16), free_port()
        command = [
            str(Path(sys.executable).parent / "jupyter"), "server", f"--port={port}", "--ip=127.0.0.1",
            "--no-browser", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--DeploymentService.root_dir={root}/deployments", f"--MonitoringService.enabled={monitoring}",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}/"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"
        wait_until(lambda: _ok(self.session, self.base + "api/status"), 120, "the Jupyter server")
        created = self.session.post(self.base + "reeflab/api/deployments", json={"module": module}).json()
        self.api = self.base + f"reeflab/api/deployments/{created['id']}"
        wait_until(lambda: self.session.get(self.api).json()["state"] in ("ready", "failed"), 600, "deployment", 0.2)
        info = self.session.get(self.api).json()
        assert info["state"] == "ready", info
        self.predict_url = self.base + f"reeflab/deployments/{created['id']}/v2/models/{info['entry_point']}/predict/"

    def predict(self, data: bytes) -> float:
        t0 = time.perf_counter()
        response = self.session.post(self.predict_url, files={"files": ("scene.jpg", data, "image/jpeg")})
        elapsed = (time.perf_counter() - t0) * 1000
        assert response.ok, response.text[:300]
        return elapsed

    def upload_reference(self, images: list[bytes]) -> None:
        folder = self.base + "api/contents/reference"
        self.session.put(folder, json={"type": "directory"}).raise_for_status()
        for i, data in enumerate(images):
            body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
            self.session.put(f"{folder}/{i:03d}.jpg", json=body).raise_for_status()

    def drift(self, enabled: bool) -> None:
        body = {"enabled": enabled, "reference": "reference" if enabled else None, "window": WINDOW, "alpha": ALPHA}
        self.session.put(self.api + "/drift", json=body).raise_for_status()

    def close(self) -> None:
        try:
            self.session.delete(self.api)
        finally:
            self.process.terminate()
            self.process.wait(30)


def latency(module: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as off_root, tempfile.TemporaryDirectory() as on_root:
        off = on = None
        try:
            off, on = Server(off_root, module, False), Server(on_root, module, True)
            on.upload_reference([scene_jpeg(i, "val", 7) for i in range(REFERENCE)])
            images = [scene_jpeg(i) for i in range(n)]
            for data in images[:10]:  # warm both
                off.predict(data), on.predict(data)
            times: dict[str, dict[str, list[float]]] = {}
            for arm in ("metrics", "metrics + drift"):
                if arm == "metrics + drift":
                    on.drift(True)
                times[arm] = {"off": [], "on": []}
                for i, data in enumerate(images):  # which goes first swaps each time: no order bias
                    pair = [("off", off), ("on", on)]
                    for name, server in pair if i % 2 else reversed(pair):
                        times[arm][name].append(server.predict(data))
            wait_until(lambda: not on.session.get(on.api + "/drift").json()["pending"], 120, "the last evaluation")
            evaluations = len(on.session.get(on.api + "/drift").json()["evaluations"])
        finally:
            for server in (off, on):
                if server is not None:
                    server.close()
    print(f"predict of a {SAMPLE_SIZE[0]}x{SAMPLE_SIZE[1]} JPEG through the route ({module}), {n} each, alternating")
    print("with a server whose monitoring is off (two servers, two deployments: they differ by themselves too):")
    for arm, series in times.items():
        base50, base99 = statistics.median(series["off"]), percentile(series["off"], 99)
        p50, p99 = statistics.median(series["on"]), percentile(series["on"], 99)
        print(f"  {arm}: p50 {p50:.2f} ms p99 {p99:.2f} ms | off: p50 {base50:.2f} ms p99 {base99:.2f} ms", end="")
        print(f" | added p50 {p50 - base50:+.2f} ms (ratio {p50 / base50:.3f}),", end="")
        print(f" p99 {p99 - base99:+.2f} ms (ratio {p99 / base99:.3f})")
    print(f"  drift evaluations during the drift run: {evaluations} (one every {WINDOW} inputs)")
    print("  target: added p50 <= max(2 ms, 5 % of off); the route's own work per request is timed below")


def route_costs() -> None:
    """What the route does per predict, in this process: parse the upload's parts, insert the request's row."""
    from reeflab.monitoring.store import MetricsStore
    from tornado import httputil

    data = scene_jpeg(0)
    boundary = "reeflabbench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="scene.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        httputil.parse_body_arguments(f"multipart/form-data; boundary={boundary}", body, {}, {})
    parse_us = (time.perf_counter() - t0) / n * 1e6
    with tempfile.TemporaryDirectory() as folder:
        store = MetricsStore(folder)
        t0 = time.perf_counter()
        for _ in range(n):
            store.record(200, 0.03, 1)
        record_us = (time.perf_counter() - t0) / n * 1e6
        store.close()
    print(f"\nper predict at the route, in-process: parse the {len(data) // 1000} kB upload {parse_us:.0f} us,", end="")
    print(f" record its row (SQLite WAL) {record_us:.0f} us: {(parse_us + record_us) / 1000:.3f} ms in all")


def drift_costs(pool_size: int, windows: int) -> None:
    t0 = time.perf_counter()
    reference = features(range(REFERENCE), "val", 7)
    data = scene_jpeg(0)
    t1 = time.perf_counter()
    for _ in range(50):
        image_features(data)
    per_image = (time.perf_counter() - t1) / 50 * 1000
    detector = DriftDetector(reference, permutations=500)
    pool = features(range(pool_size), "check", 21)
    shifted = {shift: features(range(200), "check", 31, shift) for shift in ("cast", "blur")}
    print(f"\ngenerated {REFERENCE + pool_size + 400} scenes' features in {time.perf_counter() - t0:.0f} s")
    rng = np.random.default_rng(0)
    t1 = time.perf_counter()
    p_values = [detector.evaluate(pool[rng.choice(pool_size, WINDOW, replace=False)]).p_value for _ in range(windows)]
    per_window = (time.perf_counter() - t1) / windows * 1000
    print(f"features of one {SAMPLE_SIZE[0]}x{SAMPLE_SIZE[1]} JPEG: {per_image:.2f} ms")
    print(f"one drift evaluation (reference {REFERENCE}, window {WINDOW}, 500 permutations): {per_window:.1f} ms")
    print(f"  = {per_window / WINDOW:.3f} ms per input at one evaluation every {WINDOW} inputs")
    rate = float(np.mean(np.asarray(p_values) < ALPHA))
    print(f"false alarms: {rate:.4f} of {windows} in-distribution windows of {WINDOW}", end="")
    print(f" (drawn from {pool_size} scenes) at alpha {ALPHA} (ratio to alpha {rate / ALPHA:.2f})")
    for shift, feats in shifted.items():
        draws = (feats[rng.choice(len(feats), WINDOW, replace=False)] for _ in range(100))
        hits = [detector.evaluate(window).p_value < ALPHA for window in draws]
        print(f"detected: {np.mean(hits):.2f} of 100 windows of {WINDOW} '{shift}' scenes")


def usage_sample_cost(rounds: int = 20) -> None:
    import psutil
    from reeflab.usage.sampler import Sampler

    sampler = Sampler(homes=None, engine_db=None)
    processes = len(psutil.pids())
    sampler.sample(["bench-user"])  # the baseline
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        sampler.sample(["bench-user", "bench-other"])
        times.append(time.perf_counter() - start)
    p50 = statistics.median(times)
    print(
        f"usage sample over {processes} processes: p50 {p50 * 1000:.1f} ms, max {max(times) * 1000:.1f} ms; "
        f"{p50 / 60 * 100:.3f} % of the 60 s interval"
    )


def _ok(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="fish-detector")
    parser.add_argument("-n", type=int, default=200, help="predicts per arm")
    parser.add_argument("--windows", type=int, default=1000, help="in-distribution windows for the false-alarm rate")
    parser.add_argument("--pool", type=int, default=1000, help="in-distribution scenes the windows are drawn from")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--usage-only", action="store_true", help="only the usage service's sample (4.)")
    args = parser.parse_args()
    if args.usage_only:
        usage_sample_cost()
        return
    if not args.skip_latency:
        latency(args.module, args.n)
    route_costs()
    drift_costs(args.pool, args.windows)
    usage_sample_cost()


if __name__ == "__main__":
    main()
