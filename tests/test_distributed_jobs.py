"""Distributed notebook jobs on one machine: torchrun starts the ranks (gloo on CPU), through the REST API.

The DDP training below splits each global batch of 64 samples between the ranks (every rank takes every
world-th sample) and DistributedDataParallel averages their gradients, so each step's update is the gradient of
the mean loss over the same 64 samples, whatever the number of ranks: 1 and 2 processes follow the same
trajectory, and differ only by float32 rounding (the all-reduce sums two partial gradients, then divides): over
the 40 steps here, 1e-7 relative (measured: 0.1504424 and 0.1504424). The tolerance 1e-4 leaves room for that and
still fails a real mistake (both ranks on the same half of the data, gradients summed and not averaged, models
not synchronised), each of which changes the trajectory and so the loss by far more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import kmock
import kubernetes_validate
import nbformat
import pytest
from kubeflow_trainer_api.models import JobsetV1alpha2JobSet
from kubernetes_asyncio import client
from reeflab.hub.config import REPO
from reeflab.jobs.backends.kubernetes import KubernetesJobBackend
from reeflab.jobs.distributed import torchrun_args
from reeflab.jobs.models import Job
from reeflab.profiles import load_profiles
from test_deployments_kubernetes import Emulator
from test_jobs import call, ended, notebook, processes_of, refused, wait_for
from test_jobs_client import cli
from torch.distributed.run import parse_args
from tornado.httpclient import HTTPClientError

TOKEN = "distributed-activity-token"
K8S_VERSION = "1.33.0"

TRAIN = """\
import json, os
import torch, torch.distributed as dist

dist.init_process_group(os.environ["REEFLAB_DDP_BACKEND"])
rank, world = dist.get_rank(), dist.get_world_size()
print(f"rank {rank} of {world}: RANK={os.environ['RANK']} LOCAL_RANK={os.environ['LOCAL_RANK']}", flush=True)
data = torch.Generator().manual_seed(1)
X = torch.randn(512, 8, generator=data)
y = torch.tanh(X @ torch.randn(8, 1, generator=data)) + 0.05 * torch.randn(512, 1, generator=data)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
ddp = torch.nn.parallel.DistributedDataParallel(model)
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
for epoch in range(epochs):
    for start in range(0, len(X), 64):
        xb, yb = X[start : start + 64][rank::world], y[start : start + 64][rank::world]
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(ddp(xb), yb).backward()
        optimizer.step()
    print(f"rank {rank} epoch {epoch} samples {len(X) // world}", flush=True)
with torch.no_grad():
    loss = torch.nn.functional.mse_loss(model(X), y).item()
if rank == 0:
    json.dump({"loss": loss, "world": world}, open(f"loss-{world}.json", "w"))
dist.destroy_process_group()
"""


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, activity_hub, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    profiles = tmp_path / "profiles.yaml"  # the shipped ones, and 2 GPUs open to all
    two_gpus = (
        "  - {slug: gpu-2, display_name: 2 GPUs, cpu: 8, memory: 8G, gpu: {count: 2, resource: nvidia.com/gpu}}\n"
    )
    profiles.write_text((REPO / "hub_config" / "profiles.yaml").read_text() + two_gpus + "\n")
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(profiles)},
        "JobService": {"root_dir": str(tmp_path / "jobs"), "poll_interval": 0.3},
        "HubActivity": {"url": activity_hub[0], "interval": 0.5},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture
def no_leftover_jobs(jp_serverapp, jp_asyncio_loop):
    """Jobs outlive their server by design: cancel what a test left running."""
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].jobs.stop_all())


with_server = pytest.mark.usefixtures("no_leftover_jobs")


async def rank_log(jp_fetch, job_id: str, rank: int) -> str:
    return "\n".join((await call(jp_fetch, "GET", job_id, "log", params={"tail": "500", "rank": str(rank)}))["lines"])


@with_server
async def test_two_ranks_train_to_the_loss_of_one_with_a_log_each(jp_fetch, jp_root_dir):
    (jp_root_dir / "ddp").mkdir()
    name = notebook(jp_root_dir / "ddp" / "train.ipynb", TRAIN, parameters="epochs = 1")
    losses, jobs = {}, {}
    for processes in (1, 2):
        body = {"notebook": f"ddp/{name}", "parameters": {"epochs": 5}, "processes": processes}
        job = await call(jp_fetch, "POST", body=body)
        assert job["processes"] == processes and job["nodes"] == 1
        done = await wait_for(jp_fetch, job["id"], ended, timeout=180)
        assert done["state"] == "completed", (done, await call(jp_fetch, "GET", job["id"], "log"))
        assert done["progress"] == {"cell": 2, "cells": 2, "source": "import json, os"}  # rank 0's cells
        result = json.loads((jp_root_dir / "ddp" / f"loss-{processes}.json").read_text())
        assert result["world"] == processes
        losses[processes], jobs[processes] = result["loss"], done
    assert losses[2] == pytest.approx(losses[1], rel=1e-4), losses
    assert losses[1] < 0.2  # it did learn something (the untrained model's loss is 0.75)

    job_id = jobs[2]["id"]
    for rank in (0, 1):
        log = await rank_log(jp_fetch, job_id, rank)
        assert f"rank {rank} of 2: RANK={rank} LOCAL_RANK={rank}" in log and f"rank {rank} epoch 4 samples 256" in log
        assert f"rank {1 - rank} epoch" not in log  # each rank's own output only
    main = "\n".join((await call(jp_fetch, "GET", job_id, "log", params={"tail": "500"}))["lines"])
    assert "torchrun --nproc-per-node 2" in main and "job completed" in main
    # rank 0 writes the job's output notebook; it shows rank 0's print
    output = nbformat.reads((await jp_fetch("reeflab", "api", "jobs", job_id, "output")).body.decode(), 4)
    printed = "".join(o.get("text", "") for cell in output.cells for o in cell.get("outputs", []))
    assert "rank 0 of 2" in printed and "rank 1 of 2" not in printed
    for rank, says in (("2", "ranks 0 to 1"), ("one", "'rank' must be a whole number")):
        with pytest.raises(HTTPClientError) as err:
            await call(jp_fetch, "GET", job_id, "log", params={"rank": rank})
        assert err.value.code == 400 and says in json.loads(err.value.response.body)["message"]


WAIT_OR = """\
import os, signal, time
rank = int(os.environ["RANK"])
if rank == 1:
    {action}
time.sleep(120)
"""


@with_server
@pytest.mark.parametrize(
    "action, says",
    [
        ("raise ValueError('rank 1 found no data')", "rank 1 failed: ValueError: rank 1 found no data"),
        ("os.kill(os.getppid(), signal.SIGKILL)  # the rank's process dies", "rank 1 was killed by SIGKILL"),
    ],
    ids=["raises", "killed"],
)
async def test_a_failing_rank_fails_the_job_with_its_reason_and_stops_the_others(jp_fetch, jp_root_dir, action, says):
    name = notebook(jp_root_dir / "fail.ipynb", "import os", WAIT_OR.format(action=action))
    job = await call(jp_fetch, "POST", body={"notebook": name, "nproc": 2})
    done = await wait_for(jp_fetch, job["id"], ended, timeout=100)  # rank 0 would sleep for 120 s
    assert done["state"] == "failed" and done["failed_rank"] == 1, done
    assert done["reason"].startswith(says), done["reason"]
    if "raises" in says:
        assert done["error"]["cell_index"] == 1 and done["error"]["ename"] == "ValueError"
    assert "rank 1 found no data" in await rank_log(jp_fetch, job["id"], 1) or "killed" in says
    assert processes_of(job["id"]) == []  # rank 0 and both kernels are gone


@with_server
async def test_cancel_stops_every_rank(jp_fetch, jp_root_dir):
    name = notebook(jp_root_dir / "wait.ipynb", "import time", "time.sleep(300)")
    job = await call(jp_fetch, "POST", body={"notebook": name, "processes": 2})
    await wait_for(jp_fetch, job["id"], lambda j: j["progress"]["cell"] == 2 or ended(j), timeout=100)
    await asyncio.sleep(1)
    names = " ".join(" ".join(p.cmdline()) for p in processes_of(job["id"]))
    assert names.count("reeflab.jobs.rank") == 2 and names.count("ipykernel") >= 2, names
    cancelled = await call(jp_fetch, "POST", job["id"], "cancel")
    assert cancelled["state"] == "cancelled"
    assert processes_of(job["id"]) == []


@with_server
@pytest.mark.parametrize(
    "body, says",
    [
        ({"processes": 3}, "3 processes do not fit: at most 2 (one per CPU: profile 'cpu-small' has 2 and no GPU)"),
        (
            {"processes": 4, "profile": "gpu-2"},
            "4 processes do not fit: at most 2 (one per GPU: profile 'gpu-2' has 2)",
        ),
        ({"processes": 2, "nodes": 2}, "'nodes' must be 1, not 2. Several nodes need kubernetes mode"),
        ({"nodes": 2}, "give 'processes' (ranks per node) too"),
        ({"processes": 0}, "processes: Input should be greater than or equal to 1"),
    ],
)
async def test_a_distributed_job_that_does_not_fit_is_refused(jp_fetch, jp_root_dir, body, says):
    name = notebook(jp_root_dir / "ok.ipynb", "print('hi')")
    code, message = await refused(jp_fetch, "POST", body={"notebook": name, **body})
    assert code == 400 and says in message, message


@with_server
async def test_rank_logs_are_only_for_distributed_jobs_and_only_their_owners(jp_fetch, jp_root_dir):
    name = notebook(jp_root_dir / "plain.ipynb", "print('hi')")
    job = await call(jp_fetch, "POST", body={"notebook": name})
    assert job["processes"] is None
    with pytest.raises(HTTPClientError) as err:
        await call(jp_fetch, "GET", job["id"], "log", params={"rank": "0"})
    assert err.value.code == 400 and "not a distributed one" in json.loads(err.value.response.body)["message"]
    with pytest.raises(HTTPClientError) as err:
        await call(jp_fetch, "GET", "nosuchjob", "log", params={"rank": "0"})
    assert err.value.code == 404


@with_server
async def test_the_cli_runs_a_distributed_job_and_shows_a_ranks_log(server_url, jp_serverapp, jp_root_dir):
    token = jp_serverapp.identity_provider.token
    name = notebook(jp_root_dir / "hello.ipynb", "import os\nprint('hello from rank', os.environ['RANK'])")
    code, out = await cli(server_url, token, jp_root_dir, "run", name, "--nproc", "2")
    assert code == 0 and "torchrun --nproc-per-node 2" in out and "job completed" in out, out
    job_id = out.split()[1].rstrip(":")
    code, out = await cli(server_url, token, jp_root_dir, "logs", job_id, "--rank", "1")
    assert code == 0 and "hello from rank 1" in out and "hello from rank 0" not in out, out


# ---------------------------------------------------------------- kubernetes mode: the manifests, offline

GPU_PROFILES = """
image: example.org/lab:1
profiles:
  - {slug: cpu, display_name: CPU, cpu: 4, memory: 8G}
  - {slug: a100x4, display_name: 4x A100, cpu: 32, memory: 256G, image: example.org/lab-cuda:1,
     gpu: {count: 4, resource: nvidia.com/gpu}, node_selector: {nvidia.com/gpu.product: A100},
     tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]}
"""
FOLDER = Path("/home/jovyan/.local/share/jupyter/reeflab/jobs/0badf00d")


def distributed_job(profile: str, processes: int, nodes: int = 1) -> Job:
    return Job(
        id="0badf00d", owner="alice", title="ddp", notebook="train.ipynb", output="reeflab-jobs/0badf00d/train.ipynb",
        kernel="python3", profile=profile, cpu=1, memory_MB=1, backend="kubernetes", processes=processes, nodes=nodes,
        created=datetime(2026, 12, 6, tzinfo=UTC),
    )  # fmt: skip


def render(tmp_path, slug: str, processes: int, nodes: int = 1) -> dict:
    (path := tmp_path / "profiles.yaml").write_text(GPU_PROFILES)
    profile = {p.slug: p for p in load_profiles(path).profiles}[slug]
    backend = KubernetesJobBackend(profiles_file=str(path), namespace="reeflab-alice")
    return backend.manifest(distributed_job(slug, processes, nodes), FOLDER, profile, secret="reeflab-job-0badf00d")


def valid_jobset(manifest: dict) -> None:
    """Against JobSet's own API (the models Kubeflow Trainer publishes, kubeflow-trainer-api): every field known
    and of its type (a read-back that drops nothing), and its Job template valid Kubernetes (strict schema)."""
    read = JobsetV1alpha2JobSet.from_dict(manifest)
    assert read.to_dict() == manifest, "a field JobSet does not know, or of the wrong type"
    for replicated in manifest["spec"]["replicatedJobs"]:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": replicated["name"]}}
        kubernetes_validate.validate({**job, "spec": replicated["template"]["spec"]}, K8S_VERSION, strict=True)


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["containers"][0]["env"]}


def test_on_one_node_a_distributed_job_is_a_job_with_all_the_profiles_gpus(tmp_path):
    manifest = render(tmp_path, "a100x4", processes=4)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["kind"] == "Job"
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    env = env_of(pod)
    assert env["REEFLAB_DDP_BACKEND"] == "nccl" and env["OMP_NUM_THREADS"] == "8"  # 32 CPUs among 4 ranks
    assert env_of(render(tmp_path, "cpu", processes=2)["spec"]["template"]["spec"])["REEFLAB_DDP_BACKEND"] == "gloo"


def test_on_several_nodes_it_is_a_valid_jobset_with_the_profiles_gpus_on_each_node(tmp_path):
    manifest = render(tmp_path, "a100x4", processes=4, nodes=3)
    valid_jobset(manifest)
    assert manifest["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and manifest["kind"] == "JobSet"
    assert (
        manifest["metadata"]["name"] == "reeflab-job-0badf00d" and manifest["spec"]["failurePolicy"]["maxRestarts"] == 0
    )
    assert manifest["spec"]["network"] == {"enableDNSHostnames": True, "subdomain": "reeflab-job-0badf00d"}
    (nodes,) = manifest["spec"]["replicatedJobs"]
    job = nodes["template"]["spec"]
    assert (
        nodes["replicas"] == 1 and job["completions"] == job["parallelism"] == 3 and job["completionMode"] == "Indexed"
    )
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    assert (
        container["resources"]["limits"]["nvidia.com/gpu"]
        == "4"
        == container["resources"]["requests"]["nvidia.com/gpu"]
    )
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu" and container["envFrom"][0]["secretRef"]["name"]
    env = env_of(pod)
    assert env["REEFLAB_MASTER_ADDR"] == "reeflab-job-0badf00d-node-0-0.reeflab-job-0badf00d"  # node 0's pod
    assert env["REEFLAB_MASTER_PORT"] == "29400" and env["REEFLAB_DDP_BACKEND"] == "nccl"
    command = container["command"][2]
    assert "REEFLAB_NODE_RANK=${JOB_COMPLETION_INDEX:-0}" in command and f"reeflab.jobs.runner {FOLDER}" in command
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False


def test_the_jobset_check_catches_a_misspelt_field(tmp_path):
    manifest = render(tmp_path, "cpu", processes=2, nodes=2)
    manifest["spec"]["replicatedJob"] = manifest["spec"].pop("replicatedJobs")
    with pytest.raises(AssertionError, match="a field JobSet does not know"):
        valid_jobset(manifest)
    manifest = render(tmp_path, "cpu", processes=2, nodes=2)
    manifest["spec"]["replicatedJobs"][0]["replicas"] = "one"
    with pytest.raises(ValueError, match="replicas"):
        valid_jobset(manifest)


def test_the_node_rank_and_node_0s_address_reach_torchrun(monkeypatch):
    monkeypatch.setenv("REEFLAB_NODE_RANK", "2")
    monkeypatch.setenv("REEFLAB_MASTER_ADDR", "reeflab-job-0badf00d-node-0-0.reeflab-job-0badf00d")
    monkeypatch.setenv("REEFLAB_MASTER_PORT", "29400")
    spec = {"distributed": {"processes": 4, "nodes": 3, "id": "0badf00d", "backend": "nccl"}}
    args = parse_args(torchrun_args(spec, FOLDER))  # torchrun's own parser
    assert (args.nnodes, args.nproc_per_node, args.node_rank, args.max_restarts) == ("3", "4", 2, 0)
    assert args.master_addr.startswith("reeflab-job-0badf00d-node-0-0") and args.master_port == 29400
    assert args.module and args.training_script == "reeflab.jobs.rank" and not args.standalone
    local = parse_args(torchrun_args({"distributed": {"processes": 2, "nodes": 1}}, FOLDER))
    assert local.standalone and local.nproc_per_node == "2"


class JobSetEmulator(Emulator):
    """The emulator answering a creation 201 Created, as the API server does (clients of custom objects read the
    created object from a 201 only)."""

    async def _handle(self, request: kmock.Request):
        response = await super()._handle(request)
        if request.action == kmock.action.CREATE and response.status == 200:
            response.set_status(201)
        return response


async def test_a_jobset_is_created_watched_and_deleted_in_the_users_namespace(tmp_path):
    (path := tmp_path / "profiles.yaml").write_text(GPU_PROFILES)
    profile = {p.slug: p for p in load_profiles(path).profiles}["a100x4"]
    jobsets, secrets = "jobset.x-k8s.io/v1alpha2/jobsets", "v1/secrets"
    async with contextlib.AsyncExitStack() as stack:
        emulator = await stack.enter_async_context(JobSetEmulator())
        for resource in (jobsets, secrets, "batch/v1/jobs"):
            emulator.resources[resource] = {}
        await stack.enter_async_context(kmock.Server(emulator))
        api = client.ApiClient(client.Configuration(host=str(emulator.url).rstrip("/")))
        stack.push_async_callback(api.close)
        backend = KubernetesJobBackend(api_client=api, namespace="reeflab-alice", profiles_file=str(path))
        job = distributed_job("a100x4", processes=4, nodes=2)
        folder = tmp_path / "job"
        folder.mkdir()
        job.runtime = await backend.start(
            job, folder, {"distributed": {}}, profile, secrets={"AWS_SECRET_ACCESS_KEY": "k"}
        )
        assert job.runtime == {"namespace": "reeflab-alice", "name": "reeflab-job-0badf00d", "kind": "JobSet"}
        stored = emulator.objects[jobsets, "reeflab-alice", "reeflab-job-0badf00d"]
        pod = stored.raw["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
        owner = emulator.objects[secrets, "reeflab-alice", "reeflab-job-0badf00d"].raw["metadata"]["ownerReferences"]
        assert owner == [{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "name": "reeflab-job-0badf00d",
                          "uid": stored.raw["metadata"]["uid"]}]  # fmt: skip
        assert (await backend.status(job, folder)).get("state") != "failed"

        failed = {"type": "Failed", "status": "True", "reason": "FailedJobs", "message": "jobset failed: node-0 failed"}
        stored.patch({"status": {"conditions": [failed]}})
        (folder / "job.log").write_text("[reeflab] torchrun --nproc-per-node 4 --max-restarts 0 --nnodes 2\n")
        status = await backend.status(job, folder)
        assert status["state"] == "failed" and "its JobSet failed (jobset failed: node-0 failed)" in status["reason"]
        assert "torchrun --nproc-per-node 4" in status["reason"]  # the last lines of the job's log

        await backend.stop(job, folder)
        assert stored.deleted
        assert (await backend.status(job, folder))["reason"] == "its JobSet disappeared"
