"""Mounts at scale: the user's connections at `~/storage/<name>` in their pod, three ways (`mode`).

- `csi` (the default where the operator names a driver): one inline CSI ephemeral volume per connection,
  mounted by a node driver that runs rclone (e.g. `rclone.csi.veloxpack.io`, installed with inline volumes
  enabled), its configuration in the user's Secret (`configData`, referenced as `nodePublishSecretRef`).
  Nothing privileged in the pod: it passes Pod Security "restricted". Chosen over a PersistentVolume per
  connection because PVs are cluster-scoped (the hub would need cluster rights on them and name clashes
  between users would be ours to prevent), while an inline volume lives and dies with the pod.
- `sidecar`: one `rclone mount` sidecar (the official rclone image) per connection, mounting it under a
  shared `emptyDir` with `Bidirectional` propagation. FUSE in a pod needs a privileged sidecar, so the
  user's namespace must then allow privileged pods: an explicit opt-in for trusted users only.
- `none`: nothing is mounted; copy/sync and jobs work without mounts.

Credentials travel in one Secret per user (sidecars: `RCLONE_CONFIG_*` variables read with `envFrom`):
never in the pod spec, never on a command line.

Wiring (hub config): `spec = render_mounts(user, connections, env_for, mode=...)`, then
`spawner.extra_containers += spec.extra_containers`, `spawner.volumes += spec.volumes`,
`spawner.volume_mounts += spec.volume_mounts`, and create/replace `spec.secret` before the pod.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import BadRequest
from .models import StorageConnection
from .rclone import FAST_FAIL, remote_name, remote_path

RCLONE_IMAGE = "docker.io/rclone/rclone:1.75"
VOLUME = "reeflab-storage"
SIDECAR_ROOT = "/reeflab-storage"
MOUNT_MODES = ("csi", "sidecar", "none")
# rclone mount options the CSI driver takes as volumeAttributes: what the sidecars pass on their command line
CSI_OPTIONS = {"vfs-cache-mode": "writes", "dir-cache-time": "5s", "allow-other": "true"}


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


def rclone_config(connections: list[StorageConnection], env_for: Callable[[StorageConnection], dict[str, str]]) -> str:
    """The rclone config file (INI) of `connections` from their RCLONE_CONFIG_* variables, for a CSI driver.

    A value with a line break or another control character is refused: in a config file it could add
    keys (e.g. turn the remote into a `local` one that the driver, on the node, would mount).
    """
    sections = []
    for connection in connections:
        remote = remote_name(connection)
        prefix = f"RCLONE_CONFIG_{remote.upper()}_"
        lines = [f"[{remote}]"]
        for key, value in env_for(connection).items():
            if not key.startswith(prefix):
                continue
            if any(ord(char) < 32 or ord(char) == 127 for char in value):
                raise BadRequest(f"Storage connection '{connection.name}' has a control character in a setting.")
            lines.append(f"{key[len(prefix) :].lower()} = {value}")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + ("\n" if sections else "")


def _sidecar(connection: StorageConnection, secret: str, image: str) -> dict:
    """One privileged `rclone mount` container of `connection` under SIDECAR_ROOT."""
    target = f"{SIDECAR_ROOT}/{connection.name}"
    return {
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


def _csi_volume(connection: StorageConnection, secret: str, driver: str, uid: int, gid: int) -> dict:
    """An inline CSI volume of `connection`: the driver reads its remote from the Secret's `configData`."""
    remote, _, inside = remote_path(connection).partition(":")
    attributes = {"remote": remote, "remotePath": inside, **CSI_OPTIONS, "uid": str(uid), "gid": str(gid)}
    csi = {"driver": driver, "volumeAttributes": attributes, "nodePublishSecretRef": {"name": secret}}
    return {"name": _dns(f"storage-{connection.name}"), "csi": csi}


def render_mounts(
    user: str,
    connections: list[StorageConnection],
    env_for: Callable[[StorageConnection], dict[str, str]],
    namespace: str = "default",
    home: str = "/home/jovyan",
    image: str = RCLONE_IMAGE,
    secret: str | None = None,
    *,
    mode: str = "sidecar",
    csi_driver: str = "",
    uid: int = 1000,
    gid: int = 100,
) -> MountSpec:
    """Volumes (and sidecars) and the Secret mounting `connections` at `<home>/storage/<name>` in the user's pod.

    `env_for(connection)` gives its `RCLONE_CONFIG_*` variables (`rclone.remote_env`). `secret` names the
    Secret (default: the user's, `secret_name(user)`); a Deployment pod mounting a few connections has its own.
    `mode` is one of MOUNT_MODES (module docstring); `csi` needs `csi_driver`, and mounts as `uid`:`gid`.
    """
    if mode not in MOUNT_MODES:
        raise ValueError(f"storage mount mode {mode!r}: use one of {', '.join(MOUNT_MODES)}")
    if mode == "csi" and not csi_driver:
        raise ValueError("storage mount mode 'csi' needs the name of the CSI driver (storage_csi_driver)")
    connections = connections if mode != "none" else []
    secret = secret or secret_name(user)
    containers, volumes, mounts = [], [], []
    data: dict[str, str] = {}
    if mode == "sidecar":
        for connection in connections:
            data.update(env_for(connection))
            containers.append(_sidecar(connection, secret, image))
        volumes = [{"name": VOLUME, "emptyDir": {}}] if connections else []
        mounts = [{"name": VOLUME, "mountPath": f"{home}/storage", "mountPropagation": "HostToContainer"}]
        mounts = mounts if connections else []
    elif connections:  # csi
        data["configData"] = rclone_config(connections, env_for)
        volumes = [_csi_volume(c, secret, csi_driver, uid, gid) for c in connections]
        paths = [f"{home}/storage/{c.name}" for c in connections]
        mounts = [{"name": v["name"], "mountPath": p} for v, p in zip(volumes, paths, strict=True)]
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
    return MountSpec(secret=manifest, extra_containers=containers, volumes=volumes, volume_mounts=mounts)
