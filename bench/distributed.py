"""Data-parallel training throughput on this machine's CPUs: 2 DDP ranks (gloo) ÷ 1 process (one run).

Each configuration is started with torchrun (--standalone, as distributed jobs are) and trains the same MLP
(256 -> 1024 -> 1024 -> 10, SGD) on generated data for a fixed number of steps of 128 samples per rank; samples
per second are counted between barriers after warm-up steps. Printed ratios:

- 2 ranks x 1 thread ÷ 1 process x 1 thread: ideal 2.0 (each rank has a core of its own; below it: gradient
  all-reduce over gloo, and memory bandwidth the two cores share);
- 2 ranks x 1 thread ÷ 1 process x 2 threads (what a 1-process job on a 2-CPU profile gets): ideal about 1.0
  if PyTorch's intra-op threads scale as well as processes do; above 1.0, ranks use the CPUs better.

It prints the load average before and after; where fewer than 2 CPUs were idle before it began (1-minute
load average), it says the machine was busy.

    .venv/bin/python bench/distributed.py [--steps 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def measure(processes: int, threads: int, steps: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
        command += [__file__, "--worker", "--steps", str(steps), "--warmup", str(warmup), "--out", str(out)]
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)
        return json.loads(out.read_text())["samples_per_s"]


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
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"CPUs available: {cpus}; load average now {load} (this benchmark's own ranks included)")
    if cpus - before[0] < 2:  # the 2 ranks need a core each: the other work already running takes them
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


if __name__ == "__main__":
    main()
