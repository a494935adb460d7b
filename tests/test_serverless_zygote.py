"""A module service's workers are forked from one zygote that loaded the module (oscar_engine/zygote.py).

A real engine, real sandboxes and OS accounts (as root), the real fish-detector: min_scale workers are ready before
the first call, a burst makes more by forking (no call waits for a model load), every forked worker is its
owner's account in the zygote's sandbox, a worker or the zygote killed costs no call after it, a warm worker keeps
the memory its forward pass freed for the next call (given back once idle), and deleting the service leaves nothing
running. Memory (PSS of 1 vs 2 workers) and burst latencies: bench/serverless.py --only
zygote.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from reeflab import accounts
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.testing.process import wait_until

SAMPLES = Path(__file__).parents[1] / "server_extension/reeflab/modules/fish_detector/samples"
IMAGE = base64.b64encode((SAMPLES / "fish_01.jpg").read_bytes())


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("zygote") / "state"
    with EngineProcess(state, users=["alice"], args=["--ServerlessApp.max_workers=4"]) as engine:
        yield engine


def fish(name: str, cpu: str = "1", **synchronous) -> dict:
    return {
        "name": name,
        "image": "ai4oshub/ignored-locally",
        "cpu": cpu,
        "memory": "2Gi",
        "environment": {"variables": {"REEFLAB_MODULE": "fish-detector"}},
        "synchronous": synchronous,
    }


def processes(engine) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """The zygotes (Python, inside their bwrap) and the workers they forked, under the engine."""
    found = []
    for process in psutil.Process(engine.proc.pid).children(recursive=True):
        try:
            if process.name() != "bwrap" and "reeflab.oscar_engine.zygote" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    pids = {p.pid for p in found}
    zygotes = [p for p in found if p.ppid() not in pids]
    return zygotes, [p for p in found if p.ppid() in pids]


def call(engine, service: str) -> dict:
    answer = engine.request("POST", f"/run/{service}", "alice", data=IMAGE, timeout=300)
    assert answer.status_code == 200, answer.text
    return json.loads(base64.b64decode(answer.text))


def deployment(engine, service: str) -> dict:
    return engine.request("GET", f"/system/services/{service}/deployment", "alice").json()


def test_a_burst_is_served_by_workers_forked_from_one_zygote_in_its_sandbox(engine):
    assert engine.request("POST", "/system/services", "alice", json=fish("fish", min_scale=1, max_scale=2)).ok
    try:
        # min_scale: a worker is ready before the first call
        wait_until(lambda: deployment(engine, "fish")["state"] == "ready", 180, "the min_scale worker")
        zygotes, workers = processes(engine)
        assert len(zygotes) == 1 and len(workers) == 1
        zygote = zygotes[0]

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: call(engine, "fish"), range(6)))
        assert all(answer["detections"] for answer in answers)
        assert processes(engine)[0] == [zygote]  # nothing loaded the module again
        workers = wait_until(lambda: len(found := processes(engine)[1]) == 2 and found, 10, "two forked workers")
        assert {w.ppid() for w in workers} == {zygote.pid}

        def namespace(process: psutil.Process, kind: str) -> str:
            return os.readlink(f"/proc/{process.pid}/ns/{kind}")

        for worker in workers:  # as strongly kept apart as the zygote is
            assert worker.uids().real == zygote.uids().real
            assert namespace(worker, "pid") == namespace(zygote, "pid") != namespace(psutil.Process(), "pid")
            assert namespace(worker, "mnt") == namespace(zygote, "mnt") != namespace(psutil.Process(), "mnt")
        if accounts.isolation_available():
            assert zygote.username().startswith("rl-alice-")
            cgroups = {Path(f"/proc/{p.pid}/cgroup").read_text() for p in [zygote, *workers]}
            assert len(cgroups) == 3  # each worker is limited on its own
        assert zygote.num_threads() == 1  # nothing but the forking thread: safe to fork
    finally:
        engine.request("DELETE", "/system/services/fish", "alice")
    wait_until(lambda: processes(engine) == ([], []), 15, "the zygote and its workers to stop")


def test_a_forked_worker_gets_the_services_threads(engine):
    assert engine.request("POST", "/system/services", "alice", json=fish("fish2", cpu="2", max_scale=1)).ok
    try:
        call(engine, "fish2")
        zygotes, workers = processes(engine)
        assert len(workers) == 1 and zygotes[0].num_threads() == 1
        assert workers[0].num_threads() >= 2  # torch's team of the service's two CPUs, made after the fork
    finally:
        engine.request("DELETE", "/system/services/fish2", "alice")


def test_a_killed_worker_or_zygote_costs_no_later_call(engine):
    assert engine.request("POST", "/system/services", "alice", json=fish("fish3", max_scale=2)).ok
    try:
        call(engine, "fish3")
        (zygote,), (worker,) = processes(engine)
        worker.kill()
        assert not psutil.wait_procs([worker], timeout=10)[1]  # gone (its zygote reaped it)
        assert call(engine, "fish3")["detections"]  # a fresh fork serves it
        assert processes(engine)[0] == [zygote]
        workers = processes(engine)[1]
        assert workers
        zygote.send_signal(signal.SIGKILL)  # its workers die with it
        _, alive = psutil.wait_procs([zygote, *workers], timeout=10)
        assert not alive
        assert call(engine, "fish3")["detections"]  # a new zygote loads the module again
        assert len(processes(engine)[0]) == 1 and processes(engine)[0] != [zygote]
    finally:
        engine.request("DELETE", "/system/services/fish3", "alice")
    wait_until(lambda: processes(engine) == ([], []), 15, "the zygote and its workers to stop")


def test_a_worker_that_died_idle_gives_its_place_up_at_once(engine):
    # a script service (no zygote) at max_scale 1: its one worker killed between calls used to hold the only
    # place until it would have been idle too long (5 minutes), and the next call waited that long
    script = {"name": "echo", "image": "x", "script": 'cat "$INPUT_FILE_PATH"\n', "synchronous": {"max_scale": 1}}
    assert engine.request("POST", "/system/services", "alice", json=script).ok
    try:
        assert engine.request("POST", "/run/echo", "alice", data=base64.b64encode(b"one")).text == "one"
        (sandbox,) = [
            p for p in psutil.Process(engine.proc.pid).children() if "reeflab.oscar_engine.worker" in p.cmdline()
        ]
        sandbox.kill()
        assert not psutil.wait_procs([sandbox], timeout=10)[1]
        answer = engine.request("POST", "/run/echo", "alice", data=base64.b64encode(b"two"), timeout=60)
        assert answer.status_code == 200 and answer.text == "two", answer.text
    finally:
        engine.request("DELETE", "/system/services/echo", "alice")


def test_a_warm_worker_reuses_the_memory_its_forward_pass_freed_and_gives_it_back_when_idle(engine):
    # yolo-detector's 640-pixel activations: glibc's defaults mapped and trimmed them anew at every call (~3,200
    # fresh pages a call, each zeroed by the kernel: ~15 % of a worker's CPU in batch slices); kept between calls now
    yolo = {**fish("yolo"), "environment": {"variables": {"REEFLAB_MODULE": "yolo-detector"}}}
    assert engine.request("POST", "/system/services", "alice", json=yolo).ok
    try:
        call(engine, "yolo")
        (worker,) = processes(engine)[1]

        def fresh_pages() -> int:  # minor page faults so far (/proc/<pid>/stat, field 10)
            return int(Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()[7])

        call(engine, "yolo")  # calls back to back, as a batch slice's forward passes are
        faults = []
        for _ in range(5):
            before = fresh_pages()
            assert call(engine, "yolo")["width"] == 384
            faults.append(fresh_pages() - before)
        assert sorted(faults)[2] < 1000, faults
        kept = worker.memory_info().rss
        wait_until(lambda: worker.memory_info().rss < kept - 8 * 2**20, 15, "the idle worker to give memory back")
    finally:
        engine.request("DELETE", "/system/services/yolo", "alice")
    wait_until(lambda: processes(engine) == ([], []), 15, "the zygote and its workers to stop")
