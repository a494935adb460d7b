"""KubeSpawner `profile_list` built from hub_config/profiles.yaml, gated by JupyterHub group."""

from __future__ import annotations

from collections.abc import Iterable

from ..profiles import HardwareProfile, ProfileCatalog

# Every KubeSpawner trait a profile may set. Each profile sets all of them, and the spawner
# resets them before applying one, so nothing of an earlier spawn's profile survives.
PROFILE_TRAITS = (
    "image",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "extra_resource_guarantees",
    "extra_resource_limits",
    "node_selector",
    "tolerations",
)


def kubespawner_override(catalog: ProfileCatalog, profile: HardwareProfile) -> dict:
    gpus = {profile.gpu.resource: str(profile.gpu.count)} if profile.gpu_count else {}
    return {
        "image": catalog.image_of(profile),
        "cpu_guarantee": profile.cpu,
        "cpu_limit": profile.cpu,
        # bytes, parsed as profiles.py and Kubernetes read sizes ("4G" = 4e9, "16Gi" = 16 * 2**30);
        # KubeSpawner's own parser reads "4G" as 4 GiB and rejects "Mi"/"Gi" suffixes
        "mem_guarantee": profile.memory_bytes,
        "mem_limit": profile.memory_bytes,
        # extended resources (GPUs, MIG slices) must have request == limit in Kubernetes
        "extra_resource_guarantees": dict(gpus),
        "extra_resource_limits": dict(gpus),
        "node_selector": dict(profile.node_selector),
        "tolerations": [dict(t) for t in profile.tolerations],
    }


def kubespawner_profiles(catalog: ProfileCatalog, groups: Iterable[str]) -> list[dict]:
    """The KubeSpawner profile_list entries a member of `groups` may choose from."""
    return [
        {
            "slug": p.slug,
            "display_name": p.display_name,
            "description": p.description,
            "default": p.default,
            "kubespawner_override": kubespawner_override(catalog, p),
        }
        for p in catalog.allowed(groups)
    ]


def user_groups(spawner) -> list[str]:
    return sorted(g.name for g in getattr(spawner.user, "groups", []) or [])
