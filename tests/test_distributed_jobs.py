"""Distributed notebook jobs on one machine: torchrun starts the ranks (gloo on CPU), through the REST API.

The DDP training below splits each global batch of 64 samples between the ranks (every rank takes every
world-th sample) and DistributedDataParallel averages their gradients, so each step's update is the gradient of
the mean loss over the same 64 samples, whatever the number of ranks: 1 and 2 processes follow the same
trajectory, and differ only by float32 rounding (the all-reduce sums two partial gradients, then divides). Over
the 40 steps here that is around 1e-6 relative; the tolerance 1e-4 leaves room for that and still fails any real
mistake (ranks training on the same samples, gradients summed and not averaged, unsynchronised models), which
moves the loss by whole percents.
"""

from __future__ import annotations

import asyncio
import json

import nbformat
import pytest
from reeflab.hub.config import REPO
from test_jobs import call, ended, notebook, processes_of, refused, wait_for
from tornado.httpclient import HTTPClientError

TOKEN = "distributed-activity-token"

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
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(REPO / "hub_config" / "profiles.yaml")},
        "JobService": {"root_dir": str(tmp_path / "jobs"), "poll_interval": 0.3},
        "HubActivity": {"url": activity_hub[0], "interval": 0.5},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture(autouse=True)
def no_leftover_jobs(jp_serverapp, jp_asyncio_loop):
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].jobs.stop_all())


async def rank_log(jp_fetch, job_id: str, rank: int) -> str:
    return "\n".join((await call(jp_fetch, "GET", job_id, "log", params={"tail": "500", "rank": str(rank)}))["lines"])


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
    assert losses[1] < 0.2  # it did learn something (an untrained model's loss is around 0.6)

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


@pytest.mark.parametrize(
    "body, says",
    [
        ({"processes": 3}, "3 processes do not fit: at most 2 (one per CPU: profile 'cpu-small' has 2 and no GPU)"),
        ({"processes": 2, "nodes": 2}, "'nodes' must be 1, not 2. Several nodes need kubernetes mode"),
        ({"nodes": 2}, "give 'processes' (ranks per node) too"),
        ({"processes": 0}, "processes: Input should be greater than or equal to 1"),
    ],
)
async def test_a_distributed_job_that_does_not_fit_is_refused(jp_fetch, jp_root_dir, body, says):
    name = notebook(jp_root_dir / "ok.ipynb", "print('hi')")
    code, message = await refused(jp_fetch, "POST", body={"notebook": name, **body})
    assert code == 400 and says in message, message


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
