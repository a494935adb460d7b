"""`reeflab job ...`: run a notebook as a job from a terminal, follow it, list, cancel."""

from __future__ import annotations

import argparse
import sys

import yaml


def parameter(text: str) -> tuple[str, object]:
    """`key=value`; the value is read as YAML (numbers, booleans, lists), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not key=value")
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed if isinstance(parsed, int | float | bool | list | dict) or parsed is None else value


def run(args: argparse.Namespace) -> int:
    from ..client import jobs
    from ..client.connection import ReefLabClientError

    try:
        job = jobs.submit(
            args.notebook, dict(args.parameters), profile=args.profile, kernel=args.kernel,
            processes=args.processes, nodes=args.nodes,
        )  # fmt: skip
        print(f"job {job.id}: {args.notebook} -> {job.output}", flush=True)
        if args.detach:
            return 0
        for line in job.follow():
            print(line, flush=True)
        job.refresh()
        if job.state in ("starting", "running"):  # the log ended early (server restart): wait for the end
            job.wait(progress=False)
    except ReefLabClientError as err:
        print(f"reeflab: {err.message}", file=sys.stderr)
        return 1
    print(f"job {job.id} {job.state}; output notebook: {job.output}")
    return 0 if job.state == "completed" else 1


def list_jobs(args: argparse.Namespace) -> int:
    from ..client import jobs

    for job in jobs.list_jobs():
        cells = job.info["progress"]
        print(f"{job.id}  {job.state:<9}  {cells['cell']}/{cells['cells']}  {job.info['notebook']}  {job.output}")
    return 0


def logs(args: argparse.Namespace) -> int:
    from ..client import jobs

    rank = {"rank": args.rank} if args.rank is not None else {}
    print("\n".join(jobs.get(args.id).logs(args.tail, **rank)))
    return 0


def cancel(args: argparse.Namespace) -> int:
    from ..client import jobs
    from ..client.connection import ReefLabClientError

    try:
        print(f"job {args.id} {jobs.get(args.id).cancel().state}")
    except ReefLabClientError as err:
        print(f"reeflab: {err.message}", file=sys.stderr)
        return 1
    return 0


def add_commands(commands) -> None:
    """The `job` command group of the `reeflab` CLI."""
    job = commands.add_parser("job", help="notebook jobs (papermill)").add_subparsers(dest="action", required=True)
    start = job.add_parser("run", help="run a notebook with parameters as a job and follow its log")
    start.add_argument("notebook", help="path relative to your Jupyter root folder, e.g. notebooks/train_yolo.ipynb")
    start.add_argument("-p", "--parameter", dest="parameters", type=parameter, action="append", default=[],
                       metavar="KEY=VALUE", help="a value for the notebook's parameters cell (repeatable)")  # fmt: skip
    start.add_argument("--profile", help="hardware profile (default: yours)")
    start.add_argument("--kernel", help="kernel name (default: the notebook's)")
    start.add_argument("--detach", action="store_true", help="submit and return at once")
    start.add_argument("--processes", "--nproc", type=int, help="distributed: ranks per node, started by torchrun")
    start.add_argument("--nodes", type=int, help="distributed: nodes (kubernetes mode)")
    start.set_defaults(func=run)
    job.add_parser("list", help="your jobs").set_defaults(func=list_jobs)
    show = job.add_parser("logs", help="the last lines of a job's log")
    show.add_argument("id")
    show.add_argument("--tail", type=int, default=200)
    show.add_argument("--rank", type=int, help="a distributed job's rank: its own log")
    show.set_defaults(func=logs)
    stop = job.add_parser("cancel", help="cancel a running job (its kernel is stopped)")
    stop.add_argument("id")
    stop.set_defaults(func=cancel)
