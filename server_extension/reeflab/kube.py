"""What the Kubernetes backends share: names and labels valid for any user input (KubeSpawner's slugs), the
API client, the namespace they work in, their hardware profiles and CPU quantities.

(KubeSpawner's shared clients load one global configuration, blocking; `connect_api` gives each backend
its own, asynchronously, and an error a user can act on.)
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio import client, config
from kubespawner.slugs import is_valid_label, is_valid_object_name, safe_slug
from traitlets import Dict, Instance, Unicode, default
from traitlets.config import LoggingConfigurable

from .errors import ReefLabError
from .profiles import ProfileCatalog, ProfileStore, default_profiles_path

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER = "reeflab.io/owner"
ID = "reeflab.io/id"  # an annotation: ids and owners as they are, unescaped
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set on every namespace by Kubernetes (1.21+)
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def object_slug(value: str) -> str:
    """`value` if it is a valid object name (a DNS-1035 label), else a readable part and a hash of it."""
    return safe_slug(value, is_valid=is_valid_object_name, max_length=63)


def label_slug(value: str) -> str:
    """`value` if it is a valid label value, else a readable part and a hash of it (usernames may be emails)."""
    return safe_slug(value, is_valid=is_valid_label, max_length=63)


def labels(app: str, instance: str, owner: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The labels of every object ReefLab makes: what it is, which one, and whose; `extra` cannot override them."""
    return {**(extra or {}), NAME: app, INSTANCE: instance, MANAGED_BY: "reeflab", OWNER: label_slug(owner)}


def cpu_quantity(cpu: float) -> str:
    millis = max(1, round(cpu * 1000))
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def pod_namespace() -> str:
    """The namespace of the pod this runs in; empty outside a pod."""
    return NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else ""


def default_namespace() -> str:
    """$REEFLAB_NAMESPACE, else the pod's own namespace, else 'reeflab'."""
    return os.environ.get("REEFLAB_NAMESPACE") or pod_namespace() or "reeflab"


async def connect_api() -> client.ApiClient:
    """A client from the pod's service account, else from the kubeconfig; a 4xx-free error if neither works."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        try:
            await config.load_kube_config(client_configuration=cfg)
        except (config.ConfigException, OSError) as err:
            raise ReefLabError(f"ReefLab cannot reach Kubernetes ({err}); ask an admin.") from None
    return client.ApiClient(cfg)


class KubernetesClient(LoggingConfigurable):
    """What a backend that works in Kubernetes is configured with: its namespace, hardware profiles and labels,
    and one API client, made when first needed (mixed in before the backend's base class)."""

    namespace = Unicode(config=True, help="Namespace of its objects (default: REEFLAB_NAMESPACE, the pod's, 'reeflab')")
    profiles_file = Unicode(config=True, help="Hardware profiles file (default: default_profiles_path())")
    extra_labels = Dict(config=True, help="More labels on every object it makes")
    api_client = Instance(client.ApiClient, allow_none=True, help="Client to use (tests); default: from config")

    @default("namespace")
    def _default_namespace(self) -> str:
        return default_namespace()

    def profiles(self) -> ProfileCatalog:
        return ProfileStore(self.profiles_file or default_profiles_path()).catalog()

    async def _api(self) -> client.ApiClient:
        if self.api_client is None:
            self.api_client = await connect_api()
        return self.api_client

    async def close(self) -> None:
        if self.api_client is not None:
            await self.api_client.close()
