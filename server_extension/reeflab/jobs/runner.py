"""The process that runs one notebook job: `python -m reeflab.jobs.runner <job folder>`.

Started by the local backend in its own session, so it outlives the browser tab and restarts of the
Jupyter server. It reads `spec.json` from the job folder, runs papermill with the chosen kernel, and
keeps `status.json` current (the cell running, or the failing cell and its error) while papermill logs
every cell's output into the job log. The kernel is started by jupyter_client in a session of its own,
so the runner itself makes sure no kernel outlives it: on a normal end, on an error, and on SIGTERM
(cancel), it kills whatever processes it started (papermill's known leak of dead kernels).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from ..files import write_private
from .store import STATUS_FILE, now, read_status

ENGINE = "reeflab"


class StatusFile:
    """status.json of the job: merged updates, written atomically."""

    def __init__(self, folder: Path, name: str = STATUS_FILE, resume: bool = False):
        self.path = folder / name
        self.data: dict[str, Any] = {"pid": os.getpid(), "state": "starting", "started_at": now()}
        if resume:  # another process of the job goes on with it (a distributed job's launcher)
            self.reload()
        self.write()

    def reload(self) -> None:
        """Take what another process of the job wrote meanwhile."""
        self.data.update(read_status(self.path.parent, self.path.name))

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.write()

    def write(self) -> None:
        write_private(self.path, json.dumps(self.data, indent=1, default=str))


def descendants() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def kill_descendants(grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL, every process this runner started (the kernel and anything it spawned)."""
    procs = descendants()
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)


def user_cell(index: int, injected: int | None) -> int:
    """Index in the user's notebook of cell `index` of the executed one (papermill inserts a parameters cell)."""
    if injected is None or index < injected:
        return index
    return max(0, index - 1)


def _injected_index(nb) -> int | None:
    for i, cell in enumerate(nb.cells):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def _first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "")[:120]


def make_engine(status: StatusFile):
    """A papermill engine (nbclient's) that also reports each cell's start to status.json."""
    from papermill.engines import NBClientEngine

    class ReportingEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            injected = _injected_index(nb_man.nb)
            total = len(nb_man.nb.cells) - (injected is not None)
            cell_start = nb_man.cell_start

            def reporting_cell_start(cell, cell_index=None, **kw):
                index = user_cell(cell_index or 0, injected)
                if "kernel_pids" not in status.data:  # the kernel is up once the first cell runs
                    status.data["kernel_pids"] = [p.pid for p in descendants()]
                progress = {"cell": index + 1, "cells": total, "source": _first_line(cell.source)}
                status.update(state="running", progress=progress)
                return cell_start(cell, cell_index, **kw)

            nb_man.cell_start = reporting_cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    return ReportingEngine


def kernel_manager_class():
    """jupyter_client's kernel manager as jobs need it: transport encryption where the kernel supports it
    (ipykernel does: no "running over TCP without encryption" warning, and nobody else on the machine reads
    the traffic), and no interrupt before the shutdown at the end of a run (jupyter_client sends SIGINT
    first, which a kernel idle in its loop logs as an ERROR: "KeyboardInterrupt caught in kernel")."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class JobKernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _default_transport_encryption(self) -> str:
            return "auto"

        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:  # a real interrupt is still one
                await super()._async_interrupt_kernel()

    return JobKernelManager


SECRET_KEYS = re.compile(r"^(AWS_SECRET_ACCESS_KEY|WEBDAV_PASSWORD|RCLONE_CONFIG_\w+_(SECRET_ACCESS_KEY|PASS))$")


def _rclone(args: list[str], folder: Path) -> str | None:
    """Run rclone (credentials from this process's environment); None, or why it failed (secrets scrubbed)."""
    from ..storage.rclone import FAST_FAIL, rclone_binary

    config = folder / "rclone.conf"  # empty and private: remotes come from the environment only
    if not config.exists():
        write_private(config, "")
    env = {**os.environ, "RCLONE_CONFIG": str(config)}
    try:
        done = subprocess.run(
            [rclone_binary(), *args, *FAST_FAIL], env=env, capture_output=True, text=True, timeout=6 * 3600
        )
    except Exception as err:  # rclone missing, a timeout
        return str(err)
    if done.returncode == 0:
        return None
    text = (done.stderr or "").strip().splitlines()[-3:]
    message = " | ".join(line.strip() for line in text) or f"rclone exited with {done.returncode}"
    for key, value in os.environ.items():
        if value and SECRET_KEYS.match(key):
            message = message.replace(value, "***")
    return message[-500:]


def stage_in(storage: dict, folder: Path) -> str | None:
    """Copy the WebDAV inputs into the job's scratch folder; why it failed, or None."""
    for copy in storage.get("stage_in", []):
        Path(copy["local"]).parent.mkdir(parents=True, exist_ok=True)
        print(f"[reeflab] input {copy['name']}: copying {copy['remote']} to {copy['local']}", flush=True)
        problem = _rclone(["copyto", copy["remote"], copy["local"]], folder)
        if problem:
            return f"input {copy['name']} could not be copied from {copy['remote']}: {problem}"
    for copy in storage.get("stage_out", []):  # where the notebook writes
        local = Path(copy["local"])
        (local if copy.get("folder") else local.parent).mkdir(parents=True, exist_ok=True)
    return None


def stage_out(storage: dict, folder: Path) -> str | None:
    """Copy what the notebook wrote to the WebDAV outputs; why it failed, or None."""
    for copy in storage.get("stage_out", []):
        local = Path(copy["local"])
        if not local.exists():
            print(f"[reeflab] output {copy['name']}: the notebook wrote nothing at {local}", flush=True)
            continue
        print(f"[reeflab] output {copy['name']}: copying {local} to {copy['remote']}", flush=True)
        problem = _rclone(["copyto", str(local), copy["remote"]], folder)
        if problem:
            return f"output {copy['name']} could not be copied to {copy['remote']}: {problem}"
    return None


def execute(spec: dict[str, Any], status: StatusFile, output: str) -> bool:
    """Run the notebook of `spec` with papermill into `output`, reporting each cell to `status`; False (and the
    failing cell, or why, in `status`) if it failed. Whatever it started is stopped when it returns."""
    import papermill
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillExecutionError

    papermill_engines.register(ENGINE, make_engine(status))
    print(f"[reeflab] running {spec['input']} with kernel {spec['kernel']}", flush=True)
    try:
        papermill.execute_notebook(
            spec["input"],
            output,
            parameters=spec.get("parameters") or {},
            kernel_name=spec["kernel"],
            engine_name=ENGINE,
            cwd=spec.get("cwd"),
            log_output=True,
            progress_bar=False,
            request_save_on_cell_execute=True,
            kernel_manager_class=kernel_manager_class(),
        )
    except PapermillExecutionError as err:
        import nbformat
        from papermill.execute import ERROR_MARKER_TAG

        executed = nbformat.read(output, as_version=4)
        # papermill has since added its error banner and anchor cells: count without them
        executed.cells = [c for c in executed.cells if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]
        injected = _injected_index(executed)
        error = {
            "cell_index": user_cell(err.cell_index, injected),
            "execution_count": err.exec_count,
            "ename": err.ename,
            "evalue": err.evalue,
            "source": (err.source or "")[:2000],
        }
        status.update(state="failed", error=error, reason=f"{err.ename}: {err.evalue}", finished_at=now())
        print(f"[reeflab] job failed in cell {error['cell_index']}: {err.ename}: {err.evalue}", flush=True)
        return False
    except Exception as err:  # the kernel died, the notebook could not be read...
        status.update(state="failed", reason=f"{type(err).__name__}: {err}", finished_at=now())
        print(f"[reeflab] job failed: {type(err).__name__}: {err}", flush=True)
        return False
    finally:
        kill_descendants()
    return True


def run(folder: Path) -> int:
    spec = json.loads((folder / "spec.json").read_text())
    node = int(os.environ.get("REEFLAB_NODE_RANK", "0"))  # a distributed job's node (kubernetes: JobSet)
    if node:  # node 0's runner keeps the job's status and its storage; the others, only their own status
        return run_node(folder, spec, node)
    status = StatusFile(folder)
    storage = spec.get("storage") or {}
    os.environ.update(storage.get("env", {}))  # where inputs and outputs are, for the kernel (no secret)

    def cancel(signum, frame):  # noqa: ARG001 - signal handler signature
        kill_descendants(grace=1.0)
        status.update(state="cancelled", finished_at=now(), reason="cancelled")
        print("[reeflab] job cancelled; kernel stopped", flush=True)
        os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, cancel)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)

    problem = stage_in(storage, folder)
    if problem:
        status.update(state="failed", reason=problem, finished_at=now())
        print(f"[reeflab] job failed: {problem}", flush=True)
        return 1
    if spec.get("distributed"):  # torchrun starts the ranks, each running the notebook (reeflab.jobs.rank)
        from .distributed import launch

        failure = launch(folder, spec, status)
        if failure:
            status.update(state="failed", finished_at=now(), **failure)
            print(f"[reeflab] job failed: {failure['reason']}", flush=True)
            return 1
    elif not execute(spec, status, spec["output"]):
        return 1
    problem = stage_out(storage, folder)
    if problem:
        status.update(state="failed", reason=problem, finished_at=now())
        print(f"[reeflab] job failed: {problem}", flush=True)
        return 1
    status.update(state="completed", finished_at=now())
    print("[reeflab] job completed", flush=True)
    return 0


def run_node(folder: Path, spec: dict[str, Any], node: int) -> int:
    """Node `node` (> 0) of a distributed job on several nodes: its ranks, its status in node-<N>.json."""
    from .distributed import launch

    status = StatusFile(folder, f"node-{node}.json")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)
    failure = launch(folder, spec, status)
    if failure:
        status.update(state="failed", finished_at=now(), **failure)
        print(f"[reeflab] node {node} failed: {failure['reason']}", flush=True)
        return 1
    status.update(state="completed", finished_at=now())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m reeflab.jobs.runner <job folder>", file=sys.stderr)
        return 2
    return run(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
