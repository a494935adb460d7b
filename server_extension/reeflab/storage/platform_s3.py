"""Each user's place in the platform's S3 server: their buckets and their own keys (over IAM).

A user may use the bucket named after them and any bucket starting with that name and '-'
(`alice`, `alice-fish-in` ...), and nothing else: the IAM policy says so, and SeaweedFS lists
only those buckets to them. Names that are not valid bucket names are turned into one
(`Ana.Lopez@uni` -> `ana-lopez-uni-3f2a1c`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from ..errors import BadRequest, ReefLabError

_NOT_BUCKET = re.compile(r"[^a-z0-9-]+")
REGION = "us-east-1"


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


def user_bucket(user: str) -> str:
    """The bucket named after `user` (3-40 characters, lowercase letters, digits and '-')."""
    slug = _NOT_BUCKET.sub("-", user.lower()).strip("-")[:32]
    if slug == user and len(slug) >= 3:
        return slug
    digest = hashlib.sha256(user.encode()).hexdigest()[:6]
    return f"{slug}-{digest}" if slug else f"u-{digest}"


def owns_bucket(user: str, bucket: str) -> bool:
    own = user_bucket(user)
    return bucket == own or bucket.startswith(own + "-")


def split_path(path: str) -> tuple[str, str]:
    """'bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    bucket, _, prefix = path.strip("/").partition("/")
    return bucket, prefix.strip("/")


def check_path(user: str, path: str, field: str) -> tuple[str, str]:
    """A storage path the user may use, or a 400 saying which buckets are theirs."""
    bucket, prefix = split_path(path)
    if ".." in path.split("/") or not bucket:
        raise BadRequest(f"{field}: '{path}' is not a storage path: write it as 'bucket/folder'")
    if not owns_bucket(user, bucket):
        own = user_bucket(user)
        raise BadRequest(
            f"{field}: bucket '{bucket}' is not yours: use your bucket '{own}' (e.g. '{own}/in') "
            f"or a bucket named '{own}-<something>'"
        )
    return bucket, prefix


@dataclass
class PlatformS3:
    """The platform's S3 server as its admin sees it: make buckets, make users and their keys."""

    endpoint: str
    admin_key: dict[str, str]

    def client(self, service: str = "s3"):
        return s3_client(self.endpoint, self.admin_key, service)

    def ensure_bucket(self, bucket: str) -> None:
        from botocore.exceptions import ClientError

        s3 = self.client()
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)

    def user_key(self, user: str, known: dict[str, str] | None = None) -> dict[str, str]:
        """The user's own key: `known` if the server still has it, else a new one (user and bucket made too)."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = user_bucket(user)
        try:
            iam = self.client("iam")
            if known and any(k["AccessKeyId"] == known["access_key"] for k in self._keys(iam, name)):
                return known
            self._ensure_user(iam, name)
            created = iam.create_access_key(UserName=name)["AccessKey"]
            self.ensure_bucket(name)
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"the platform's S3 storage at {self.endpoint} did not answer: {error}") from None
        return {"access_key": created["AccessKeyId"], "secret_key": created["SecretAccessKey"]}

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
        own = [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*", f"arn:aws:s3:::{name}-*", f"arn:aws:s3:::{name}-*/*"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": own}]}
        iam.put_user_policy(UserName=name, PolicyName="reeflab-own-buckets", PolicyDocument=json.dumps(policy))
