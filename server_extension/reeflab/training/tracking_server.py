"""The hub's MLflow tracking server: sqlite + local artifacts, behind MLflow's own basic-auth app.

    python -m reeflab.training.tracking_server --state-dir=DIR [--host=127.0.0.1] [--port=5005] [--log-file=F]

Why basic-auth: MLflow alone has no notion of JupyterHub users, and anything that reaches its
port could read every run. With `--app-name basic-auth` and `default_permission =
NO_PERMISSIONS` every request needs an account, and an account only sees the experiments it
created (MLflow filters searches and refuses reads of others' runs). The hub gives each user
an account (`TrackingAccounts`) whose password is derived from a hub secret, so nothing per
user is stored and a lost password is re-set at the next spawn.

Experiment names: `<user>/<name>` is user's namespace. MLflow lets any account create any name,
so ana could make `bob/default` and have bob's runs land in it; our authorization function
(`authenticate_request`, MLflow's basic auth plus one rule) refuses to create or rename an
experiment into another account's namespace. Ownership itself is MLflow's MANAGE permission.

The secrets (admin password, per-user key, Flask CSRF key) live in 0600 files under the state
directory and reach MLflow through its environment, never its command line. Beside them, the
hub's account store (`hub-accounts.json`) records which incarnation of each hub user (their
generation, generations.py) owns the MLflow account of that name; the password derives from both,
so a namesake of a deleted user never gets the old password.

In kubernetes mode (hub_config/kubernetes/mlflow.yaml, rendered by training/kubernetes.py) the same
entry point runs in a pod: the secrets come from a Secret through SECRET_ENV (the hub reads the same
Secret, so both derive the same passwords), the runs and accounts are in the operator's database
(MLFLOW_BACKEND_STORE_URI, REEFLAB_MLFLOW_AUTH_DATABASE_URI) and the artifacts in the platform's S3
(`--artifacts-destination=s3://...`, MLFLOW_S3_ENDPOINT_URL and AWS_* from the Secret).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ..files import output_to, write_private

ADMIN = "reeflab-admin"


def _secret(path: Path) -> str:
    """A random token kept in `path` (0600), so restarts reuse it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic, and the first of two racing processes wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


# the secret files of the state folder, and the variables that give them in kubernetes mode (from a Secret)
SECRET_ENV = {
    "admin_password": "REEFLAB_MLFLOW_ADMIN_PASSWORD",
    "user_key": "REEFLAB_MLFLOW_USER_KEY",
    "flask_secret": "REEFLAB_MLFLOW_FLASK_SECRET",
}
AUTH_DATABASE_ENV = "REEFLAB_MLFLOW_AUTH_DATABASE_URI"


def secrets_from_env(state: Path, environ: dict[str, str] | None = None) -> None:
    """Write the secrets given in the environment (SECRET_ENV) into the state folder (0600), where
    _secret() finds them: the MLflow pod and the hub then hold the same ones."""
    environ = os.environ if environ is None else environ
    state = Path(state).resolve()
    for name, variable in SECRET_ENV.items():
        value = environ.get(variable, "").strip()
        if value and (not (state / name).exists() or (state / name).read_text().strip() != value):
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(state / name, value)


def prepare(state: Path) -> dict[str, str]:
    """Create the state folder, secrets and auth config; return the environment MLflow needs."""
    state = Path(state).resolve()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state, 0o700)
    (state / "artifacts").mkdir(exist_ok=True, mode=0o700)
    secrets_from_env(state)
    config = state / "auth.ini"
    auth_database = os.environ.get(AUTH_DATABASE_ENV, "").strip() or f"sqlite:///{state / 'auth.db'}"
    text = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {auth_database}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = reeflab.training.tracking_server:authenticate_request\n"
        "grant_default_workspace_access = false\n"
    )
    write_private(config, text)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": _secret(state / "admin_password"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret(state / "flask_secret"),
        # lean on a small machine: no usage reports, and no job runner (huey workers for GenAI jobs and
        # trace rollups, a few hundred MB each) beside the one server worker
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def may_name(username: str, experiment: str) -> bool:
    """An account may name an experiment freely, except inside another account's `<user>/` namespace."""
    return "/" not in experiment or experiment.split("/", 1)[0] == username


def authenticate_request():
    """MLflow's basic auth, then: creating or renaming an experiment into another's namespace is refused (403).

    MLflow calls this (auth.ini's authorization_function) inside its Flask request, before its own checks.
    """
    from flask import Response, request
    from mlflow.exceptions import MlflowException
    from mlflow.protos.service_pb2 import CreateExperiment, UpdateExperiment
    from mlflow.server.auth import authenticate_request_basic_auth, store
    from mlflow.server.handlers import _get_request_message

    authorization = authenticate_request_basic_auth()
    if isinstance(authorization, Response) or request.method != "POST":
        return authorization
    if request.path.endswith("/mlflow/experiments/create"):
        message, field = CreateExperiment(), "name"
    elif request.path.endswith("/mlflow/experiments/update"):
        message, field = UpdateExperiment(), "new_name"
    else:
        return authorization
    try:
        name = getattr(_get_request_message(message, flask_request=request), field)
    except MlflowException:
        return authorization  # MLflow's handler refuses the same malformed request
    username = authorization.username
    if name and not may_name(username, name) and not store.get_user(username).is_admin:
        message = f"'{name}' is in another user's namespace: name your experiments '{username}/<name>'"
        body = json.dumps({"error_code": "PERMISSION_DENIED", "message": message})
        return Response(body, status=403, mimetype="application/json")
    return authorization


def admin_password(state: Path) -> str:
    return _secret(Path(state).resolve() / "admin_password")


def user_password(state: Path, username: str, generation: str | None = None) -> str:
    """The MLflow password of a hub user: HMAC of the name and generation with the hub's key (stable, never stored).

    `generation` None: the one the account store records ('' for an account made before generations).
    """
    if generation is None:
        generation = recorded_generations(state).get(username, "")
    key = _secret(Path(state).resolve() / "user_key").encode()
    message = username if not generation else f"{username}\0{generation}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


ACCOUNTS = "hub-accounts.json"
_accounts_lock = threading.Lock()


def recorded_generations(state: Path) -> dict[str, str]:
    """{hub name: generation} of the MLflow accounts the hub made (the account store)."""
    path = Path(state).resolve() / ACCOUNTS
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise RuntimeError(f"cannot read the MLflow account store {path}: {err}") from None
    return {str(name): str(generation) for name, generation in (data.get("users") or {}).items()}


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[Path]:
    state = Path(state).resolve()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _accounts_lock, open(state / f".{ACCOUNTS}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield state / ACCOUNTS


def record_generation(state: Path, username: str, generation: str | None) -> None:
    """Record which incarnation of `username` owns their MLflow account (None: forget it, the account is gone)."""
    with _locked(state) as path:
        users = recorded_generations(state)
        if generation is None:
            users.pop(username, None)
        else:
            users[username] = generation
        write_private(path, json.dumps({"version": 1, "users": users}, indent=1, sort_keys=True))


def command(state: Path, host: str = "127.0.0.1", port: int = 5005, workers: int = 1, artifacts: str = "") -> list[str]:
    """`mlflow server`: runs in sqlite and artifacts in the state folder, unless the environment names a
    database (MLFLOW_BACKEND_STORE_URI, which MLflow reads itself: a DSN's password stays off the command
    line) and `artifacts` another destination (s3://bucket/prefix)."""
    state = Path(state).resolve()
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    sqlite = f"--backend-store-uri=sqlite:///{state / 'mlflow.db'}"
    store = [] if os.environ.get("MLFLOW_BACKEND_STORE_URI") else [sqlite]
    return [
        mlflow,
        "server",
        "--app-name=basic-auth",
        f"--host={host}",
        f"--port={port}",
        f"--workers={workers}",
        *store,
        f"--artifacts-destination={artifacts or state / 'artifacts'}",
        "--serve-artifacts",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5005)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--artifacts-destination", default="", help="e.g. s3://bucket/ (default: the state folder)")
    parser.add_argument("--log-file", type=Path, help="where MLflow's output goes (default: stdout and stderr)")
    args = parser.parse_args(argv)
    if args.log_file:
        output_to(args.log_file)
    env = {**os.environ, **prepare(Path(args.state_dir))}
    cmd = command(Path(args.state_dir), args.host, args.port, args.workers, args.artifacts_destination)
    os.execve(cmd[0], cmd, env)  # the hub (or a test) manages MLflow itself under this pid


if __name__ == "__main__":
    main()
