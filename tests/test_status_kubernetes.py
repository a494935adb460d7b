"""Status from the cluster (kubernetes mode) against kmock, an HTTP emulator of the Kubernetes API on 127.0.0.1:
the cluster's free capacity is schedulable nodes' allocatable minus the requests of the pods placed on them; a
user's namespace lists what they run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

import aiohttp.web
import kmock
import pytest
from kubernetes_asyncio import client
from reeflab.files import free_port
from reeflab.monitoring.kube_status import cluster_capacity, namespace_status
from tornado.httpclient import AsyncHTTPClient

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


class Emulator(kmock.KubernetesEmulator):
    """kmock, plus the list of namespaces (cluster-scoped objects kmock does not parse) by label selector."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.namespaces: list[dict] = []

    async def __call__(self, raw_request):
        if raw_request.method != "GET" or raw_request.path.rstrip("/") != "/api/v1/namespaces":
            return await super().__call__(raw_request)
        selector = raw_request.query.get("labelSelector", "")
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        items = [n for n in self.namespaces if wanted.items() <= n["metadata"].get("labels", {}).items()]
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": items})


@pytest.fixture
def cluster(jp_asyncio_loop):
    stack = contextlib.AsyncExitStack()

    async def start():
        emulator = await stack.enter_async_context(Emulator())
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


# -- for admins: the usage service with the hub's account reads every user namespace and the nodes --------------


def namespace(name: str, owner: str, kind: str = "user") -> dict:
    labels = {"app.kubernetes.io/managed-by": "reeflab", "reeflab.io/namespace": kind}
    return {"metadata": {"name": name, "labels": labels, "annotations": {"reeflab.io/owner": owner}}}


async def test_admins_see_every_users_namespace_and_the_clusters_free_capacity(cluster, tmp_path):
    emulator, _ = cluster
    emulator.namespaces += [namespace(ALICE, "alice"), namespace(BOB, "bob@sea.org"), namespace("x", "y", "system")]
    emulator.namespaces.append({"metadata": {"name": "kube-system"}})  # not a user's
    put(emulator, "v1/nodes", node("gpu-1", "16", "64Gi", gpus=2))
    put(emulator, "v1/pods", pod("reeflab-d3adb33f-1", ALICE, "gpu-1", {"cpu": "4", "nvidia.com/gpu": "1"}))
    put(emulator, "v1/pods", pod("job-1", BOB, "gpu-1", {"cpu": "2"}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(emulator.url).rstrip("/")}}],
                "users": [{"name": "hub", "user": {"token": "hub-service-account"}}],
                "contexts": [{"name": "hub", "context": {"cluster": "kmock", "user": "hub"}}],
                "current-context": "hub",
            }
        )
    )
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"ada-token": "ada", "ben-token": "ben"}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "KUBERNETES_"))}
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reeflab.usage", "--kubernetes", f"--port={port}", "--base-url=/",
        f"--state-dir={tmp_path / 'usage'}", f"--UsageApp.static_tokens_file={tokens}", "--UsageApp.admin_users=ada",
        env={**env, "KUBECONFIG": str(kubeconfig)},
    )  # fmt: skip
    fetch = AsyncHTTPClient().fetch

    async def get(path: str, token: str):
        return await fetch(
            f"http://127.0.0.1:{port}/{path}", headers={"Authorization": f"token {token}"}, raise_error=False
        )

    try:
        for _ in range(200):  # the loop serves the emulator meanwhile
            try:
                answer = await get("status", "ada-token")
            except OSError:
                await asyncio.sleep(0.1)
                continue
            if answer.code != 599:
                break
            await asyncio.sleep(0.1)
        assert answer.code == 200, answer.body
        status = json.loads(answer.body)
        assert [(u["user"], u["namespace"]) for u in status["users"]] == [("alice", ALICE), ("bob@sea.org", BOB)]
        assert status["users"][0]["requested"] == {"cpu": 4.0, "memory_MB": 0, "gpu": 1}
        assert [p["name"] for p in status["users"][1]["pods"]] == ["job-1"]
        assert status["cluster"]["free"] == {"cpu": 10.0, "memory_MB": 64 * 2**30 // 10**6, "gpu": 1}
        refused = await get("status", "ben-token")
        assert refused.code == 403 and "Only hub admins" in json.loads(refused.body)["message"]
        rows = await get("usage", "ada-token")
        assert rows.code == 501 and "local mode only" in json.loads(rows.body)["message"]
    finally:
        service.terminate()
        await asyncio.wait_for(service.wait(), 30)
