"""`reeflab pipeline ...` as a user runs it in a terminal, against a real server running real pipelines."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest
from reeflab.hub.config import REPO
from test_pipelines import node_notebook, small_pipeline


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(REPO / "hub_config" / "profiles.yaml")},
        "PipelineService": {"root_dir": str(tmp_path / "pipeline-runs"), "poll_interval": 0.3},
    }


@pytest.fixture(autouse=True)
def no_leftover_runs(jp_serverapp, jp_asyncio_loop):
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].pipelines.stop_all())


@pytest.fixture
def reeflab(jp_serverapp, jp_base_url, jp_root_dir, http_server):
    """Runs `reeflab pipeline <args>` in the user's folder; returns its exit status and output."""
    env = {
        **os.environ,
        "REEFLAB_URL": f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}",
        "REEFLAB_TOKEN": jp_serverapp.identity_provider.token,
    }

    async def run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reeflab.cli", "pipeline", *args,
            env=env, cwd=jp_root_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
        return proc.returncode, out.decode()

    return run


def run_id(out: str) -> str:
    return re.search(r"pipeline run ([0-9a-f]{8})", out).group(1)


async def test_run_wait_list_show_logs(reeflab, jp_root_dir):
    node_notebook(jp_root_dir / "greet.ipynb", "import os", "print(f\"hello {os.environ['WHO']}\")")
    node_notebook(jp_root_dir / "after.ipynb", "print('after greet')")
    small_pipeline(jp_root_dir / "greet.pipeline", {"greet": ("greet.ipynb", []), "after": ("after.ipynb", ["greet"])})

    code, out = await reeflab("run", "greet.pipeline", "-p", "WHO=reef fish", "--wait")
    assert code == 0, out
    assert "(greet, after)" in out and "node greet completed" in out and "node after completed" in out
    assert out.index("node greet completed") < out.index("node after running")  # as the link says
    assert re.search(r"pipeline run [0-9a-f]{8} completed", out) and "executed notebooks: reeflab-pipelines/" in out
    ident = run_id(out)

    code, out = await reeflab("list")
    assert code == 0 and re.search(rf"{ident}\s+completed\s+2/2 nodes\s+greet.pipeline", out), out

    code, out = await reeflab("show", ident)
    assert code == 0 and "parameters: WHO=reef fish" in out, out
    assert re.search(r"greet\s+completed\s+cells 2/2\s+greet.ipynb", out), out

    code, out = await reeflab("logs", ident, "--node", "greet")
    assert code == 0 and "hello reef fish" in out, out
    code, out = await reeflab("logs", ident)
    assert code == 0 and "pipeline completed" in out, out
    code, out = await reeflab("logs", ident, "--node", "nope")
    assert code == 1 and "has no node 'nope'" in out, out


async def test_failures_cancel_and_bad_input_say_what_happened(reeflab, jp_root_dir):
    node_notebook(jp_root_dir / "broken.ipynb", "x = 1", "raise ValueError('murky water')")
    small_pipeline(jp_root_dir / "broken.pipeline", {"broken": ("broken.ipynb", [])})
    code, out = await reeflab("run", "broken.pipeline", "--wait")
    assert code == 1 and "node broken failed" in out and "murky water" in out, out
    assert "node 'broken' failed in cell 1" in out, out
    code, out = await reeflab("show", run_id(out))
    assert code == 1 and "cell 1: ValueError: murky water" in out, out

    node_notebook(jp_root_dir / "slow.ipynb", "import time", "time.sleep(120)")
    small_pipeline(jp_root_dir / "slow.pipeline", {"slow": ("slow.ipynb", [])})
    code, out = await reeflab("run", "slow.pipeline")
    assert code == 0 and "reeflab pipeline show" in out, out
    ident = run_id(out)
    code, out = await reeflab("cancel", ident)
    assert code == 0 and f"pipeline run {ident} cancelled" in out, out
    code, out = await reeflab("cancel", ident)
    assert code == 1 and "only a running pipeline run can be cancelled" in out, out

    code, out = await reeflab("run", "../elsewhere.pipeline")
    assert code == 1 and "without '..'" in out, out
    code, out = await reeflab("run", "broken.pipeline", "-p", "NOVALUE")
    assert code == 2 and "is not KEY=VALUE" in out, out
    code, out = await reeflab("show", "0123abcd")
    assert code == 1 and "No pipeline run '0123abcd'" in out, out
