"""`reeflab module new`: the scaffold passes its own tests and shows up in the marketplace once installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from reeflab.catalog.service import CatalogService
from reeflab.cli import main

PYTHON = sys.executable


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed_module(tmp_path):
    assert main(["module", "new", "reef-counter", "--dir", str(tmp_path), "--title", "Reef counter"]) == 0
    path = tmp_path / "reef-counter"
    install = run(PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(path))
    assert install.returncode == 0, install.stderr
    try:
        yield path
    finally:
        run(PYTHON, "-m", "pip", "uninstall", "-y", "-q", "reef-counter")


def test_scaffold_has_the_contract_metadata_tests_and_dockerfile(tmp_path):
    assert main(["module", "new", "fish-counter", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "fish-counter"
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert {
        "pyproject.toml",
        "README.md",
        "Dockerfile",
        "src/fish_counter/api.py",
        "src/fish_counter/ai4-metadata.yml",
        "tests/test_api.py",
    } <= files
    assert 'fish-counter = "fish_counter.api"' in (root / "pyproject.toml").read_text()
    assert "--model-name" in (root / "Dockerfile").read_text()


@pytest.mark.parametrize(
    "name, says",
    [
        ("Fish", "not a module name"),
        ("fish_counter", "not a module name"),
        ("-fish", "not a module name"),
        ("1fish", "not a module name"),
        ("class", "cannot be a Python package"),
    ],
)
def test_bad_names_are_refused(tmp_path, name, says, capsys):
    assert main(["module", "new", "--dir", str(tmp_path), "--", name]) == 2
    assert says in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_existing_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["module", "new", "taken", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_installed_scaffold_passes_its_tests_and_is_listed(installed_module, tmp_path):
    tests = run(PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=installed_module)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout

    catalog = CatalogService(cache_dir=str(tmp_path / "cache"))
    entry = catalog.get("reef-counter")
    assert entry.source == "installed" and entry.valid, entry.problems
    assert entry.title == "Reef counter" and entry.entry_point == "reef-counter"
    assert catalog.search("reef counter").items[0].id == "reef-counter"
