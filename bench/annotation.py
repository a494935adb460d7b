"""Pre-annotation throughput / the same module's serverless batch throughput, on the same images, in one run.

Starts a real serverless engine with SeaweedFS and puts N images in a bucket, then measures, with MODULE:
- batch:          `reeflab batch` over the bucket (warm workers, slices, S3 in and out), as bench/serverless.py;
- pre-annotation: ReefLab's annotation service (in this process, with a real Label Studio of its own, talking to
                  the same engine as the user alice) over a project on a storage connection to the same folder:
                  from the POST to the end of the background run (the user's service for the module on the
                  engine, each image read from the bucket and sent to a warm worker, its predictions stored in
                  Label Studio about once a second). A first project's run, which starts the service's workers
                  (cold: they load the model), and a first batch are not counted; then, `--rounds` times, a batch
                  and a new project's pre-annotation in turns, both on warm workers (so a machine shared with
                  others' work loads both sides alike): the ratio of their totals; target >= 0.8.
- to the first epoch: on a real hub, a user's project over generated scenes, pre-annotated and accepted in
                  Label Studio; seconds from "Train on this project" (its POST: export, pipeline start) until the
                  train node's log says Ultralytics starts its first epoch (polled every 0.5 s; `--scenes`).
Prints the machine's load average before and after (others' work on a shared machine skews both figures alike),
and each side's CPU milliseconds an image by process (user + system, read from /proc before and after each run:
what other work on the machine does not change): this process (the user's server side), Label Studio, the
engine, its workers, SeaweedFS.

    .venv/bin/python bench/annotation.py [--module fish-detector] [-n 240] [--scenes 12] [--only ratio|train]
                                         [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from reeflab.annotation.models import PreannotateRequest, ProjectRequest
from reeflab.annotation.service import AnnotationService
from reeflab.catalog.service import CatalogService
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.serverless.batch import Batch, Engine
from reeflab.serverless.gateway import ServerlessGateway
from reeflab.storage.service import StorageService
from reeflab.testing.process import wait_until

SAMPLES = Path(__file__).parents[1] / "server_extension/reeflab/modules/fish_detector/samples"


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


class CPU:
    """CPU seconds (user + system) of the processes a run uses, summed over runs of each side."""

    def __init__(self, engine: EngineProcess, annotation: AnnotationService):
        self.engine, self.annotation = engine, annotation
        self.totals: dict[str, dict[str, float]] = {}

    def now(self) -> dict[str, float]:
        import psutil

        def own(process: psutil.Process) -> float:
            try:
                times = process.cpu_times()
                return times.user + times.system
            except psutil.Error:
                return 0.0

        def tree(pid: int | None) -> list[psutil.Process]:
            try:
                return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)] if pid else []
            except psutil.Error:
                return []

        engine = self.engine.proc.pid
        studio = self.annotation.server._process
        return {
            "server": own(psutil.Process()),
            "Label Studio": sum(own(p) for p in tree(studio.pid if studio else None)),
            "engine": own(psutil.Process(engine)),
            "workers": sum(own(p) for p in tree(engine)[1:]),
            "SeaweedFS": sum(own(p) for p in tree(self.engine.seaweed.proc.pid)),
        }

    def add(self, side: str, before: dict[str, float]) -> None:
        after = self.now()
        totals = self.totals.setdefault(side, dict.fromkeys(after, 0.0))
        for name, value in after.items():
            totals[name] += value - before[name]

    def show(self, images: int) -> None:
        for side, totals in self.totals.items():
            shown = ", ".join(f"{name} {1000 * value / images:.1f}" for name, value in totals.items())
            print(f"CPU ms an image, {side}: {shown}; all {1000 * sum(totals.values()) / images:.1f}")


def batch_service(engine: EngineProcess, module: str, cores: int) -> None:
    """The module as alice's serverless service `bench` with `cores` warm workers."""
    service = {
        "name": "bench",
        "image": "x",
        "cpu": "0.8",
        "memory": "1Gi",
        "environment": {"variables": {"REEFLAB_MODULE": module}},
        "output": [{"storage_provider": "minio.default", "path": "alice/bench-out"}],
        "synchronous": {"min_scale": cores, "max_scale": cores},
    }
    assert engine.request("POST", "/system/services", "alice", json=service).status_code == 201

    def warm() -> bool:
        pods = engine.request("GET", "/system/status", "alice").json()["oscar"]["pods"]
        return pods["states"].get("Idle", 0) >= cores

    wait_until(warm, 180, f"{cores} warm workers")


def batch_seconds(engine: EngineProcess, n: int) -> float:
    """A new batch over the bucket's folder (`reeflab batch bench alice/bench-in`): its seconds."""
    batch = Batch(Engine(engine.url, f"Bearer {engine.tokens['alice']}"), "bench", "alice/bench-in")
    result = batch.run(progress=False, poll=0.1)
    assert result.processed == n and not result.failed, result.failed[:3]
    print(f"  batch ({result.parallel} parallel, {result.slices} slices): {result.throughput:.1f} img/s")
    return result.seconds


async def ratio(root: Path, engine: EngineProcess, module: str, n: int, cores: int, rounds: int) -> float:
    """Batch and pre-annotation in turns, `rounds` times each, both on warm workers: the ratio of their totals."""
    provider = engine.request("GET", "/system/config", "alice").json()["minio_provider"]
    workspace = root / "workspace"
    workspace.mkdir()
    storage = StorageService(root_dir=str(root / "storage"), workspace=str(workspace))
    connection = {
        "name": "bench",
        "kind": "s3",
        "endpoint": provider["endpoint"],
        "bucket": "alice",
        "access_key": provider["access_key"],
        "secret_key": provider["secret_key"],
    }
    storage.create("alice", connection)
    catalog = CatalogService(cache_dir=str(root / "cache"), registry_dir=str(root / "models"), remote_indexes=[])
    gateway = ServerlessGateway(url=engine.url, token=engine.tokens["alice"])  # as alice's server reaches it
    annotation = AnnotationService(
        catalog=catalog, workspace=str(workspace), storage=storage, serverless=gateway, root_dir=str(root / "ls")
    )

    async def preannotate(title: str, what: str, cpu: CPU | None = None) -> float:
        made = time.perf_counter()
        project = await annotation.create(ProjectRequest(title=title, folder="bench:bench-in", module=module), "alice")
        made = time.perf_counter() - made
        before, started = cpu.now() if cpu else {}, time.perf_counter()
        await annotation.preannotate(project["id"], PreannotateRequest(module=module), "alice")
        await annotation.wait_preannotation(project["id"])
        seconds = time.perf_counter() - started
        if cpu:
            cpu.add("pre-annotation", before)
        progress = annotation.progress(project["id"])
        assert progress["state"] == "completed" and progress["predicted"] == n, progress
        print(
            f"  pre-annotation, {what} (a new project over the folder, made in {made:.1f} s; service "
            f"{progress['service']}): {n / seconds:.1f} img/s ({seconds:.1f} s, {progress['regions']} regions)"
        )
        return seconds

    try:
        cpu = CPU(engine, annotation)
        batch_service(engine, module, cores)
        print(f"warm-up, not counted; load average {load()} (Label Studio's first start included)")
        batch_seconds(engine, n)  # its workers' first slices (their S3 client, the index)
        await preannotate("Bench", "cold workers: they load the model")
        totals = {"batch": 0.0, "pre-annotation": 0.0}
        for round in range(1, rounds + 1):
            print(f"round {round}; load average {load()}")
            before = cpu.now()
            totals["batch"] += batch_seconds(engine, n)
            cpu.add("batch", before)
            totals["pre-annotation"] += await preannotate(f"Bench {round}", "warm workers", cpu)
        batch_rate, rate = rounds * n / totals["batch"], rounds * n / totals["pre-annotation"]
        print(f"batch {batch_rate:.1f} img/s, pre-annotation {rate:.1f} img/s over {rounds} rounds")
        cpu.show(rounds * n)
        return rate / batch_rate
    finally:
        await annotation.stop()


def to_first_epoch(root: Path, scenes: int) -> float:
    """Seconds from "Train on this project" to the first epoch, through a real hub and the user's server."""
    import base64

    import requests
    from reeflab.client import Connection, annotation
    from reeflab.modules.fish_detector.synth import generate_samples
    from reeflab.testing.hub import HubProcess

    with HubProcess(root / "hub") as hub:
        hub.api("POST", "users/bench")
        try:
            user = Connection(hub.spawn("bench"), hub.user_token("bench"))
            local = root / "scenes"
            truth = json.loads(generate_samples(local, n=scenes, seed=5).read_text())["images"]
            user.session.put(user.url + "api/contents/scenes", json={"type": "directory"}, timeout=30)
            for name in truth:
                body = {
                    "type": "file",
                    "format": "base64",
                    "content": base64.b64encode((local / name).read_bytes()).decode(),
                }
                user.session.put(user.url + f"api/contents/scenes/{name}", json=body, timeout=30).raise_for_status()
            project = annotation.create("Bench", "scenes", module="fish-detector", connection=user)
            project.preannotate("fish-detector")
            folder = hub.homes / "bench" / ".local" / "share" / "jupyter" / "reeflab" / "annotation"
            ls = requests.Session()
            ls.headers["Authorization"] = "Token " + json.loads((folder / "credentials.json").read_text())["token"]
            base = json.loads((folder / "server.json").read_text())["url"]
            tasks = ls.get(base + "/api/tasks", params={"project": project.id, "page_size": 1000}, timeout=30).json()
            for task in tasks["tasks"]:  # the annotator accepts every prediction
                found = ls.get(base + "/api/predictions", params={"task": task["id"]}, timeout=30).json()
                ls.post(base + f"/api/tasks/{task['id']}/annotations", json={"result": found[0]["result"]}, timeout=30)
            started = time.perf_counter()
            run = project.train(epochs=1)
            while time.perf_counter() - started < 600:
                if any("Starting training for" in line for line in run.logs(node="train", tail=500)):
                    return time.perf_counter() - started
                run.refresh()
                if run.info["state"] in ("completed", "failed", "cancelled"):
                    shown = "\n".join(run.logs(node="train", tail=40))
                    raise RuntimeError(f"the run ended ({run.info['state']}) before its first epoch:\n{shown}")
                time.sleep(0.5)
            raise RuntimeError("no first epoch within 600 s")
        finally:
            hub.api("DELETE", "users/bench/server")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="fish-detector")
    parser.add_argument("-n", type=int, default=240)
    parser.add_argument("--scenes", type=int, default=12, help="labelled images of the project trained on")
    parser.add_argument("--only", choices=["ratio", "train"])
    parser.add_argument("--rounds", type=int, default=3, help="batch and pre-annotation in turns, this many times")
    args = parser.parse_args()
    if args.only != "ratio":
        with tempfile.TemporaryDirectory() as root:
            print(f"load average {load()}")
            seconds = to_first_epoch(Path(root), args.scenes)
            print(
                f'"Train on this project" ({args.scenes} labelled images) to the first epoch: {seconds:.1f} s; '
                f"load average {load()}"
            )
        if args.only == "train":
            return
    cores = os.cpu_count() or 1
    samples = sorted(SAMPLES.glob("*.jpg"))
    paths = [samples[i % len(samples)] for i in range(args.n)]
    print(f"{args.module}, {args.n} images, {cores} cores; load average {load()}")
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        # room for both services' warm workers (each side uses `cores` of them at a time; idle ones only wait)
        args_engine = [f"--ServerlessApp.max_workers={2 * cores}", "--ServerlessApp.reconcile_seconds=3600"]
        with EngineProcess(root / "state", users=["alice"], args=args_engine, s3=True) as engine:
            s3 = engine.s3("alice")
            for i, path in enumerate(paths):
                s3.upload_file(str(path), "alice", f"bench-in/{i:05d}-{path.name}")
            found = asyncio.run(ratio(root, engine, args.module, args.n, cores, args.rounds))
    print(f"pre-annotation / batch, both on warm workers: {found:.2f} (target >= 0.8); load average {load()}")


if __name__ == "__main__":
    main()
