"""`reeflab module check`: the built-in modules and a new module pass; a module with one thing broken fails exactly
the check that should catch it, with a reason that says what is wrong."""

from __future__ import annotations

import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from reeflab.catalog.sources import installed_entries
from reeflab.checks.models import CheckReport
from reeflab.checks.module import find_module
from reeflab.checks.runner import Session, dockerfile_bases, run_check
from reeflab.cli import main
from reeflab.modules.template import new_module

BUILTINS = ["yolo-detector", "fish-detector", "fish-classifier", "image-classifier"]


def check(target: Path | str, out: Path) -> tuple[int, CheckReport]:
    """`reeflab module check <target>`: its exit code and its report."""
    out.mkdir(exist_ok=True)
    code = main(["module", "check", str(target), "--report", str(out / "r.json"), "--html", str(out / "r.html")])
    return code, CheckReport.model_validate_json((out / "r.json").read_text())


def states(report: CheckReport) -> dict[str, str]:
    return {r.name: r.state for r in report.results}


def result(report: CheckReport, name: str):
    return next(r for r in report.results if r.name == name)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return new_module("reef-counter", tmp_path_factory.mktemp("new"), "Reef counter")


@pytest.mark.parametrize("module_id", [m for m in BUILTINS if m in {e.id for e in installed_entries()}])
def test_builtin_modules_pass(module_id, tmp_path, capsys):
    code, report = check(module_id, tmp_path)
    assert code == 0, report.model_dump_json(indent=1)
    assert report.passed and report.module == module_id and len(report.digest) == 64
    assert states(report)["metadata"] == states(report)["deepaas"] == "passed"
    assert "deepaas-cli get_metadata answers" in result(report, "deepaas").reason
    # each package of the reeflab distribution is checked on its own: its licence is the distribution's
    assert "BSD-3-Clause" in result(report, "licence").reason
    assert re.search(r"the API uses \d+ MB \(PSS", result(report, "resources").reason)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("PASS metadata   ai4-metadata is valid (") and lines[-1] == f"{module_id}: passed"
    # every built-in ships a sample input: the check tries a predict on it and times it
    assert re.search(
        r"predict on samples/\w+\.jpg answers application/json and image/png", result(report, "deepaas").reason
    )
    assert re.search(r"predict takes \d+ ms on 1 CPU", result(report, "resources").reason)


def test_a_new_module_passes_every_check(template, tmp_path):
    code, report = check(template, tmp_path)
    assert code == 0, report.model_dump_json(indent=1)
    assert set(states(report).values()) == {"passed"}, states(report)
    assert report.module == "reef-counter" and report.version == "0.1.0" and report.source == str(template)
    assert (
        "predict on src/reef_counter/samples/example.ppm answers application/json" in result(report, "deepaas").reason
    )
    assert "3 passed" in result(report, "tests").reason
    assert "LICENSE" in result(report, "licence").reason
    assert "python:3.11-slim was not pulled" in result(report, "dockerfile").reason
    page = (tmp_path / "r.html").read_text()
    assert "reef-counter" in page and page.count('class="state passed"') == len(report.results)
    assert report.badge() == {"state": "passed", "checked": report.checked.isoformat(), "failed": []}


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def no_libraries(root: Path) -> None:
    replace(root / "src/reef_counter/ai4-metadata.yml", "libraries:\n  - Other\n", "")


def predict_raises(root: Path) -> None:
    replace(root / "src/reef_counter/api.py", "    upload =", '    raise RuntimeError("no weights")\n    upload =')


def failing_test(root: Path) -> None:
    replace(root / "tests/test_api.py", "[255.0, 0.0, 0.0]", "[0.0, 0.0, 255.0]")


def relative_workdir(root: Path) -> None:
    replace(root / "Dockerfile", "WORKDIR /srv/module", "WORKDIR srv/module")


def secret(root: Path) -> None:
    replace(
        root / "src/reef_counter/api.py",
        "\n\ndef get_metadata",
        '\nSTORE_TOKEN = "reef-2026-s3cr3t"\n\n\ndef get_metadata',
    )


@pytest.mark.parametrize(
    "breaks, fails, says",
    [
        (no_libraries, "metadata", "has 1 problem(s): libraries: 'libraries' is a required property"),
        (
            predict_raises,
            "deepaas",
            "predict on src/reef_counter/samples/example.ppm answered 500 for application/json",
        ),
        (failing_test, "tests", "pytest: 1 failed, 2 passed"),
        (
            relative_workdir,
            "dockerfile",
            "hadolint finds 1 error(s), first line 4: DL3000 (error) Use absolute WORKDIR",
        ),
        (secret, "security", "B105 Possible hardcoded password: 'reef-2026-s3cr3t'"),
    ],
    ids=["invalid metadata", "predict raising", "failing test", "Dockerfile error", "hard-coded secret"],
)
def test_a_broken_module_fails_the_check_that_catches_it(template, tmp_path, breaks, fails, says):
    root = shutil.copytree(template, tmp_path / "reef-counter")
    if breaks is not failing_test:  # the module's own tests would catch the other faults too: only that check may
        shutil.rmtree(root / "tests")
    breaks(root)
    code, report = check(root, tmp_path / "out")
    assert code == 1
    assert [r.name for r in report.results if r.state == "failed"] == [fails], states(report)
    assert says in result(report, fails).reason
    assert report.badge()["failed"] == [fails]


def test_a_module_is_found_by_its_folder_or_its_id(template):
    builtin = find_module("fish-detector")
    assert find_module(str(builtin.package)).entry_point == "fish-detector"
    assert builtin.root == builtin.package  # reeflab ships several modules: each is checked on its own
    new = find_module(str(template))
    assert (new.id, new.package, new.import_path) == ("reef-counter", template / "src/reef_counter", template / "src")
    assert new.digest() == find_module(str(template)).digest()


def test_a_bad_target_is_a_usage_error(tmp_path, capsys):
    assert main(["module", "check", str(tmp_path / "nowhere")]) == 2
    assert "neither a module folder nor an installed module id" in capsys.readouterr().err
    assert main(["module", "check", str(tmp_path)]) == 2
    assert "no readable pyproject.toml" in capsys.readouterr().err


def test_dockerfile_bases_leave_out_build_stages():
    text = "FROM --platform=linux/amd64 python:3.11 AS build\nRUN make\nFROM build AS test\nFROM debian:12-slim\n"
    assert dockerfile_bases(text) == ["python:3.11", "debian:12-slim"]


@pytest.fixture
def installed_template(tmp_path):
    """The new module installed as its CI installs it (`pip install -e .`), uninstalled at the end."""
    root = new_module("reef-census", tmp_path, "Reef census")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(root)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    site.addsitedir(site.getsitepackages()[0])  # its editable finder, as a new process would read it
    try:
        yield root
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "reef-census"], capture_output=True)


def test_an_installed_module_is_checked_in_its_folder_as_its_ci_does(installed_template, tmp_path, monkeypatch):
    monkeypatch.chdir(installed_template)
    assert find_module(".").import_path is None  # the installed module, not a copy put on the path
    code, report = check(".", tmp_path)  # `reeflab module check .`, as .github/workflows/check.yml runs it
    assert code == 0 and report.module == "reef-census", report.model_dump_json(indent=1)
    assert "3 passed" in result(report, "tests").reason


def test_a_check_that_crashes_or_runs_too_long_fails_and_says_so(template):
    session = Session(find_module(str(template)), template)

    def crashes(session):
        raise RuntimeError("boom")

    def hangs(session):
        subprocess.run(["sleep", "5"], timeout=0.2)

    crashed = run_check(session, "style", "code style", crashes)
    assert (crashed.state, crashed.reason) == ("failed", "the check could not run: RuntimeError: boom")
    timed_out = run_check(session, "tests", "its tests pass", hangs)
    assert (timed_out.state, timed_out.reason) == ("failed", "it did not finish within 0 s") and timed_out.seconds < 2
