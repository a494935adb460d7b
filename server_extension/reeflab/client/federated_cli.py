"""`reeflab federated ...`: federations, tokens and joining as a site from a terminal (same REST API as the panel).

The platform is found like the Python client finds it: $REEFLAB_URL and $REEFLAB_TOKEN, or the
JupyterHub server this runs in. Tokens are never read from the command line (`ps` would show them).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(commands) -> None:
    federated = commands.add_parser(
        "federated", help="federated learning with Flower: federations, tokens, joining as a site"
    )
    actions = federated.add_subparsers(dest="what", required=True)

    token = actions.add_parser("token", help="client tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create a token (its value is shown this once)")
    create.add_argument("name", help="what it is for, e.g. the site that will use it")
    token.add_parser("list", help="your tokens (ids, names, dates)")
    revoke = token.add_parser("revoke", help="revoke a token: its SuperNode is unregistered and refused")
    revoke.add_argument("id")

    server = actions.add_parser(
        "server", help="federations (a Flower SuperLink running the built-in Flower App)"
    ).add_subparsers(dest="action", required=True)
    start = server.add_parser("start", help="start a federation")
    start.add_argument("--strategy", default="FedAvg", choices=["FedAvg", "FedProx", "FedAdam"])
    start.add_argument("--rounds", type=int, default=3)
    start.add_argument("--min-clients", type=int, default=2, help="clients that must take part in every round")
    start.add_argument("--local-epochs", type=int, default=1)
    start.add_argument("--proximal-mu", type=float, default=0.1, help="FedProx proximal term weight")
    start.add_argument("--server-learning-rate", type=float, default=0.1, help="FedAdam eta")
    start.add_argument("--title")
    start.add_argument("--app", help="folder of your own Flower App (default: the built-in task)")
    start.add_argument(
        "--run-config", action="append", default=[], metavar="KEY=VALUE", help="your own app's run config (TOML values)"
    )
    server.add_parser("list", help="your servers")
    for name, about in (
        ("show", "state and history"),
        ("ca", "the federation's CA certificate (sites pass it to join)"),
        ("logs", "log tail"),
        ("stop", "stop"),
        ("delete", "remove"),
    ):
        one = server.add_parser(name, help=about)
        one.add_argument("id")
        if name == "logs":
            one.add_argument("--tail", type=int, default=200)

    join = actions.add_parser(
        "join", help="join a federation as a site: a Flower SuperNode keyed by your token ($REEFLAB_FLOWER_TOKEN)"
    )
    join.add_argument("--superlink", required=True, help="HOST:PORT of the federation (`server show`: address)")
    join.add_argument("--root-certificates", required=True, help="the federation's CA file (`server ca ID > FILE`)")
    join.add_argument("--token-file", help="file holding the token (default: $REEFLAB_FLOWER_TOKEN)")
    join.add_argument("--site", type=int, default=0, help="which site's generated data the built-in task uses")
    federated.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.what == "join":
        from ..training.federated_client import main

        argv = ["--superlink", args.superlink, "--root-certificates", args.root_certificates, "--site", str(args.site)]
        return main(argv + (["--token-file", args.token_file] if args.token_file else []))

    from . import federated
    from .connection import ReefLabClientError

    try:
        if args.what == "token":
            return _token(federated, args)
        return _server(federated, args)
    except ReefLabClientError as err:
        print(f"reeflab: {err.message}", file=sys.stderr)
        return 2


def _token(federated, args) -> int:
    if args.action == "create":
        created = federated.create_token(args.name)
        print(f"Token '{created['name']}' (id {created['id']}); it is shown only now, keep it secret:\n")
        print(f"  {created['token']}\n")
        print("The site's Flower SuperNode authenticates with the key this token derives, e.g.")
        print("  REEFLAB_FLOWER_TOKEN=<token> reeflab federated join --superlink HOST:PORT --root-certificates CA")
    elif args.action == "list":
        for token in federated.list_tokens():
            print(f"{token['id']}  {token['created'][:19]}  {token['name']}")
    else:
        federated.revoke_token(args.id)
        print(f"Revoked {args.id}")
    return 0


def _run_config(pairs: list[str]) -> dict:
    """KEY=VALUE pairs, each VALUE read as TOML (numbers, booleans, quoted strings) or else a plain string."""
    import tomllib

    config = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            config[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            config[key.strip()] = value
    return config


def _server(federated, args) -> int:
    if args.action == "start":
        server = federated.start_server(
            strategy=args.strategy,
            rounds=args.rounds,
            min_clients=args.min_clients,
            local_epochs=args.local_epochs,
            proximal_mu=args.proximal_mu,
            server_learning_rate=args.server_learning_rate,
            **({"title": args.title} if args.title else {}),
            **({"app": args.app} if args.app else {}),
            **({"run_config": _run_config(args.run_config)} if args.run_config else {}),
        )
        print(f"Started {server.id}: its SuperLink is at {server.address}; a site joins with")
        print(f"  reeflab federated server ca {server.id} > federation-ca.crt")
        print(f"  REEFLAB_FLOWER_TOKEN=<token> {server.join_command}")
    elif args.action == "list":
        for server in federated.list_servers():
            print(f"{server.id}  {server.state:9} {server.address:22} {server.info['title']}")
    elif args.action == "show":
        print(json.dumps(federated.get(args.id).refresh().info, indent=1))
    elif args.action == "ca":
        print(federated.get(args.id).info["root_certificates"], end="")
    elif args.action == "logs":
        print("\n".join(federated.get(args.id).logs(args.tail)))
    elif args.action == "stop":
        print(f"{args.id}: {federated.get(args.id).stop().state}")
    else:
        federated.get(args.id).delete()
        print(f"Deleted {args.id}")
    return 0
