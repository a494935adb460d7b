"""MLflow in kubernetes mode: hub_config/kubernetes/mlflow.yaml is the rendered one and valid; MLflow started as its
pod starts it (its command, its Secret's variables, artifacts on the platform's real S3) serves the accounts the
kubernetes-mode hub's pre-spawn hook makes, and a user's artifacts land in the bucket.

No PostgreSQL runs here: the Secret's database-uri is a sqlite DSN; MLflow reads either the same way."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap

import kubernetes_validate
import pytest
import yaml
from reeflab.hub.config import REPO
from reeflab.training import kubernetes as tk
from reeflab.training.testing import MlflowProcess

pytestmark = pytest.mark.timeout(300)

K8S_VERSION = "1.33.0"
MLFLOW_YAML = REPO / "hub_config" / "kubernetes" / "mlflow.yaml"
PROFILES = REPO / "hub_config" / "profiles.yaml"


def test_the_mlflow_file_is_the_rendered_one_and_valid():
    text = MLFLOW_YAML.read_text()
    assert text == tk.render_yaml(tk.tracking_manifests(), tk.TRACKING_HEADER), (
        "regenerate hub_config/kubernetes/mlflow.yaml from tracking_manifests()"
    )
    manifests = list(yaml.safe_load_all(text))
    assert [m["kind"] for m in manifests] == ["Deployment", "Service"]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    container = manifests[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--artifacts-destination=s3://reeflab-mlflow/" in container["args"]
    # nothing secret inline: every secret comes from the Secret
    inline = {e["name"] for e in container["env"] if "value" in e}
    assert inline.isdisjoint(tk.SECRET_KEYS.values())
    assert tk.tracking_url() == "http://reeflab-mlflow.reeflab.svc:5005"


class PodMlflow(MlflowProcess):
    """MLflow run the way the Deployment runs it: its command and args, its Secret's values as variables."""

    def __init__(self, state, secret: dict[str, str], s3_endpoint: str):
        super().__init__(state)
        deployment = tk.tracking_manifests(s3_endpoint=s3_endpoint)[0]
        self.container = deployment["spec"]["template"]["spec"]["containers"][0]
        values = {e["name"]: e["value"] for e in self.container["env"] if "value" in e}
        refs = [e for e in self.container["env"] if "valueFrom" in e]
        from_secret = {e["name"]: secret[e["valueFrom"]["secretKeyRef"]["key"]] for e in refs}
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "REEFLAB_"))}
        self.env = {**clean, **from_secret, **values}

    def command(self) -> list[str]:
        assert self.container["command"][:3] == ["python", "-m", "reeflab.training.tracking_server"]
        args = [a for a in self.container["args"] if not a.startswith(("--state-dir", "--host", "--port", "--workers"))]
        return [sys.executable, "-m", "reeflab.training.tracking_server", *args, f"--state-dir={self.state}",
                "--host=127.0.0.1", f"--port={self.port}", "--workers=1"]  # fmt: skip


@pytest.fixture(scope="module")
def pod_mlflow(s3, tmp_path_factory):
    s3.client().create_bucket(Bucket=tk.ARTIFACTS_BUCKET)
    work = tmp_path_factory.mktemp("mlflow-pod")
    secret = {
        "admin-password": secrets.token_hex(16),
        "user-key": secrets.token_hex(16),
        "flask-secret": secrets.token_hex(16),
        "database-uri": f"sqlite:///{work / 'runs.db'}",
        "auth-database-uri": f"sqlite:///{work / 'auth.db'}",
        "s3-access-key": s3.key["access_key"],
        "s3-secret-key": s3.key["secret_key"],
    }
    with PodMlflow(work / "state", secret, s3.endpoint) as server:
        server.secret = secret
        yield server


LOG_RUN = textwrap.dedent(
    """
    import mlflow, pathlib
    pathlib.Path("weights.txt").write_text("trained")
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5)
        mlflow.log_artifact("weights.txt", "weights")
    print(run.info.run_id)
    """
)


async def test_the_kubernetes_hub_gives_servers_their_account_on_the_cluster_mlflow(
    pod_mlflow, s3, kubespawner, monkeypatch, tmp_path
):
    assert (pod_mlflow.state / "auth.ini").read_text().count(pod_mlflow.secret["auth-database-uri"]) == 1
    assert not (pod_mlflow.state / "mlflow.db").exists()  # the runs are in the Secret's database
    monkeypatch.setenv("REEFLAB_STATE_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("REEFLAB_MLFLOW_URL", pod_mlflow.url)
    monkeypatch.setenv("REEFLAB_MLFLOW_ADMIN_PASSWORD", pod_mlflow.secret["admin-password"])
    monkeypatch.setenv("REEFLAB_MLFLOW_USER_KEY", pod_mlflow.secret["user-key"])
    spawner = kubespawner(PROFILES, "carol")
    await spawner.run_pre_spawn_hook()
    env = spawner.environment
    assert env["MLFLOW_TRACKING_URI"] == pod_mlflow.url and env["MLFLOW_TRACKING_USERNAME"] == "carol"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "carol/default"
    # carol's server tracks a run with only these variables; its artifact lands in the platform's bucket
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "PYTEST_"))}
    run_env = {**clean, **{k: v for k, v in env.items() if k.startswith("MLFLOW_")}}
    done = subprocess.run(
        [sys.executable, "-c", LOG_RUN], env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listed = s3.client().list_objects_v2(Bucket=tk.ARTIFACTS_BUCKET)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.endswith("weights/weights.txt") for k in keys), keys
    # a wrong password gets nothing
    import requests

    run_id = done.stdout.split()[-1]
    answer = requests.get(
        f"{pod_mlflow.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, auth=("carol", "wrong"), timeout=10
    )
    assert answer.status_code == 401


def test_a_kubernetes_hub_without_mlflow_secrets_says_which(kubespawner, monkeypatch, tmp_path):
    monkeypatch.setenv("REEFLAB_STATE_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("REEFLAB_MLFLOW_URL", "http://reeflab-mlflow.reeflab.svc:5005")
    monkeypatch.delenv("REEFLAB_MLFLOW_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("REEFLAB_MLFLOW_USER_KEY", "k")
    with pytest.raises(ValueError, match="REEFLAB_MLFLOW_ADMIN_PASSWORD"):
        kubespawner(PROFILES, "carol")
