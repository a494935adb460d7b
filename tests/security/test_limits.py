"""Limits are the kernel's: real processes in real cgroups (v1 or v2), and deployments and jobs held to them."""

from __future__ import annotations

import errno
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from reeflab import limits
from reeflab.hub.config import REPO
from reeflab.limits import Cgroup, memory_limit_for, pss_of
from reeflab.modules.fish_detector import model as fish
from test_deployments_local import call as deployments
from test_deployments_local import multipart
from test_deployments_local import wait_for as wait_deployment
from test_jobs import call as jobs
from test_jobs import ended, notebook
from test_jobs import wait_for as wait_job
from tornado.httpclient import HTTPClientError

SAMPLES = Path(fish.model_path()).parents[1] / "samples"
MB = 10**6


@pytest.fixture
def cgroup_name():
    """A fresh name; whatever a failing test left under it is removed."""
    name = f"test-{secrets.token_hex(4)}"
    yield name
    leftover = Cgroup.find(name)
    if leftover is not None:
        leftover.remove()


def made(name: str, memory: int | None, cpus: float | None) -> Cgroup:
    cgroup = Cgroup.create(name, memory, cpus)
    if cgroup is None:
        pytest.skip("no cgroup can be made here (not root, or cgroupfs read-only): the PSS watchdog applies")
    return cgroup


def python_in(cgroup: Cgroup, source: str) -> subprocess.Popen:
    """A Python process started inside the cgroup, the way the backends start theirs (preexec_fn)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source)],
        preexec_fn=cgroup.enter,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_a_process_over_its_memory_limit_is_killed_by_the_kernel(cgroup_name):
    cgroup = made(cgroup_name, 150 * MB, None)
    assert cgroup.name == f"reeflab-{cgroup_name}" and 149 * MB < cgroup.memory_limit <= 150 * MB
    assert not cgroup.oom_killed()
    code, output = finished(python_in(cgroup, "x = b'x' * (400 * 10**6)\nprint('survived', len(x))"))
    assert code == -signal.SIGKILL and "survived" not in output, output
    assert cgroup.oom_killed(code)
    cgroup.remove()


def test_a_process_under_its_limit_lives(cgroup_name):
    cgroup = made(cgroup_name, 300 * MB, 1)
    code, output = finished(python_in(cgroup, "x = b'x' * (60 * 10**6)\nprint('survived', len(x))"))
    assert code == 0 and "survived 60000000" in output
    assert not cgroup.oom_killed(code)
    cgroup.remove()


def test_the_cpu_quota_is_written_and_holds(cgroup_name):
    cgroup = made(cgroup_name, None, 0.2)
    assert cgroup.cpu_quota() == pytest.approx(0.2)
    if cgroup.version == 2:
        assert (cgroup.folders["unified"] / "cpu.max").read_text().split() == ["20000", "100000"]
    else:
        assert (cgroup.folders["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "20000"
        assert (cgroup.folders["cpu"] / "cpu.cfs_period_us").read_text().strip() == "100000"
    busy = """
        import time
        wall, cpu = time.monotonic(), time.process_time()
        while time.monotonic() - wall < 1.5:
            pass
        print(time.process_time() - cpu)
    """
    code, output = finished(python_in(cgroup, busy))
    assert code == 0 and float(output) < 0.6, output  # 0.3 s at most allowed; unlimited it would be 1.5 s
    cgroup.remove()


def test_under_a_users_cgroup_a_workload_asking_more_cpu_is_still_limited(cgroup_name, monkeypatch):
    """v1 refuses a quota above an ancestor's (a user's server's cgroup): the workload still gets its memory
    limit, and the ancestor's quota holds it."""
    user = made(cgroup_name, 500 * MB, 1)
    if user.version != 1:
        user.remove()
        pytest.skip("v2 nests cpu.max without refusing it")
    monkeypatch.setattr(limits, "_own_v1", lambda: dict(user.folders))
    try:
        workload = Cgroup.create("job-under-user", 100 * MB, 2)
        assert workload is not None and workload.folders["memory"].parent == user.folders["memory"]
        assert workload.memory_limit == 100 * MB and workload.cpu_quota() is None
        workload.remove()
    finally:
        user.remove()


def test_remove_kills_everything_inside_and_leaves_nothing(cgroup_name):
    cgroup = made(cgroup_name, 200 * MB, 1)
    forks = """
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        print("started", flush=True)
        time.sleep(60)
    """
    parent = python_in(cgroup, forks)
    assert parent.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 10
    while len(cgroup.pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    inside = cgroup.pids()
    assert parent.pid in inside and len(inside) == 2  # the child that left our session is still inside
    found = Cgroup.find(cgroup_name)  # as after a restart of the Jupyter server
    assert found is not None and found.folders == cgroup.folders and found.pids() == inside
    found.remove()
    code, _ = finished(parent, 10)
    assert code == -signal.SIGKILL
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in inside)
    assert not any(folder.exists() for folder in cgroup.folders.values())
    assert Cgroup.find(cgroup_name) is None
    cgroup.remove()  # idempotent


def test_on_cgroup_v2_limits_go_to_a_leaf_beside_a_cgroup_that_holds_processes(tmp_path, monkeypatch):
    """v2's "no internal processes" rule, on a fake hierarchy (the files a v2 kernel reads and writes)."""
    parent, own = tmp_path, tmp_path / "server.scope"
    own.mkdir()
    for folder in (parent, own):
        (folder / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (folder / "cgroup.subtree_control").write_text("")
    write = limits._write

    def busy_own(path: Path, value: str) -> None:
        if path == own / "cgroup.subtree_control":  # this server's processes are in it
            raise OSError(errno.EBUSY, "Device or resource busy")
        write(path, value)

    monkeypatch.setattr(limits, "unified", lambda: True)
    monkeypatch.setattr(limits, "_own_v2", lambda: own)
    monkeypatch.setattr(limits, "_write", busy_own)
    cgroup = Cgroup.create("job-1", 1000 * MB, 1.5, oom_group=True)
    assert cgroup is not None and cgroup.version == 2 and cgroup.folders == {"unified": parent / "reeflab-job-1"}
    folder = cgroup.folders["unified"]
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (folder / "memory.max").read_text() == "1000000000" and (folder / "cpu.max").read_text() == "150000 100000"
    assert (folder / "memory.oom.group").read_text() == "1"
    assert Cgroup.find("job-1").folders == cgroup.folders and Cgroup.find("job-1").memory_limit == 1000 * MB
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\n")
    assert not cgroup.oom_killed()
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    assert cgroup.oom_killed()


def test_names_are_prefixed_and_never_paths():
    assert Cgroup.full_name("deployment-1a2b") == "reeflab-deployment-1a2b"
    for bad in ("../escape", "a/b", "", "x" * 200):
        with pytest.raises(ValueError):
            Cgroup.full_name(bad)


def test_pss_counts_shared_pages_once():
    """A process and its fork share 100 MB: a sum of RSS sees 200 MB, PSS the 100 MB there are."""
    source = """
        import os, time
        x = b"x" * (100 * 10**6)
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        print("forked", flush=True)
        time.sleep(60)
    """
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(source)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "forked"
        members = [psutil.Process(process.pid), *psutil.Process(process.pid).children()]
        assert len(members) == 2
        pss = pss_of(process.pid)
        assert 100 * MB < pss < 150 * MB, pss
    finally:
        for member in psutil.Process(process.pid).children():
            member.kill()
        process.kill()
        process.communicate(timeout=10)


def test_a_module_gets_its_memory_with_headroom():
    assert memory_limit_for(1000) == 1500 * MB  # the fish detector: 1.5 GB
    assert memory_limit_for(100) == 356 * MB  # small modules: at least 256 MB more
    assert memory_limit_for(2000) == 3000 * MB


# -- deployments and jobs held to their limits -----------------------------------------------------------


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, tiny_profiles):
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(tiny_profiles)},
        "DeploymentService": {"root_dir": str(tmp_path / "deployments"), "poll_interval": 0.5},
        "JobService": {"root_dir": str(tmp_path / "jobs"), "poll_interval": 0.3},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture(params=["kernel", "pss"])
def held_by(request, monkeypatch) -> str:
    """Both ways a workload is held to its memory: its cgroup, or (where none can be made) the PSS watchdog."""
    if request.param == "pss":
        monkeypatch.setattr(Cgroup, "create", classmethod(lambda cls, *args, **kwargs: None))
    return request.param


@pytest.fixture
def no_leftovers(jp_serverapp, jp_asyncio_loop):
    """Deployments and jobs outlive their server by design: stop what a test left running."""
    yield
    services = jp_serverapp.web_app.settings["reeflab"]
    jp_asyncio_loop.run_until_complete(services.deployments.stop_all())
    jp_asyncio_loop.run_until_complete(services.jobs.stop_all())


async def test_the_fish_detector_with_its_default_request_stays_ready_through_50_predictions(
    jp_fetch, jp_serverapp, held_by, no_leftovers
):
    created = await deployments(jp_fetch, "POST", body={"module": "fish-detector"})
    assert created["hardware"]["memory_MB"] == 1000
    ready = await wait_deployment(jp_fetch, created["id"], ("ready", "failed"))
    assert ready["state"] == "ready", ready["reason"]
    service = jp_serverapp.web_app.settings["reeflab"].deployments
    name = service.get(ready["owner"], created["id"]).runtime["cgroup"]
    cgroup = Cgroup.find(name) if name else None
    if cgroup is not None:  # the kernel holds it to 1.5 GB, with all its processes inside
        assert 1499 * MB < cgroup.memory_limit <= 1500 * MB and cgroup.cpu_quota() == pytest.approx(1)
        assert service.get(ready["owner"], created["id"]).runtime["pid"] in cgroup.pids()

    body, content_type = multipart("files", "fish_04.jpg", (SAMPLES / "fish_04.jpg").read_bytes(), "image/jpeg")
    for _ in range(50):
        await jp_fetch(
            "reeflab", "deployments", created["id"], "v2/models/fish-detector/predict/",
            method="POST", body=body, headers={"Content-Type": content_type}, request_timeout=120,
        )  # fmt: skip
    await service.check_all()  # the watch of its memory has seen it after the last one too
    after = await deployments(jp_fetch, "GET", created["id"])
    assert after["state"] == "ready" and after["reason"] is None, after
    if cgroup is not None:
        assert not cgroup.oom_killed() and cgroup.memory_current < cgroup.memory_limit

    await deployments(jp_fetch, "DELETE", created["id"])
    assert name is None or Cgroup.find(name) is None


async def test_a_deployment_given_too_little_memory_is_stopped_and_says_so(
    jp_fetch, jp_serverapp, held_by, no_leftovers
):
    created = await deployments(
        jp_fetch, "POST", body={"module": "fish-detector", "hardware": {"cpu": 1, "memory_MB": 100}}
    )
    failed = await wait_deployment(jp_fetch, created["id"], ("ready", "failed"), timeout=120)
    assert failed["state"] == "failed", failed
    assert failed["reason"].startswith("stopped: out of memory, limit 356 MB ("), failed["reason"]
    assert "it was given 100 MB; restart it with more memory" in failed["reason"]
    runtime = jp_serverapp.web_app.settings["reeflab"].deployments.get(failed["owner"], created["id"]).runtime
    assert (runtime["cgroup"] is None) == ("it used" in failed["reason"])  # the watchdog says what it measured
    assert held_by == "kernel" or runtime["cgroup"] is None
    assert runtime["cgroup"] is None or Cgroup.find(runtime["cgroup"]) is None  # nothing of it is left
    assert not psutil.pid_exists(runtime["pid"]) or psutil.Process(runtime["pid"]).status() == psutil.STATUS_ZOMBIE
    # its log says so (the module itself only saw a signal), and the platform offers the fix
    lines = (await deployments(jp_fetch, "GET", created["id"], "logs"))["lines"]
    assert any(line.startswith("ReefLab: stopped: out of memory") for line in lines), lines[-5:]
    assert failed["suggestion"] == {"cpu": 1, "memory_MB": 1000, "gpu": 0}

    restarted = await deployments(
        jp_fetch, "POST", created["id"], "restart", body={"hardware": {"memory_MB": failed["suggestion"]["memory_MB"]}}
    )
    assert restarted["hardware"]["memory_MB"] == 1000 and restarted["suggestion"] is None
    ready = await wait_deployment(jp_fetch, created["id"], ("ready", "failed"))
    assert ready["state"] == "ready", ready["reason"]
    beyond = {"hardware": {"memory_MB": ready["limits"]["memory_MB"] + 1}}
    with pytest.raises(HTTPClientError) as refused:
        await deployments(jp_fetch, "POST", created["id"], "restart", body=beyond)
    assert refused.value.code == 400 and "beyond profile" in refused.value.response.body.decode()
    await deployments(jp_fetch, "DELETE", created["id"])


async def test_a_job_over_its_profiles_memory_fails_with_the_reason(
    jp_fetch, jp_root_dir, jp_serverapp, held_by, no_leftovers
):
    name = notebook(jp_root_dir / "hungry.ipynb", "print('start', flush=True)", "x = b'x' * (1500 * 10**6)")
    job = await jobs(jp_fetch, "POST", body={"notebook": name, "profile": "tiny"})
    assert job["memory_MB"] == 1000
    runtime = jp_serverapp.web_app.settings["reeflab"].jobs.get(job["owner"], job["id"]).runtime
    done = await wait_job(jp_fetch, job["id"], ended, timeout=120)
    assert done["state"] == "failed", done
    assert done["reason"].startswith("stopped: out of memory, limit 1 GB ("), done["reason"]
    assert "profile 'tiny'" in done["reason"] and (runtime["cgroup"] is None) == ("it used" in done["reason"])
    assert runtime["cgroup"] is None or Cgroup.find(runtime["cgroup"]) is None
    assert not [p for p in psutil.process_iter() if p.pid == runtime["pid"] and p.status() != psutil.STATUS_ZOMBIE]


def test_no_sum_of_rss_in_the_platform():
    """Shared pages counted once per process stopped modules that fit: RSS must not decide anything."""
    code = REPO / "server_extension" / "reeflab"
    assert not [p for p in code.rglob("*.py") if "memory_info().rss" in p.read_text()]
    assert os.path.exists(code / "limits.py")
