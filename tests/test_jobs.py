"""Notebook jobs on one machine: real papermill runs in detached runner processes, through the REST API."""

from __future__ import annotations

import asyncio
import json
import os

import nbformat
import psutil
import pytest
from reeflab.hub.config import REPO
from tornado.httpclient import HTTPClientError

TOKEN = "job-activity-token"


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
    """Jobs outlive their server by design: cancel what a test left running."""
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].jobs.stop_all())


def notebook(path, *sources: str, parameters: str | None = None) -> str:
    """Write a notebook (its first cell tagged 'parameters' when given) and return its name."""
    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})] if parameters else []
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path.name


async def call(jp_fetch, method: str, *path: str, body=None, **kwargs):
    body = json.dumps(body) if body is not None else ("" if method == "POST" else None)
    response = await jp_fetch("reeflab", "api", "jobs", *path, method=method, body=body, **kwargs)
    return json.loads(response.body) if response.body else None


async def refused(jp_fetch, method: str, *path: str, body=None) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as err:
        await call(jp_fetch, method, *path, body=body)
    return err.value.code, json.loads(err.value.response.body)["message"]


async def wait_for(jp_fetch, job_id: str, until, timeout: float = 120) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await call(jp_fetch, "GET", job_id)
        if until(job):
            return job
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {job}"
        await asyncio.sleep(0.3)


def ended(job: dict) -> bool:
    return job["state"] in ("completed", "failed", "cancelled")


def processes_of(job_id: str) -> list[psutil.Process]:
    """Every process that carries the job's id in its environment (runner, kernel, their children)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("REEFLAB_JOB_ID") == job_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


async def test_a_notebook_runs_with_parameters_and_its_output_is_kept(jp_fetch, jp_root_dir, activity_hub):
    (jp_root_dir / "work").mkdir()
    name = notebook(
        jp_root_dir / "work" / "count.ipynb",
        "import os, time\nprint('threads', os.environ['OMP_NUM_THREADS'], 'cpus', len(os.sched_getaffinity(0)))",
        "for i in range(n):\n    print(f'fish {i}', flush=True)\n    time.sleep(0.2)",
        "open('result.txt', 'w').write(str(n * 2))",
        parameters="n = 1",
    )
    job = await call(jp_fetch, "POST", body={"notebook": f"work/{name}", "parameters": {"n": 4}, "title": "count"})
    assert job["state"] in ("starting", "running") and job["kernel"] == "python3" and job["profile"] == "cpu-small"
    assert "runtime" not in job and job["output"].endswith("count.ipynb")

    followed: list[bytes] = []
    follow = asyncio.ensure_future(
        jp_fetch(
            "reeflab", "api", "jobs", job["id"], "log",
            params={"follow": "1"}, streaming_callback=followed.append, request_timeout=120,
        )
    )  # fmt: skip
    done = await wait_for(jp_fetch, job["id"], ended)
    assert done["state"] == "completed", done
    assert done["progress"]["cells"] == 4 and done["progress"]["cell"] == 4
    assert (jp_root_dir / "work" / "result.txt").read_text() == "8"  # ran in the notebook's folder, with n=4
    assert (jp_root_dir / done["output"]).is_file() and done["output_url"] == f"lab/tree/{done['output']}"
    output = nbformat.reads((await jp_fetch("reeflab", "api", "jobs", job["id"], "output")).body.decode(), 4)
    printed = "".join(o.get("text", "") for cell in output.cells for o in cell.get("outputs", []))
    assert "fish 3" in printed and "threads 2 cpus 2" in printed  # the profile's 2 CPUs

    lines = (await call(jp_fetch, "GET", job["id"], "log", params={"tail": "100"}))["lines"]
    assert any("fish 3" in line for line in lines), "\n".join(lines)
    await asyncio.wait_for(follow, 30)
    streamed = b"".join(followed).decode()
    assert "fish 0" in streamed and "fish 3" in streamed and "job completed" in streamed
    # nothing to learn to ignore: the kernel's traffic is encrypted, and it is not interrupted to be stopped
    assert "without encryption" not in streamed and "KeyboardInterrupt" not in streamed, streamed

    url, received = activity_hub
    assert received, "the hub heard nothing while the job ran"
    auth, body = received[0]
    assert auth == f"token {TOKEN}" and body["servers"][""]["last_activity"] == body["last_activity"]
    assert processes_of(job["id"]) == []

    assert [j["id"] for j in (await call(jp_fetch, "GET"))["jobs"]] == [job["id"]]
    await call(jp_fetch, "DELETE", job["id"])
    assert (await refused(jp_fetch, "GET", job["id"]))[0] == 404
    assert (jp_root_dir / done["output"]).is_file()  # your output notebook stays yours


async def test_a_failing_notebook_reports_its_cell_and_error(jp_fetch, jp_root_dir):
    name = notebook(
        jp_root_dir / "broken.ipynb",
        "x = 1",
        "y = x + 1",
        "raise ValueError(f'no fish in {where}')",
        "print('never')",
        parameters="where = 'here'",
    )
    job = await call(jp_fetch, "POST", body={"notebook": name, "parameters": {"where": "the reef"}})
    failed = await wait_for(jp_fetch, job["id"], ended)
    assert failed["state"] == "failed"
    error = failed["error"]
    assert error["cell_index"] == 3 and error["ename"] == "ValueError" and error["evalue"] == "no fish in the reef"
    assert "raise ValueError" in error["source"] and "ValueError: no fish in the reef" in failed["reason"]
    lines = (await call(jp_fetch, "GET", job["id"], "log"))["lines"]
    assert any("job failed in cell 3" in line for line in lines)
    assert processes_of(job["id"]) == []


async def test_cancel_kills_the_kernel_and_leaves_no_process(jp_fetch, jp_root_dir, jp_serverapp):
    name = notebook(
        jp_root_dir / "slow.ipynb",
        "import subprocess, time",
        "child = subprocess.Popen(['sleep', '300'])  # what a kernel may start\ntime.sleep(300)",
    )
    job = await call(jp_fetch, "POST", body={"notebook": name})
    running = await wait_for(jp_fetch, job["id"], lambda j: j["progress"]["cell"] == 2 or ended(j))
    assert running["state"] == "running" and running["progress"]["source"].startswith("child = subprocess")
    await asyncio.sleep(0.5)
    procs = processes_of(job["id"])
    names = " ".join(" ".join(p.cmdline()) for p in procs)
    assert "reeflab.jobs.runner" in names and "ipykernel" in names and "sleep 300" in names

    cancelled = await call(jp_fetch, "POST", job["id"], "cancel")
    assert cancelled["state"] == "cancelled"
    assert processes_of(job["id"]) == []
    assert (await call(jp_fetch, "GET", job["id"]))["state"] == "cancelled"
    code, message = await refused(jp_fetch, "POST", job["id"], "cancel")
    assert code == 409 and "only a running job" in message


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"notebook": "../elsewhere.ipynb"}, 400, "without '..'"),
        ({"notebook": "/etc/passwd.ipynb"}, 400, "relative to your Jupyter root"),
        ({"notebook": "missing.ipynb"}, 400, "No notebook 'missing.ipynb'"),
        ({"notebook": "escape.ipynb"}, 400, "outside your folder"),
        ({"notebook": "ok.ipynb", "kernel": "cobol"}, 400, "Unknown kernel 'cobol'"),
        ({"notebook": "ok.ipynb", "profile": "gpu-t4"}, 403, "reserved for members"),
        ({"notebook": "ok.ipynb", "profile": "huge"}, 400, "Unknown hardware profile 'huge'"),
        ({"notebook": "ok.ipynb", "parameters": {"not a name": 1}}, 400, "not a Python variable name"),
        ({"notebook": "ok.txt"}, 400, "not a notebook"),
        ({}, 400, "notebook"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(jp_fetch, jp_root_dir, tmp_path, body, status, says):
    notebook(jp_root_dir / "ok.ipynb", "1")
    outside = tmp_path / "outside.ipynb"
    notebook(outside, "1")
    os.symlink(outside, jp_root_dir / "escape.ipynb")
    code, message = await refused(jp_fetch, "POST", body=body)
    assert code == status and says in message, message
    assert (await call(jp_fetch, "GET"))["jobs"] == []


async def test_users_see_only_their_own_jobs(jp_fetch, jp_root_dir, jp_serverapp):
    job = await call(jp_fetch, "POST", body={"notebook": notebook(jp_root_dir / "quick.ipynb", "1 + 1")})
    service = jp_serverapp.web_app.settings["reeflab"].jobs
    assert service.list("somebody-else") == []
    with pytest.raises(Exception, match="No job"):
        service.get("somebody-else", job["id"])
    assert (await refused(jp_fetch, "GET", "0123abcd"))[0] == 404
    await wait_for(jp_fetch, job["id"], ended)
