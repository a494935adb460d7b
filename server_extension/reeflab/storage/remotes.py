"""API operations on a connection's data: boto3 for S3, webdav4 for WebDAV; short timeouts, plain errors.

Each remote sees paths relative to the connection's root (the bucket + prefix, or the WebDAV
folder): callers confine them first (paths.remote_path). Failures become `StorageFailed` with a
message that says what to fix and never carries a secret.
"""

from __future__ import annotations

import contextlib
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import cached_property
from typing import IO, Any

from ..errors import Conflict, NotFound, ReefLabError
from .models import S3Request, StorageConnection, WebDAVRequest
from .paths import join

CONNECT_TIMEOUT = 4.0  # seconds: a host that does not answer fails fast
READ_TIMEOUT = 30.0


class StorageFailed(ReefLabError):
    """The storage server refused or could not be reached (the platform itself is fine)."""

    status = 502


class Remote(ABC):
    """One connection's data, as the panel and the client use it (S3 and WebDAV implement it)."""

    def __init__(self, connection: StorageConnection, connect_timeout: float = CONNECT_TIMEOUT):
        self.connection = connection
        self.connect_timeout = connect_timeout

    def check(self) -> None:
        """A real round trip with the credentials: list the root. Raises StorageFailed saying why."""
        self.list("", limit=1)

    @abstractmethod
    def list(self, path: str, limit: int = 100, page: str | None = None) -> tuple[list[dict], str | None]:
        """Up to `limit` entries under `path` from `page` on, and the next page's token (None: the last)."""

    @abstractmethod
    def upload(self, path: str, data: IO[bytes]) -> None:
        """Write `data` as the file at `path` (its folders are made)."""

    @abstractmethod
    def download(self, path: str) -> Iterator[bytes]:
        """The file at `path`, in chunks."""

    @abstractmethod
    def delete(self, path: str) -> int:
        """Delete a file, or a folder with everything in it; returns how many files went."""

    @abstractmethod
    def kind(self, path: str) -> str | None:
        """'directory', 'file', or None where nothing is at `path`."""

    @abstractmethod
    def mkdir(self, path: str) -> None:
        """Make the (empty) folder `path`, and the folders above it."""


def remote_for(connection: StorageConnection, connect_timeout: float = CONNECT_TIMEOUT) -> Remote:
    kind = {"s3": S3Remote, "webdav": WebDAVRemote}[connection.kind]
    return kind(connection, connect_timeout)


class S3Remote(Remote):
    @property
    def spec(self) -> S3Request:
        return self.connection.spec

    @contextlib.contextmanager
    def _errors(self, path: str):
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        where = f"S3 '{self.connection.name}' ({self.spec.endpoint}, bucket {self.spec.bucket})"
        try:
            yield
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") or status in (401, 403):
                raise StorageFailed(
                    f"{where} refused the access key ({code or status}): check the access key and secret key, "
                    "and that they may use this bucket."
                ) from None
            if code in ("NoSuchBucket",):
                raise StorageFailed(f"{where}: the bucket does not exist.") from None
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"No '{path}' in {self.connection.name}.") from None
            if code == "ExistingObjectIsFile":  # SeaweedFS: a folder where a file is
                raise Conflict(f"A file is in the way of '{path}' in {self.connection.name}.") from None
            raise StorageFailed(f"{where} answered {code or status}.") from None
        except EndpointConnectionError:
            raise StorageFailed(f"{where} cannot be reached: check the endpoint URL and your network.") from None
        except (BotoCoreError, OSError) as err:
            raise StorageFailed(f"{where} did not answer in time or failed: {type(err).__name__}.") from None

    @cached_property
    def client(self):
        """One boto3 client per remote (making one costs tens of ms; they are thread-safe)."""
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=READ_TIMEOUT,
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        return boto3.client(
            "s3",
            endpoint_url=self.spec.endpoint,
            region_name=self.spec.region,
            aws_access_key_id=self.spec.access_key,
            aws_secret_access_key=self.spec.secret_key.get_secret_value(),
            config=config,
        )

    def key(self, path: str) -> str:
        return join(self.spec.prefix, path)

    def list(self, path: str, limit: int = 100, page: str | None = None) -> tuple[list[dict], str | None]:
        prefix = self.key(path)
        prefix = prefix + "/" if prefix else ""
        args: dict[str, Any] = {"Bucket": self.spec.bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": limit}
        if page:
            args["ContinuationToken"] = page
        with self._errors(path):
            answer = self.client.list_objects_v2(**args)
        items = [
            {"name": p["Prefix"][len(prefix) :].rstrip("/"), "type": "directory", "size": None, "modified": None}
            for p in answer.get("CommonPrefixes", [])
        ]
        for obj in answer.get("Contents", []):
            name = obj["Key"][len(prefix) :]
            if name:  # the folder marker itself
                items.append(
                    {"name": name, "type": "file", "size": obj["Size"], "modified": obj["LastModified"].isoformat()}
                )
        for item in items:
            item["path"] = join(path, item["name"])
        return items, answer.get("NextContinuationToken") if answer.get("IsTruncated") else None

    def upload(self, path: str, data: IO[bytes]) -> None:
        with self._errors(path):
            self.client.upload_fileobj(data, self.spec.bucket, self.key(path))

    def download(self, path: str) -> Iterator[bytes]:
        with self._errors(path):
            body = self.client.get_object(Bucket=self.spec.bucket, Key=self.key(path))["Body"]
        with contextlib.closing(body), self._errors(path):
            yield from body.iter_chunks(1 << 20)

    def delete(self, path: str) -> int:
        client, key = self.client, self.key(path)
        with self._errors(path):
            keys = []
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.spec.bucket, Prefix=key + "/")
            for page in pages:
                keys += [obj["Key"] for obj in page.get("Contents", [])]
            if keys or self.kind(path) == "directory":
                # every folder's `name/` too, made or not: SeaweedFS keeps a folder (empty) until that goes,
                # and only once it is empty; a folder's content sorts after it, so reversed, content first
                folders = {k[: i + 1] for k in keys for i in range(len(key), len(k)) if k[i] == "/"}
                doomed = sorted({*keys, *folders, key + "/"}, reverse=True)
            else:
                client.head_object(Bucket=self.spec.bucket, Key=key)  # NotFound if absent
                keys = doomed = [key]
            for start in range(0, len(doomed), 1000):
                batch = [{"Key": k} for k in doomed[start : start + 1000]]
                client.delete_objects(Bucket=self.spec.bucket, Delete={"Objects": batch, "Quiet": True})
        return max(1, sum(not k.endswith("/") for k in keys))

    def kind(self, path: str) -> str | None:
        if not path:
            return "directory"
        key = self.key(path)
        with self._errors(path):
            # anything under `key/`, its own folder marker, or (SeaweedFS) an empty folder: a directory
            under = self.client.list_objects_v2(Bucket=self.spec.bucket, Prefix=key + "/", Delimiter="/", MaxKeys=1)
            if under.get("KeyCount"):
                return "directory"
        try:
            with self._errors(path):
                self.client.head_object(Bucket=self.spec.bucket, Key=key)
        except NotFound:
            return None
        return "file"

    def mkdir(self, path: str) -> None:
        # an empty object named `path/`: S3 consoles, rclone and SeaweedFS's filer show it as a folder
        with self._errors(path):
            self.client.put_object(Bucket=self.spec.bucket, Key=self.key(path) + "/", Body=b"")


class WebDAVRemote(Remote):
    def __init__(self, connection: StorageConnection, connect_timeout: float = CONNECT_TIMEOUT):
        super().__init__(connection, connect_timeout)
        self._folders: set[str] = set()  # folders known to exist (uploads skip asking again)

    @property
    def spec(self) -> WebDAVRequest:
        return self.connection.spec

    @contextlib.contextmanager
    def _errors(self, path: str):
        import httpx
        from webdav4.client import ClientError, HTTPError, ResourceAlreadyExists, ResourceNotFound

        where = f"WebDAV '{self.connection.name}' ({self.spec.url})"
        try:
            yield
        except ResourceNotFound:
            raise NotFound(f"No '{path}' in {self.connection.name}.") from None
        except ResourceAlreadyExists:
            raise Conflict(f"'{path}' already exists in {self.connection.name}.") from None
        except HTTPError as err:
            if err.status_code in (401, 403):
                raise StorageFailed(
                    f"{where} refused user '{self.spec.user}' (HTTP {err.status_code}): check the user name and "
                    "the app password (Nextcloud: Settings > Security > App passwords)."
                ) from None
            if err.status_code == 404:
                raise NotFound(f"No '{path or '/'}' in {self.connection.name}: check the URL.") from None
            raise StorageFailed(f"{where} answered HTTP {err.status_code}.") from None
        except (httpx.ConnectError, socket.gaierror):
            raise StorageFailed(f"{where} cannot be reached: check the URL and your network.") from None
        except httpx.TimeoutException:
            raise StorageFailed(f"{where} did not answer in time: check the URL and your network.") from None
        except (httpx.HTTPError, ClientError) as err:
            raise StorageFailed(f"{where} failed: {type(err).__name__}.") from None

    @cached_property
    def client(self):
        """One webdav4 client (an httpx connection pool) per remote."""
        import httpx
        from webdav4.client import Client

        timeout = httpx.Timeout(READ_TIMEOUT, connect=self.connect_timeout)
        password = self.spec.password.get_secret_value()
        return Client(self.spec.url + "/", auth=(self.spec.user, password), retry=False, timeout=timeout)

    def list(self, path: str, limit: int = 100, page: str | None = None) -> tuple[list[dict], str | None]:
        # WebDAV lists a folder in one PROPFIND: page it here, in name order, with the offset as token
        with self._errors(path):
            entries = self.client.ls(path, detail=True)
        start = int(page) if page and page.isdigit() else 0
        items = []
        for entry in sorted(entries, key=lambda e: e["name"])[start : start + limit]:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            modified = entry.get("modified")
            items.append(
                {
                    "name": name,
                    "path": join(path, name),
                    "type": "directory" if entry.get("type") == "directory" else "file",
                    "size": entry.get("content_length"),
                    "modified": modified.isoformat() if modified else None,
                }
            )
        more = start + limit < len(entries)
        return items, str(start + limit) if more else None

    def upload(self, path: str, data: IO[bytes]) -> None:
        client = self.client
        with self._errors(path):
            folder = path.rsplit("/", 1)[0] if "/" in path else ""
            self._make_folders(client, folder)
            client.upload_fileobj(data, path, overwrite=True)

    def _make_folders(self, client, folder: str) -> None:
        done = ""
        for part in [p for p in folder.split("/") if p]:
            done = join(done, part)
            if done not in self._folders and not client.exists(done):
                client.mkdir(done)
            self._folders.add(done)

    def download(self, path: str) -> Iterator[bytes]:
        client = self.client
        with self._errors(path), client.open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                yield chunk

    def delete(self, path: str) -> int:
        client = self.client
        with self._errors(path):
            count = 1
            if client.isdir(path):
                count = max(1, sum(1 for _ in self._walk(client, path)))
            client.remove(path)  # WebDAV DELETE of a collection removes what it holds
        self._folders = {f for f in self._folders if f != path and not f.startswith(path + "/")}
        return count

    def kind(self, path: str) -> str | None:
        try:
            with self._errors(path):
                info = self.client.info(path)
        except NotFound:
            return None
        return "directory" if info.get("type") == "directory" else "file"

    def mkdir(self, path: str) -> None:
        self._folders.clear()  # known folders may have gone meanwhile: ask the server again
        with self._errors(path):
            self._make_folders(self.client, path)

    def _walk(self, client, path: str) -> Iterator[str]:
        for entry in client.ls(path, detail=True):
            name = entry["name"].rstrip("/")
            if entry.get("type") == "directory":
                yield from self._walk(client, name)
            else:
                yield name
