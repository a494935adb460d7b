"""Mounts at scale: the same rclone mounts in the user's pod, as sidecars KubeSpawner adds.

For each connection to mount, one `rclone mount` sidecar (the official rclone image) mounts it
under a shared `emptyDir` with `Bidirectional` propagation; the notebook container sees that
folder at `~/storage` with `HostToContainer` propagation, so `~/storage/<name>` is the same path
as on one machine. Credentials travel in one Secret per user (`RCLONE_CONFIG_*` variables,
`envFrom` in the sidecars): never in the pod spec, never on a command line. FUSE in a pod needs
a privileged sidecar (or a FUSE device plugin): clusters that refuse that use copy/sync instead.

Wiring (hub config): `spec = render_mounts(user, connections, env_for)`, then
`spawner.extra_containers += spec.extra_containers`, `spawner.volumes += spec.volumes`,
`spawner.volume_mounts += spec.volume_mounts`, and create/replace `spec.secret` before the pod.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .models import StorageConnection
from .rclone import FAST_FAIL, remote_path

RCLONE_IMAGE = "docker.io/rclone/rclone:1.75"
VOLUME = "reeflab-storage"
SIDECAR_ROOT = "/reeflab-storage"


@dataclass
class MountSpec:
    """What KubeSpawner needs for a user's mounts, plus the Secret to create first."""

    secret: dict
    extra_containers: list[dict] = field(default_factory=list)
    volumes: list[dict] = field(default_factory=list)
    volume_mounts: list[dict] = field(default_factory=list)


def _dns(text: str, limit: int = 63) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{slug[: limit - 7].strip('-')}-{digest}"


def secret_name(user: str) -> str:
    return _dns(f"reeflab-storage-{user}")


def render_mounts(
    user: str,
    connections: list[StorageConnection],
    env_for: Callable[[StorageConnection], dict[str, str]],
    namespace: str = "default",
    home: str = "/home/jovyan",
    image: str = RCLONE_IMAGE,
    secret: str | None = None,
) -> MountSpec:
    """Sidecars, volumes and the Secret mounting `connections` at `<home>/storage/<name>` in the user's pod.

    `env_for(connection)` gives its `RCLONE_CONFIG_*` variables (`rclone.remote_env`). `secret` names the
    Secret (default: the user's, `secret_name(user)`); a Deployment pod mounting a few connections has its own.
    """
    secret = secret or secret_name(user)
    data: dict[str, str] = {}
    containers = []
    for connection in connections:
        data.update(env_for(connection))
        target = f"{SIDECAR_ROOT}/{connection.name}"
        containers.append(
            {
                "name": _dns(f"rclone-{connection.name}"),
                "image": image,
                "args": [
                    "mount",
                    remote_path(connection),
                    target,
                    "--allow-other",  # the notebook runs as another uid than the sidecar
                    "--vfs-cache-mode",
                    "writes",
                    "--dir-cache-time",
                    "5s",
                    "--cache-dir",
                    f"/tmp/rclone-cache/{connection.name}",
                    *FAST_FAIL,
                ],  # fmt: skip
                "envFrom": [{"secretRef": {"name": secret}}],
                "env": [{"name": "RCLONE_CONFIG", "value": "/dev/null"}],
                # FUSE needs root and /dev/fuse; explicit, since pods may default to runAsNonRoot
                "securityContext": {"privileged": True, "runAsUser": 0, "runAsNonRoot": False},
                "volumeMounts": [{"name": VOLUME, "mountPath": SIDECAR_ROOT, "mountPropagation": "Bidirectional"}],
                "lifecycle": {"preStop": {"exec": {"command": ["fusermount3", "-uz", target]}}},
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
            }
        )
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "reeflab", "reeflab/user": _dns(user)},
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(data.items())},
    }
    volumes = [{"name": VOLUME, "emptyDir": {}}] if connections else []
    mounts = (
        [{"name": VOLUME, "mountPath": f"{home}/storage", "mountPropagation": "HostToContainer"}] if connections else []
    )
    return MountSpec(secret=manifest, extra_containers=containers, volumes=volumes, volume_mounts=mounts)
