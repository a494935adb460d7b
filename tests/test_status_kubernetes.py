"""Status from the cluster (kubernetes mode) against kmock, an HTTP emulator of the Kubernetes API on 127.0.0.1:
the cluster's free capacity is schedulable nodes' allocatable minus the requests of the pods placed on them; a
user's namespace lists what they run."""

from __future__ import annotations

import contextlib
import json

import kmock
import pytest
from kubernetes_asyncio import client
from reeflab.monitoring.kube_status import cluster_capacity, namespace_status

ALICE, BOB = "reeflab-alice", "reeflab-bob"
READY = [{"type": "Ready", "status": "True"}]


def node(name: str, cpu: str, memory: str, gpus: int = 0, ready: bool = True, unschedulable: bool = False) -> dict:
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    conditions = READY if ready else [{"type": "Ready", "status": "False"}]
    return {
        "metadata": {"name": name},
        "spec": {"unschedulable": unschedulable},
        "status": {"allocatable": allocatable, "capacity": allocatable, "conditions": conditions},
    }


def pod(name: str, namespace: str, node_name: str | None, *requests: dict, phase: str = "Running", init=()) -> dict:
    def container(index: int, wanted: dict) -> dict:
        return {"name": f"c{index}", "image": "x", "resources": {"requests": wanted}}

    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "reeflab-module"}},
        "spec": {
            "nodeName": node_name,
            "containers": [container(i, r) for i, r in enumerate(requests)],
            "initContainers": [container(i, r) for i, r in enumerate(init)],
        },
        "status": {"phase": phase},
    }


@pytest.fixture
def cluster(jp_asyncio_loop):
    stack = contextlib.AsyncExitStack()

    async def start():
        emulator = await stack.enter_async_context(kmock.KubernetesEmulator())
        for resource in ("v1/pods", "v1/nodes"):
            emulator.resources[resource] = {}
        await stack.enter_async_context(kmock.Server(emulator))
        api = client.ApiClient(client.Configuration(host=str(emulator.url).rstrip("/")))
        stack.push_async_callback(api.close)
        return emulator, api

    try:
        yield jp_asyncio_loop.run_until_complete(start())
    finally:
        jp_asyncio_loop.run_until_complete(stack.aclose())


def put(emulator, resource: str, obj: dict) -> None:
    meta = obj["metadata"]
    emulator.objects[resource, meta.get("namespace"), meta["name"]] = obj


async def test_free_capacity_is_allocatable_minus_the_requests_of_the_pods_on_each_node(cluster):
    emulator, api = cluster
    put(emulator, "v1/nodes", node("cpu-1", "8", "32Gi"))
    put(emulator, "v1/nodes", node("gpu-1", "16", "64Gi", gpus=2))
    put(emulator, "v1/nodes", node("drained", "8", "32Gi", unschedulable=True))
    put(emulator, "v1/nodes", node("broken", "8", "32Gi", ready=False))
    # alice: a server (two containers) and a GPU deployment; bob: a job whose init container asks for more
    put(emulator, "v1/pods", pod("jupyter-alice", ALICE, "cpu-1", {"cpu": "500m", "memory": "1Gi"}, {"cpu": "1"}))
    gpu = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    put(emulator, "v1/pods", pod("reeflab-d3adb33f-1", ALICE, "gpu-1", gpu))
    put(emulator, "v1/pods", pod("job-1", BOB, "cpu-1", {"cpu": "2"}, init=[{"cpu": "3", "memory": "2G"}]))
    put(emulator, "v1/pods", pod("done", BOB, "cpu-1", {"cpu": "6"}, phase="Succeeded"))  # ended: holds nothing
    put(emulator, "v1/pods", pod("pending", BOB, None, {"cpu": "6"}, phase="Pending"))  # not placed yet

    capacity = await cluster_capacity(api)
    assert [n["name"] for n in capacity["nodes"]] == ["cpu-1", "gpu-1"]  # not drained, not not-ready ones
    cpu_1, gpu_1 = capacity["nodes"]
    assert cpu_1["requested"] == {"cpu": 4.5, "memory_MB": 3073, "gpu": 0}  # 1.5 + max(2, init 3); 1Gi + 2G
    assert cpu_1["free"] == {"cpu": 3.5, "memory_MB": (32 * 2**30 - 2**30 - 2 * 10**9) // 10**6, "gpu": 0}
    assert gpu_1["free"] == {"cpu": 12.0, "memory_MB": 48 * 2**30 // 10**6, "gpu": 1}
    assert capacity["allocatable"] == {"cpu": 24.0, "memory_MB": 96 * 2**30 // 10**6, "gpu": 2}
    assert capacity["free"]["cpu"] == 15.5 and capacity["free"]["gpu"] == 1

    mine = await namespace_status(api, ALICE)
    assert [p["name"] for p in mine["pods"]] == ["jupyter-alice", "reeflab-d3adb33f-1"]
    assert mine["requested"] == {"cpu": 5.5, "memory_MB": 17 * 2**30 // 10**6, "gpu": 1}
    assert mine["pods"][1] == {
        "name": "reeflab-d3adb33f-1",
        "phase": "Running",
        "app": "reeflab-module",
        "requests": {"cpu": 4.0, "memory_MB": 16 * 2**30 // 10**6, "gpu": 1},
    }
    theirs = await namespace_status(api, BOB)
    assert [p["name"] for p in theirs["pods"]] == ["job-1", "pending"]  # the ended one is gone


# -- through ReefLab's API: a user's server in kubernetes mode answers its status from their namespace ----------


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {
        **jp_server_config,
        "HubIdentity": {"standalone_name": "alice"},
        "DeploymentService": {
            "root_dir": str(tmp_path / "deployments"),
            "backend_class": "reeflab.deployments.backends.kubernetes.KubernetesBackend",
        },
        "KubernetesBackend": {"namespace": ALICE},
        "TrackingService": {"tracking_uri": ""},
        "StorageService": {"root_dir": str(tmp_path / "storage"), "platform_config_url": None},
    }


async def test_a_users_status_lists_the_pods_of_their_own_namespace(jp_fetch, jp_serverapp, cluster):
    emulator, api = cluster
    jp_serverapp.web_app.settings["reeflab"].deployments.backend.api_client = api  # the emulator, not a kubeconfig
    put(emulator, "v1/pods", pod("reeflab-d3adb33f-1", ALICE, "gpu-1", {"cpu": "2", "memory": "4G"}))
    put(emulator, "v1/pods", pod("job-1", BOB, "cpu-1", {"cpu": "2"}))  # bob's: never in alice's status

    status = json.loads((await jp_fetch("reeflab", "api", "status")).body)
    assert status["user"] == "alice" and "machine" not in status  # not the figures of her server's pod
    assert status["namespace"] == {
        "namespace": ALICE,
        "pods": [
            {
                "name": "reeflab-d3adb33f-1",
                "phase": "Running",
                "app": "reeflab-module",
                "requests": {"cpu": 2.0, "memory_MB": 4000, "gpu": 0},
            }
        ],
        "requested": {"cpu": 2.0, "memory_MB": 4000, "gpu": 0},
    }
