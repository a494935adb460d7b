"""`reeflab pipeline ...`: run an Elyra pipeline from a terminal, follow its nodes, list, show, logs, cancel.

The terminal twin of the Python client (`reeflab.client.pipelines`): the same REST API, so a run
started here shows in the Lab panel and the other way round.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import wraps

ACTIVE = ("starting", "running")


def parameter(text: str) -> tuple[str, str]:
    """`KEY=VALUE`: a value for one of the pipeline's environment variables (kept as text)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE")
    return key, value


def refusals(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The server's refusal in its own words on stderr, exit status 1 (no traceback)."""

    @wraps(command)
    def run(args: argparse.Namespace) -> int:
        from ..client.connection import ReefLabClientError

        try:
            return command(args)
        except ReefLabClientError as err:
            print(f"reeflab: {err.message}", file=sys.stderr)
            return 1

    return run


def node_line(node: dict) -> str:
    progress = node.get("progress") or {}
    cells = f"{progress.get('cell', 0)}/{progress.get('cells', 0)}" if progress.get("cells") else "-"
    line = f"  {node['id']:<14} {node['state']:<9} cells {cells:<7} {node['filename']}"
    if node["state"] == "failed":
        error = node.get("error") or {}
        where = f"cell {error['cell_index']}: " if error.get("cell_index") is not None else ""
        line += f"\n  {'':<14} {where}{node.get('reason') or ''}"
    return line


def follow(run, interval: float = 1.0) -> None:
    """Print each node's changes of state until the run ends."""
    seen: dict[str, str] = {}
    while True:
        run.refresh()
        for node in run.info["nodes"]:
            if seen.get(node["id"], "pending") != node["state"]:
                extra = f": {node['reason']}" if node["state"] == "failed" and node.get("reason") else ""
                print(f"node {node['id']} {node['state']}{extra}", flush=True)
            seen[node["id"]] = node["state"]
        if run.state not in ACTIVE:
            return
        time.sleep(interval)


@refusals
def run_pipeline(args: argparse.Namespace) -> int:
    from ..client import pipelines

    run = pipelines.submit(
        args.pipeline, dict(args.parameters), profile=args.profile, title=args.title, max_parallel=args.max_parallel
    )
    print(f"pipeline run {run.id}: {args.pipeline} ({', '.join(n['id'] for n in run.info['nodes'])})", flush=True)
    if not args.wait:
        print(f"follow it: reeflab pipeline show {run.id}")
        return 0
    follow(run, args.interval)
    print(f"pipeline run {run.id} {run.state}" + (f": {run.info['reason']}" if run.info.get("reason") else ""))
    print(f"executed notebooks: {run.info['output']}")
    return 0 if run.state == "completed" else 1


@refusals
def list_runs(args: argparse.Namespace) -> int:
    from ..client import pipelines

    for run in pipelines.list_runs():
        nodes = run.info["nodes"]
        done = sum(n["state"] == "completed" for n in nodes)
        print(f"{run.id}  {run.state:<9}  {done}/{len(nodes)} nodes  {run.info['pipeline']}  {run.info['created']}")
    return 0


@refusals
def show(args: argparse.Namespace) -> int:
    from ..client import pipelines

    info = pipelines.get(args.id).info
    print(f"pipeline run {info['id']}: {info['pipeline']} {info['state']}")
    if info.get("reason"):
        print(f"reason: {info['reason']}")
    if info.get("parameters"):
        print("parameters: " + " ".join(f"{k}={v}" for k, v in sorted(info["parameters"].items())))
    print(f"executed notebooks: {info['output']}")
    print("\n".join(node_line(node) for node in info["nodes"]))
    return 0 if info["state"] != "failed" else 1


@refusals
def logs(args: argparse.Namespace) -> int:
    from ..client import pipelines

    print("\n".join(pipelines.get(args.id).logs(args.tail, node=args.node, rank=args.rank)))
    return 0


@refusals
def cancel(args: argparse.Namespace) -> int:
    from ..client import pipelines

    print(f"pipeline run {args.id} {pipelines.get(args.id).cancel().state}")
    return 0


def add_commands(commands) -> None:
    """The `pipeline` command group of the `reeflab` CLI."""
    group = commands.add_parser("pipeline", help="Elyra pipelines (each node a notebook job)")
    pipeline = group.add_subparsers(dest="action", required=True)
    start = pipeline.add_parser("run", help="run a .pipeline file with parameters")
    start.add_argument("pipeline", help="path relative to your Jupyter root folder, e.g. notebooks/retrain.pipeline")
    start.add_argument(
        "-p", "--parameter", dest="parameters", type=parameter, action="append", default=[], metavar="KEY=VALUE",
        help="a value for one of the pipeline's environment variables (repeatable)",
    )  # fmt: skip
    start.add_argument("--wait", action="store_true", help="follow the nodes until the run ends (exit 1 if it fails)")
    start.add_argument("--profile", help="hardware profile (default: yours)")
    start.add_argument("--title", help="a name for the run")
    start.add_argument("--max-parallel", type=int, help="independent nodes run at once")
    start.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    start.set_defaults(func=run_pipeline)
    pipeline.add_parser("list", help="your pipeline runs").set_defaults(func=list_runs)
    describe = pipeline.add_parser("show", help="a run's state and each node's state, cells and error")
    describe.add_argument("id")
    describe.set_defaults(func=show)
    log = pipeline.add_parser("logs", help="the last lines of a run's log, or of one node's")
    log.add_argument("id")
    log.add_argument("--node", help="node id (see `show`); default: the run's own log")
    log.add_argument("--rank", type=int, help="with --node, a distributed node's rank: its own log")
    log.add_argument("--tail", type=int, default=200)
    log.set_defaults(func=logs)
    stop = pipeline.add_parser("cancel", help="cancel a running pipeline (its running node and kernel are stopped)")
    stop.add_argument("id")
    stop.set_defaults(func=cancel)
