"""Upload triggers: which service's input path an uploaded object falls in, from SeaweedFS's events.

The filer posts every metadata change as its own JSON (`event_type`, `key` = the filer path
`/buckets/<bucket>/<object>`, `message.new_entry`); only new or rewritten files count. An
object is identified by its key and version (size and modification time), so the same upload
seen twice — by the webhook and by the catch-up listing after a restart — makes one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .fdl import StorageIO

BUCKETS_ROOT = "/buckets/"
PLATFORM_PROVIDERS = ("minio", "minio.default")


@dataclass(frozen=True)
class UploadedObject:
    bucket: str
    key: str
    size: int
    mtime: int  # seconds, as S3's LastModified

    @property
    def source(self) -> str:
        return f"{self.bucket}/{self.key}"

    @property
    def version(self) -> str:
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
    return UploadedObject(bucket, key, int(attributes.get("file_size") or 0), int(attributes.get("mtime") or 0))


def from_listing(bucket: str, item: dict[str, Any]) -> UploadedObject | None:
    """The same identity for an object seen in a ListObjectsV2 page."""
    key = item["Key"]
    if key.endswith("/") or any(part.startswith(".") for part in key.split("/")):
        return None
    modified: datetime = item["LastModified"]
    return UploadedObject(bucket, key, int(item["Size"]), int(modified.timestamp()))


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
