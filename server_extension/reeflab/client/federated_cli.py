"""`reeflab federated ...`: servers, tokens and a demo client from a terminal (same REST API as the panel).

The platform is found like the Python client finds it: $REEFLAB_URL and $REEFLAB_TOKEN, or the
JupyterHub server this runs in. Tokens are never read from the command line (`ps` would show them).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(commands) -> None:
    federated = commands.add_parser("federated", help="federated learning with Flower: servers, tokens, clients")
    actions = federated.add_subparsers(dest="what", required=True)

    token = actions.add_parser("token", help="client tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create a token (its value is shown this once)")
    create.add_argument("name", help="what it is for, e.g. the site that will use it")
    token.add_parser("list", help="your tokens (ids, names, dates)")
    revoke = token.add_parser("revoke", help="revoke a token: servers refuse it from the next connection on")
    revoke.add_argument("id")

    server = actions.add_parser("server", help="Flower servers").add_subparsers(dest="action", required=True)
    start = server.add_parser("start", help="start a Flower server")
    start.add_argument("--strategy", default="FedAvg", choices=["FedAvg", "FedProx", "FedAdam"])
    start.add_argument("--rounds", type=int, default=3)
    start.add_argument("--min-clients", type=int, default=2, help="clients that must take part in every round")
    start.add_argument("--local-epochs", type=int, default=1)
    start.add_argument("--proximal-mu", type=float, default=0.1, help="FedProx proximal term weight")
    start.add_argument("--server-learning-rate", type=float, default=0.1, help="FedAdam eta")
    start.add_argument("--title")
    server.add_parser("list", help="your servers")
    for name, about in (("show", "state and history"), ("logs", "log tail"), ("stop", "stop"), ("delete", "remove")):
        one = server.add_parser(name, help=about)
        one.add_argument("id")
        if name == "logs":
            one.add_argument("--tail", type=int, default=200)

    client = actions.add_parser("client", help="train the default task as one site (token: $REEFLAB_FLOWER_TOKEN)")
    client.add_argument("--server", required=True, help="HOST:PORT of the server")
    client.add_argument("--token-file", help="file holding the token (default: $REEFLAB_FLOWER_TOKEN)")
    client.add_argument("--site", type=int, default=0, help="which site's generated data to train on")
    federated.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.what == "client":
        from ..training.federated_client import main

        argv = ["--server", args.server, "--site", str(args.site)]
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
        print("A site passes it as gRPC metadata 'x-authorization: Bearer <token>', e.g.")
        print("  REEFLAB_FLOWER_TOKEN=<token> reeflab federated client --server HOST:PORT")
    elif args.action == "list":
        for token in federated.list_tokens():
            print(f"{token['id']}  {token['created'][:19]}  {token['name']}")
    else:
        federated.revoke_token(args.id)
        print(f"Revoked {args.id}")
    return 0


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
        )
        print(f"Started {server.id}: clients connect to {server.address}")
    elif args.action == "list":
        for server in federated.list_servers():
            print(f"{server.id}  {server.state:9} {server.address:22} {server.info['title']}")
    elif args.action == "show":
        print(json.dumps(federated.get(args.id).refresh().info, indent=1))
    elif args.action == "logs":
        print("\n".join(federated.get(args.id).logs(args.tail)))
    elif args.action == "stop":
        print(f"{args.id}: {federated.get(args.id).stop().state}")
    else:
        federated.get(args.id).delete()
        print(f"Deleted {args.id}")
    return 0
