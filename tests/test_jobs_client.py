"""reeflab.client.jobs and `reeflab job` against a real jupyter-server running real papermill jobs."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from reeflab.client import jobs as client_jobs
from test_jobs import notebook


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {**jp_server_config, "JobService": {"root_dir": str(tmp_path / "jobs"), "poll_interval": 0.3}}


@pytest.fixture(autouse=True)
def no_leftover_jobs(jp_serverapp, jp_asyncio_loop):
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].jobs.stop_all())


async def off_loop(func, *args, **kwargs):
    """The client is synchronous: call it from a thread while the test's loop serves the requests."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


async def test_submit_wait_logs_output_and_failures(connection, jp_root_dir):
    name = notebook(jp_root_dir / "hello.ipynb", "print(f'hello {who} x{times}')", parameters="who = 'x'\ntimes = 1")
    job = await off_loop(client_jobs.submit, name, {"who": "reef", "times": 3}, connection=connection)
    await off_loop(job.wait, timeout=120, progress=False)
    assert job.state == "completed" and job.info["progress"]["cells"] == 2
    assert any("hello reef x3" in line for line in await off_loop(job.logs))
    outputs = (await off_loop(job.output_notebook))["cells"][-1]["outputs"]
    assert "".join(outputs[0]["text"]) == "hello reef x3\n"  # nbformat JSON: text as a list of lines
    assert [j.id for j in await off_loop(client_jobs.list_jobs, connection)] == [job.id]

    broken = notebook(jp_root_dir / "broken.ipynb", "1", "{}['missing']")
    failing = await off_loop(client_jobs.submit, broken, connection=connection)
    with pytest.raises(client_jobs.JobFailed) as err:
        await off_loop(failing.wait, timeout=120, progress=False)
    assert err.value.cell_index == 1 and err.value.ename == "KeyError" and "cell 1 raised" in err.value.message

    slow = notebook(jp_root_dir / "slow.ipynb", "import time\ntime.sleep(120)")
    running = await off_loop(client_jobs.submit, slow, connection=connection)
    while (await off_loop(running.refresh)).info["progress"]["cell"] < 1:
        await asyncio.sleep(0.3)
    assert (await off_loop(running.cancel)).state == "cancelled"
    await off_loop(running.delete)
    assert [j.id for j in await off_loop(client_jobs.list_jobs, connection)] == [job.id, failing.id]


async def cli(server_url: str, token: str, cwd, *args: str) -> tuple[int, str]:
    """`reeflab job ...` as a user runs it in a terminal of their server."""
    env = {**os.environ, "REEFLAB_URL": server_url, "REEFLAB_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reeflab.cli", "job", *args,
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode, out.decode()


async def test_the_cli_runs_a_notebook_with_parameters_and_follows_it(server_url, jp_serverapp, jp_root_dir):
    token = jp_serverapp.identity_provider.token
    name = notebook(
        jp_root_dir / "count.ipynb",
        "print(sum(values), label, fast)",
        parameters="values = []\nlabel = ''\nfast = False",
    )
    code, out = await cli(server_url, token, jp_root_dir, "run", name, "-p", "values=[1, 2, 3]", "-p", "label=reef",
                          "-p", "fast=true")  # fmt: skip
    assert code == 0, out
    assert "6 reef True" in out and "completed" in out and "output notebook: reeflab-jobs/" in out

    code, out = await cli(server_url, token, jp_root_dir, "list")
    assert code == 0 and "completed" in out and name in out

    broken = notebook(jp_root_dir / "broken.ipynb", "raise RuntimeError('bad tide')")
    code, out = await cli(server_url, token, jp_root_dir, "run", broken)
    assert code == 1 and "RuntimeError: bad tide" in out and "failed" in out

    code, out = await cli(server_url, token, jp_root_dir, "run", "../nope.ipynb")
    assert code == 1 and "without '..'" in out
