"""Kubernetes mode: a namespace per user, and what the hub makes in it before the user's pod starts.

Chosen over a hub-side service that would perform every Kubernetes call after an owner check: with a
namespace each, the API server itself keeps users apart (RBAC scoped to one namespace, NetworkPolicies,
Pod Security admission), nothing of ours sits in the request path where one missed check would leak,
and the user's own pod spec (with their JupyterHub API token) is only visible in their namespace. The
deployments and jobs backends keep calling the API directly from the user's server, with the user's
ServiceAccount, whose Role holds exactly the verbs they use (`user_rules`) in that namespace only.

Manifests are built by pure functions (checked offline against the Kubernetes schema in tests); `ensure`
applies them idempotently at each spawn and refuses a namespace that exists but is not this user's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from kubespawner.slugs import safe_slug

from ..errors import Conflict

Manifest = dict[str, Any]
Rule = dict[str, list[str]]

SERVICE_ACCOUNT = "reeflab-user"  # in each user namespace: the identity of the user's server pod
ROLE = "reeflab-user"
QUOTA = "reeflab-user"
HUB_CLUSTER_ROLE = "reeflab-hub"
MANAGED_BY = "app.kubernetes.io/managed-by"
KIND = "reeflab.io/namespace"  # "user" on the namespaces ReefLab made for one user
OWNER = "reeflab.io/owner"  # annotation: the hub user name
OWNER_ID = "reeflab.io/owner-id"  # annotation: the hub's user id (a re-created user gets a new one)
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set on every namespace by Kubernetes (1.21+)
SERVER_LABELS = {"component": "singleuser-server"}  # KubeSpawner's label of user server pods
# Zero to JupyterHub labels the hub and proxy pods with this to let them reach user servers
SINGLEUSER_ACCESS = {"hub.jupyter.org/network-access-singleuser": "true"}
PREFIX_MAX = 40  # leaves 22 characters of a DNS label (63) to the user's slug (12 at least, hash included)
POD_SECURITY = {"csi": "restricted", "none": "restricted", "sidecar": "privileged"}  # by storage mount mode

# Exactly the calls of deployments/backends/kubernetes.py and jobs/backends/kubernetes.py, in the user's
# namespace only: tests/security/test_kubernetes_isolation.py records them against the emulator and checks
# both ways (each call allowed, each rule used). No get/list on Secrets, no pods/create, nothing on RBAC.
USER_RULES: list[Rule] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "delete", "get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "get"]},
    {"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"], "verbs": ["create", "delete", "get"]},  # multi-node
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "delete"]},
]
# Only with KubernetesBackend.ingress_host: an Ingress may claim any host name its controller serves
INGRESS_RULE: Rule = {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["create", "delete"]}

# What the hub does itself: KubeSpawner (pods, PVCs, events, Secrets and Services of internal SSL) in every
# user namespace, the objects of `ensure`, the storage Secret, and deleting a deleted user's namespace; and its
# usage service (reeflab.usage --kubernetes, the hub's account): users' namespaces, their pods, the nodes.
HUB_RULES: list[Rule] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "delete", "get", "list", "patch"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},  # the usage service: the cluster's capacity
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims", "pods", "services"],
        "verbs": ["create", "delete", "get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "get", "update"]},
    {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["create", "delete", "update"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create", "update"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"], "verbs": ["create", "update"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "update"]},
]


class NamespaceRefused(Conflict):
    """The user's namespace exists but is not theirs (another ReefLab user's, an earlier user's, or not ReefLab's)."""


def user_rules(ingresses: bool = False) -> list[Rule]:
    """The Role of a user's ServiceAccount in their namespace; Ingresses only where the operator allows them."""
    return [dict(rule) for rule in USER_RULES] + ([dict(INGRESS_RULE)] if ingresses else [])


def merge_rules(rules: list[Rule]) -> list[Rule]:
    """One rule per (API group, resource), verbs united and sorted: the same permissions, easier to read."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs.setdefault((group, resource), set()).update(rule["verbs"])
    merged = [{"apiGroups": [g], "resources": [r], "verbs": sorted(v)} for (g, r), v in sorted(verbs.items())]
    return merged


def hub_rules() -> list[Rule]:
    """The hub's ClusterRole: its own calls plus every user permission, since the API server lets the hub
    grant (bind) only what it holds itself."""
    return merge_rules([*HUB_RULES, *user_rules(ingresses=True)])


def hub_rbac_manifests(namespace: str = "reeflab", service_account: str = "hub") -> list[Manifest]:
    """The ClusterRole and ClusterRoleBinding the hub's ServiceAccount needs (hub_config/kubernetes/hub-rbac.yaml)."""
    meta = {"name": HUB_CLUSTER_ROLE, "labels": {MANAGED_BY: "reeflab"}}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta, "rules": hub_rules()}
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": HUB_CLUSTER_ROLE}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": dict(meta),
        "roleRef": ref,
        "subjects": [subject],
    }
    return [role, binding]


def user_namespace(prefix: str, username: str) -> str:
    """`<prefix>-<slug>`: the user name where it is a valid DNS label, else a readable part and a hash of it
    (KubeSpawner's safe_slug), so `ana`, `ana-lab`, `ana.b`, `ANA` and look-alikes get distinct namespaces."""
    if not 0 < len(prefix) <= PREFIX_MAX:
        raise ValueError(f"user namespace prefix {prefix!r}: use 1 to {PREFIX_MAX} characters")
    return f"{prefix}-{safe_slug(username, max_length=63 - len(prefix) - 1)}"


@dataclass(frozen=True)
class UserNamespace:
    """Everything that decides the objects of one user's namespace."""

    name: str
    owner: str
    owner_id: str
    hub_peers: list[Manifest]  # NetworkPolicy peers that may reach the user's server (hub, proxy)
    pod_security: str = "restricted"
    quota: dict[str, str] = field(default_factory=dict)
    ingresses: bool = False


def _meta(spec: UserNamespace, name: str) -> Manifest:
    return {"name": name, "namespace": spec.name, "labels": {MANAGED_BY: "reeflab"}}


def namespace_manifest(spec: UserNamespace) -> Manifest:
    """The namespace, labelled with its Pod Security level and annotated with its owner (checked at each spawn)."""
    level = spec.pod_security
    labels = {MANAGED_BY: "reeflab", KIND: "user"}
    labels.update({f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "audit", "warn")})
    labels["pod-security.kubernetes.io/enforce-version"] = "latest"
    notes = {OWNER: spec.owner, OWNER_ID: spec.owner_id}
    meta = {"name": spec.name, "labels": labels, "annotations": notes}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account_manifest(spec: UserNamespace) -> Manifest:
    """The server pod's identity; its token is mounted only where a pod asks for it (the user's server)."""
    meta = _meta(spec, SERVICE_ACCOUNT)
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False}


def role_manifest(spec: UserNamespace) -> Manifest:
    rules = user_rules(spec.ingresses)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(spec, ROLE), "rules": rules}


def role_binding_manifest(spec: UserNamespace) -> Manifest:
    """The Role to this namespace's ServiceAccount only: a RoleBinding grants nothing outside its namespace."""
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": spec.name}
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(spec, ROLE),
        "roleRef": ref,
        "subjects": [subject],
    }


def network_policy_manifests(spec: UserNamespace) -> list[Manifest]:
    """Ingress to every pod of the namespace only from the same namespace, and to the server pod also from the
    hub and proxy: other users' pods reach none of it (deployments add their own policy, for an Ingress)."""
    same = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}
    hub = {"podSelector": {"matchLabels": dict(SERVER_LABELS)}, "policyTypes": ["Ingress"]}
    hub["ingress"] = [{"from": [dict(peer) for peer in spec.hub_peers]}] if spec.hub_peers else []
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
    return [
        {**policy, "metadata": _meta(spec, "reeflab-same-namespace"), "spec": same},
        {**policy, "metadata": _meta(spec, "reeflab-from-hub"), "spec": hub},
    ]


def resource_quota_manifest(spec: UserNamespace) -> Manifest | None:
    """The namespace's ResourceQuota where the operator set one (e.g. GPUs, pods); None otherwise."""
    if not spec.quota:
        return None
    hard = {key: str(value) for key, value in spec.quota.items()}
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _meta(spec, QUOTA), "spec": {"hard": hard}}


def namespaced_manifests(spec: UserNamespace) -> list[Manifest]:
    """The objects made in the namespace, in the order they are applied (the Role before its binding)."""
    made = [service_account_manifest(spec), role_manifest(spec), role_binding_manifest(spec)]
    quota = resource_quota_manifest(spec)
    return [*made, *network_policy_manifests(spec), *([quota] if quota else [])]


def owner_problem(found: Manifest, spec: UserNamespace) -> str | None:
    """Why an existing namespace (its API JSON) is not this user's: not ReefLab's, or another (or an earlier) user's."""
    meta = found.get("metadata") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    if labels.get(MANAGED_BY) != "reeflab" or labels.get(KIND) != "user":
        return f"namespace '{spec.name}' exists and was not made by ReefLab for a user"
    if notes.get(OWNER) != spec.owner or notes.get(OWNER_ID) != spec.owner_id:
        return f"namespace '{spec.name}' belongs to another user (or to a deleted user of the same name)"
    return None


def ownership_problem(found: Manifest, spec: UserNamespace) -> str | None:
    """Why an existing namespace may not be used for this user's server now; None when it may."""
    if (found.get("status") or {}).get("phase") == "Terminating" and not owner_problem(found, spec):
        return f"namespace '{spec.name}' is still being deleted; try again in a minute"
    return owner_problem(found, spec)


_API = {  # kind: its API class, and the name in that class's create_namespaced_*/replace_namespaced_* methods
    "ServiceAccount": (client.CoreV1Api, "service_account"),
    "ResourceQuota": (client.CoreV1Api, "resource_quota"),
    "Role": (client.RbacAuthorizationV1Api, "role"),
    "RoleBinding": (client.RbacAuthorizationV1Api, "role_binding"),
    "NetworkPolicy": (client.NetworkingV1Api, "network_policy"),
}


async def _apply(api: client.ApiClient, manifest: Manifest) -> None:
    """Create the object, or replace it with this version (what an earlier spawn made may be out of date)."""
    group, snake = _API[manifest["kind"]]
    calls, meta = group(api), manifest["metadata"]
    try:
        await getattr(calls, f"create_namespaced_{snake}")(meta["namespace"], manifest)
    except ApiException as err:
        if err.status != 409:
            raise
        await getattr(calls, f"replace_namespaced_{snake}")(meta["name"], meta["namespace"], manifest)


async def ensure(api: client.ApiClient, spec: UserNamespace, log: logging.Logger | None = None) -> None:
    """Make (or bring up to date) the user's namespace and its objects; NamespaceRefused if it is not theirs."""
    core = client.CoreV1Api(api)
    manifest = namespace_manifest(spec)
    try:
        await core.create_namespace(manifest)
    except ApiException as err:
        if err.status != 409:
            raise
        found = api.sanitize_for_serialization(await core.read_namespace(spec.name))
        problem = ownership_problem(found, spec)
        if problem:
            if log:
                log.warning("not using namespace %s for %s: %s", spec.name, spec.owner, problem)
            raise NamespaceRefused(f"Your server cannot start: {problem}. Ask an admin.") from None
        # the storage mount mode may have changed: the Pod Security level follows it
        await core.patch_namespace(spec.name, {"metadata": {"labels": manifest["metadata"]["labels"]}})
    for each in namespaced_manifests(spec):
        await _apply(api, each)
    if not spec.quota:  # an operator may have removed the quota since the last spawn
        try:
            await core.delete_namespaced_resource_quota(QUOTA, spec.name)
        except ApiException as err:
            if err.status != 404:
                raise


async def check_owner(api: client.ApiClient, spec: UserNamespace) -> str | None:
    """Why the existing namespace of that name is not this user's; None if it is, or if there is none."""
    try:
        found = api.sanitize_for_serialization(await client.CoreV1Api(api).read_namespace(spec.name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return owner_problem(found, spec)


async def delete(api: client.ApiClient, spec: UserNamespace, log: logging.Logger | None = None) -> bool:
    """Delete the user's namespace (everything of theirs in Kubernetes) if it is theirs; False if it is not."""
    problem = await check_owner(api, spec)
    if problem:
        if log:
            log.warning("not deleting namespace %s of deleted user %s: %s", spec.name, spec.owner, problem)
        return False
    try:
        await client.CoreV1Api(api).delete_namespace(spec.name)
    except ApiException as err:
        if err.status != 404:
            raise
        return False
    return True
