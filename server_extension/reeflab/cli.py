"""The `reeflab` command: `reeflab up` starts the platform on this machine."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .client import federated_cli
from .hub.config import REPO, state_dir


def hub_url() -> str:
    ip = os.environ.get("REEFLAB_IP", "127.0.0.1")
    port = os.environ.get("REEFLAB_PORT", "8000")
    base = os.environ.get("REEFLAB_BASE_URL", "/")
    return f"http://{ip}:{port}{base}"


def hub_routed(base_url: str) -> bool:
    """Whether the proxy routes requests to the hub yet, asked on the proxy's own API: a request through
    the proxy before then would only leave a "404 GET" in the output."""
    api = f"http://127.0.0.1:{os.environ.get('REEFLAB_PROXY_API_PORT', '8001')}/api/routes"
    try:
        token = (state_dir() / "proxy_token").read_text().strip()
        request = urllib.request.Request(api, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=2) as answer:
            routes = json.load(answer)
    except (OSError, ValueError):
        return False
    return (base_url.rstrip("/") or "/") in routes


def wait_for_hub(url: str, proc: subprocess.Popen, timeout: float = 180) -> bool:
    """True once the proxy routes the hub and the hub answers its API; False if it exits or times out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if hub_routed(urllib.parse.urlparse(url).path):
            try:
                with urllib.request.urlopen(url + "hub/api/", timeout=2):
                    return True
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.5)
    return False


def login_help(url: str) -> str:
    if os.environ.get("REEFLAB_AUTH", "local") == "oidc":
        return f"  Log in:  {url}hub/login with {os.environ.get('REEFLAB_OIDC_NAME', 'your OIDC provider')}"
    admin = os.environ.get("REEFLAB_ADMINS", "admin").split(",")[0]
    return (
        f"  Log in:  {url}hub/login\n"
        f"  First login of a name sets its password: log in as '{admin}' (the admin) now,\n"
        f"  then add users in {url}hub/admin; each sets a password at first login."
    )


def up(args: argparse.Namespace) -> int:
    """Run JupyterHub in the foreground; Ctrl-C (or SIGTERM) stops it, every user server, everything users
    started from them and the platform's services, and says what it stopped."""
    config = REPO / "hub_config" / "jupyterhub_config.py"
    proc = subprocess.Popen([sys.executable, "-m", "reeflab.hub.app", "-f", str(config)], cwd=state_dir())
    # `kill` of this command stops the hub too (it then stops the servers it spawned)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    url = hub_url()
    try:
        if wait_for_hub(url, proc):
            print(
                f"\n  ReefLab is up: {url}\n{login_help(url)}\n"
                f"  Serverless (OSCAR API): {url}services/reeflab-serverless/\n"
                f"  S3 (SeaweedFS; your key: GET <serverless>/system/config): "
                f"http://127.0.0.1:{os.environ.get('REEFLAB_S3_PORT', '8333')}\n"
                f"  MLflow (your runs, logged in as you): {url}hub/user-redirect/reeflab/mlflow/\n  Stop: Ctrl-C\n",
                flush=True,
            )
        return proc.wait()
    except KeyboardInterrupt:
        # the hub stops everything users started (hub/app.py): wait for it, whatever else is pressed
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        proc.send_signal(signal.SIGINT)  # Ctrl-C reached it too (one process group), unless only we were sent it
        return proc.wait()


def module_new(args: argparse.Namespace) -> int:
    """Scaffold a module package from the template."""
    from .errors import ReefLabError
    from .modules.template import new_module

    try:
        path = new_module(args.name, Path(args.dir), args.title)
    except ReefLabError as err:
        print(f"reeflab: {err.message}", file=sys.stderr)
        return 2
    print(f"Created {path}\n  cd {path} && pip install -e '.[test]' && pytest")
    print(
        "  Once installed it appears in the ReefLab marketplace; `deepaas-run --model-name", args.name, "` serves it."
    )
    return 0


def module_publish(args: argparse.Namespace) -> int:
    """`reeflab module publish|unpublish <id>`, through your server (as the Python client finds it)."""
    from .client import checks
    from .client.connection import ReefLabClientError

    try:
        if args.action == "unpublish":
            checks.unpublish(args.module)
            print(f"{args.module} is no longer in the platform's catalogue")
            return 0
        item = checks.check_and_publish(args.module)
    except ReefLabClientError as err:
        print(f"reeflab: {err.message}", file=sys.stderr)
        return 1 if isinstance(err, checks.CheckFailed) else 2
    print(f"Published {item['id']} to the platform's catalogue (checked {item['check']['checked']}, passed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reeflab", description="ReefLab AI platform")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start JupyterHub with ReefLab on this machine").set_defaults(func=up)
    module = commands.add_parser("module", help="develop AI modules").add_subparsers(dest="action", required=True)
    new = module.add_parser("new", help="scaffold a new module package (DEEPaaS v2 contract)")
    new.add_argument("name", help="module id: lower-case words joined by '-', e.g. fish-counter")
    new.add_argument("--dir", default=".", help="folder to create it in (default: here)")
    new.add_argument("--title", help="title shown in the marketplace")
    new.set_defaults(func=module_new)
    from .checks.runner import add_arguments as add_check_arguments
    from .checks.runner import command as check_module

    check = module.add_parser("check", help="run the checks the platform runs before listing a module")
    add_check_arguments(check)
    check.set_defaults(func=check_module)
    publish = module.add_parser("publish", help="check a marketplace module on the platform and share it")
    publish.add_argument("module", help="id of a module installed in your server, e.g. reef-counter")
    publish.set_defaults(func=module_publish)
    unpublish = module.add_parser("unpublish", help="take a module you published out of the platform's catalogue")
    unpublish.add_argument("module")
    unpublish.set_defaults(func=module_publish)
    from .jobs.cli import add_commands as add_job_commands

    add_job_commands(commands)
    from .pipelines.cli import add_commands as add_pipeline_commands

    add_pipeline_commands(commands)
    from .client.serverless_cli import add_commands as add_serverless_commands

    add_serverless_commands(commands)
    federated_cli.add_parser(commands)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
