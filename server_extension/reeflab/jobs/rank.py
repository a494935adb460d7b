"""One rank of a distributed notebook job: `python -m reeflab.jobs.rank <job folder>`, started by torchrun.

It runs the job's notebook with papermill like the runner does, in an environment that holds torchrun's RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (the kernel inherits them), writing its output to
`rank-<RANK>.log`, its status (cell progress, or the failing cell) to `rank-<RANK>.json`, and its executed
notebook to the job's output (rank 0) or `rank-<RANK>.ipynb` in the job folder (the others). Stopped by torchrun
(SIGTERM: another rank failed, or the job was cancelled), it stops its kernel and says so.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

from .distributed import RANK_LOG, RANK_OUTPUT, RANK_STATUS
from .runner import StatusFile, execute, kill_descendants
from .store import now


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or "RANK" not in os.environ:
        print("usage (under torchrun): python -m reeflab.jobs.rank <job folder>", file=sys.stderr)
        return 2
    folder, rank = Path(argv[0]), int(os.environ["RANK"])
    log = os.open(folder / RANK_LOG.format(rank=rank), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    spec = json.loads((folder / "spec.json").read_text())
    os.environ.update((spec.get("storage") or {}).get("env", {}))
    status = StatusFile(folder, RANK_STATUS.format(rank=rank))

    def stopped(signum, frame):  # noqa: ARG001 - signal handler signature
        kill_descendants(grace=1.0)
        status.update(state="stopped", finished_at=now(), reason="stopped by torchrun")
        print(f"[reeflab] rank {rank} stopped; kernel stopped", flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)
    world = os.environ.get("WORLD_SIZE", "?")
    print(f"[reeflab] rank {rank} of {world} (local rank {os.environ.get('LOCAL_RANK')})", flush=True)
    output = spec["output"] if rank == 0 else str(folder / RANK_OUTPUT.format(rank=rank))
    if not execute(spec, status, output):
        return 1
    status.update(state="completed", finished_at=now())
    print(f"[reeflab] rank {rank} completed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
