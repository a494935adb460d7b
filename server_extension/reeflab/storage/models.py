"""Storage connections as users create and see them: S3 buckets and WebDAV folders (Nextcloud...).

A connection keeps its secrets (S3 secret key, WebDAV app password) server-side only: `public()`
is what every API answer carries, and it never holds a secret.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
PLATFORM = "reeflab"  # the platform's own S3 connection, made for every user
MountState = Literal["unmounted", "mounting", "mounted", "error"]


def _http_url(value: str, field: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must be an http(s) URL such as https://cloud.example.org/..., not '{value}'")
    if parts.username or parts.password:
        raise ValueError(f"put the user and password in their own fields, not in the {field}")
    return value.rstrip("/")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name: the mount folder is ~/storage/<name>")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(
                f"'{name}' is not a connection name: use 1-32 lowercase letters, digits, '-' or '_', "
                "starting with a letter"
            )
        return name


class S3Request(_Request):
    """An S3 bucket (optionally a folder in it) on any S3 server: MinIO, SeaweedFS, AWS, Ceph..."""

    kind: Literal["s3"]
    endpoint: str = Field(description="S3 server URL, e.g. https://minio.example.org")
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = Field("", description="Folder inside the bucket; empty for the whole bucket")
    region: str = "us-east-1"
    access_key: str = Field(min_length=1)
    secret_key: SecretStr = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _http_url(value, "endpoint")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$", value):
            raise ValueError(f"'{value}' is not a bucket name: lowercase letters, digits, '.' and '-'")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        parts = [p for p in value.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError("the prefix may not contain '.' or '..' folders")
        return "/".join(parts)


class WebDAVRequest(_Request):
    """A WebDAV folder: Nextcloud/ownCloud (`https://host/remote.php/dav/files/<user>`) or any WebDAV server."""

    kind: Literal["webdav"]
    url: str = Field(description="WebDAV folder URL, e.g. https://cloud.example.org/remote.php/dav/files/ana")
    user: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1, description="An app password, not your login password")
    vendor: Literal["owncloud", "nextcloud", "other"] = Field(
        "owncloud",
        description="rclone's WebDAV vendor; 'owncloud' works with Nextcloud too and with plain WebDAV servers",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, "url")


ConnectionRequest = Annotated[S3Request | WebDAVRequest, Field(discriminator="kind")]


class StorageConnection(BaseModel):
    """A stored connection: the request (secrets included) plus what the platform keeps about it."""

    owner: str
    created: datetime
    spec: ConnectionRequest
    platform: bool = Field(False, description="Made by the platform (the user's own S3 bucket); not deletable")
    mounted: bool = Field(False, description="The user wants it mounted: remounted when the server restarts")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    def secrets(self) -> list[str]:
        """Every secret value of this connection (to scrub them from any text shown to users)."""
        secret = self.spec.secret_key if self.spec.kind == "s3" else self.spec.password
        return [secret.get_secret_value()]

    def bucket_path(self) -> str | None:
        """S3: 'bucket' or 'bucket/prefix', what this connection's paths start with in S3 terms (serverless
        services' input/output name the platform's as 'ana/in'); WebDAV: None."""
        if self.spec.kind == "s3":
            return "/".join(p for p in (self.spec.bucket, self.spec.prefix) if p)
        return None

    def location(self) -> str:
        """Where the data is, for people: s3 endpoint + bucket/prefix, or the WebDAV URL."""
        if self.spec.kind == "s3":
            return f"{self.spec.endpoint}/{self.bucket_path()}"
        return self.spec.url

    def description(self) -> str:
        """What it is, in words: the platform's names the user's bucket (its name is not the bucket's)."""
        if self.platform:
            return f"your bucket {self.bucket_path()} on the platform"
        if self.spec.kind == "s3":
            return f"bucket {self.bucket_path()} at {self.spec.endpoint}"
        return f"WebDAV folder {self.spec.url}"

    def public(self) -> dict[str, Any]:
        """What the API returns: no secret (only whether one is set)."""
        data = self.spec.model_dump(mode="json", exclude={"secret_key", "password"})
        data.update(
            created=self.created.isoformat(),
            platform=self.platform,
            location=self.location(),
            bucket_path=self.bucket_path(),
            description=self.description(),
        )
        return data

    def dump(self) -> str:
        """The stored form, secrets in clear: for a 0600 file only."""
        data = self.model_dump(mode="json")
        data["spec"]["secret_key" if self.spec.kind == "s3" else "password"] = self.secrets()[0]
        return json.dumps(data, indent=1)


class FolderRequest(BaseModel):
    """POST /reeflab/api/storage/connections/<name>/folders: make an empty folder."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="The new folder's path in the connection, e.g. 'fish-in' or 'surveys/2026'")


class TransferRequest(BaseModel):
    """POST /reeflab/api/storage/transfers: copy or sync a folder (or file) between storage and the workspace."""

    model_config = ConfigDict(extra="forbid")

    connection: str
    path: str = Field("", description="Path inside the connection")
    workspace_path: str = Field(description="Path inside your workspace (the file browser's root)")
    direction: Literal["download", "upload"] = Field(description="download: storage -> workspace")
    mode: Literal["copy", "sync"] = Field(
        "copy", description="copy adds and updates files; sync also deletes what the source lacks"
    )


class Transfer(BaseModel):
    """A copy/sync run by rclone, with its progress."""

    id: str
    owner: str
    connection: str
    path: str
    workspace_path: str
    direction: str
    mode: str
    state: Literal["running", "done", "failed", "cancelled"] = "running"
    reason: str | None = None
    bytes: int = 0
    total_bytes: int = 0
    files: int = 0
    total_files: int = 0
    errors: int = 0
    started: datetime
    ended: datetime | None = None

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"owner"})
        data["percent"] = round(100 * self.bytes / self.total_bytes, 1) if self.total_bytes else None
        return data
