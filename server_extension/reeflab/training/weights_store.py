"""Registered weights in object storage, for kubernetes mode: uploaded at registration, fetched by deployment pods.

A registered version goes to the owner's own bucket on the platform's S3, under `models/<name>/<version>/`
(weights.pt and ai4-metadata.yml), with the owner's own key: their IAM policy opens their buckets only, so
nobody else's key reads it. A Kubernetes deployment of it fetches it in an init container before the module
starts (deployments/backends/kubernetes.py), with the owner's key from a Secret, into an emptyDir mounted where
REEFLAB_WEIGHTS points:

    python -m reeflab.training.weights_store fetch --source=s3://<bucket>/models/<name>/<version>/ \\
        --sha256=<registered digest> --dest=/reeflab/weights

(endpoint in $REEFLAB_S3_ENDPOINT, key in $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY). Why an init container
rather than the module reading s3:// itself: the module's code and its loader stay the same in both modes (a
local path), the key never reaches the module's container (DEEPaaS answers without credentials), and the
digest is checked before the module starts: a missing or changed object fails the pod's start with the reason.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..modules.metadata import METADATA_FILE
from ..storage.models import PLATFORM

WEIGHTS_FILE = "weights.pt"  # as registry.py stores it
FILES = (WEIGHTS_FILE, METADATA_FILE)
PREFIX = "models"
SOURCE_ENV = "REEFLAB_WEIGHTS_SOURCE"  # s3://<bucket>/models/<name>/<version>/ of a registered model's deploy_env
SHA256_ENV = "REEFLAB_WEIGHTS_SHA256"


@dataclass(frozen=True)
class ObjectStore:
    """The owner's place on the platform's S3: endpoint, their key, their bucket."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    def client(self):
        from ..storage.platform_s3 import s3_client

        return s3_client(self.endpoint, {"access_key": self.access_key, "secret_key": self.secret_key})


def platform_store(storage) -> Callable[[str], ObjectStore | None]:
    """ModelRegistry's `store`: an owner's platform connection (StorageService), their own bucket and key."""

    def store(owner: str) -> ObjectStore | None:
        # refreshed from the serverless engine where there is one, else the connection set for the user
        connection = storage.ensure_platform_connection(owner) or storage.store.load(owner).get(PLATFORM)
        if connection is None:
            return None
        spec = connection.spec
        return ObjectStore(spec.endpoint, spec.access_key, spec.secret_key.get_secret_value(), spec.bucket)

    return store


def location(bucket: str, name: str, version: str) -> str:
    return f"s3://{bucket}/{PREFIX}/{name}/{version}/"


def split(source: str) -> tuple[str, str]:
    """(bucket, prefix ending in '/') of an s3:// location."""
    parts = urlsplit(source)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{source!r} is not an s3://bucket/prefix/ location")
    return parts.netloc, parts.path.lstrip("/").rstrip("/") + "/"


def upload(store: ObjectStore, folder: Path, name: str, version: str) -> str:
    """Put a version's files (folder/weights.pt, folder/ai4-metadata.yml) in the owner's bucket; its location."""
    where = location(store.bucket, name, version)
    bucket, prefix = split(where)
    client = store.client()
    for file in FILES:
        client.upload_file(str(folder / file), bucket, prefix + file)
    return where


def delete(store: ObjectStore, name: str) -> None:
    """Every version of `name` in the owner's bucket."""
    client = store.client()
    prefix = f"{PREFIX}/{name}/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            client.delete_object(Bucket=store.bucket, Key=item["Key"])


def fetch(client, source: str, sha256: str, dest: Path) -> Path:
    """Download a version's files into `dest`; the weights must have the registered digest. Returns the weights."""
    bucket, prefix = split(source)
    dest.mkdir(parents=True, exist_ok=True)
    for file in FILES:
        partial = dest / f".{file}.part"
        client.download_file(bucket, prefix + file, str(partial))
        if file == WEIGHTS_FILE:
            digest = hashlib.sha256(partial.read_bytes()).hexdigest()
            if digest != sha256:
                partial.unlink()
                raise ValueError(f"{source}{file} has sha256 {digest}, not the registered {sha256}")
        partial.replace(dest / file)
    return dest / WEIGHTS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reeflab.training.weights_store", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download a registered version (before the module starts)")
    get.add_argument("--source", required=True, help="s3://<bucket>/models/<name>/<version>/")
    get.add_argument("--sha256", required=True, help="the registered digest of weights.pt")
    get.add_argument("--dest", required=True, type=Path, help="folder REEFLAB_WEIGHTS points into")
    args = parser.parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    from ..storage.platform_s3 import s3_client

    try:
        key = {"access_key": os.environ["AWS_ACCESS_KEY_ID"], "secret_key": os.environ["AWS_SECRET_ACCESS_KEY"]}
        client = s3_client(os.environ["REEFLAB_S3_ENDPOINT"], key)
        path = fetch(client, args.source, args.sha256, args.dest)
    except KeyError as err:
        print(f"cannot fetch the registered weights: ${err.args[0]} is not set", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, ValueError, OSError) as err:
        print(f"cannot fetch the registered weights {args.source}: {err}", file=sys.stderr)
        return 1
    print(f"fetched {path} ({path.stat().st_size} bytes, sha256 {args.sha256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
