"""The checks of one module, one function each, run in order into a CheckReport.

Each check returns an Outcome (passed, failed or skipped, with a reason a maintainer can act on) and is bounded in
time: its tools run with a timeout, and a check that crashes or times out fails with that reason while the others
still run. The module's DEEPaaS API is started once, as a deployment runs it (reeflab.deployments.serve on a
private Unix socket, on CPU), for the checks that call it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import mimetypes
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ..deployments import HEALTH_CHECK_HEADER
from ..errors import BadRequest
from ..limits import memory_limit_for, pss_of, size_text
from ..modules.metadata import read_metadata_file, validate_metadata
from ..processes import cpu_set, running, socket_path, spawn, stop_group, tail_lines
from .models import CheckReport, CheckResult, CheckState
from .module import Module, find_module

DETAILS = 4000  # characters of a tool's output kept in a result
API_START = 180  # seconds the API may take to answer (a module loads its model at start)
REQUEST = 120  # seconds for one call of the API (a predict on CPU)
TOOL = 120  # seconds for ruff, bandit, hadolint, deepaas-cli
TESTS = 600  # seconds for the module's tests
TIMED_PREDICTS = 3
NOT_INPUTS = {".md", ".json", ".yml", ".yaml", ".txt"}  # what a samples/ folder holds beside its inputs
SECRETS = {"B105", "B106", "B107"}  # bandit's hard-coded password tests: always a failure, whatever their severity


@dataclass
class Outcome:
    state: CheckState
    reason: str
    details: str = ""


def passed(reason: str, details: str = "") -> Outcome:
    return Outcome("passed", reason, details)


def failed(reason: str, details: str = "") -> Outcome:
    return Outcome("failed", reason, details)


def skipped(reason: str, details: str = "") -> Outcome:
    return Outcome("skipped", reason, details)


def trimmed(text: str) -> str:
    """The end of a tool's output (where its summary is), at most DETAILS characters."""
    text = text.strip()
    return text if len(text) <= DETAILS else "…" + text[-DETAILS:]


def tool(name: str) -> str | None:
    """A command of this environment (beside its python), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


class ApiError(Exception):
    """The module's API did not start; the message says why."""


class Api:
    """The module's DEEPaaS API, started as a deployment starts it, called over its Unix socket."""

    def __init__(self, module: Module, folder: Path, env: dict[str, str], cpus: float):
        self.module = module
        self.log = folder / "deepaas.log"
        self.socket = socket_path(folder, "check")
        command = [sys.executable, "-m", "reeflab.deployments.serve", "--model-name", module.entry_point]
        command += ["--socket", str(self.socket), "--workers", "1"]
        self.runtime = spawn(command, log=self.log, cwd=folder, env=env, cpus=cpu_set(cpus), cgroup=None)
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://localhost", timeout=REQUEST
        )

    @property
    def pid(self) -> int:
        return self.runtime["pid"]

    def wait_ready(self, timeout: float = API_START) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if running(self.runtime) is None:
                raise ApiError("the API exited while starting")
            try:
                if self.client.get("/v2/models/", headers={HEALTH_CHECK_HEADER: "1"}, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise ApiError(f"the API did not answer within {timeout:.0f} s")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(tail_lines(self.log, lines))

    def stop(self) -> None:
        self.client.close()
        process = running(self.runtime)
        if process is not None:
            asyncio.run(stop_group(process, 5))


@dataclass
class Session:
    """What the checks of one module share: the module, a scratch folder, its metadata, its API."""

    module: Module
    scratch: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    api: Api | None = None
    api_error: str = ""
    predict_inputs: dict[str, Any] | None = None  # how to call predict, once the API told (None: it cannot be)

    def env(self) -> dict[str, str]:
        """The environment of what the checks start: the module importable, on CPU only, offline."""
        threads = str(max(1, math.ceil(self.inference_cpus())))
        path = self.module.python_path(self.scratch) + [p for p in [os.environ.get("PYTHONPATH")] if p]
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(path),
            "DEEPAAS_V2_MODEL": self.module.entry_point,
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "YOLO_OFFLINE": "1",
        }

    def inference(self) -> dict[str, Any]:
        resources = self.metadata.get("resources")
        found = resources.get("inference") if isinstance(resources, dict) else None
        return found if isinstance(found, dict) else {}

    def inference_cpus(self) -> float:
        cpus = self.inference().get("cpu")
        return float(cpus) if isinstance(cpus, int | float) and cpus > 0 else 1

    def start_api(self) -> Api:
        """The API, started on the first call; ApiError (also on later calls) when it does not start."""
        if self.api is None and not self.api_error:
            self.api = Api(self.module, self.scratch, self.env(), self.inference_cpus())
            try:
                self.api.wait_ready()
            except ApiError as err:
                self.api_error = f"{err}. Last lines of its log:\n{self.api.log_tail()}"
        if self.api_error:
            raise ApiError(self.api_error)
        return self.api

    def sample(self) -> Path | None:
        """The module's first sample input: a file in samples/ beside its code or in its project."""
        for folder in (self.module.package / "samples", self.module.root / "samples"):
            inputs = [p for p in sorted(folder.glob("*")) if p.is_file() and p.suffix.lower() not in NOT_INPUTS]
            if inputs:
                return inputs[0]
        return None

    def predict(self, accept: str) -> httpx.Response:
        """A predict call on the sample (every file argument gets it), answered as `accept`."""
        inputs, sample = self.predict_inputs or {}, self.sample()
        files = {}
        for name in inputs.get("files", []):
            kind = mimetypes.guess_type(sample.name)[0] or "application/octet-stream"
            files[name] = (sample.name, sample.read_bytes(), kind)
        path = f"/v2/models/{self.module.entry_point}/predict/"
        return self.api.client.post(path, files=files or None, headers={"accept": accept})


def predict_inputs(spec: dict[str, Any], entry_point: str) -> dict[str, Any]:
    """What the API's OpenAPI document says predict takes and answers: its file arguments, its other required
    arguments, and the content types it declares (its `accept` choices; JSON when it declares none)."""
    paths = spec.get("paths", {})
    operation = next((v["post"] for k, v in paths.items() if k.endswith(f"/models/{entry_point}/predict/")), {})
    parameters = operation.get("parameters", [])
    files = [p["name"] for p in parameters if p.get("type") == "file"]
    required = [p["name"] for p in parameters if p.get("required") and p.get("type") != "file"]
    produces = [t for t in operation.get("produces") or ["application/json"] if t != "*/*"]
    return {"files": files, "required": [n for n in required if n != "accept"], "produces": produces}


def _parses(answer: httpx.Response) -> bool:
    try:
        answer.json()
        return True
    except ValueError:
        return False


# --- the checks ----------------------------------------------------------------------------------------------


def check_metadata(session: Session) -> Outcome:
    path = session.module.metadata_file()
    if path is None:
        return failed(f"no ai4-metadata.yml beside the module's code ({session.module.package}): add one (v2)")
    document, problems = read_metadata_file(path)
    problems = problems or validate_metadata(document)
    session.metadata = document if isinstance(document, dict) else {}
    where = path.relative_to(session.module.root) if path.is_relative_to(session.module.root) else path
    if problems:
        listed = [f"{p.field}: {p.message}" if p.field else p.message for p in problems]
        return failed(f"{where} has {len(problems)} problem(s): {'; '.join(listed[:3])}", "\n".join(listed))
    return passed(f"{where} is valid ai4-metadata {document.get('metadata_version')}")


def check_deepaas(session: Session) -> Outcome:
    module = session.module
    try:
        api = session.start_api()
    except ApiError as err:
        reason, _, log = str(err).partition("\n")
        return failed(f"deepaas-run could not serve '{module.entry_point}': {reason}", log)
    listed = [m.get("id") for m in api.client.get("/v2/models/").json().get("models", [])]
    if module.entry_point not in listed:
        return failed(f"/v2/models/ lists {listed}, not '{module.entry_point}'", api.log_tail())
    said = [f"deepaas-run serves it and /v2/models/ lists '{module.entry_point}'"]

    spec = api.client.get("/swagger.json").json()
    inputs = predict_inputs(spec, module.entry_point)
    sample = session.sample()
    if inputs["required"]:
        said.append(f"predict was not tried: it requires {', '.join(inputs['required'])}, which no sample gives")
    elif inputs["files"] and sample is None:
        said.append("predict was not tried: the module has no sample inputs (add a samples/ folder beside its code)")
    else:
        session.predict_inputs = inputs
        on = f" on {sample.relative_to(module.root)}" if inputs["files"] else ""
        for accept in inputs["produces"]:
            answer = session.predict(accept)
            if answer.status_code != 200:
                session.predict_inputs = None
                return failed(
                    f"predict{on} answered {answer.status_code} for {accept}: {answer.text[:300]}",
                    api.log_tail(),
                )
            kind = answer.headers.get("content-type", "").split(";")[0]
            if kind != accept:
                session.predict_inputs = None
                return failed(f"predict{on} was asked for {accept} (as it declares) and answered {kind}")
            if accept == "application/json" and not _parses(answer):
                session.predict_inputs = None
                return failed(f"predict{on} answered application/json that does not parse: {answer.text[:300]}")
        said.append(f"predict{on} answers {' and '.join(inputs['produces'])} as declared")

    output = session.scratch / "deepaas-cli.json"
    cli = tool("deepaas-cli")
    if cli is None:
        return skipped("; ".join(said) + "; deepaas-cli is not installed here")
    result = subprocess.run(
        [cli, "--deepaas_method_output", str(output), "get_metadata"],
        cwd=session.scratch,
        env=session.env(),
        capture_output=True,
        text=True,
        timeout=TOOL,
    )
    if result.returncode != 0 or not output.exists():
        return failed(f"deepaas-cli get_metadata failed (exit {result.returncode})", trimmed(result.stderr))
    json.loads(output.read_text())
    said.append("deepaas-cli get_metadata answers")
    return passed("; ".join(said))


def check_tests(session: Session) -> Outcome:
    root = session.module.root
    found = [p for p in (root / "tests", *root.glob("test_*.py")) if p.exists()]
    if not found:
        return skipped(f"the module has no tests in {root} (tests/ or test_*.py): add some")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[str(p.relative_to(root)) for p in found]],
        cwd=root,
        env=session.env(),
        capture_output=True,
        text=True,
        timeout=TESTS,
    )
    lines = result.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else f"pytest exit {result.returncode}"
    if result.returncode == 0:
        return passed(f"pytest: {summary}")
    if result.returncode == 5:
        return skipped(f"pytest found no tests in {', '.join(p.name for p in found)}")
    failures = [line.split(" - ")[0].split(" ", 1)[-1] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    which = f": {', '.join(failures[:5])}" if failures else ""
    return failed(f"pytest: {summary}{which}", trimmed(result.stdout + result.stderr))


def check_style(session: Session) -> Outcome:
    ruff = tool("ruff")
    if ruff is None:
        return skipped("ruff is not installed here")
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--output-format", "concise", "."],
        cwd=session.module.root,
        capture_output=True,
        text=True,
        timeout=TOOL,
    )
    if result.returncode == 0:
        return passed("ruff finds no problem (the module's own ruff settings, else ruff's defaults)")
    problems = [line for line in result.stdout.splitlines() if re.match(r"^\S+:\d+:\d+: ", line)]
    if result.returncode == 1 and problems:
        return failed(f"ruff finds {len(problems)} problem(s), first {problems[0]}", trimmed(result.stdout))
    return failed(f"ruff could not run (exit {result.returncode})", trimmed(result.stdout + result.stderr))


def check_security(session: Session) -> Outcome:
    bandit = tool("bandit")
    if bandit is None:
        return skipped("bandit is not installed here")
    root = session.module.root
    code = [
        str(p.relative_to(root))
        for p in session.module.files()
        if p.suffix == ".py" and "tests" not in p.relative_to(root).parts and not p.name.startswith("test_")
    ]
    audit = "dependencies were not audited (that needs an advisory database, not available offline)"
    if not code:
        return skipped(f"no Python code to scan; {audit}")
    result = subprocess.run(
        [bandit, "--quiet", "--format", "json", *code], cwd=root, capture_output=True, text=True, timeout=TOOL
    )
    try:
        issues = json.loads(result.stdout)["results"]
    except (ValueError, KeyError):
        return failed(f"bandit could not run (exit {result.returncode})", trimmed(result.stdout + result.stderr))
    listed = [
        f"{i['filename']}:{i['line_number']}: {i['test_id']} {i['issue_text']} "
        f"(severity {i['issue_severity'].lower()}, confidence {i['issue_confidence'].lower()})"
        for i in issues
    ]
    serious = [
        text
        for i, text in zip(issues, listed, strict=True)
        if i["test_id"] in SECRETS or (i["issue_severity"] != "LOW" and i["issue_confidence"] != "LOW")
    ]
    if serious:
        return failed(f"bandit finds {len(serious)} problem(s), first {serious[0]}; {audit}", "\n".join(listed))
    notes = f" ({len(listed)} low-severity note(s) in the details)" if listed else ""
    return passed(f"bandit finds no problem in {len(code)} file(s){notes}; {audit}", "\n".join(listed))


def dockerfile_bases(text: str) -> list[str]:
    """The images a Dockerfile's FROM lines name, without its own build stages."""
    stages, bases = set(), []
    for line in text.splitlines():
        words = [w for w in line.split() if not w.startswith("--")]
        if len(words) >= 2 and words[0].upper() == "FROM":
            if words[1].lower() not in stages and words[1] != "scratch":
                bases.append(words[1])
            if len(words) >= 4 and words[2].upper() == "AS":
                stages.add(words[3].lower())
    return bases


def check_dockerfile(session: Session) -> Outcome:
    path = session.module.root / "Dockerfile"
    if not path.is_file():
        return skipped(f"no Dockerfile in {session.module.root}: the module has no container image of its own")
    bases = dockerfile_bases(path.read_text(errors="replace"))
    if not bases:
        return failed("the Dockerfile has no FROM naming a base image")
    base = f"its base {', '.join(bases)} was not pulled (the check runs offline)"
    hadolint = tool("hadolint")
    if hadolint is None:
        return passed(f"FROM names {', '.join(bases)}; hadolint is not available here, so only FROM was checked")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "Dockerfile"],
        cwd=session.module.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TOOL,
    )
    try:
        findings = json.loads(result.stdout)
    except ValueError:  # not even parsed: hadolint says why on its output
        return failed(f"hadolint cannot parse the Dockerfile: {trimmed(result.stdout + result.stderr)[:300]}")
    listed = [f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in findings]
    errors = [text for f, text in zip(findings, listed, strict=True) if f["level"] == "error"]
    if errors:
        return failed(f"hadolint finds {len(errors)} error(s), first {errors[0]}; {base}", "\n".join(listed))
    notes = f" ({len(listed)} warning(s) or note(s) in the details)" if listed else ""
    return passed(f"hadolint finds no error{notes}; {base}", "\n".join(listed))


def check_licence(session: Session) -> Outcome:
    root = session.module.root
    files = [p.name for p in sorted(root.iterdir()) if p.is_file() and re.match(r"(?i)^(licen[cs]e|copying)", p.name)]
    if files:
        return passed(f"{files[0]} in {root}")
    declared = session.metadata.get("license")
    if declared:
        return passed(f"ai4-metadata.yml declares the licence {declared}")
    if session.module.licence:
        return passed(f"its package declares the licence {session.module.licence.splitlines()[0][:80]}")
    return failed(f"no LICENSE file in {root}, and neither its package nor its ai4-metadata.yml names a licence")


def check_resources(session: Session) -> Outcome:
    if session.api is None or session.api_error:
        return skipped("the API did not start (see the deepaas check): nothing to measure")
    speed = "predict was not timed (it could not be tried)"
    if session.predict_inputs is not None:
        accept = session.predict_inputs["produces"][0]
        times = []
        for _ in range(TIMED_PREDICTS):
            start = time.perf_counter()
            session.predict(accept)
            times.append(time.perf_counter() - start)
        cpus = session.inference_cpus()
        speed = f"predict takes {statistics.median(times) * 1000:.0f} ms on {cpus:g} CPU (median of {len(times)})"
    used = pss_of(session.api.pid)
    declared = session.inference().get("memory_MB")
    measured = f"the API uses {size_text(used)} (PSS, with its worker)"
    if not isinstance(declared, int | float) or declared <= 0:
        return skipped(f"{measured}; {speed}; declare resources.inference.memory_MB in ai4-metadata.yml to compare")
    limit = memory_limit_for(int(declared))
    if used > limit:
        enough = math.ceil(used / 1e6 / 100) * 100
        return failed(
            f"{measured}, more than a deployment of its declared {declared:g} MB may use ({size_text(limit)}): "
            f"it would be stopped; declare resources.inference.memory_MB: {enough} or more; {speed}"
        )
    over = "; it declares over 4 times what it uses" if used * 4 < declared * 1e6 else ""
    return passed(f"{measured} of the {declared:g} MB it declares{over}; {speed}")


Check = Callable[[Session], Outcome]
CHECKS: list[tuple[str, str, Check]] = [
    ("metadata", "ai4-metadata is valid", check_metadata),
    ("deepaas", "DEEPaaS API answers", check_deepaas),
    ("resources", "declared resources fit the measured ones", check_resources),
    ("tests", "its tests pass", check_tests),
    ("style", "code style (ruff)", check_style),
    ("security", "security scan (bandit)", check_security),
    ("dockerfile", "Dockerfile lints and names its base", check_dockerfile),
    ("licence", "a licence is present", check_licence),
]


def run_check(session: Session, name: str, title: str, check: Check) -> CheckResult:
    start = time.monotonic()
    try:
        outcome = check(session)
    except subprocess.TimeoutExpired as err:
        outcome = failed(f"it did not finish within {err.timeout:.0f} s", trimmed(str(err.output or "")))
    except httpx.TimeoutException:
        outcome = failed(f"the API did not answer within {REQUEST} s")
    except Exception as err:  # a check that crashes fails with why; the other checks still run
        outcome = failed(f"the check could not run: {type(err).__name__}: {err}", trimmed(traceback.format_exc()))
    return CheckResult(
        name=name,
        title=title,
        state=outcome.state,
        reason=outcome.reason,
        details=trimmed(outcome.details),
        seconds=round(time.monotonic() - start, 2),
    )


def run_checks(module: Module, on_result: Callable[[CheckResult], None] | None = None) -> CheckReport:
    """Every check of `module`, in order (each result handed to `on_result` as soon as it is known)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="reeflab-check-") as scratch:
        session = Session(module, Path(scratch))
        try:
            for name, title, check in CHECKS:
                results.append(run_check(session, name, title, check))
                if on_result is not None:
                    on_result(results[-1])
        finally:
            if session.api is not None:
                session.api.stop()
    return CheckReport(
        module=module.id,
        version=str(session.metadata.get("version") or module.version),
        digest=module.digest(),
        source=module.source,
        checked=datetime.now(UTC),
        passed=all(r.state != "failed" for r in results),
        results=results,
    )


# --- the command ---------------------------------------------------------------------------------------------

LABELS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def line(result: CheckResult) -> str:
    """'PASS metadata   ai4-metadata is valid (0.1 s): <reason>'"""
    return f"{LABELS[result.state]} {result.name:<10} {result.title} ({result.seconds:.1f} s): {result.reason}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a module's folder, or the id of an installed module")
    parser.add_argument("--report", type=Path, help="write the report (JSON) here")
    parser.add_argument("--html", type=Path, help="write the report as a readable page here")


def command(args: argparse.Namespace) -> int:
    """Check a module, print one line per check; 0 when none failed, 1 when one did, 2 for a bad target."""
    from .page import render

    try:
        module = find_module(args.target)
    except BadRequest as err:
        print(f"reeflab: {err.message}", file=sys.stderr)
        return 2
    print(f"Checking {module.id} ({module.source})", flush=True)
    with _sigterm_exits():
        report = run_checks(module, on_result=lambda result: print(line(result), flush=True))
    if args.report:
        args.report.write_text(report.model_dump_json(indent=2))
    if args.html:
        args.html.write_text(render(report))
    failed_names = [r.name for r in report.results if r.state == "failed"]
    print(f"{module.id}: " + (f"FAILED ({', '.join(failed_names)})" if failed_names else "passed"))
    return 1 if failed_names else 0


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM ends the checks as Ctrl-C does, so that the module's API is stopped too (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
