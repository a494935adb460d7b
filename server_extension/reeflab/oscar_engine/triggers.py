"""Upload triggers: which service's input path an uploaded object falls in, from SeaweedFS's events.

The filer posts every metadata change as its own JSON (`event_type`, `key` = the filer path
`/buckets/<bucket>/<object>`, `message.new_entry`); only new or rewritten files count. An
upload is identified by its key and ETag (plus its version id under S3 versioning), which the
event and the listing both give: the same upload seen twice (by the webhook and by the catch-up
listing after a restart) makes one job, and two uploads of one key within a second make two.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..serverless.fdl import StorageIO

BUCKETS_ROOT = "/buckets/"
PLATFORM_PROVIDERS = ("minio", "minio.default")
ETAG_ATTRIBUTE = "Seaweed-X-Amz-ETag"  # the S3 ETag SeaweedFS keeps in the entry (base64 of its text)
VERSION_ATTRIBUTE = "Seaweed-X-Amz-Version-Id"


@dataclass(frozen=True)
class UploadedObject:
    bucket: str
    key: str
    size: int
    mtime: int  # seconds, as S3's LastModified
    etag: str = ""  # as S3 lists it, without quotes ('' if the server gave none)
    version_id: str = ""

    @property
    def source(self) -> str:
        return f"{self.bucket}/{self.key}"

    @property
    def version(self) -> str:
        """Which upload of the key this is: its ETag (and version id), else size and mtime as before."""
        if not self.etag:
            return self.legacy_version
        return f"{self.etag}@{self.version_id}" if self.version_id else self.etag

    @property
    def legacy_version(self) -> str:
        """The identity engines before ETags recorded (kept so their uploads are not run again)."""
        return f"{self.size}:{self.mtime}"

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def from_event(event: Any) -> UploadedObject | None:
    """The file an event created or rewrote; None for folders, deletions and SeaweedFS's own files."""
    if not isinstance(event, dict) or event.get("event_type") not in ("create", "update"):
        return None
    path, message = event.get("key"), event.get("message") or {}
    entry = message.get("new_entry") if isinstance(message, dict) else None
    if not isinstance(path, str) or not path.startswith(BUCKETS_ROOT) or not isinstance(entry, dict):
        return None
    if entry.get("is_directory"):
        return None
    bucket, _, key = path[len(BUCKETS_ROOT) :].partition("/")
    if not bucket or not key or bucket.startswith(".") or any(part.startswith(".") for part in key.split("/")):
        return None  # .uploads (multipart parts), .system, .batch markers: not user uploads
    attributes = entry.get("attributes") or {}
    size, mtime = int(attributes.get("file_size") or 0), int(attributes.get("mtime") or 0)
    extended = entry.get("extended") if isinstance(entry.get("extended"), dict) else {}
    version_id = _text(extended.get(VERSION_ATTRIBUTE))
    return UploadedObject(bucket, key, size, mtime, _event_etag(entry, extended), version_id)


def _text(value: Any) -> str:
    """A SeaweedFS extended attribute (bytes, so base64 in its JSON) as text; '' if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("ascii").strip('"')
    except (binascii.Error, ValueError):
        return ""


def _event_etag(entry: dict[str, Any], extended: dict[str, Any]) -> str:
    """The ETag S3 lists for this entry: SeaweedFS's own record of it, else the md5 of its content."""
    etag = _text(extended.get(ETAG_ATTRIBUTE))
    if etag:
        return etag
    attributes = entry.get("attributes") or {}
    chunks = entry.get("chunks") or []
    md5 = attributes.get("md5") or (chunks[0].get("e_tag") if len(chunks) == 1 and isinstance(chunks[0], dict) else "")
    if isinstance(md5, str) and md5:
        try:
            return base64.b64decode(md5, validate=True).hex()
        except (binascii.Error, ValueError):
            return ""
    return ""


def from_listing(bucket: str, item: dict[str, Any]) -> UploadedObject | None:
    """The same identity for an object seen in a ListObjectsV2 page."""
    key = item["Key"]
    if key.endswith("/") or any(part.startswith(".") for part in key.split("/")):
        return None
    modified: datetime = item["LastModified"]
    etag = str(item.get("ETag") or "").strip('"')
    version_id = str(item.get("VersionId") or "")
    size, mtime = int(item["Size"]), int(modified.timestamp())
    return UploadedObject(bucket, key, size, mtime, etag, "" if version_id == "null" else version_id)


def not_triggered(objects: list[UploadedObject], done: set[tuple[str, str]]) -> list[UploadedObject]:
    """The listed objects that made no job yet: neither the same ETag (a listing may lack the version id the
    event had) nor the size-and-mtime identity an engine before ETags recorded."""
    seen = {(source, version.partition("@")[0]) for source, version in done} | done
    return [
        obj
        for obj in objects
        if (obj.source, obj.version.partition("@")[0]) not in seen and (obj.source, obj.legacy_version) not in seen
    ]


def is_platform(storage: StorageIO) -> bool:
    return storage.storage_provider in PLATFORM_PROVIDERS


def matches(storage: StorageIO, obj: UploadedObject) -> str | None:
    """The object's path below the input folder if it triggers this input, else None."""
    bucket, _, prefix = storage.path.strip("/").partition("/")
    prefix = prefix.strip("/")
    if not is_platform(storage) or obj.bucket != bucket:
        return None
    if prefix and not obj.key.startswith(prefix + "/"):
        return None
    relative = obj.key[len(prefix) + 1 :] if prefix else obj.key
    name = obj.filename
    if storage.suffix and not any(name.endswith(suffix) for suffix in storage.suffix):
        return None
    if storage.prefix and not any(name.startswith(start) for start in storage.prefix):
        return None
    return relative
