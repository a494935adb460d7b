"""A pipeline node with a `processes` property runs as a distributed job: torchrun's ranks (gloo on CPU), one log
each, through the REST API and Elyra's real local runtime; a node asking for more ranks than the profile holds is a
400 before anything runs."""

from __future__ import annotations

import json

import nbformat
import pytest
from reeflab.hub.config import REPO
from test_pipelines import call, node_notebook, small_pipeline, watch
from test_pipelines_cli import reeflab  # noqa: F401 - the fixture running `reeflab pipeline ...`
from tornado.httpclient import HTTPClientError

ALLREDUCE = """\
import os
import torch, torch.distributed as dist

dist.init_process_group(os.environ["REEFLAB_DDP_BACKEND"])
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([rank + 1.0])
dist.all_reduce(total)
print(f"rank {rank} of {world}: sum of ranks+1 {total.item():g} run {os.environ['ELYRA_RUN_NAME']}", flush=True)
dist.destroy_process_group()
"""


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(REPO / "hub_config" / "profiles.yaml")},  # cpu-small: 2 CPUs
        "PipelineService": {"root_dir": str(tmp_path / "pipeline-runs"), "poll_interval": 0.3},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture(autouse=True)
def no_leftover_runs(jp_serverapp, jp_asyncio_loop):
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].pipelines.stop_all())


def with_processes(path, processes: dict[str, object]) -> None:
    """Give nodes of the pipeline file at `path` a `processes` property, as a user adds it to the node."""
    document = json.loads(path.read_text())
    for node in document["pipelines"][0]["nodes"]:
        if node["id"] in processes:
            node["app_data"]["component_parameters"]["processes"] = processes[node["id"]]
    path.write_text(json.dumps(document))


async def node_log(jp_fetch, run_id: str, node: str, **params: str) -> str:
    body = await call(jp_fetch, "GET", run_id, "log", params={"tail": "500", "node": node, **params})
    return "\n".join(body["lines"])


async def test_a_node_with_two_processes_runs_two_gloo_ranks_with_a_log_each(jp_fetch, jp_root_dir, reeflab):  # noqa: F811
    node_notebook(jp_root_dir / "prepare.ipynb", "print('prepared')")
    node_notebook(jp_root_dir / "train.ipynb", ALLREDUCE)
    small_pipeline(
        jp_root_dir / "ddp.pipeline", {"prepare": ("prepare.ipynb", []), "train": ("train.ipynb", ["prepare"])}
    )
    with_processes(jp_root_dir / "ddp.pipeline", {"train": 2})

    run = await call(jp_fetch, "POST", body={"pipeline": "ddp.pipeline"})
    assert {n["id"]: n["processes"] for n in run["nodes"]} == {"prepare": None, "train": 2}
    run, _ = await watch(jp_fetch, run["id"], timeout=180)
    assert run["state"] == "completed", (run, await node_log(jp_fetch, run["id"], "train"))

    # rank 0's executed notebook is the node's output: it saw a world of 2, and the all-reduce summed 1 + 2
    train = next(n for n in run["nodes"] if n["id"] == "train")
    output = nbformat.read(jp_root_dir / train["output"], as_version=4)
    printed = "".join(o.get("text", "") for cell in output.cells for o in cell.get("outputs", []))
    assert f"rank 0 of 2: sum of ranks+1 3 run {run['run_name']}" in printed and "rank 1 of" not in printed
    for rank in (0, 1):  # one log per rank, each with its own output only
        log = await node_log(jp_fetch, run["id"], "train", rank=str(rank))
        assert f"rank {rank} of 2: sum of ranks+1 3" in log and f"rank {1 - rank} of 2" not in log
    log = await node_log(jp_fetch, run["id"], "train")
    assert "torchrun --nproc-per-node 2" in log and "job completed" in log
    code, out = await reeflab("logs", run["id"], "--node", "train", "--rank", "1")  # the CLI, as in a terminal
    assert code == 0 and "rank 1 of 2: sum of ranks+1 3" in out and "rank 0 of 2" not in out, out
    for node, params, says in (
        ("train", {"rank": "2"}, "ranks 0 to 1"),
        ("prepare", {"rank": "0"}, "'prepare' is not a distributed one"),
    ):
        with pytest.raises(HTTPClientError) as err:
            await node_log(jp_fetch, run["id"], node, **params)
        assert err.value.code == 400 and says in json.loads(err.value.response.body)["message"]


async def test_too_many_processes_or_a_bad_value_is_a_400_naming_the_node(jp_fetch, jp_root_dir):
    node_notebook(jp_root_dir / "train.ipynb", "print('never runs')")
    (jp_root_dir / "script.py").write_text("print('never runs')\n")
    cases = [
        (
            {"train": 3},
            "node 'train' of 'ddp.pipeline': 3 processes do not fit: at most 2 (one per CPU: profile 'cpu-small'",
        ),
        ({"train": "two"}, "'processes' must be a whole number of ranks (1 or more), not 'two'"),
        ({"script": 2}, "only notebook nodes run distributed"),
    ]
    for processes, says in cases:
        small_pipeline(jp_root_dir / "ddp.pipeline", {"train": ("train.ipynb", []), "script": ("script.py", [])})
        with_processes(jp_root_dir / "ddp.pipeline", processes)
        with pytest.raises(HTTPClientError) as err:
            await call(jp_fetch, "POST", body={"pipeline": "ddp.pipeline"})
        assert err.value.code == 400 and says in json.loads(err.value.response.body)["message"], processes
    assert await call(jp_fetch, "GET") == {"runs": []}  # nothing was started
