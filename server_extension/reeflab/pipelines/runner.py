"""The process that runs one pipeline: `python -m reeflab.pipelines.runner <run folder>`.

Started detached (own session) like a notebook job, so a run outlives the browser and restarts of
the Jupyter server. Elyra reads the pipeline: its parser and validation (the checks the editor and
`elyra-pipeline run` make), its dependency order, and its node environment (`ELYRA_RUNTIME_ENV`,
`ELYRA_RUN_NAME`, the node's and the pipeline's `env_vars`, here overridden by the run's
parameters). Each node then runs as a notebook job of its own (`reeflab.jobs.runner`, in the
node's folder as Elyra's local runtime does), so every node has its own log, cell progress and
failing cell (a node with a `processes` property runs as a distributed job: torchrun's ranks, one
log each), and independent nodes run side by side up to `max_parallel`. `status.json` holds the
run's and every node's state while it runs. The executed notebooks go to the run's output folder:
the pipeline's own notebooks stay as they were.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..jobs.runner import StatusFile
from ..jobs.store import LOG_FILE, now, read_status
from ..processes import tail_lines

NODE_KINDS = {"execute-notebook-node": "notebook", "execute-python-node": "python"}


class InvalidPipeline(Exception):
    """Elyra's validation found fatal issues; the message lists them per node."""


def load(pipeline_path: Path):
    """Elyra's parsed pipeline (validated as `elyra-pipeline run` validates it) and its operations in order."""
    from elyra.pipeline.parser import PipelineParser
    from elyra.pipeline.pipeline_definition import PipelineDefinition
    from elyra.pipeline.processor import PipelineProcessor
    from elyra.pipeline.validation import PipelineValidationManager

    try:
        definition = PipelineDefinition(str(pipeline_path))
    except ValueError as err:
        raise InvalidPipeline(f"not a valid pipeline file: {err}") from None
    for pipeline in definition.pipelines:
        for node in pipeline.nodes:
            filename = node.get_component_parameter("filename")
            if filename:
                node.set_component_parameter("filename", str(pipeline_path.parent / filename))
    primary = definition.primary_pipeline
    primary.set("name", pipeline_path.stem)
    primary.set("source", pipeline_path.name)
    primary.set("runtime", "local")
    document = definition.to_dict()
    response = asyncio.run(PipelineValidationManager.instance().validate(pipeline=document))
    if response.has_fatal:
        issues = [i for i in response.to_json()["issues"] if i.get("severity") == 1]
        where = [(i.get("data") or {}).get("nodeName", "pipeline") for i in issues]
        raise InvalidPipeline("; ".join(f"[{w}] {i['message']}" for w, i in zip(where, issues, strict=True)))
    parsed = PipelineParser(root_dir=str(pipeline_path.parent)).parse(document)
    return parsed, PipelineProcessor._sort_operations(parsed.operations)


def node_env(operation, run_name: str, parameters: dict[str, str]) -> dict[str, str]:
    """Elyra's local-runtime environment of a node, then the run's parameters on top."""
    from elyra.pipeline.local.local_processor import OperationProcessor

    env = OperationProcessor._collect_envs(operation, run_name)
    env.update(parameters)
    return env


class Runner:
    """Starts ready nodes, follows them through their status files, stops everything on a failure or cancel."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.spec = json.loads((folder / "spec.json").read_text())
        self.status = StatusFile(folder)
        self.nodes: dict[str, dict[str, Any]] = {
            n["id"]: {"state": "pending", "label": n["label"]} for n in self.spec["nodes"]
        }
        self.outputs = {n["id"]: n["output"] for n in self.spec["nodes"]}
        self.processes = {n["id"]: n.get("processes") for n in self.spec["nodes"]}
        self.procs: dict[str, subprocess.Popen] = {}
        self.cancelled = False

    def say(self, text: str) -> None:
        print(f"[reeflab] {text}", flush=True)

    def node_folder(self, node_id: str) -> Path:
        folder = self.folder / "nodes" / node_id
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    def publish(self, **fields: Any) -> None:
        kernels = [pid for n in self.procs for pid in read_status(self.node_folder(n)).get("kernel_pids", [])]
        known = self.status.data.get("kernel_pids", [])
        self.status.update(nodes=self.nodes, kernel_pids=sorted(set(known) | set(kernels)), **fields)

    def start(self, operation, run_name: str) -> None:
        node = self.nodes[operation.id]
        folder = self.node_folder(operation.id)
        env = node_env(operation, run_name, self.spec.get("parameters") or {})
        env.setdefault("REEFLAB_ROOT_DIR", self.spec["root"])  # nodes name files to the API relative to it
        kind = NODE_KINDS.get(operation.classifier)
        path = Path(operation.filename)
        if kind == "notebook":
            output = Path(self.spec["root"]) / self.outputs[operation.id]
            output.parent.mkdir(parents=True, exist_ok=True)
            node_spec = {"input": str(path), "output": str(output), "cwd": str(path.parent), "parameters": {}}
            node_spec["kernel"] = _kernel(path)
            if self.processes.get(operation.id):  # a distributed node: torchrun starts its ranks, as for a job
                node_spec["distributed"] = self.distributed(operation.id, env)
            (folder / "spec.json").write_text(json.dumps(node_spec, indent=1))
            command = [sys.executable, "-m", "reeflab.jobs.runner", str(folder)]
        elif kind == "python":
            command = [sys.executable, str(path)]
        else:
            raise InvalidPipeline(f"node '{node['label']}': {operation.classifier} nodes cannot run here")
        with open(folder / LOG_FILE, "ab") as log:
            self.procs[operation.id] = subprocess.Popen(
                command, cwd=path.parent, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        node.update(state="running", started_at=now())
        self.say(f"node '{node['label']}' started ({path.name})")

    def distributed(self, node_id: str, env: dict[str, str]) -> dict[str, Any]:
        """A distributed node's torchrun settings; its ranks share the run's CPU threads and get the DDP backend."""
        processes = self.processes[node_id]
        threads = str(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1) // processes))
        backend = self.spec.get("ddp_backend", "gloo")
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, REEFLAB_DDP_BACKEND=backend)
        return {"processes": processes, "nodes": 1, "backend": backend}

    def reap(self, node_id: str, code: int) -> None:
        """A node's process ended: take its end state (and failing cell) from its status file."""
        node = self.nodes[node_id]
        status = read_status(self.node_folder(node_id))
        ok = code == 0 and status.get("state", "completed") == "completed"
        node.update(state="completed" if ok else "failed", finished_at=now())
        if status.get("progress"):
            node["progress"] = status["progress"]
        if not ok:
            node["error"] = status.get("error")
            node["reason"] = status.get("reason") or _last_error(self.node_folder(node_id) / LOG_FILE, code)
        del self.procs[node_id]
        self.say(f"node '{node['label']}' {node['state']}" + (f": {node.get('reason')}" if not ok else ""))

    def refresh_progress(self) -> None:
        for node_id in self.procs:
            status = read_status(self.node_folder(node_id))
            if status.get("progress"):
                self.nodes[node_id]["progress"] = status["progress"]

    def stop_nodes(self, state: str) -> None:
        """SIGTERM every running node (its job runner stops its kernel), then wait; pending ones are skipped."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for node_id, proc in list(self.procs.items()):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.nodes[node_id].update(state=state, finished_at=now())
        self.procs.clear()
        for node in self.nodes.values():
            if node["state"] == "pending":
                node["state"] = "skipped"

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._cancel)
        pipeline_path = Path(self.spec["pipeline"])
        self.say(f"running pipeline {pipeline_path.name}")
        try:
            parsed, operations = load(pipeline_path)
        except InvalidPipeline as err:
            self.publish(state="failed", reason=f"invalid pipeline: {err}", finished_at=now())
            self.say(f"invalid pipeline: {err}")
            return 1
        # ELYRA_RUN_NAME of every node, as Elyra's own runs have one; shipped nodes keep their files apart by it
        run_name = self.spec.get("run_name") or f"{parsed.name}-{time.strftime('%m%d%H%M%S')}"
        self.say(f"run {run_name}: the shipped nodes write under <WORK_DIR>/{run_name}/ (and <REPORT_DIR>/{run_name}/)")
        done: set[str] = set()
        failed: str | None = None
        limit = int(self.spec.get("max_parallel") or 2)
        self.publish(state="running")
        while (len(done) < len(operations) or self.procs) and not failed:
            for node_id, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    self.reap(node_id, proc.returncode)
                    if self.nodes[node_id]["state"] == "completed":
                        done.add(node_id)
                    else:
                        failed = node_id
            if failed:
                break
            for operation in operations:
                waiting = self.nodes[operation.id]["state"] == "pending"
                ready = waiting and all(p in done for p in operation.parent_operation_ids)
                if ready and len(self.procs) < limit:
                    try:
                        self.start(operation, run_name)
                    except InvalidPipeline as err:
                        self.nodes[operation.id].update(state="failed", reason=str(err))
                        failed = operation.id
                        break
            if len(done) == len(operations):
                break
            self.refresh_progress()
            self.publish()
            time.sleep(0.3)
        if failed:
            self.stop_nodes("cancelled")
            node = self.nodes[failed]
            error = node.get("error") or {}
            where = f" in cell {error['cell_index']}" if error.get("cell_index") is not None else ""
            reason = f"node '{node['label']}' failed{where}: {node.get('reason')}"
            self.publish(state="failed", reason=reason, finished_at=now())
            self.say(f"pipeline failed: {reason}")
            return 1
        self.publish(state="completed", finished_at=now())
        self.say("pipeline completed")
        return 0

    def _cancel(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self.stop_nodes("cancelled")
        self.publish(state="cancelled", reason="cancelled", finished_at=now())
        self.say("pipeline cancelled; its nodes and their kernels are stopped")
        os._exit(128 + signal.SIGTERM)


def _kernel(notebook: Path) -> str:
    try:
        return json.loads(notebook.read_text())["metadata"]["kernelspec"]["name"]
    except (ValueError, KeyError, TypeError):
        return "python3"


def _last_error(log: Path, code: int) -> str:
    lines = [line for line in tail_lines(log, 30) if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or [f"exit status {code}"])[-1].strip()[:500]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m reeflab.pipelines.runner <run folder>", file=sys.stderr)
        return 2
    return Runner(Path(argv[0])).run()


if __name__ == "__main__":
    sys.exit(main())
