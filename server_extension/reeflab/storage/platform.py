"""The platform's own storage for every user: their bucket on the platform S3, with their own keys.

The keys come from the serverless engine's `GET /system/config` (`minio_provider`: endpoint,
access_key, secret_key), asked with the user server's own hub token: the same keys oscar-python
uses, so what a user puts in `reeflab:` is what their serverless services read.
"""

from __future__ import annotations

import os

import requests

from .platform_s3 import user_bucket
from .remotes import StorageFailed


def engine_config_url() -> str | None:
    """`$REEFLAB_SERVERLESS_URL/system/config` (the hub sets the variable for user servers), else None."""
    base = os.environ.get("REEFLAB_SERVERLESS_URL")
    return base.rstrip("/") + "/system/config" if base else None


def fetch_provider(url: str, token: str, timeout: float = 5) -> dict[str, str]:
    """The `minio_provider` of the engine's config for the token's user; StorageFailed (no secret) if not.

    Plus `user`: whom the engine took the token for (ReefLab's engine says so in `oscar_cluster`), the
    owner of the bucket the keys open; absent from an OSCAR cluster's answer."""
    try:
        answer = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=timeout)
    except requests.RequestException as err:
        raise StorageFailed(f"the serverless engine at {url} did not answer: {type(err).__name__}") from None
    if not answer.ok:
        raise StorageFailed(f"the serverless engine at {url} refused: HTTP {answer.status_code}")
    config = answer.json()
    provider = config.get("minio_provider") or {}
    if not all(provider.get(k) for k in ("endpoint", "access_key", "secret_key")):
        raise StorageFailed("the serverless engine has no S3 storage configured")
    return {**provider, "user": (config.get("oscar_cluster") or {}).get("auth_user")}


def platform_bucket(owner: str) -> str:
    return user_bucket(owner)
