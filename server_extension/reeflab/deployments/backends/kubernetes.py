"""Dedicated deployments at scale: per deployment, a Kubernetes Deployment + Service + NetworkPolicy (+ Secret,
Ingress), built by pure functions (checked offline) and sent by KubernetesBackend with kubernetes_asyncio.

They run in the owner's namespace (the hub makes one per user: hub/kubernetes_isolation.py), from the owner's
server, with its ServiceAccount, whose Role allows exactly the calls made here and in jobs/backends/kubernetes.py
and nothing outside that namespace. The pods pass Pod Security "restricted" (no token, non-root, no privilege,
RuntimeDefault seccomp) unless the operator chose privileged rclone sidecars for storage.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from kubespawner.slugs import is_valid_label, safe_slug
from traitlets import Dict, Enum, Float, List, Unicode, default

from ... import kube
from ...errors import BadRequest, Conflict, ReefLabError
from ...kube import (
    ID,
    INSTANCE,
    NAME,
    NAMESPACE_NAME,
    OWNER,
    KubernetesClient,
    cpu_quantity,
    label_slug,
    object_slug,
)
from ...profiles import HardwareProfile
from ...storage.kubernetes import MOUNT_MODES, MountSpec, render_mounts
from ...training import weights_store
from ...training.registry import WEIGHTS_ENV
from ..models import Deployment, storage_env
from .base import BackendStatus, DeploymentBackend, Endpoint

STORAGE_ROOT = "/mnt"  # mounted connections are at /mnt/storage/<name>
PORT = 5000  # deepaas-run in images/module.Dockerfile, which runs as uid 1000, gid 100
CONTAINER = "module"
USERNAME = "hub.jupyter.org/username"  # KubeSpawner's label of each user's pods
SERVER_LABELS = {"component": "singleuser-server"}  # KubeSpawner's component_label of user server pods
Labels = dict[str, str] | None
Manifest = dict[str, Any]
WEIGHTS_DIR = "/reeflab/weights"  # a registered model's weights, fetched there by the init container
FETCH_IMAGE = "quay.io/reeflab/singleuser:0.1.0"  # reeflab and boto3 (a module image may lack boto3)
_WEIGHTS_KEYS = (WEIGHTS_ENV, weights_store.SOURCE_ENV, weights_store.SHA256_ENV)  # set by the backend, not envFrom


def user_env(dep: Deployment) -> dict[str, str]:
    """The deployment's variables that go into its Secret: all but a registered model's weights (the pod's own)."""
    fetched = weights_store.SOURCE_ENV in dep.env
    return {k: v for k, v in dep.env.items() if not (fetched and k in _WEIGHTS_KEYS)}


def weights_secret_name(dep: Deployment) -> str:
    return object_slug(f"reeflab-{dep.id}-weights")


def weights_secret_manifest(dep: Deployment, namespace: str, key: dict[str, str], *, extra: Labels = None) -> Manifest:
    """The owner's S3 key, for the init container that fetches their registered weights (never the module's)."""
    meta = {**_metadata(dep, namespace, extra), "name": weights_secret_name(dep)}
    data = {"AWS_ACCESS_KEY_ID": key["access_key"], "AWS_SECRET_ACCESS_KEY": key["secret_key"]}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "stringData": data}


def fetch_container(dep: Deployment, endpoint: str, image: str = FETCH_IMAGE) -> Manifest:
    """The init container that puts the registered version (REEFLAB_WEIGHTS_SOURCE) in the weights volume,
    checked against its registered digest, before the module starts (training/weights_store.py)."""
    command = ["python", "-m", "reeflab.training.weights_store", "fetch"]
    command += [f"--source={dep.env[weights_store.SOURCE_ENV]}", f"--sha256={dep.env[weights_store.SHA256_ENV]}"]
    resources = {"cpu": "500m", "memory": "512M"}
    return {
        "name": "fetch-weights",
        "image": image,
        "command": [*command, f"--dest={WEIGHTS_DIR}"],
        "env": [{"name": "REEFLAB_S3_ENDPOINT", "value": endpoint}],
        "envFrom": [{"secretRef": {"name": weights_secret_name(dep)}}],
        "volumeMounts": [{"name": "reeflab-weights", "mountPath": WEIGHTS_DIR}],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def object_name(deployment_id: str) -> str:
    """Name of every object of a deployment: "reeflab-<id>", a DNS-1035 label of at most 63 characters."""
    return object_slug(f"reeflab-{deployment_id}")


def selector(dep: Deployment) -> dict[str, str]:
    return {NAME: "reeflab-module", INSTANCE: object_name(dep.id)}


def labels(dep: Deployment, extra: Labels = None) -> dict[str, str]:
    """Labels of all its objects; usernames (maybe emails) and module ids escaped to valid label values."""
    mine = {"reeflab.io/module": label_slug(dep.module), "reeflab.io/kind": dep.kind}
    return {**kube.labels("reeflab-module", object_name(dep.id), dep.owner, extra), **mine}


def _metadata(dep: Deployment, namespace: str, extra: Labels) -> Manifest:
    notes = {ID: dep.id, OWNER: dep.owner}
    return {"name": object_name(dep.id), "namespace": namespace, "labels": labels(dep, extra), "annotations": notes}


def _probe(delay: int, period: int, failures: int, base_path: str = "") -> Manifest:
    check = {"httpGet": {"path": f"{base_path}/v2/models/", "port": "http"}, "timeoutSeconds": 4}
    return {**check, "initialDelaySeconds": delay, "periodSeconds": period, "failureThreshold": failures}


def deployment_manifest(
    dep: Deployment,
    profile: HardwareProfile,
    image: str,
    namespace: str,
    *,
    account: str = "",
    extra: Labels = None,
    mounts: MountSpec | None = None,
    base_path: str = "",
    fetch: Manifest | None = None,
) -> Manifest:
    """One replica of `deepaas-run` serving dep.entry_point, with exactly the hardware of dep.hardware.

    With `base_path` (its route's full path, as the local backend gives it), DEEPaaS serves under it
    (`--base-path`), so that its docs page loads its assets and swagger.json through the route.

    With `mounts` (storage_mounts()), CSI volumes or rclone sidecars mount dep.storage; the module finds each
    connection at $REEFLAB_STORAGE_<NAME> and never sees its credentials (they are in the mounts' Secret only).

    With `fetch` (fetch_container()), a registered model's weights are fetched into an emptyDir first, and the
    module finds them at $REEFLAB_WEIGHTS, as in local mode.
    """
    hw = dep.hardware
    resources = {"cpu": cpu_quantity(hw.cpu), "memory": str(hw.memory_MB * 10**6)}
    pod: Manifest = {}
    if hw.gpu:
        if not profile.gpu or hw.gpu > profile.gpu.count:
            raise BadRequest(f"Profile '{profile.slug}' has {profile.gpu_count} GPU(s); {hw.gpu} were asked for.")
        resources[profile.gpu.resource] = str(hw.gpu)  # extended resources: request == limit
        # only GPU pods go to (and tolerate the taints of) the profile's GPU nodes
        placement = {"nodeSelector": dict(profile.node_selector), "tolerations": [dict(t) for t in profile.tolerations]}
        pod = {key: value for key, value in placement.items() if value}
    threads = str(max(1, math.ceil(hw.cpu)))  # as the local backend does
    env = dict(DEEPAAS_V2_MODEL=dep.entry_point, YOLO_OFFLINE="1", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if mounts and mounts.volumes:
        env.update({storage_env(name): f"{STORAGE_ROOT}/storage/{name}" for name in dep.storage})
    if fetch:
        env[WEIGHTS_ENV] = f"{WEIGHTS_DIR}/{weights_store.WEIGHTS_FILE}"
    container: Manifest = {
        "name": CONTAINER,
        "image": image,
        "command": ["deepaas-run"],  # the module image's own CMD, with the base path
        "args": ["--listen-ip", "0.0.0.0", "--listen-port", str(PORT), *(["--base-path", base_path] * bool(base_path))],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in env.items()],  # wins over envFrom: not overridable
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        # loading a model may take minutes: liveness and readiness only count once it has answered
        "startupProbe": _probe(delay=5, period=5, failures=180, base_path=base_path),
        "readinessProbe": _probe(delay=5, period=5, failures=6, base_path=base_path),
        "livenessProbe": _probe(delay=0, period=20, failures=6, base_path=base_path),
        # a crash's last log lines become the termination message that status() shows the user
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if user_env(dep):  # user values may be secrets: never inline in the Deployment
        container["envFrom"] = [{"secretRef": {"name": object_name(dep.id)}}]
    security = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100}
    if mounts and mounts.volumes:
        container["volumeMounts"] = list(mounts.volume_mounts)
        pod["volumes"] = list(mounts.volumes)
    if fetch:
        weights = {"name": "reeflab-weights", "mountPath": WEIGHTS_DIR, "readOnly": True}
        container["volumeMounts"] = [*container.get("volumeMounts", []), weights]
        pod["volumes"] = [*pod.get("volumes", []), {"name": "reeflab-weights", "emptyDir": {"sizeLimit": "2Gi"}}]
        pod["initContainers"] = [fetch]
    sidecars = list(mounts.extra_containers) if mounts else []
    pod.update(containers=[container, *sidecars], automountServiceAccountToken=False, enableServiceLinks=False)
    pod["securityContext"] = {**security, "seccompProfile": {"type": "RuntimeDefault"}}
    if account:
        pod["serviceAccountName"] = account
    meta = _metadata(dep, namespace, extra)
    if dep.expires:
        # Deployments have no activeDeadlineSeconds (a pod's would only make the ReplicaSet start
        # another one): the deployment service stops a "try" deployment once this time has passed.
        meta["annotations"]["reeflab.io/expires"] = dep.expires.isoformat()
    spec = {"replicas": 1, "revisionHistoryLimit": 1, "selector": {"matchLabels": selector(dep)}}
    spec["strategy"] = {"type": "Recreate"}  # never two pods holding GPUs at once
    spec["progressDeadlineSeconds"] = 1800  # image pull + the startup probe's 15 minutes
    spec["template"] = {"metadata": {"labels": labels(dep, extra)}, "spec": pod}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def storage_secret_name(dep: Deployment) -> str:
    return object_slug(f"reeflab-{dep.id}-storage")


def storage_mounts(
    dep: Deployment,
    connections: list,
    namespace: str,
    env_for,
    *,
    extra: Labels = None,
    mode: str = "sidecar",
    csi_driver: str = "",
) -> MountSpec:
    """The volumes (CSI, or rclone sidecars) and Secret (own to this deployment) mounting `connections` in its pod."""
    spec = render_mounts(
        dep.owner, connections, env_for, namespace=namespace, home=STORAGE_ROOT, secret=storage_secret_name(dep),
        mode=mode, csi_driver=csi_driver, uid=1000, gid=100,  # images/module.Dockerfile's user
    )  # fmt: skip
    spec.secret["metadata"]["labels"] = labels(dep, extra)
    spec.secret["metadata"]["annotations"] = {ID: dep.id, OWNER: dep.owner}
    return spec


def secret_manifest(dep: Deployment, namespace: str, *, extra: Labels = None) -> Manifest:
    """The user's environment variables, which the module container reads through envFrom."""
    meta = _metadata(dep, namespace, extra)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "stringData": user_env(dep)}


def service_manifest(dep: Deployment, namespace: str, *, extra: Labels = None) -> Manifest:
    """A ClusterIP Service, <name>.<namespace>.svc:5000, in front of the module's pod."""
    port = {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}
    spec = {"type": "ClusterIP", "selector": selector(dep), "ports": [port]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(dep, namespace, extra), "spec": spec}


def ingress_manifest(
    dep: Deployment, namespace: str, parent_domain: str, *, annotations: Labels = None, extra: Labels = None
) -> Manifest:
    """Routes <name>.<parent_domain> to the Service; DEEPaaS itself checks no credentials."""
    meta = _metadata(dep, namespace, extra)
    meta["annotations"].update(annotations or {})
    path = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": meta["name"], "port": {"number": PORT}}}}
    rule = {"host": f"{meta['name']}.{parent_domain}", "http": {"paths": [path]}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": {"rules": [rule]}}


def server_username(owner: str) -> str:
    """The `hub.jupyter.org/username` label value KubeSpawner gives `owner`'s pods (its own safe_slug)."""
    return safe_slug(owner, is_valid=is_valid_label)


def network_policy_manifest(
    dep: Deployment,
    namespace: str,
    server_namespace: str,
    *,
    server_labels: Labels = None,
    ingress_from: list[Manifest] | None = None,
    extra: Labels = None,
) -> Manifest:
    """Only the owner's server pods (KubeSpawner's labels, in `server_namespace`) may reach the module's pod,
    and only on DEEPaaS's port, which checks no credentials; `ingress_from` peers too (an Ingress's controller)."""
    pods = {USERNAME: server_username(dep.owner), **(server_labels or SERVER_LABELS)}
    owner = {
        "podSelector": {"matchLabels": pods},
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME: server_namespace}},
    }
    ports = [{"protocol": "TCP", "port": PORT}]
    rules = [{"from": [owner], "ports": ports}]
    if ingress_from:
        rules.append({"from": [dict(peer) for peer in ingress_from], "ports": ports})
    spec = {"podSelector": {"matchLabels": selector(dep)}, "policyTypes": ["Ingress"], "ingress": rules}
    meta = _metadata(dep, namespace, extra)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec}


def _crash(terminated: dict[str, Any], limits: dict[str, str]) -> str:
    if terminated.get("reason") == "OOMKilled":
        mb = int(limits["memory"]) // 10**6 if limits.get("memory", "").isdigit() else "?"
        return f"it ran out of memory (limit {mb} MB); restart it with more memory"
    lines = [line.strip() for line in (terminated.get("message") or "").splitlines() if line.strip()]
    exited = f"it exited with code {terminated.get('exitCode', '?')} ({terminated.get('reason') or 'no reason given'})"
    return " | ".join(lines[-3:])[-300:] if lines else exited


def _unschedulable(message: str, requests: dict[str, str]) -> str:
    missing = []
    for resource in dict.fromkeys(re.findall(r"Insufficient ([\w./-]*\w)", message)):
        amount = requests.get(resource, "?")
        amount = str(int(amount) // 10**6) if resource == "memory" and amount.isdigit() else amount
        missing.append({"cpu": "{} CPU", "memory": "{} MB of memory"}.get(resource, "{} " + resource).format(amount))
    return f"no node has {' and '.join(missing)} free" if missing else f"no node can run it: {message}"


def pod_problem(pod: Manifest, patience: float = 0) -> str | None:
    """Why a pod (its API JSON) will not become ready by itself, in words a user understands; None if it may."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    resources = (spec.get("containers") or [{}])[0].get("resources") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            since = datetime.fromisoformat(cond.get("lastTransitionTime") or "1970-01-01T00:00:00Z")
            if (datetime.now(UTC) - since).total_seconds() >= patience:  # a node may come, or a GPU be freed
                return _unschedulable(cond.get("message") or "", resources.get("requests") or {})
    for state in status.get("containerStatuses") or []:
        waiting = (state.get("state") or {}).get("waiting") or {}
        why, says = waiting.get("reason"), waiting.get("message") or waiting.get("reason")
        if why == "CrashLoopBackOff":
            last = (state.get("lastState") or {}).get("terminated") or {}
            return "the module keeps crashing: " + _crash(last, resources.get("limits") or {})
        if why in ("ImagePullBackOff", "InvalidImageName"):
            return f"its image {state.get('image')} cannot be pulled: {says}"
        if why in ("CreateContainerConfigError", "CreateContainerError"):
            return f"its container cannot be created: {says}"
    if status.get("phase") == "Failed":
        return f"its pod failed: {status.get('message') or status.get('reason') or 'no reason given'}"
    return None


def ran_out_of_memory(pod: Manifest) -> bool:
    """Whether the kernel stopped a container of the pod (its API JSON) for its memory: a restart with more helps."""
    for state in (pod.get("status") or {}).get("containerStatuses") or []:
        for seen in (state.get("state") or {}, state.get("lastState") or {}):
            if (seen.get("terminated") or {}).get("reason") == "OOMKilled":
                return True
    return False


def deployment_problem(deployment: Manifest) -> str | None:
    """A condition of a Deployment (its API JSON) that means it will not become ready by itself."""
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return f"Kubernetes cannot create its pod: {cond.get('message')}"
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return f"it did not become ready in time: {cond.get('message')}"
    return None


def _error(err: ApiException, kind: str, name: str, namespace: str) -> ReefLabError:
    try:
        says = json.loads(err.body).get("message") or err.reason
    except (TypeError, ValueError, AttributeError):
        says = err.reason
    if err.status == 409:
        return Conflict(f"A {kind} '{name}' already exists in namespace '{namespace}'; ask an admin to delete it.")
    if err.status in (401, 403):
        return ReefLabError(f"ReefLab may not manage {kind}s in namespace '{namespace}' ({says}); ask an admin.")
    return ReefLabError(f"Kubernetes refused {kind} '{name}' in namespace '{namespace}': {says} ({err.status})")


def _call(api: client.ApiClient, verb: str, kind: str) -> Any:
    """The kubernetes_asyncio method that does `verb` (create, delete) to an object of `kind` in a namespace."""
    networking = client.NetworkingV1Api
    group = {"Deployment": client.AppsV1Api, "Ingress": networking, "NetworkPolicy": networking}.get(kind)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()  # NetworkPolicy: network_policy
    return getattr((group or client.CoreV1Api)(api), f"{verb}_namespaced_{snake}")


class KubernetesBackend(KubernetesClient, DeploymentBackend):
    """Runs each deployment as a Deployment + Service in its owner's namespace, with its profile's hardware,
    behind a NetworkPolicy that lets in only its owner's server pods (the namespace's own policies already
    keep other users' pods out; this one also names the Ingress controller where there is an Ingress)."""

    name = "kubernetes"

    image = Unicode("quay.io/reeflab/module:0.1.0", config=True, help="Module runtime image; '{module}' is replaced")
    gpu_image = Unicode("", config=True, help="Image of deployments with a GPU (CUDA torch); empty: `image`")
    ingress_host = Unicode("", config=True, help="Parent domain: if set, an Ingress serves <name>.<ingress_host>")
    ingress_annotations = Dict(config=True, help="Annotations of those Ingresses, e.g. to require authentication")
    fetch_image = Unicode(FETCH_IMAGE, config=True, help="Image of the init container fetching registered weights")
    service_account = Unicode("", config=True, help="serviceAccountName of module pods (its token is not mounted)")
    unschedulable_patience = Float(90, config=True, help="Seconds a pod may wait for a node before it counts as failed")
    server_namespace = Unicode(
        config=True, help="Namespace of user server pods (default: this pod's, the user's own; else `namespace`)"
    )
    storage_mount_mode = Enum(
        MOUNT_MODES,
        config=True,
        help="How deployments mount storage: 'csi', 'sidecar' (privileged) or 'none' (refused). "
        "Default: $REEFLAB_STORAGE_MOUNTS (set by the hub's spawner), else 'none'.",
    )
    storage_csi_driver = Unicode(config=True, help="CSI driver of 'csi' mounts (default: $REEFLAB_STORAGE_CSI_DRIVER)")
    server_labels = Dict(
        SERVER_LABELS, config=True, help="Labels of user server pods besides their username (KubeSpawner's component)"
    )
    ingress_from = List(
        Dict(),
        [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: "ingress-nginx"}}}],
        config=True,
        help="NetworkPolicy peers also let in when ingress_host is set: the Ingress controller's pods",
    )

    @default("server_namespace")
    def _default_server_namespace(self) -> str:
        return kube.pod_namespace() or self.namespace

    @default("storage_mount_mode")
    def _default_storage_mount_mode(self) -> str:
        mode = os.environ.get("REEFLAB_STORAGE_MOUNTS", "none")
        return mode if mode in MOUNT_MODES else "none"

    @default("storage_csi_driver")
    def _default_storage_csi_driver(self) -> str:
        return os.environ.get("REEFLAB_STORAGE_CSI_DRIVER", "")

    def _where(self, dep: Deployment) -> tuple[str, str]:
        return dep.runtime.get("namespace") or self.namespace, dep.runtime.get("name") or object_name(dep.id)

    def _profile(self, dep: Deployment) -> HardwareProfile:
        found = {p.slug: p for p in self.profiles().profiles}.get(dep.profile)
        if found is None:
            raise BadRequest(f"Hardware profile '{dep.profile}' no longer exists; deploy again with another.")
        return found

    async def start(self, deployment: Deployment, folder: Path) -> dict:
        ns, name, extra = self.namespace, object_name(deployment.id), {"extra": self.extra_labels}
        image = self.gpu_image if deployment.hardware.gpu and self.gpu_image else self.image
        image, profile = image.replace("{module}", deployment.module), self._profile(deployment)
        manifests = [("Secret", secret_manifest(deployment, ns, **extra))] if user_env(deployment) else []
        fetch = None
        if weights_store.SOURCE_ENV in deployment.env:  # a registered model: its weights come from the owner's S3
            if not deployment.env.get(weights_store.SHA256_ENV):
                raise BadRequest(
                    f"{weights_store.SOURCE_ENV} needs {weights_store.SHA256_ENV} (the weights' sha256): deploy the "
                    "registered model itself, whose versions carry both."
                )
            endpoint, key = await asyncio.to_thread(self._weights_key, deployment)
            manifests.append(("Secret", weights_secret_manifest(deployment, ns, key, **extra)))
            fetch = fetch_container(deployment, endpoint, self.fetch_image)
        # its connections are read off the event loop (the platform's may ask the serverless engine for keys)
        mounts = await asyncio.to_thread(self._storage, deployment, ns) if deployment.storage else None
        if mounts:
            manifests.insert(0, ("Secret", mounts.secret))
        route = getattr(self.parent, "route_path", None)  # served under its route's path, as local ones are
        base_path = route(deployment.id) if route is not None else ""
        spec = deployment_manifest(
            deployment, profile, image, ns, account=self.service_account, mounts=mounts, base_path=base_path,
            fetch=fetch, **extra,
        )  # fmt: skip
        peers = self.ingress_from if self.ingress_host else None
        policy = network_policy_manifest(
            deployment, ns, self.server_namespace, server_labels=self.server_labels, ingress_from=peers, **extra
        )
        manifests.insert(0, ("NetworkPolicy", policy))  # in force before its pod exists
        manifests += [("Deployment", spec), ("Service", service_manifest(deployment, ns, **extra))]
        if self.ingress_host:
            ingress = ingress_manifest(deployment, ns, self.ingress_host, annotations=self.ingress_annotations, **extra)
            manifests.append(("Ingress", ingress))
        api = await self._api()
        created: list[tuple[str, str]] = []
        for kind, manifest in manifests:  # the policy and Secrets first: the pod is never open, never waits
            made = manifest["metadata"]["name"]
            try:
                await _call(api, "create", kind)(ns, manifest)
            except ApiException as err:
                for done_kind, done_name in created:  # only what it made: a conflict may be another's
                    await self._delete(ns, done_name, [done_kind], quiet=True)
                raise _error(err, kind, made, ns) from None
            created.append((kind, made))
        self.log.info("Deployment %s runs as Kubernetes Deployment %s in namespace %s", deployment.id, name, ns)
        url = {"url": f"https://{name}.{self.ingress_host}{quote(base_path)}/"} if self.ingress_host else {}
        where = {"namespace": ns, "name": name, "service_host": f"{name}.{ns}.svc", "port": PORT}
        return {**where, **({"base_path": base_path} if base_path else {}), **url}

    def _weights_key(self, deployment: Deployment) -> tuple[str, dict[str, str]]:
        """The S3 endpoint and the owner's own key (their platform connection), which open their bucket only."""
        storage = getattr(self.parent, "storage", None)
        store = weights_store.platform_store(storage)(deployment.owner) if storage is not None else None
        if store is None:
            raise BadRequest(
                "This registered model's weights are in your platform storage (S3), which is not available now: "
                "try again in a minute, or ask an admin."
            )
        return store.endpoint, {"access_key": store.access_key, "secret_key": store.secret_key}

    def _storage(self, deployment: Deployment, namespace: str) -> MountSpec:
        """Mounts of the deployment's connections, read from its owner's store (this server's)."""
        from ...storage.rclone import remote_env

        if self.storage_mount_mode == "none":
            raise BadRequest(
                "This cluster mounts no storage into deployments: deploy without 'storage' (copy the data into "
                "the module, or read it with the S3 API), or ask an admin to set up a CSI driver for rclone."
            )
        storage = getattr(self.parent, "storage", None)
        if storage is None:
            raise ReefLabError("storage is not available on this server")
        connections = [storage.get(deployment.owner, name) for name in deployment.storage]
        return storage_mounts(
            deployment, connections, namespace, remote_env, extra=self.extra_labels,
            mode=self.storage_mount_mode, csi_driver=self.storage_csi_driver,
        )  # fmt: skip

    async def _pods(self, ns: str, name: str, since: datetime | None = None) -> list[Manifest]:
        """Its pods as API JSON, the newest first; with `since`, only live ones created since (not a restart's old)."""
        api = await self._api()
        found = await client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=f"{INSTANCE}={name}")
        mine = [p for p in found.items if not since or p.metadata.creation_timestamp >= since]
        pods = [api.sanitize_for_serialization(p) for p in mine if not (since and p.metadata.deletion_timestamp)]
        return sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")), reverse=True)

    async def status(self, deployment: Deployment, folder: Path | None = None) -> BackendStatus:
        api = await self._api()
        ns, name = self._where(deployment)
        try:
            found = await client.AppsV1Api(api).read_namespaced_deployment(name, ns)
        except ApiException as err:
            if err.status == 404:
                return BackendStatus("stopped", f"its Kubernetes Deployment {name} is gone")
            raise _error(err, "Deployment", name, ns) from None
        if found.status and (found.status.ready_replicas or 0) >= 1:
            return BackendStatus("ready")
        pods = await self._pods(ns, name, since=found.metadata.creation_timestamp)
        problems = [pod_problem(pod, self.unschedulable_patience) for pod in pods]
        reason = next(filter(None, problems), None) or deployment_problem(api.sanitize_for_serialization(found))
        if not reason:
            return BackendStatus("starting")
        return BackendStatus("failed", reason, out_of_memory=any(ran_out_of_memory(pod) for pod in pods))

    async def _delete(self, ns: str, name: str, kinds: list[str], quiet: bool = False) -> None:
        api = await self._api()
        for kind in kinds:
            try:
                await _call(api, "delete", kind)(name, ns, propagation_policy="Background")
            except ApiException as err:
                if err.status == 404:
                    continue  # already gone
                if not quiet:
                    raise _error(err, kind, name, ns) from None
                self.log.warning("Could not delete %s %s in namespace %s: %s", kind, name, ns, err.reason)

    async def stop(self, deployment: Deployment, folder: Path | None = None) -> None:
        ns, name = self._where(deployment)
        with_ingress = bool(self.ingress_host or deployment.runtime.get("url"))
        # the NetworkPolicy goes once the pod is going: never an unprotected moment
        await self._delete(ns, name, ["Ingress"] * with_ingress + ["Service", "Deployment", "NetworkPolicy", "Secret"])
        if deployment.storage:
            await self._delete(ns, storage_secret_name(deployment), ["Secret"])
        if weights_store.SOURCE_ENV in deployment.env:
            await self._delete(ns, weights_secret_name(deployment), ["Secret"])
        self.log.info("Deleted Kubernetes objects %s of deployment %s in namespace %s", name, deployment.id, ns)

    def endpoint(self, deployment: Deployment) -> Endpoint:
        ns, name = self._where(deployment)
        host = deployment.runtime.get("service_host") or f"{name}.{ns}.svc"
        # one started before deployments had a base path serves at its root
        return Endpoint(
            host, int(deployment.runtime.get("port", PORT)), base_path=deployment.runtime.get("base_path", "")
        )

    async def logs(self, deployment: Deployment, folder: Path, tail: int) -> list[str]:
        ns, name = self._where(deployment)
        pods = await self._pods(ns, name)
        read = client.CoreV1Api(await self._api()).read_namespaced_pod_log
        for previous in (False, True) if pods else ():  # a crashed container: the logs of its last run
            options = {"container": CONTAINER, "tail_lines": tail, "previous": previous, "_preload_content": False}
            try:
                async with await read(pods[0]["metadata"]["name"], ns, **options) as response:
                    # the raw text: through the client's JSON decoding, a line such as "42" would not stay a line
                    return (await response.text()).splitlines()[-tail:] if tail > 0 else []
            except ApiException as err:
                if err.status not in (400, 404):
                    raise _error(err, "pod log", name, ns) from None
        return []
