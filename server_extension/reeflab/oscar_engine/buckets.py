"""OSCAR's /system/buckets on the platform's S3 (SeaweedFS): a user's own buckets, as the engine's store records them.

A user sees, lists, deletes and presigns only buckets recorded as theirs (never inferred from a
name), and may make only the names the platform's naming rules give them (`<own bucket>--<name>`,
platform_s3.py). Listings and presigned URLs use the owner's own S3 key, whose IAM policy lists
exactly their recorded buckets, so a mistake here still cannot reach another user's objects.
Buckets are private: OSCAR's public and restricted visibility would widen other users' keys.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import BadRequest, Conflict, NotFound, ReefLabError
from ..storage.platform_s3 import StorageUnavailable, bucket_problem, s3_client, split_path, user_bucket
from .engine import OscarEngine
from .triggers import is_platform

DEFAULT_EXPIRY = 900  # OSCAR's defaults and limits for presigned URLs (seconds)
MAX_EXPIRY = 3600
PAGE = 1000
OPERATIONS = {"upload": ("put_object", "PUT"), "download": ("get_object", "GET")}


class NoStorage(ReefLabError):
    status = 501


def _unavailable(error: Exception) -> StorageUnavailable:
    return StorageUnavailable(f"the platform's S3 storage did not answer: {error}")


class UserBuckets:
    """The caller's buckets: list, make, describe with their objects, delete, presign."""

    def __init__(self, engine: OscarEngine):
        self.engine = engine

    @property
    def s3(self):
        s3 = self.engine.settings.s3
        if s3 is None:
            raise NoStorage("this engine has no S3 storage configured (ServerlessApp.s3_endpoint): no buckets")
        return s3

    async def _client(self, user: str, **config: Any):
        """A boto3 client with the user's own key (made on first use, allowed exactly their buckets)."""
        key = self.engine.store.s3_key(user) or await self.engine.storage_key(user)
        return s3_client(self.s3.endpoint, key, **config)

    def _owned(self, user: str, bucket: str) -> str:
        self.s3  # noqa: B018 - 501 before 404 when there is no S3 at all
        bucket = bucket.strip()
        if not bucket or self.engine.store.bucket_owner(bucket) != user:
            raise NotFound(f"you have no bucket named '{bucket}': GET /system/buckets lists yours")
        return bucket

    @staticmethod
    def _describe(user: str, bucket: str) -> dict[str, Any]:
        """utils.MinIOBucket without objects."""
        return {
            "bucket_name": bucket,
            "visibility": "private",
            "allowed_users": [],
            "owner": user,
            "metadata": {"owner": user},
        }

    async def list(self, user: str) -> list[dict[str, Any]]:
        if self.engine.settings.s3 is None:
            return []  # no S3 here: no buckets (the dashboard lists them on every page)
        await self.engine.storage_key(user)  # their own bucket exists and is recorded from the first call on
        return [self._describe(user, bucket) for bucket in self.engine.store.buckets_of(user)]

    async def create(self, user: str, data: Any) -> str:
        if not isinstance(data, dict) or not isinstance(data.get("bucket_name"), str) or not data["bucket_name"]:
            raise BadRequest('give the bucket as JSON: {"bucket_name": "...", "visibility": "private"}')
        bucket = data["bucket_name"].strip()
        self._private_only(data)
        problem = bucket_problem(user, bucket)
        if problem:
            raise BadRequest(f"bucket_name: {problem}")
        s3 = self.s3
        owner = self.engine.store.bucket_owner(bucket)
        if owner == user:
            raise Conflict(f"you already have a bucket named '{bucket}'")
        if owner is not None or self.engine.store.claim_bucket(bucket, user) != user:
            raise Conflict(f"bucket '{bucket}' belongs to another user")
        try:
            await asyncio.to_thread(s3.ensure_bucket, bucket)
        except Exception as error:
            self.engine.store.release_bucket(bucket, user)
            raise _unavailable(error) from None
        await self.engine.storage_key(user)  # their key's policy now lists the new bucket
        return bucket

    def update(self, user: str, data: Any) -> None:
        """PUT /system/buckets: only 'private' (the one visibility here) is accepted, for a bucket of the caller's."""
        if not isinstance(data, dict) or not isinstance(data.get("bucket_name"), str):
            raise BadRequest('give the bucket as JSON: {"bucket_name": "...", "visibility": "private"}')
        self._owned(user, data["bucket_name"])
        self._private_only(data)

    @staticmethod
    def _private_only(data: dict[str, Any]) -> None:
        visibility = data.get("visibility") or "private"
        if visibility != "private" or data.get("allowed_users"):
            raise BadRequest(
                "visibility: buckets are private on this engine (sharing a bucket would give other users' keys "
                "access to it); share results through a public service or the catalog instead"
            )

    async def get(self, user: str, bucket: str, page: str = "") -> dict[str, Any]:
        """buckets.BucketListResponse: the bucket and one page of its objects."""
        bucket = self._owned(user, bucket)
        options: dict[str, Any] = {"Bucket": bucket, "MaxKeys": PAGE}
        if page:
            options["ContinuationToken"] = page
        try:
            client = await self._client(user)
            answer = await asyncio.to_thread(client.list_objects_v2, **options)
        except Exception as error:
            raise _unavailable(error) from None
        objects = [
            {
                "object_name": item["Key"],
                "size_bytes": item.get("Size", 0),
                "last_modified": _iso(item.get("LastModified")),
                "owner": user,
            }
            for item in answer.get("Contents", [])
        ]
        return {
            **self._describe(user, bucket),
            "objects": objects,
            "is_truncated": bool(answer.get("IsTruncated")),
            "next_page": answer.get("NextContinuationToken", "") or "",
            "returned_items": len(objects),
        }

    async def delete(self, user: str, bucket: str) -> None:
        """Delete a bucket of the caller's with all its objects (not their own bucket, nor one a service uses)."""
        bucket = self._owned(user, bucket)
        if bucket == user_bucket(user):
            raise BadRequest(f"'{bucket}' is your own bucket: it stays (delete what is in it instead)")
        for record in self.engine.store.list_services():
            definition = self.engine.definition(record.name)
            paths = [io.path for io in [*definition.input, *definition.output] if is_platform(io)] if definition else []
            if record.owner == user and any(split_path(path)[0] == bucket for path in paths):
                raise Conflict(f"service '{record.name}' reads or writes bucket '{bucket}': change or delete it first")
        await asyncio.to_thread(self.s3.delete_bucket, bucket)
        self.engine.store.release_bucket(bucket, user)
        await self.engine.storage_key(user)  # and their key's policy no longer lists it

    async def presign(self, user: str, bucket: str, data: Any) -> dict[str, Any]:
        """buckets.PresignResponse: a URL signed with the owner's key to PUT or GET one object."""
        bucket = self._owned(user, bucket)
        if not isinstance(data, dict):
            raise BadRequest('give {"object_key": "...", "operation": "upload" or "download"} as JSON')
        key = str(data.get("object_key") or "").strip().strip("/")
        if not key:
            raise BadRequest("object_key: give the key of the object (e.g. 'in/photo.jpg')")
        operation = str(data.get("operation") or "").strip().lower()
        if operation not in OPERATIONS:
            raise BadRequest(f"operation: '{data.get('operation')}' is not 'upload' or 'download'")
        expires = data.get("expires_in") or data.get("expires") or DEFAULT_EXPIRY  # oscar-python sends `expires`
        if not isinstance(expires, int) or isinstance(expires, bool) or not 1 <= expires <= MAX_EXPIRY:
            raise BadRequest(f"expires_in: give whole seconds from 1 to {MAX_EXPIRY}")
        if data.get("extra_headers"):
            raise BadRequest("extra_headers: not supported here; only content_type is signed")
        content_type = data.get("content_type") or ""
        if not isinstance(content_type, str):
            raise BadRequest("content_type: give a media type such as 'image/jpeg'")
        action, method = OPERATIONS[operation]
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        headers: dict[str, str] = {}
        if content_type and operation == "upload":
            params["ContentType"] = content_type
            headers["Content-Type"] = content_type
        elif content_type:
            params["ResponseContentType"] = content_type
        try:
            client = await self._client(user, signature_version="s3v4")
            url = client.generate_presigned_url(action, Params=params, ExpiresIn=expires, HttpMethod=method)
        except Exception as error:
            raise _unavailable(error) from None
        answer: dict[str, Any] = {
            "object_key": key,
            "operation": operation,
            "method": method,
            "url": url,
            "expires_at": (datetime.now(UTC) + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if headers:
            answer["headers"] = headers
        return answer


def _iso(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(moment, datetime) else ""
