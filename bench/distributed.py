"""Data-parallel training throughput on this machine's CPUs: 2 DDP ranks (gloo) ÷ 1 process (one run).

Each configuration is started with torchrun (--standalone, as distributed jobs are) and trains the same MLP
(256 -> 1024 -> 1024 -> 10, SGD) on generated data for a fixed number of steps of 128 samples per rank; samples
per second are counted between barriers after warm-up steps. Printed ratios:

- 2 ranks x 1 thread ÷ 1 process x 1 thread: ideal 2.0 (each rank has a core of its own; below it: gradient
  all-reduce over gloo, and memory bandwidth the two cores share);
- 2 ranks x 1 thread ÷ 1 process x 2 threads (what a 1-process job on a 2-CPU profile gets): ideal about 1.0
  if PyTorch's intra-op threads scale as well as processes do; above 1.0, ranks use the CPUs better.

- 2 ranks in a private network ÷ 2 ranks on the host's loopback: what a job's own network namespace (on one
  machine every distributed job's ranks run in one, reeflab.jobs.netns) costs gloo; ideal 1.0.

And what that private network adds to a job's start: the launcher's extra process (bubblewrap, a Python start,
its imports, the forwarded ports handed over), its median wall time and the CPU time it costs (CPU time is what
other load on the machine does not distort).

It prints the load average before and after; where other work took half a core or more before it began (1-minute
load average), it says the machine was busy.

    .venv/bin/python bench/distributed.py [--steps 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reeflab.oscar_engine.sandbox import find_bwrap

BATCH = 128  # per rank


def worker(steps: int, warmup: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    generator = torch.Generator().manual_seed(rank)
    X = torch.randn(BATCH * 8, 256, generator=generator)
    y = torch.randint(0, 10, (BATCH * 8,), generator=generator)
    torch.manual_seed(0)
    layers = [torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(1024, 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)

    def step(i: int) -> None:
        start = (i % 8) * BATCH
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(ddp(X[start : start + BATCH]), y[start : start + BATCH]).backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    dist.barrier()
    began = time.perf_counter()
    for i in range(steps):
        step(i)
    dist.barrier()
    elapsed = time.perf_counter() - began
    if rank == 0:
        Path(out).write_text(json.dumps({"samples_per_s": steps * BATCH * world / elapsed, "world": world}))
    dist.destroy_process_group()


def measure(processes: int, threads: int, steps: int, warmup: int, private: bool = False) -> float:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
        if private:  # as a job's launcher runs (reeflab.jobs.netns.PrivateNetwork)
            command = [find_bwrap(), "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--", *command]
        command += [__file__, "--worker", "--steps", str(steps), "--warmup", str(warmup), "--out", str(out)]
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)
        return json.loads(out.read_text())["samples_per_s"]


LAUNCHER = "import reeflab.jobs.runner, reeflab.jobs.distributed; from reeflab.jobs.netns import hand_over; hand_over()"


def start_cost(times: int = 10) -> tuple[float, float]:
    """Median wall seconds and mean CPU seconds of the private network's extra process: what it adds to a start."""
    from reeflab.jobs.netns import PrivateNetwork

    network = PrivateNetwork.available()
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL": "http://localhost:8333"}
    walls = []
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(times):
        began = time.perf_counter()
        assert network.run([sys.executable, "-c", LAUNCHER], env) == 0
        walls.append(time.perf_counter() - began)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime) / times
    return statistics.median(walls), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps, args.warmup, args.out)
        return
    cpus = len(os.sched_getaffinity(0))
    before = os.getloadavg()
    print(f"load average before (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in before)}")
    one = measure(1, 1, args.steps, args.warmup)
    one_threaded = measure(1, 2, args.steps, args.warmup)
    two = measure(2, 1, args.steps, args.warmup)
    two_private = measure(2, 1, args.steps, args.warmup, private=True) if find_bwrap() else None
    wall, cpu = start_cost() if find_bwrap() else (None, None)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"CPUs available: {cpus}; load average now {load} (this benchmark's own ranks included)")
    if before[0] > 0.5:  # the 2 ranks need a core each: half a core of other work already takes from them
        print(
            f"BUSY: {before[0]:.1f} CPUs' worth of other work was running before on {cpus} CPUs, so the ranks "
            "shared cores with it: the figures below are lower than on an idle machine and the ratios skewed"
        )
    print(f"{args.steps} steps of {BATCH} samples per rank, MLP 256-1024-1024-10")
    print(f"1 process x 1 thread : {one:8.0f} samples/s")
    print(f"1 process x 2 threads: {one_threaded:8.0f} samples/s")
    print(f"2 DDP ranks x 1 thread (gloo): {two:8.0f} samples/s")
    print(f"ratio 2 ranks / 1 process (1 thread each): {two / one:.2f}  (ideal 2.0)")
    print(f"ratio 2 ranks / 1 process with both threads: {two / one_threaded:.2f}  (ideal about 1.0)")
    if two_private is None:
        print("no bubblewrap here: the private network was not measured")
        return
    print(f"2 DDP ranks x 1 thread (gloo) in a private network: {two_private:8.0f} samples/s")
    print(f"ratio private network / host loopback (2 ranks): {two_private / two:.2f}  (ideal 1.0)")
    print(f"a job's start, added by its private network: {wall * 1000:.0f} ms wall (median), {cpu * 1000:.0f} ms CPU")


if __name__ == "__main__":
    main()
