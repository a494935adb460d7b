"""Serverless throughput and overhead, as ratios measured in one run on this machine.

Starts a real engine with SeaweedFS, puts N images in a bucket and measures, with MODULE:
- raw:    the model's forward pass on pre-decoded, letterboxed batches (the limit), one process using every core
          and one single-threaded process per core; raw and module keep freed memory as the workers do
          (worker.keep_freed_memory), else they would pay page faults the workers no longer pay;
- module: the module's own predict_batch on local files (decode + forward + encode to JSON), one single-threaded
          process per core, chunks of 8 as slices send them: the limit a batch could reach without S3;
- batch:  `reeflab batch` over the bucket (warm workers of cpu 1 each, one per core; slices, S3 in and out);
          targets: >= 0.9 x raw (yolo-detector), >= 0.7 x module (fish-detector);
- naive:  one fresh process per file that loads the model and predicts (OSCAR async's default);
          target: batch >= 4 x naive;
- sync:   POST /run latency minus the module's own predict time, p50 (target <= 10 ms);
- burst:  50 concurrent sync calls on a service with one warm worker (max_scale = cores): p50, p99 and
          p99 / p50 (target <= 2: no call waits for a model load);
- async:  files/s from uploading into a triggered input path to every result in S3, / batch (the bench uploads with
          one put_object a file: boto3's upload_file makes a transfer manager a call, ~1.5 ms more CPU a file here,
          spent on the cores it measures).
- after batch and async: CPU ms an image of each process (S3 server, engine, workers, this bench as the client),
  from their user + system times before and after: what contention with other processes does not distort.
- workers: workers forked from one zygote vs workers that each load the module, each on its own engine: PSS
          of 1 vs 2 warm workers (target: the second adds <= 25 %) and the burst above (shared_model_workers).
- counting: what the engine's request metrics add to a sync call: recording its row (kept in memory,
          written each second in one transaction: its share of that write included) timed in-process, and
          a synced INSERT per call for comparison (what it would cost unbuffered), / a sync call's p50 on a
          script service of a real engine (no model); and the cost of GET .../metrics over those calls. Runs first;
          `--counting-only` runs nothing else (no model needed).

Every figure is printed with the 1-minute load average when it was taken: a throughput measured while other
processes used the cores says little.

    .venv/bin/python bench/serverless.py [--module fish-detector] [-n 240] [--counting-only]
        [--only raw,module,batch,naive,sync,burst,async,workers] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reeflab.oscar_engine.metrics import service_metrics
from reeflab.oscar_engine.store import SYNC, EngineStore
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.oscar_engine.worker import keep_freed_memory
from reeflab.serverless.batch import Batch, Engine
from reeflab.testing.process import wait_until

SAMPLES = Path(__file__).parents[1] / "server_extension/reeflab/modules/fish_detector/samples"
NAIVE = """
import sys
from reeflab.oscar_engine.worker import ModuleRunner
from pathlib import Path
runner = ModuleRunner({"module": sys.argv[1]})
reply = runner.predict_file(Path(sys.argv[2]), Path(sys.argv[2]).name, Path(sys.argv[3]))
assert reply["ok"], reply
"""


def load_module(name: str):
    from importlib.metadata import entry_points

    return next(ep for ep in entry_points(group="deepaas.v2.model") if ep.name == name).load()


def raw_forward(module_name: str, paths: list[str], batch: int = 16, threads: int = 0) -> tuple[int, float]:
    """(images, seconds) of the network's forward pass alone (fused, as predict runs it), on tensors
    decoded and letterboxed beforehand, in batches; `threads`: torch intra-op threads (0: torch's default)."""
    import numpy as np
    import torch
    from PIL import Image
    from ultralytics.data.augment import LetterBox

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()
    module = load_module(module_name)
    network = module.network()
    network.predict(Image.open(paths[0]).convert("RGB"), imgsz=module.imgsz, verbose=False)
    model = network.predictor.model  # the fused network predict itself runs
    letterbox = LetterBox(new_shape=(module.imgsz, module.imgsz), auto=True, stride=32)
    arrays = [letterbox(image=np.asarray(Image.open(p).convert("RGB"))[..., ::-1]) for p in paths]
    tensors = [torch.from_numpy(np.ascontiguousarray(a[..., ::-1].transpose(2, 0, 1))) for a in arrays]
    batches = [torch.stack(tensors[i : i + batch]).float() / 255 for i in range(0, len(tensors), batch)]
    with torch.inference_mode():
        model(batches[0][:2])  # warm
        start = time.perf_counter()
        for x in batches:
            model(x)
        return len(paths), time.perf_counter() - start


def raw_limit(module: str, paths: list[Path], processes: int) -> dict[str, float]:
    """The forward pass's throughput laid out both ways the CPU allows: one process using every core,
    and one single-threaded process per core (as the workers run); the better is the limit."""
    import multiprocessing

    one, seconds = raw_forward(module, [str(p) for p in paths])
    shares = [[str(p) for p in paths[i::processes]] for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.starmap(raw_forward, [(module, share, 16, 1) for share in shares])
    return {"one process": one / seconds, f"{processes} x 1 thread": sum(n / t for n, t in parts)}


def module_forward(module_name: str, paths: list[str], chunk: int = 8) -> tuple[int, float]:
    """(images, seconds) of the module's predict_batch on local files, single-threaded: decode, forward, postprocess
    and the JSON each result is written as."""
    import torch

    torch.set_num_threads(1)
    keep_freed_memory()
    module = load_module(module_name)
    module.predict_batch(paths[:2], ["warm"] * 2)
    start = time.perf_counter()
    for i in range(0, len(paths), chunk):
        group = paths[i : i + chunk]
        for result in module.predict_batch(group, [Path(p).name for p in group]):
            json.dumps(result)
    return len(paths), time.perf_counter() - start


def module_limit(module: str, paths: list[Path], processes: int) -> float:
    """Images/s of decode + forward + encode with one single-threaded process per core (as the workers run)."""
    import multiprocessing

    shares = [[str(p) for p in paths[i::processes]] for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.starmap(module_forward, [(module, share) for share in shares])
    return sum(n / t for n, t in parts)


def load() -> str:
    """The 1-minute load average, as printed next to each figure."""
    return f"[load {os.getloadavg()[0]:.2f}]"


def naive(module: str, paths: list[Path], parallel: int, work: Path) -> float:
    """Files/s when each file gets a fresh process that loads the model (`parallel` at a time)."""
    start, running = time.perf_counter(), []
    for i, path in enumerate(paths):
        out = work / f"naive-{i}"
        command = [sys.executable, "-c", NAIVE, module, str(path), str(out)]
        running.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        while sum(p.poll() is None for p in running) >= parallel:
            time.sleep(0.02)
    for proc in running:
        assert proc.wait() == 0
    return len(paths) / (time.perf_counter() - start)


def cpu_seconds(engine: EngineProcess) -> dict[str, float]:
    """User + system CPU seconds so far of the S3 server, the engine, its workers (every descendant, by pid: a
    worker that ended meanwhile is not counted) and this process."""
    import psutil

    def used(process: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            return times.user + times.system
        return 0.0

    main = psutil.Process(engine.proc.pid)
    found = {"S3 server": used(psutil.Process(engine.seaweed.proc.pid)), "engine": used(main)}
    found |= {f"worker {child.pid}": used(child) for child in main.children(recursive=True)}
    return found | {"client (this bench)": used(psutil.Process())}


def cpu_per_image(before: dict[str, float], after: dict[str, float], images: int) -> str:
    spent = {name: seconds - before.get(name, 0.0) for name, seconds in after.items()}
    shown = {
        "S3 server": spent["S3 server"],
        "engine": spent["engine"],
        "workers": sum(v for name, v in spent.items() if name.startswith("worker ")),
        "client (this bench)": spent["client (this bench)"],
    }
    return "CPU ms an image: " + ", ".join(f"{name} {1000 * v / images:.2f}" for name, v in shown.items())


def between_slices(markers) -> str:
    """What the workers waited between two slices of theirs (each marker: when its slice ran, and on which worker),
    against the time from each worker's first slice to its last: the batch's start and end left out."""
    ran: dict[int, list[tuple[float, float]]] = {}
    for marker in markers:
        if "ran" in marker:
            began, ended, worker = marker["ran"]
            ran.setdefault(worker, []).append((began, ended))
    gaps, spans = [], 0.0
    for slices in ran.values():
        slices.sort()
        gaps += [later[0] - earlier[1] for earlier, later in zip(slices, slices[1:], strict=False)]
        spans += slices[-1][1] - slices[0][0]
    if not gaps:
        return "no worker ran two slices"
    return (
        f"idle between slices: {sum(gaps) / spans:.1%} of their time, "
        f"p50 {1000 * statistics.median(gaps):.0f} ms, max {1000 * max(gaps):.0f} ms a wait"
    )


def outside_passes(markers) -> str:
    """The share of the slices' time spent outside the module's predictions: waiting for the first downloads,
    uploading the last results, writing and removing files."""
    seconds = sum(marker["seconds"] for marker in markers if "predicting" in marker)
    predicting = sum(marker["predicting"] for marker in markers if "predicting" in marker)
    return f"{1 - predicting / seconds:.1%} outside the predictions" if seconds else "no predictions timed"


def wait_warm(engine: EngineProcess, user: str, workers: int) -> None:
    def warm() -> bool:
        pods = engine.request("GET", "/system/status", user).json()["oscar"]["pods"]
        return pods["states"].get("Idle", 0) >= workers

    wait_until(warm, 180, f"{workers} warm workers")


def counting(n: int) -> None:
    """The request metrics' share of a sync call (see the module's doc)."""
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        with EngineProcess(root / "state", users=["alice"]) as engine:
            service = {"name": "echo", "image": "x", "cpu": "0.5", "memory": "256Mi", "script": "echo ok\n"}
            assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
            body, latencies = base64.b64encode(b"ping"), []
            for _ in range(n + 5):
                start = time.perf_counter()
                assert engine.request("POST", "/run/echo", "alice", data=body).ok
                latencies.append(time.perf_counter() - start)
            latencies = latencies[5:]  # the first calls start the worker
        store = EngineStore(root / "bench" / "engine.sqlite")
        store.add_service("echo", "alice", {})
        start = time.perf_counter()
        for _ in range(n):
            store.record_call("echo", SYNC, 200, 0.01)
        store.flush_calls()
        cost = (time.perf_counter() - start) / n
        start = time.perf_counter()
        for _ in range(n):  # unbuffered, for comparison: a synced transaction per call
            store._unflushed.append(("echo", time.time(), SYNC, 200, 0.01, None, "echo"))
            store.flush_calls()
        unbuffered = (time.perf_counter() - start) / n

        class Owner:  # what service_metrics reads of the engine: its store (owned_record goes through it)
            def __init__(self, store):
                self.store = store

            def get_service(self, user, name):
                return {}

        start = time.perf_counter()
        shown = service_metrics(Owner(store), "alice", "echo")
        read = time.perf_counter() - start
        assert shown["total"]["requests"] == 2 * n
    call = statistics.median(latencies)
    print(
        f"counting: a sync call p50 {call * 1000:.1f} ms (script service, {n} calls); recording its row "
        f"{cost * 1000:.4f} ms  -> {cost / call:.2%} of the call (target <= 1 %); a synced insert per call "
        f"would be {unbuffered * 1000:.2f} ms ({unbuffered / call:.1%}); GET .../metrics over {2 * n} calls "
        f"{read * 1000:.1f} ms"
    )


PARTS = ("raw", "module", "batch", "naive", "sync", "burst", "async", "workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="fish-detector")
    parser.add_argument("-n", type=int, default=240)
    parser.add_argument("--naive", type=int, default=12, help="files for the per-file reload baseline")
    parser.add_argument("--sync", type=int, default=100, help="sync calls timed")
    parser.add_argument("--burst", type=int, default=50, help="concurrent sync calls of the burst")
    parser.add_argument("--counting", type=int, default=300, help="sync calls and rows timed for counting's cost")
    parser.add_argument("--counting-only", action="store_true", help="only measure what counting calls adds")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--repeat", type=int, default=1, help="batches run one after another (each ratio printed)")
    args = parser.parse_args()
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    if only - set(PARTS):
        parser.error(f"--only: unknown {', '.join(sorted(only - set(PARTS)))} (parts: {', '.join(PARTS)})")
    if args.counting_only or only == set(PARTS):
        counting(args.counting)
    if args.counting_only:
        return
    cores = os.cpu_count() or 1
    if "workers" in only:
        shared_model_workers(args.module, args.burst, cores)
        if only == {"workers"}:
            return
    samples = sorted(SAMPLES.glob("*.jpg"))
    paths = [samples[i % len(samples)] for i in range(args.n)]
    print(f"{args.module}, {args.n} images, {cores} cores {load()}")

    raw = limit = None
    if "raw" in only:
        layouts = raw_limit(args.module, paths, cores)
        raw = max(layouts.values())
        shown = ", ".join(f"{name} {rate:.1f}" for name, rate in layouts.items())
        print(f"raw forward, pre-decoded batches of 16 ({shown} img/s): limit {raw:.1f} img/s {load()}")
    if "module" in only:
        limit = module_limit(args.module, paths, cores)
        print(
            f"decode + forward + encode (the module's predict_batch on local files, {cores} x 1 thread): "
            f"limit {limit:.1f} img/s {load()}"
        )

    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        args_engine = [f"--ServerlessApp.max_workers={cores}", "--ServerlessApp.reconcile_seconds=3600"]
        with EngineProcess(root / "state", users=["alice"], args=args_engine, s3=True) as engine:
            s3 = engine.s3("alice")
            for i, path in enumerate(paths):
                s3.upload_file(str(path), "alice", f"bench-in/{i:05d}-{path.name}")
            # a whole core each, one worker per core: what the raw and module limits get (the coordinator's
            # 80%-of-free rule would give fewer invocations than workers: the bench asks for one per core)
            service = {
                "name": "bench",
                "image": "x",
                "cpu": "1",
                "memory": "1Gi",
                "environment": {"variables": {"REEFLAB_MODULE": args.module}},
                "output": [{"storage_provider": "minio.default", "path": "alice/bench-out"}],
                "synchronous": {"min_scale": cores, "max_scale": cores},
            }
            assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
            wait_warm(engine, "alice", cores)
            batch_rate = None
            if "batch" in only or "async" in only:
                for run in range(args.repeat if "batch" in only else 1):
                    if limit and run:  # measured again next to each batch: the machine's load changes meanwhile
                        limit = module_limit(args.module, paths, cores)
                        print(f"decode + forward + encode again: limit {limit:.1f} img/s {load()}")
                    login = Engine(engine.url, f"Bearer {engine.tokens['alice']}")
                    batch = Batch(login, "bench", "alice/bench-in", parallel=cores)
                    before, started = cpu_seconds(engine), time.time()
                    result = batch.run(progress=False, poll=0.1)
                    spent = cpu_per_image(before, cpu_seconds(engine), args.n)
                    assert result.processed == args.n and not result.failed, result.failed[:3]
                    batch_rate = result.throughput
                    markers = batch.done_markers().values()
                    inside = sum(marker["seconds"] for marker in markers)
                    busy = f"slices took {inside / (result.seconds * result.parallel):.0%} of the workers' time"
                    busy += f" ({between_slices(markers)}); in slices, {outside_passes(markers)}"
                    ratios = [f"{batch_rate / raw:.2f} x raw forward (target >= 0.9)"] if raw else []
                    ratios += [f"{batch_rate / limit:.2f} x decode + forward + encode (target >= 0.7)"] if limit else []
                    print(
                        f"batch ({result.parallel} parallel, {result.slices} slices, warm workers): "
                        f"{batch_rate:.1f} img/s  -> {'; '.join(ratios) or 'no limit measured'}; {busy} {load()}"
                    )
                    print(f"  {spent}")
                    ran = [marker["ran"] for marker in markers if "ran" in marker]
                    if ran:
                        first = min(r[0] for r in ran) - started
                        last = started + result.seconds - max(r[1] for r in ran)
                        print(
                            f"  its first slice began {1000 * first:.0f} ms after the batch started, its last ended "
                            f"{1000 * last:.0f} ms before the batch did (of {result.seconds:.1f} s)"
                        )

            if "naive" in only:
                naive_rate = naive(args.module, paths[: args.naive], cores, root)
                versus = f"  -> batch is {batch_rate / naive_rate:.1f} x naive (target >= 4)" if batch_rate else ""
                print(f"naive per-file reload ({cores} at a time): {naive_rate:.2f} img/s{versus} {load()}")

            body = base64.b64encode(samples[0].read_bytes())
            if "sync" in only:
                overheads, latencies = [], []
                for _ in range(args.sync):
                    start = time.perf_counter()
                    answer = engine.request("POST", "/run/bench", "alice", data=body)
                    latency = (time.perf_counter() - start) * 1000
                    own = json.loads(base64.b64decode(answer.text))["time_ms"]
                    latencies.append(latency)
                    overheads.append(latency - own)
                print(
                    f"sync call: p50 {statistics.median(latencies):.1f} ms, of which the engine adds "
                    f"p50 {statistics.median(overheads):.1f} ms (target <= 10 ms) over the module's own predict "
                    f"{load()}"
                )

            engine.request("DELETE", "/system/services/bench", "alice")  # its warm workers make room
            if "burst" in only:
                bursty = {**service, "name": "bench-burst", "synchronous": {"min_scale": 1, "max_scale": cores}}
                assert engine.request("POST", "/system/services", "alice", json=bursty).status_code == 201
                wait_warm(engine, "alice", 1)

                def call(_) -> float:
                    start = time.perf_counter()
                    assert engine.request("POST", "/run/bench-burst", "alice", data=body).ok
                    return (time.perf_counter() - start) * 1000

                with ThreadPoolExecutor(args.burst) as pool:
                    burst = sorted(pool.map(call, range(args.burst)))
                p50, p99 = statistics.median(burst), burst[min(len(burst) - 1, round(0.99 * (len(burst) - 1)))]
                print(
                    f"burst of {args.burst} concurrent sync calls, one warm worker (max_scale {cores}): p50 {p50:.0f} "
                    f"ms, p99 {p99:.0f} ms  -> p99 / p50 {p99 / p50:.2f} (target <= 2) {load()}"
                )
                engine.request("DELETE", "/system/services/bench-burst", "alice")

            if "async" in only:
                triggered = {
                    **service,
                    "name": "bench-async",
                    "input": [{"storage_provider": "minio.default", "path": "alice/async-in"}],
                    "output": [{"storage_provider": "minio.default", "path": "alice/async-out"}],
                }
                assert engine.request("POST", "/system/services", "alice", json=triggered).status_code == 201
                wait_warm(engine, "alice", cores)
                bodies = [path.read_bytes() for path in paths]
                before = cpu_seconds(engine)
                start = time.perf_counter()
                for i, (path, body) in enumerate(zip(paths, bodies, strict=True)):
                    s3.put_object(Bucket="alice", Key=f"async-in/{i:05d}-{path.name}", Body=body)

                found: set[int] = set()

                def all_results() -> bool:
                    # listed from the first result still missing on (results keep their input's number in front):
                    # listing every result 5 times a second cost the S3 server and this client more than the jobs
                    first = min(set(range(args.n)) - found, default=args.n)
                    pages = s3.get_paginator("list_objects_v2").paginate(
                        Bucket="alice", Prefix="async-out/", StartAfter=f"async-out/{first:05d}"
                    )
                    for item in (item for page in pages for item in page.get("Contents", [])):
                        if not item["Key"].endswith("/"):  # not the folder
                            found.add(int(item["Key"].removeprefix("async-out/").partition("-")[0]))
                    return len(found) >= args.n

                wait_until(all_results, 900, "every async result", interval=0.2)
                async_rate = args.n / (time.perf_counter() - start)
                spent = cpu_per_image(before, cpu_seconds(engine), args.n)
                jobs = engine.request("GET", "/system/logs/bench-async", "alice").json()["jobs"]
                succeeded = sum(job["status"] == "Succeeded" for job in jobs.values())
                print(
                    f"async upload-to-result: {async_rate:.1f} img/s  -> {async_rate / batch_rate:.2f} x batch "
                    f"(target >= 0.85); {len(jobs)} jobs for {args.n} uploads, {succeeded} succeeded {load()}"
                )
                print(f"  {spent}")


def shared_model_workers(module: str, burst: int, cores: int) -> None:
    """Workers forked from one zygote that loaded the module (oscar_engine/zygote.py) against workers that each
    load it (--ServerlessApp.fork_workers=False), on a real engine each: the PSS of everything under the engine
    (psutil; the zygote counts) with 1, then 2 warm workers (target: the second adds <= 25 % of the first's), and a
    burst of concurrent sync calls on a service with one warm worker (max_scale = cores): p50, p99 (target p99 <=
    2 x p50: no call waits for a model load). Each figure with the load average."""
    import psutil

    body = base64.b64encode(sorted(SAMPLES.glob("*.jpg"))[0].read_bytes())

    def pss(engine: EngineProcess) -> int:
        total = 0
        for process in psutil.Process(engine.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += process.memory_full_info().pss
        return total

    for fork in (True, False):
        how = "forked from one zygote" if fork else "each loading the module"
        with tempfile.TemporaryDirectory() as root:
            options = [f"--ServerlessApp.max_workers={cores}", f"--ServerlessApp.fork_workers={fork}"]
            with EngineProcess(Path(root) / "state", users=["alice"], args=options) as engine:
                service = {
                    "name": "shared",
                    "image": "x",
                    "cpu": "1",
                    "memory": "2Gi",
                    "environment": {"variables": {"REEFLAB_MODULE": module}},
                    "synchronous": {"min_scale": 1, "max_scale": cores},
                }
                assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201
                wait_warm(engine, "alice", 1)
                assert engine.request("POST", "/run/shared", "alice", data=body).ok  # the worker warm as in use
                time.sleep(1)
                one = pss(engine)

                def call(_) -> float:
                    start = time.perf_counter()
                    assert engine.request("POST", "/run/shared", "alice", data=body, timeout=600).ok
                    return (time.perf_counter() - start) * 1000

                with ThreadPoolExecutor(burst) as pool:
                    times = sorted(pool.map(call, range(burst)))
                p50, p99 = statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
                print(
                    f"workers {how}: burst of {burst} concurrent sync calls, one warm worker (max_scale {cores}): "
                    f"p50 {p50:.0f} ms, p99 {p99:.0f} ms  -> p99 / p50 {p99 / p50:.2f} (target <= 2) {load()}"
                )
                wait_warm(engine, "alice", min(2, cores))
                time.sleep(1)
                two = pss(engine)
                print(
                    f"workers {how}: PSS with 1 warm worker {one / 2**20:.0f} MiB, with 2 {two / 2**20:.0f} MiB  -> "
                    f"the second adds {(two - one) / one:.0%} of the first (target <= 25 %) {load()}"
                )


if __name__ == "__main__":
    main()
