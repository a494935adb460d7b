"""`reeflab module new` ships continuous integration that runs the platform's checks: a GitHub Actions workflow
and a Jenkinsfile, both running `reeflab module check .` after installing the module and ReefLab."""

from __future__ import annotations

import yaml
from reeflab.cli import main


def test_new_module_has_a_workflow_and_a_jenkinsfile_running_the_checks(tmp_path):
    assert main(["module", "new", "fish-counter", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "fish-counter"

    workflow = yaml.safe_load((root / ".github" / "workflows" / "check.yml").read_text())
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads the key 'on' as True
    steps = workflow["jobs"]["check"]["steps"]
    commands = [step["run"] for step in steps if "run" in step]
    assert commands[0] == 'pip install -e ".[test]" "$REEFLAB"'  # the module with its test extras, and ReefLab
    assert workflow["jobs"]["check"]["env"]["REEFLAB"].startswith("reeflab")
    assert commands[-1] == "reeflab module check ."
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in steps)
    assert "Check fish-counter" in [step.get("name") for step in steps]

    jenkinsfile = (root / "Jenkinsfile").read_text()
    assert jenkinsfile.startswith("//") and "pipeline {" in jenkinsfile
    assert jenkinsfile.count("{") == jenkinsfile.count("}")
    assert "sh '.venv/bin/reeflab module check .'" in jenkinsfile
    assert '.venv/bin/pip install -e ".[test]" "$REEFLAB"' in jenkinsfile
    assert "stage('Check fish-counter')" in jenkinsfile
