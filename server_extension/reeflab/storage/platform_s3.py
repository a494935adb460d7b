"""Each user's place in the platform's S3 server: their buckets and their own key (over IAM).

Names that cannot collide, whatever hub names people pick:
- a user's own bucket is their hub name when that is a plain bucket name (`alice`: 3-32 of
  a-z, 0-9 and single '-', not reserved), else `<slug>.<hash of the exact name>`
  (`Ana.Lopez@uni` -> `ana-lopez-uni.3f2a...`); plain names have no '.', so the two never meet;
- the other buckets a user may make are `<own bucket>--<name>` (`alice--fish`): no own bucket
  contains '--' and `<name>` may not, so `ana` can never make `ana-lab` (user ana-lab's) or
  `bob-x` (a future user's), and nobody's buckets fall in another's set;
- the IAM user is `reeflab-user-<hash of the exact hub name>`: no hub name is an IAM name, and
  `ana.b`, `ana-b` and `ANA` get three.
Who owns a bucket is recorded where it is made (the engine's store) and each IAM policy lists
exactly the buckets recorded for its user: nothing is ever inferred from a prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import BadRequest, ReefLabError

log = logging.getLogger(__name__)

REGION = "us-east-1"
IAM_PREFIX = "reeflab-user-"
POLICY = "reeflab-own-buckets"
_PLAIN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # no '.', no '--', no leading or trailing '-'
_NOT_BUCKET = re.compile(r"[^a-z0-9]+")
# names no user may hold: the platform's own buckets, SeaweedFS's and S3's reserved forms
RESERVED_NAMES = frozenset({"admin", "root", "system", "iam", "s3", "sts", "weed", "topics", "etc", "buckets"})
RESERVED_PREFIXES = ("reeflab", "seaweedfs", "admin-", "xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3")
MAX_PLAIN = 32
MAX_BUCKET = 63


class StorageUnavailable(ReefLabError):
    status = 503


def s3_client(endpoint: str, key: dict[str, str], service: str = "s3", **config):
    """A boto3 client for `endpoint` with `key` ({access_key, secret_key}); `config`: botocore Config options."""
    import boto3
    from botocore.config import Config

    options = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3}, **config}
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key["access_key"],
        aws_secret_access_key=key["secret_key"],
        config=Config(**options),
    )


def _digest(kind: str, user: str, length: int) -> str:
    """A hash of the exact hub name (no case folding or normalisation), separated by purpose."""
    return hashlib.sha256(f"reeflab:{kind}:{user}".encode()).hexdigest()[:length]


def reserved(name: str) -> bool:
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES) or name.endswith(RESERVED_SUFFIXES)


def user_bucket(user: str) -> str:
    """The user's own bucket: the hub name if it is a plain, unreserved bucket name, else `<slug>.<hash>`."""
    if 3 <= len(user) <= MAX_PLAIN and _PLAIN.fullmatch(user) and not reserved(user):
        return user
    slug = _NOT_BUCKET.sub("-", user.lower()).strip("-")[:24].strip("-") or "user"
    if reserved(slug):
        slug = "u-" + slug  # a derived name never starts like the platform's or SeaweedFS's own
    return f"{slug}.{_digest('bucket', user, 16)}"


def iam_user(user: str) -> str:
    """The SeaweedFS IAM user of a hub user: a fixed prefix and a hash of the exact name."""
    return IAM_PREFIX + _digest("iam", user, 32)


def bucket_problem(user: str, bucket: str) -> str | None:
    """Why `user` may not make `bucket` (None if it is their own bucket or `<own bucket>--<name>`)."""
    own = user_bucket(user)
    if bucket == own:
        return None
    suffix = bucket[len(own) + 2 :] if bucket.startswith(own + "--") else ""
    if not suffix or not _PLAIN.fullmatch(suffix) or len(bucket) > MAX_BUCKET or reserved(bucket):
        longest = MAX_BUCKET - len(own) - 2
        return (
            f"bucket '{bucket}' is not yours: use your bucket '{own}' (e.g. '{own}/in') or make one named "
            f"'{own}--<name>' (<name>: up to {longest} of a-z, 0-9 and single '-')"
        )
    return None


def split_path(path: str) -> tuple[str, str]:
    """'bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    bucket, _, prefix = path.strip("/").partition("/")
    return bucket, prefix.strip("/")


def check_path(user: str, path: str, field: str) -> tuple[str, str]:
    """A storage path in a bucket the user may own, or a 400 saying which buckets may be theirs."""
    bucket, prefix = split_path(path)
    if ".." in path.split("/") or not bucket:
        raise BadRequest(f"{field}: '{path}' is not a storage path: write it as 'bucket/folder'")
    problem = bucket_problem(user, bucket)
    if problem:
        raise BadRequest(f"{field}: {problem}")
    return bucket, prefix


def _legacy_iam_name(user: str) -> str:
    """The IAM user name of releases before opaque ids (the bucket slug): only to revoke its keys."""
    slug = re.sub(r"[^a-z0-9-]+", "-", user.lower()).strip("-")[:32]
    if slug == user and len(slug) >= 3:
        return slug
    digest = hashlib.sha256(user.encode()).hexdigest()[:6]
    return f"{slug}-{digest}" if slug else f"u-{digest}"


@dataclass
class PlatformS3:
    """The platform's S3 server as its admin sees it: make buckets, make users, their keys and grants."""

    endpoint: str
    admin_key: dict[str, str]

    def client(self, service: str = "s3", **config):
        return s3_client(self.endpoint, self.admin_key, service, **config)

    def ensure_bucket(self, bucket: str) -> None:
        from botocore.exceptions import ClientError

        s3 = self.client()
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)

    def ensure_folder(self, bucket: str, prefix: str) -> None:
        """An empty folder `prefix` in the bucket, so that people see it before anything is in it (as OSCAR makes
        its services' input and output folders: an empty object named `<prefix>/`)."""
        if prefix.strip("/"):
            self.client().put_object(Bucket=bucket, Key=prefix.strip("/") + "/", Body=b"")

    def user_key(self, user: str, known: dict[str, str] | None = None, buckets: Iterable[str] = ()) -> dict[str, str]:
        """The user's own key (`known` if the server still has it, else a new one), allowed exactly their buckets.

        `buckets`: the buckets recorded as the user's; their own bucket is always one (and is made).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        name = iam_user(user)
        own = sorted({user_bucket(user), *buckets})
        try:
            iam = self.client("iam")
            self._ensure_user(iam, name)
            self._put_policy(iam, name, own)
            self.ensure_bucket(user_bucket(user))
            if known and any(k["AccessKeyId"] == known["access_key"] for k in self._keys(iam, name)):
                return known
            if known:
                self._revoke_legacy(iam, user, known["access_key"])
            created = iam.create_access_key(UserName=name)["AccessKey"]
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"the platform's S3 storage at {self.endpoint} did not answer: {error}") from None
        return {"access_key": created["AccessKeyId"], "secret_key": created["SecretAccessKey"]}

    def grant(self, user: str, buckets: Iterable[str]) -> None:
        """Let the user's key reach exactly `buckets` (and their own bucket), nothing else."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            iam = self.client("iam")
            self._ensure_user(iam, iam_user(user))
            self._put_policy(iam, iam_user(user), sorted({user_bucket(user), *buckets}))
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"the platform's S3 storage at {self.endpoint} did not answer: {error}") from None

    def delete_user(self, user: str, known: dict[str, str] | None = None) -> int:
        """A deleted hub user's S3 identity goes: every key of their IAM user, its policy, the IAM user (and a key
        from before opaque ids); returns how many keys were revoked. A namesake later gets a new IAM user and key."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = iam_user(user)
        try:
            iam = self.client("iam")
            keys = self._keys(iam, name)
            for key in keys:
                iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
            for call, kwargs in (
                (iam.delete_user_policy, {"UserName": name, "PolicyName": POLICY}),
                (iam.delete_user, {"UserName": name}),
            ):
                try:
                    call(**kwargs)
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") not in ("NoSuchEntity", "NoSuchEntityException"):
                        log.info("S3 IAM user %s of %s: %s", name, user, error)
            if known:
                self._revoke_legacy(iam, user, known["access_key"])
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"the platform's S3 storage at {self.endpoint} did not answer: {error}") from None
        return len(keys)

    def delete_bucket(self, bucket: str) -> int:
        """Delete a bucket with everything in it (a deleted user's: nothing of it may reach a namesake);
        returns how many objects went. A bucket that is not there is no error."""
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = self.client()
        removed = 0
        try:
            try:
                s3.head_bucket(Bucket=bucket)
            except ClientError:
                return 0
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                    removed += len(keys)
            with contextlib.suppress(ClientError):  # not every S3 server lists multipart uploads
                for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                    s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            s3.delete_bucket(Bucket=bucket)
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"could not delete bucket {bucket} at {self.endpoint}: {error}") from None
        return removed

    @staticmethod
    def _keys(iam, name: str) -> list[dict]:
        from botocore.exceptions import ClientError

        try:
            return iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
        except ClientError:
            return []

    @staticmethod
    def _ensure_user(iam, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            iam.get_user(UserName=name)
        except ClientError:
            iam.create_user(UserName=name)

    @staticmethod
    def _put_policy(iam, name: str, buckets: list[str]) -> None:
        resources = [arn for bucket in buckets for arn in (f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*")]
        statement = {"Effect": "Allow", "Action": ["s3:*"], "Resource": resources}
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        iam.put_user_policy(UserName=name, PolicyName=POLICY, PolicyDocument=json.dumps(policy))

    def _revoke_legacy(self, iam, user: str, access_key: str) -> None:
        """A key given out before opaque ids sits on a slug-named IAM user another name may share: revoke it."""
        from botocore.exceptions import ClientError

        legacy = _legacy_iam_name(user)
        if any(k["AccessKeyId"] == access_key for k in self._keys(iam, legacy)):
            try:
                iam.delete_access_key(UserName=legacy, AccessKeyId=access_key)
                log.info("revoked the pre-opaque-id S3 key of %s (IAM user %s)", user, legacy)
            except ClientError as error:
                log.warning("could not revoke the old S3 key of %s: %s", user, error)
