"""Red team, serverless: what bob's script service tries against the engine and against ana, on a real engine.

Each crossing must fail, and each test asserts how ("No such file", "Permission denied", a 400
naming the variable...). Where the tests run as root (as CI does), the script also runs as bob's
own OS account.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from pathlib import Path

import psutil
import pytest
from reeflab import accounts
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.testing.process import wait_until
from test_serverless_engine import UPPER_SCRIPT, script_service, submit, wait_jobs

SAMPLES = Path(__file__).parents[2] / "server_extension/reeflab/modules/fish_detector/samples"
REFUSED = ("No such file or directory", "Permission denied", "Read-only file system", "No such process")
# one line per attempt: `== name rc=N what it printed` (NULs and newlines flattened)
PROBE = """\
probe() {
    name=$1; shift; out=$("$@" 2>&1); rc=$?
    echo "== $name rc=$rc $(printf %s "$out" | head -c 600 | tr '\\n' ' ')"
}
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("sandbox") / "state"
    process = EngineProcess(state, users=["bob", "ana"], args=["--ServerlessApp.max_workers=4"], s3=True)
    process.env = {**os.environ, "REEFLAB_TEST_CANARY": "canary-" + secrets.token_hex(8)}  # the engine's own
    with process:
        yield process


def run(engine: EngineProcess, user: str, service: str, body: bytes = b"x", timeout: float = 120) -> str:
    """A synchronous invocation; what the script printed (OSCAR answers the log when no output file was written)."""
    answer = engine.request("POST", f"/run/{service}", user, data=base64.b64encode(body), timeout=timeout)
    assert answer.status_code == 200, answer.text
    return answer.text


def attempts(output: str) -> dict[str, tuple[int, str]]:
    found = {}
    for line in output.splitlines():
        match = re.match(r"^== (\S+) rc=(\d+) ?(.*)$", line)
        if match:
            found[match[1]] = (int(match[2]), match[3])
    return found


def assert_refused(results: dict[str, tuple[int, str]], name: str, *how: str) -> None:
    rc, said = results[name]
    assert rc != 0 and any(word in said for word in (how or REFUSED)), f"{name} was not refused: rc={rc} {said!r}"


def secrets_of(engine: EngineProcess) -> dict[str, str]:
    """What the engine knows and no script may see."""
    admin = json.loads(engine.seaweed.key_file.read_text())
    events = (engine.state.parent / f"{engine.state.name}-events-token").read_text().strip()
    return {
        "S3 admin key": admin["secret_key"],
        "events token": events,
        "ana's token": engine.tokens["ana"],
        "engine canary": engine.env["REEFLAB_TEST_CANARY"],
    }


def bwrap_of(engine: EngineProcess, service: str) -> psutil.Process:
    """The sandbox (bwrap, the engine's child) of a service's worker."""

    def find():
        for child in psutil.Process(engine.proc.pid).children():
            try:
                line = child.cmdline()
            except psutil.Error:
                continue
            if "--bind" in line and Path(line[line.index("--bind") + 1]).name.startswith(service + "-"):
                return child
        return None

    return wait_until(find, 60, f"a worker of {service}")


@pytest.fixture(scope="module")
def anas_running_job(engine):
    """Ana's job, running (asleep) with her private input in its worker's folder."""
    ana = engine.client("ana")
    ana.create_service(script_service("ana-keeps", script='cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/"\nsleep 120\n'))
    private = engine.state.parent / "ana-survey.txt"
    private.write_text("ana's private reef survey")
    job = submit(ana, "ana-keeps", private)
    sandbox = bwrap_of(engine, "ana-keeps")
    line = sandbox.cmdline()
    folder = Path(line[line.index("--bind") + 1])
    inputs = wait_until(lambda: list(folder.glob("*/input/*")), 30, "ana's input in her worker's folder")
    yield {"job": job, "input": inputs[0], "folder": folder, "pid": sandbox.pid}
    ana.remove_job("ana-keeps", job)
    ana.remove_service("ana-keeps")


def test_bobs_script_reaches_neither_the_engine_nor_ana(engine, anas_running_job):
    state, engine_pid = engine.state, engine.proc.pid
    tokens = engine.state.parent / f"{engine.state.name}-tokens.json"
    ana = anas_running_job
    script = PROBE + "\n".join(
        [
            "probe db-relative cat ../../engine.sqlite",
            "probe db-far-up cat ../../../../../../../../" + str(state / "engine.sqlite").lstrip("/"),
            f"probe db-absolute cat {state / 'engine.sqlite'}",
            f"probe state-listing ls -A {state}",
            f"probe jobs-listing ls -A {state / 'jobs'}",
            f"probe anas-stored-input cat {state / 'jobs' / ana['job'] / 'input' / ana['job']}",
            f"probe anas-worker-input cat {ana['input']}",
            f"probe anas-worker-folder ls -A {ana['folder']}",
            f"probe engine-tokens cat {tokens}",
            f"probe s3-admin-key cat {engine.seaweed.key_file}",
            f"probe engine-environ cat /proc/{engine_pid}/environ",
            f"probe kill-engine kill -9 {engine_pid}",
            f"probe kill-anas-worker kill -9 {ana['pid']}",
            "probe write-system touch /usr/local/reeflab-was-here",
            f"probe write-repo touch {Path(__file__).parents[2] / 'reeflab-was-here'}",
            'probe write-beside-output touch "$TMP_OUTPUT_DIR/../../escape"',
            "probe whoami id -un",
            "echo '== environment'; env; echo '== init environ'; tr '\\0' '\\n' < /proc/1/environ",
        ]
    )
    engine.client("bob").create_service(script_service("bob-probe", script=script))
    try:
        output = run(engine, "bob", "bob-probe")
    finally:
        engine.client("bob").remove_service("bob-probe")
    results = attempts(output)

    for name in ("db-relative", "db-far-up", "db-absolute", "anas-stored-input", "anas-worker-input"):
        assert_refused(results, name, "No such file or directory", "Permission denied")
    assert "SQLite format" not in output and "ana's private reef survey" not in output
    for name in ("state-listing", "jobs-listing", "anas-worker-folder"):  # hidden, or an empty listing
        rc, said = results[name]
        assert rc != 0 and any(word in said for word in REFUSED) or rc == 0 and not said.strip(), (name, said)
    for name in ("engine-tokens", "s3-admin-key", "engine-environ"):
        assert_refused(results, name, "No such file or directory", "Permission denied")
    assert_refused(results, "kill-engine", "No such process", "Operation not permitted")
    assert_refused(results, "kill-anas-worker", "No such process", "Operation not permitted")
    assert engine.proc.poll() is None and engine.healthy()
    assert psutil.pid_exists(ana["pid"]) and psutil.Process(ana["pid"]).status() != psutil.STATUS_ZOMBIE
    assert_refused(results, "write-system", "Read-only file system", "Permission denied")
    assert_refused(results, "write-repo", "Read-only file system", "Permission denied")
    if accounts.isolation_available():  # without root the worker's folder is the engine account's, as all else
        assert_refused(results, "write-beside-output", "Permission denied", "Read-only file system")
    assert not (Path(__file__).parents[2] / "reeflab-was-here").exists()

    environment = output.partition("== environment")[2]
    assert "INPUT_FILE_PATH=" in environment and "AWS_SECRET_ACCESS_KEY=" in environment  # bob's own key
    for what, value in secrets_of(engine).items():
        assert value not in output, f"the script saw the {what}"
    assert "REEFLAB_TEST_CANARY" not in environment and "REEFLAB_ENGINE" not in environment
    if accounts.isolation_available():
        assert results["whoami"][1].strip() == accounts.account_name("bob")


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"variables": {"LD_PRELOAD": "/tmp/job/home/evil.so"}}, "environment.variables.LD_PRELOAD"),
        ({"variables": {"LD_LIBRARY_PATH": "/tmp"}}, "environment.variables.LD_LIBRARY_PATH"),
        ({"variables": {"PYTHONPATH": "/tmp/job/home"}}, "environment.variables.PYTHONPATH"),
        ({"variables": {"PYTHONSTARTUP": "/tmp/x.py"}}, "environment.variables.PYTHONSTARTUP"),
        ({"variables": {"BASH_ENV": "/tmp/x.sh"}}, "environment.variables.BASH_ENV"),
        ({"variables": {"PATH": "/tmp:/usr/bin"}}, "environment.variables.PATH"),
        ({"secrets": {"LD_PRELOAD": "/tmp/evil.so"}}, "environment.secrets.LD_PRELOAD"),
        ({"variables": {"REEFLAB_ENGINE_PID": "1"}}, "environment.variables.REEFLAB_ENGINE_PID"),
        ({"variables": {"BAD=NAME": "x"}}, "environment.variables.BAD=NAME"),
    ],
)
def test_variables_that_load_code_are_refused_with_the_variable_named(engine, environment, named):
    service = script_service("loader", environment=environment)
    answer = engine.request("POST", "/system/services", "bob", json=service)
    assert answer.status_code == 400 and named in answer.text and "not allowed" in answer.text, answer.text
    assert engine.request("GET", "/system/services/loader", "bob").status_code == 404


def test_a_module_loads_only_shipped_weights_or_its_owners(engine):
    def fish(weights: str) -> dict:
        variables = {"REEFLAB_MODULE": "fish-detector", "REEFLAB_WEIGHTS": weights}
        return {"name": "weighted", "image": "x", "memory": "2Gi", "environment": {"variables": variables}}

    for weights in ("/etc/passwd", str(engine.state / "engine.sqlite"), "../../engine.sqlite"):
        answer = engine.request("POST", "/system/services", "bob", json=fish(weights))
        assert answer.status_code == 400 and "REEFLAB_WEIGHTS" in answer.text, answer.text
    shipped = next((SAMPLES.parent / "weights").glob("*.pt"))
    assert engine.request("POST", "/system/services", "bob", json=fish(str(shipped))).status_code == 201
    engine.request("DELETE", "/system/services/weighted", "bob")


def test_a_normal_script_service_reads_its_input_and_writes_its_output(engine, tmp_path):
    bob = engine.client("bob")
    bob.create_service(script_service("bob-upper"))
    try:
        (tmp_path / "note.txt").write_text("clownfish at 8 m")
        out = tmp_path / "upper.txt"
        bob.run_service("bob-upper", input=str(tmp_path / "note.txt"), output=str(out))
        assert out.read_text() == "CLOWNFISH AT 8 M"
        job = submit(bob, "bob-upper", tmp_path / "note.txt")
        assert wait_jobs(bob, "bob-upper", [job]) == {job: "Succeeded"}
        log = bob.get_job_logs("bob-upper", job).text
        assert "processing event-file-" in log and "outputs: upper.txt" in log
    finally:
        bob.remove_service("bob-upper")


def test_links_a_script_leaves_in_its_output_are_not_followed(engine, tmp_path):
    """The engine (root) copies outputs back: a link to its database must come back as nothing."""
    target = engine.state / "engine.sqlite"
    script = f'ln -s {target} "$TMP_OUTPUT_DIR/db"\nln -s /etc/shadow "$TMP_OUTPUT_DIR/shadow"\necho done\n'
    bob = engine.client("bob")
    bob.create_service(script_service("bob-links", script=script))
    try:
        (tmp_path / "in.txt").write_text("x")
        job = submit(bob, "bob-links", tmp_path / "in.txt")
        assert wait_jobs(bob, "bob-links", [job]) == {job: "Succeeded"}
        assert "outputs: none" in bob.get_job_logs("bob-links", job).text
        assert run(engine, "bob", "bob-links").strip() == "done"  # no output came back: the answer is the log
    finally:
        bob.remove_service("bob-links")


def test_secrets_reach_only_their_services_workers_and_no_answer(engine):
    bob, ana = engine.client("bob"), engine.client("ana")
    secret = "bob-secret-" + secrets.token_hex(6)
    keyed = script_service("bob-keyed", script='echo "len=${#API_KEY}"\n', environment={"secrets": {"API_KEY": secret}})
    bob.create_service(keyed)
    ana.create_service(script_service("ana-env", script="env\n"))
    try:
        assert run(engine, "bob", "bob-keyed").strip() == f"len={len(secret)}"
        assert secret not in run(engine, "ana", "ana-env")
        shown = engine.request("GET", "/system/services/bob-keyed", "bob").text
        assert secret not in shown and '"API_KEY": "********"' in shown
        listing = engine.request("GET", "/system/services", "bob").text
        assert secret not in listing
        assert secret not in (engine.state.parent / f"{engine.state.name}-engine.log").read_text()
    finally:
        bob.remove_service("bob-keyed")
        ana.remove_service("ana-env")


def test_a_module_service_still_answers(engine):
    service = {
        "name": "bob-fish",
        "image": "ai4oshub/ignored-locally",
        "cpu": "1",
        "memory": "2Gi",
        "environment": {"variables": {"REEFLAB_MODULE": "fish-detector"}},
    }
    assert engine.request("POST", "/system/services", "bob", json=service).status_code == 201
    try:
        answer = engine.request(
            "POST", "/run/bob-fish", "bob", data=base64.b64encode((SAMPLES / "fish_01.jpg").read_bytes()), timeout=300
        )
        assert answer.status_code == 200, answer.text
        assert json.loads(base64.b64decode(answer.text))["detections"]
    finally:
        engine.request("DELETE", "/system/services/bob-fish", "bob")


def test_a_worker_over_its_memory_is_stopped_by_the_kernel_with_the_reason(engine, tmp_path):
    if not accounts.isolation_available():
        pytest.skip("cgroups need root here")
    hog = "python3 -c 'x = b\"x\" * 900_000_000; print(len(x))'\n"
    bob = engine.client("bob")
    bob.create_service(script_service("bob-hog", script=hog, memory="64Mi"))
    try:
        (tmp_path / "in.txt").write_text("x")
        job = submit(bob, "bob-hog", tmp_path / "in.txt")
        assert wait_jobs(bob, "bob-hog", [job]) == {job: "Failed"}
        log = bob.get_job_logs("bob-hog", job).text
        assert re.search(r"job failed: stopped: out of memory, limit \d+ MB", log), log
        assert log.count("attempt ") == 1  # not retried: the same input would fail again
    finally:
        bob.remove_service("bob-hog")


def test_without_bubblewrap_no_worker_starts_and_the_answer_says_why(tmp_path):
    args = ["--ServerlessApp.bwrap=/nonexistent/bwrap"]
    with EngineProcess(tmp_path / "state", users=["bob"], args=args) as engine:
        bob = engine.client("bob")
        bob.create_service(script_service("bob-upper", script=UPPER_SCRIPT))
        answer = engine.request("POST", "/run/bob-upper", "bob", data=base64.b64encode(b"x"))
        assert answer.status_code == 500 and "bubblewrap (bwrap) is not installed" in answer.text, answer.text
        (tmp_path / "in.txt").write_text("x")
        job = submit(bob, "bob-upper", tmp_path / "in.txt")
        assert wait_jobs(bob, "bob-upper", [job]) == {job: "Failed"}
        assert "install it (apt-get install bubblewrap" in bob.get_job_logs("bob-upper", job).text


def test_a_restart_removes_only_the_workers_folders_it_made(tmp_path, monkeypatch):
    from reeflab.oscar_engine.sandbox import ROOT_RECORD, SandboxPolicy

    state, shared = tmp_path / "state", tmp_path / "shared"
    state.mkdir()
    (shared / "fish-detector-abcd1234").mkdir(parents=True)  # a worker's folder of the earlier run
    (shared / "operators-notes").mkdir()
    monkeypatch.chdir(tmp_path)
    for noted in ("", ".", str(tmp_path), "relative/reeflab-sandboxes-x"):  # never anything but its own
        (state / ROOT_RECORD).write_text(noted)
        SandboxPolicy(state, root=shared).reset()
        assert (shared / "operators-notes").is_dir() and (tmp_path / "state").is_dir()
    assert not (shared / "fish-detector-abcd1234").exists()
