"""Distributed notebook jobs: torchrun (PyTorch's elastic launcher) starts the ranks, each running the notebook.

The job's runner calls torchrun's own entry point (`torch.distributed.run`, what the `torchrun` command runs) with
`-m reeflab.jobs.rank <job folder>` as the training program, so every rank gets RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT in its (and its kernel's) environment. On one machine the rendezvous is torchrun's
`--standalone` one (c10d on a free port of 127.0.0.1), in a network of the job's own (netns.py: no other account
reaches the rendezvous nor the ranks' ports; torchrun then runs in `python -m reeflab.jobs.distributed`, the runner
relaying the platform's services to it); across nodes (kubernetes: a JobSet) torchrun's static one on node 0's
address, every node's runner giving its node rank. Each rank writes `rank-<N>.log` and `rank-<N>.json`
(its own status) in the job folder; rank 0's cell progress is the job's, and the first rank to fail fails the job
with its error. torchrun stops the other ranks when one fails, and on cancel (SIGTERM to the runner) all of them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from ..errors import BadRequest
from .store import now, read_status

if TYPE_CHECKING:
    from ..profiles import HardwareProfile

RANK_LOG = "rank-{rank}.log"
RANK_STATUS = "rank-{rank}.json"
RANK_OUTPUT = "rank-{rank}.ipynb"  # the executed notebook of every rank but 0 (rank 0's is the job's output)


def rank_status(folder: Path, rank: int) -> dict[str, Any]:
    return read_status(folder, RANK_STATUS.format(rank=rank))


def check_ranks(processes: int, profile: HardwareProfile, what: str = "") -> None:
    """`processes` ranks fit the profile: one per GPU where it has GPUs, else one per CPU;
    else a 400 saying so (`what`: whose processes, e.g. a pipeline's node)."""
    if profile.gpu_count:
        most, per = profile.gpu_count, f"one per GPU: profile '{profile.slug}' has {profile.gpu_count}"
    else:
        most = max(1, math.floor(profile.cpu))
        per = f"one per CPU: profile '{profile.slug}' has {profile.cpu:g} and no GPU"
    if processes > most:
        raise BadRequest(
            f"{what}{processes} processes do not fit: at most {most} ({per}). "
            "Ask for fewer processes or choose a larger profile."
        )


def torchrun_args(spec: dict[str, Any], folder: Path) -> list[str]:
    """torchrun's command line for this job: its processes per node, its nodes and rendezvous, no restarts."""
    dist = spec["distributed"]
    args = ["--nproc-per-node", str(dist["processes"]), "--max-restarts", "0"]
    if dist.get("nodes", 1) > 1:  # the pod's node rank and node 0's address: from the JobSet (kubernetes)
        args += ["--nnodes", str(dist["nodes"]), "--node-rank", os.environ.get("REEFLAB_NODE_RANK", "0")]
        args += ["--master-addr", os.environ["REEFLAB_MASTER_ADDR"], "--master-port", os.environ["REEFLAB_MASTER_PORT"]]
    else:
        args.append("--standalone")
    return [*args, "-m", "reeflab.jobs.rank", str(folder)]


class Watch:
    """While the ranks run: rank 0's progress into the job's status, and every process they start remembered
    (a rank killed outright leaves its kernel behind, no longer a child of anyone here)."""

    def __init__(self, folder: Path, status, interval: float = 0.5):
        self.folder, self.status, self.interval = folder, status, interval
        self.seen: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)
        self.look()
        self.kill_leftovers()

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            self.look()

    def look(self) -> None:
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.seen.setdefault(proc.pid, proc.create_time())
        first = rank_status(self.folder, 0)
        fields: dict[str, Any] = {"pids": sorted(self.seen)}
        if first.get("progress"):
            fields.update(state="running", progress=first["progress"])
        self.status.update(**fields)

    def kill_leftovers(self) -> None:
        for pid, started in self.seen.items():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if abs(proc.create_time() - started) < 1:
                    proc.kill()


def failure_of(folder: Path, world_size: int, failures: dict[int, Any]) -> dict[str, Any]:
    """Why the job failed: the first rank that failed by itself (its failing cell), else the first that torchrun
    saw die (killed by a signal, or exited without a word)."""
    statuses = {rank: rank_status(folder, rank) for rank in range(world_size)}
    failed = [(s.get("finished_at", ""), rank) for rank, s in statuses.items() if s.get("state") == "failed"]
    if failed:
        _, rank = min(failed)
        found = statuses[rank]
        failure = {"reason": f"rank {rank} failed: {found.get('reason', 'no reason given')}", "rank": rank}
        if found.get("error"):
            failure["error"] = found["error"]
        return failure
    if failures:
        rank = min(failures, key=lambda r: failures[r].timestamp)
        code = failures[rank].exitcode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return {"reason": f"rank {rank} {how} (its log: rank-{rank}.log)", "rank": rank}
    return {"reason": "torchrun failed before the ranks started (see the job log)"}


def private_network(spec: dict[str, Any]) -> bool:
    """Whether the ranks get a network of their own: on one machine (in kubernetes the job's pods are its own, and
    the nodes of a JobSet must reach each other)."""
    return spec["distributed"].get("nodes", 1) == 1 and "KUBERNETES_SERVICE_HOST" not in os.environ


def launch(folder: Path, spec: dict[str, Any], status) -> dict[str, Any] | None:
    """Run the ranks with torchrun until they end; None if all completed, else why the job failed. On one machine
    torchrun and its ranks run in a private network (netns.py), its launcher in `python -m reeflab.jobs.distributed`:
    this process relays the platform's services to it and takes its end from the job's status."""
    from .netns import PrivateNetwork, forwarded_ports

    network = PrivateNetwork.available() if private_network(spec) else None
    if network is None:
        if private_network(spec):
            print("[reeflab] WARNING: no bubblewrap: the ranks' ports are open to every local account", flush=True)
        return run_ranks(folder, spec, status)
    ports = ", ".join(map(str, forwarded_ports(os.environ))) or "none"
    print(f"[reeflab] ranks in a private network; 127.0.0.1 ports of the platform forwarded: {ports}", flush=True)
    code = network.run([sys.executable, "-m", "reeflab.jobs.distributed", str(folder)], os.environ)
    status.reload()
    if status.data.get("state") == "cancelled":  # said by the launcher: torchrun has stopped the ranks
        raise SystemExit(128 + signal.SIGTERM)
    if code == 0:
        return None
    failure = {key: status.data[key] for key in ("reason", "rank", "error") if key in status.data}
    return failure or {"reason": f"the ranks' launcher exited with status {code} before they started (see the job log)"}


def run_ranks(folder: Path, spec: dict[str, Any], status) -> dict[str, Any] | None:
    """torchrun in this process until the ranks end; None if all completed, else why the job failed."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    dist = spec["distributed"]
    world_size = dist["processes"] * dist.get("nodes", 1)
    args = torchrun_args(spec, folder)
    print(f"[reeflab] torchrun {' '.join(args)}", flush=True)
    status.update(world_size=world_size)
    with Watch(folder, status):
        try:
            run(parse_args(args))
        except SignalException as err:  # torchrun took over SIGTERM: it has stopped the ranks
            status.update(state="cancelled", finished_at=now(), reason="cancelled")
            print(f"[reeflab] job cancelled ({err.sigval.name}); every rank stopped", flush=True)
            raise SystemExit(128 + signal.SIGTERM) from None
        except ChildFailedError as err:
            return failure_of(folder, world_size, err.failures)
        except Exception as err:  # the rendezvous could not be made...
            return {"reason": f"torchrun failed: {type(err).__name__}: {err}"}
    return None


def main(argv: list[str] | None = None) -> int:
    """The ranks' launcher in their private network: the forwarded ports handed over first, then torchrun; its
    end written into the job's status (what the runner outside reads back)."""
    import logging

    from .netns import hand_over
    from .runner import StatusFile

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m reeflab.jobs.distributed <job folder>", file=sys.stderr)
        return 2
    hand_over()
    folder = Path(argv[0])
    spec = json.loads((folder / "spec.json").read_text())
    status = StatusFile(folder, resume=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)
    failure = run_ranks(folder, spec, status)
    if failure:
        status.update(**failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
