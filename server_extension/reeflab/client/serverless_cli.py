"""`reeflab serverless ...` and `reeflab batch ...`: the serverless client from a terminal.

The engine and your token come from REEFLAB_SERVERLESS_URL and REEFLAB_TOKEN (or the server's
JUPYTERHUB_API_TOKEN in a JupyterLab terminal), or from --url and --token-file. Never a token on
the command line: every account on the machine reads command lines (ps, /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..serverless.batch import BatchError
from . import serverless
from .connection import ReefLabClientError


def _token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, else None (connect() then reads REEFLAB_TOKEN / JUPYTERHUB_API_TOKEN)."""
    if getattr(args, "token", None):
        raise ReefLabClientError(
            0,
            "--token puts your token where every user of this machine can read it (ps): "
            "set REEFLAB_TOKEN, or pass --token-file FILE",
        )
    if not args.token_file:
        return None
    try:
        token = Path(args.token_file).read_text().strip()
    except OSError as error:
        raise ReefLabClientError(0, f"--token-file: cannot read {args.token_file}: {error.strerror}") from None
    if not token:
        raise ReefLabClientError(0, f"--token-file: {args.token_file} is empty")
    return token


def _engine(args: argparse.Namespace):
    token = _token(args)
    if not token and not (os.environ.get("REEFLAB_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")):
        raise ReefLabClientError(0, "no token: set REEFLAB_TOKEN (or JUPYTERHUB_API_TOKEN), or pass --token-file FILE")
    return serverless.connect(args.url, token)


def _create(args: argparse.Namespace) -> int:
    service = serverless.create(args.module, args.name, args.input, args.output, engine=_engine(args))
    print(
        f"service '{service['name']}' serves {args.module}; "
        f"call it with: reeflab serverless invoke {service['name']} FILE"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    for service in serverless.services(engine=_engine(args)):
        paths = ", ".join(io["path"] for io in service.get("input", [])) or "-"
        print(f"{service['name']:<30} owner={service['owner']:<12} inputs={paths}")
    return 0


def _invoke(args: argparse.Namespace) -> int:
    answer = serverless.invoke(args.service, args.file, engine=_engine(args))
    if isinstance(answer, bytes):
        sys.stdout.buffer.write(answer)
    else:
        print(answer if isinstance(answer, str) else json.dumps(answer, indent=2))
    return 0


def _delete(args: argparse.Namespace) -> int:
    serverless.delete(args.service, engine=_engine(args))
    print(f"service '{args.service}' deleted")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    shown = serverless.metrics(args.service, since=args.since, step=args.step, engine=_engine(args))
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0

    def latency(part: dict) -> str:
        values = part["latency_s"]
        return " ".join(f"{k} {v * 1000:.0f} ms" for k, v in values.items() if v is not None) or "-"

    total = shown["total"]
    print(f"{shown['service']}: {total['requests']} calls, {total['errors']} errors since it was made")
    for kind in ("sync", "async"):
        part = shown[kind]
        print(
            f"  {kind:<5} last {args.since:g} s: {part['requests']} calls, {part['errors']} errors; "
            f"latency {latency(part)}" + (f"; run {latency({'latency_s': part['run_s']})}" if kind == "async" else "")
        )
    print(f"  jobs now: {shown['jobs']['pending']} pending, {shown['jobs']['running']} running")
    return 0


def _batch(args: argparse.Namespace) -> int:
    result = serverless.batch(
        args.service,
        args.inputs,
        output=args.output,
        resume=args.resume,
        engine=_engine(args),
        slice_size=args.slice_size,
        parallel=args.parallel,
    )
    print(
        f"batch {result.id}: {result.processed} of {result.total} files done in {result.seconds:.1f} s "
        f"({result.throughput:.1f} files/s, {result.slices} slices, {result.parallel} at a time)"
    )
    for failure in result.failed[:20]:
        print(f"  failed: {failure['item']}: {failure['error']}", file=sys.stderr)
    if result.failed:
        print(
            f"  resume the rest with: reeflab batch {args.service} {args.inputs} --resume {result.id}", file=sys.stderr
        )
    return 1 if result.failed else 0


def _guard(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (BatchError, ReefLabClientError) as error:
            print(f"reeflab: {error}", file=sys.stderr)
            return 2

    return run


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the OSCAR API (default: $REEFLAB_SERVERLESS_URL)")
    parser.add_argument(
        "--token-file", help="file holding your token (default: $REEFLAB_TOKEN or $JUPYTERHUB_API_TOKEN)"
    )
    parser.add_argument("--token", help=argparse.SUPPRESS)  # refused with the reason: argv is public


def add_commands(commands) -> None:
    group = commands.add_parser("serverless", help="modules as serverless services (OSCAR API)")
    actions = group.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a marketplace module a serverless service")
    create.add_argument("module", help="module id, e.g. fish-detector")
    create.add_argument("--name", help="service name (default: the module id)")
    create.add_argument("--input", action="append", default=[], help="bucket/folder whose uploads trigger jobs")
    create.add_argument("--output", action="append", default=[], help="bucket/folder for the results")
    create.set_defaults(func=_guard(_create))
    actions.add_parser("list", help="the services you can use").set_defaults(func=_guard(_list))
    invoke = actions.add_parser("invoke", help="call a service synchronously with one file")
    invoke.add_argument("service")
    invoke.add_argument("file")
    invoke.set_defaults(func=_guard(_invoke))
    delete = actions.add_parser("delete", help="delete one of your services")
    delete.add_argument("service")
    delete.set_defaults(func=_guard(_delete))
    metrics = actions.add_parser("metrics", help="one of your services' calls, errors and latencies")
    metrics.add_argument("service")
    metrics.add_argument("--since", type=float, default=3600, help="seconds back (default 3600)")
    metrics.add_argument("--step", type=float, default=60, help="seconds a bucket of --json's buckets (default 60)")
    metrics.add_argument("--json", action="store_true", help="everything the engine answers, as JSON")
    metrics.set_defaults(func=_guard(_metrics))
    for parser in (create, invoke, delete, metrics, actions.choices["list"]):
        _connection_options(parser)

    batch = commands.add_parser("batch", help="run a service over every file under bucket/folder, with progress")
    batch.add_argument("service")
    batch.add_argument("inputs", help="bucket/folder of the input files")
    batch.add_argument("--output", help="bucket/folder for the results (default: the service's output path)")
    batch.add_argument("--resume", metavar="ID", help="continue an interrupted batch without redoing its slices")
    batch.add_argument("--slice-size", type=int, help="files per invocation (default: sized from the parallelism)")
    batch.add_argument("--parallel", type=int, help="invocations at once (default: 80%% of free CPU/RAM)")
    _connection_options(batch)
    batch.set_defaults(func=_guard(_batch))
