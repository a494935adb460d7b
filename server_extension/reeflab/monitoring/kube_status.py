"""Status from the cluster (kubernetes mode): what runs in a namespace and what it asked for, and the cluster's
free capacity (schedulable nodes' allocatable minus the requests of the pods placed on them).

A user's server may list pods in their own namespace only (hub/kubernetes_isolation.py): it reads
`namespace_status`; `cluster_capacity` needs nodes and every namespace's pods, i.e. the hub's account.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity
from kubernetes_asyncio import client

from ..kube import KubernetesClient

GPU = "nvidia.com/gpu"
ENDED = ("Succeeded", "Failed")


def _amounts(resources: dict[str, str] | None) -> dict[str, Decimal]:
    resources = resources or {}
    return {key: parse_quantity(resources[key]) for key in ("cpu", "memory", GPU) if key in resources}


def pod_requests(pod: client.V1Pod) -> dict[str, Decimal]:
    """What the scheduler reserves for a pod: its containers' requests added up, or its largest init
    container's where that is more (Kubernetes' effective request), plus its overhead."""
    total: dict[str, Decimal] = {}
    for container in pod.spec.containers or []:
        for key, value in _amounts(container.resources.requests if container.resources else None).items():
            total[key] = total.get(key, Decimal(0)) + value
    for container in pod.spec.init_containers or []:
        for key, value in _amounts(container.resources.requests if container.resources else None).items():
            total[key] = max(total.get(key, Decimal(0)), value)
    for key, value in _amounts(pod.spec.overhead).items():
        total[key] = total.get(key, Decimal(0)) + value
    return total


def _figures(amounts: dict[str, Decimal]) -> dict[str, float | int]:
    return {
        "cpu": round(float(amounts.get("cpu", 0)), 3),
        "memory_MB": int(amounts.get("memory", 0) // 1_000_000),
        "gpu": int(amounts.get(GPU, 0)),
    }


def _live(pod: client.V1Pod) -> bool:
    return (pod.status.phase if pod.status else None) not in ENDED


async def namespace_status(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """The pods that run in `namespace` now (not ended), each with what it requested, and their sum."""
    pods = (await client.CoreV1Api(api).list_namespaced_pod(namespace)).items
    listed, held = [], {}
    for pod in sorted((p for p in pods if _live(p)), key=lambda p: p.metadata.name):
        requests = pod_requests(pod)
        for key, value in requests.items():
            held[key] = held.get(key, Decimal(0)) + value
        labels = pod.metadata.labels or {}
        listed.append(
            {
                "name": pod.metadata.name,
                "phase": pod.status.phase if pod.status else None,
                "app": labels.get("app.kubernetes.io/name") or labels.get("component"),
                "requests": _figures(requests),
            }
        )
    return {"namespace": namespace, "pods": listed, "requested": _figures(held)}


async def cluster_capacity(api: client.ApiClient) -> dict[str, Any]:
    """Each schedulable, ready node's allocatable CPU, memory and GPUs, what the pods placed on it requested, and
    what is free; and the cluster's totals."""
    core = client.CoreV1Api(api)
    nodes = (await core.list_node()).items
    pods = (await core.list_pod_for_all_namespaces(field_selector="status.phase!=Succeeded,status.phase!=Failed")).items
    requested: dict[str, dict[str, Decimal]] = {}
    for pod in pods:
        if _live(pod) and pod.spec.node_name:
            on_node = requested.setdefault(pod.spec.node_name, {})
            for key, value in pod_requests(pod).items():
                on_node[key] = on_node.get(key, Decimal(0)) + value
    listed = []
    totals = {"allocatable": {}, "requested": {}, "free": {}}
    for node in sorted(nodes, key=lambda n: n.metadata.name):
        ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
        if node.spec.unschedulable or not ready:
            continue
        allocatable = _amounts(node.status.allocatable)
        used = requested.get(node.metadata.name, {})
        free = {key: max(Decimal(0), value - used.get(key, Decimal(0))) for key, value in allocatable.items()}
        listed.append(
            {
                "name": node.metadata.name,
                "allocatable": _figures(allocatable),
                "requested": _figures(used),
                "free": _figures(free),
            }
        )
        for name, amounts in (("allocatable", allocatable), ("requested", used), ("free", free)):
            for key, value in amounts.items():
                totals[name][key] = totals[name].get(key, Decimal(0)) + value
    return {"nodes": listed, **{name: _figures(amounts) for name, amounts in totals.items()}}


async def user_namespace_status(backend: KubernetesClient) -> dict[str, Any]:
    """`namespace_status` of the namespace a user's deployments run in, with their server's client; what went
    wrong where the cluster refuses or does not answer."""
    try:
        return await namespace_status(await backend._api(), backend.namespace)
    except client.ApiException as err:
        return {"namespace": backend.namespace, "error": f"the cluster answered {err.status} {err.reason}"}


async def platform_status(api: client.ApiClient) -> dict[str, Any]:
    """For admins, with the hub's account: each user's namespace (what runs there, what it asked for) and the
    cluster's free capacity."""
    from ..hub.kubernetes_isolation import KIND, MANAGED_BY, OWNER

    found = await client.CoreV1Api(api).list_namespace(label_selector=f"{MANAGED_BY}=reeflab,{KIND}=user")
    users = []
    for namespace in sorted(found.items, key=lambda n: n.metadata.name):
        owner = (namespace.metadata.annotations or {}).get(OWNER)
        users.append({"user": owner, **await namespace_status(api, namespace.metadata.name)})
    return {"users": users, "cluster": await cluster_capacity(api)}
