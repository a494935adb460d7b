"""Reading a project's images where they are, in the process that predicts (predict.py, or whatever feeds a module).

A project's image is named, for that process, by where it is: a local path, `s3://bucket/key` (read with the
connection's AWS_* environment) or `webdav:<path in the connection>` (read with its WEBDAV_URL, WEBDAV_USER and
WEBDAV_PASSWORD: StorageService.credentials_env). One client a process (making one costs more than reading an
image); nothing is listed or copied beyond the image asked for.
"""

from __future__ import annotations

import os
from typing import Any

WEBDAV = "webdav:"
_CLIENTS: dict[str, Any] = {}


def is_remote(where: str) -> bool:
    return where.startswith(("s3://", WEBDAV))


def s3_client() -> Any:
    if "s3" not in _CLIENTS:
        import boto3

        _CLIENTS["s3"] = boto3.client("s3")
    return _CLIENTS["s3"]


def webdav_client() -> Any:
    if "webdav" not in _CLIENTS:
        import httpx
        from webdav4.client import Client

        auth = (os.environ["WEBDAV_USER"], os.environ["WEBDAV_PASSWORD"])
        timeout = httpx.Timeout(30.0, connect=4.0)
        _CLIENTS["webdav"] = Client(os.environ["WEBDAV_URL"].rstrip("/") + "/", auth=auth, retry=False, timeout=timeout)
    return _CLIENTS["webdav"]


def clients_for(places: list[str]) -> None:
    """Make the clients these places need now, before threads share them."""
    if any(p.startswith("s3://") for p in places):
        s3_client()
    if any(p.startswith(WEBDAV) for p in places):
        webdav_client()


def read(where: str) -> bytes:
    """The bytes of a remote image (`s3://bucket/key` or `webdav:<path>`); OSError saying why it could not be read."""
    if where.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = where.removeprefix("s3://").partition("/")
        try:
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise OSError(f"could not be read from storage: {error}") from None
    if where.startswith(WEBDAV):
        import httpx
        from webdav4.client import ClientError, HTTPError

        path = where.removeprefix(WEBDAV)
        try:
            with webdav_client().open(path, "rb") as stream:
                return stream.read()
        except (ClientError, HTTPError, httpx.HTTPError) as error:
            raise OSError(f"could not be read from WebDAV: {type(error).__name__}: {error}") from None
    raise ValueError(f"'{where}' is not an s3:// or webdav: address")
