"""Notebook jobs at scale without a cluster: the batch/v1 Job manifests, validated against the Kubernetes schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import kubernetes_validate
import pytest
from reeflab.jobs.backends.kubernetes import KubernetesJobBackend, job_manifest
from reeflab.jobs.models import Job
from reeflab.profiles import load_profiles

K8S_VERSION = "1.33.0"
GPU_TAINT = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
PROFILES = f"""
image: example.org/lab:1
profiles:
  - {{slug: cpu, display_name: CPU, cpu: 1.5, memory: 4G}}
  - {{slug: t4, display_name: T4, cpu: 4, memory: 16Gi, image: example.org/lab-cuda:1,
      gpu: {{count: 1, resource: nvidia.com/gpu}}, node_selector: {{nvidia.com/gpu.product: Tesla-T4}},
      tolerations: {json.dumps(GPU_TAINT)}}}
  - {{slug: mig, display_name: MIG, cpu: 2, memory: 8G, gpu: {{count: 1, resource: nvidia.com/mig-1g.10gb}}}}
"""
FOLDER = Path("/home/jovyan/.local/share/jupyter/reeflab/jobs/0badf00d")


@pytest.fixture
def profiles(tmp_path):
    (path := tmp_path / "profiles.yaml").write_text(PROFILES)
    return path


def make(owner: str = "alice", **fields) -> Job:
    base = dict(id="0badf00d", owner=owner, title="train", notebook="notebooks/train_yolo.ipynb")
    base.update(output="reeflab-jobs/0badf00d/train_yolo.ipynb", kernel="python3", profile="cpu", cpu=1.5)
    base.update(memory_MB=4000, backend="kubernetes", created=datetime(2026, 11, 23, tzinfo=UTC))
    return Job(**{**base, **fields}, parameters={"epochs": 50, "data": "~/storage/reef/data.yaml; rm -rf /"})


def render(profiles, slug: str, owner: str = "alice", **env) -> dict:
    profile = {p.slug: p for p in load_profiles(profiles).profiles}[slug]
    backend = KubernetesJobBackend(profiles_file=str(profiles), namespace="reeflab-users")
    manifest = backend.manifest(make(owner, profile=slug), FOLDER, profile)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    return manifest


def test_a_cpu_job_runs_the_runner_on_the_users_home_with_the_profiles_hardware(profiles, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.reeflab:5000")
    manifest = render(profiles, "cpu")
    assert manifest["metadata"]["name"] == "reeflab-job-0badf00d" and manifest["spec"]["backoffLimit"] == 0
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "example.org/lab:1" and pod["restartPolicy"] == "Never"
    assert container["resources"]["limits"] == {"cpu": "1500m", "memory": "4000000000"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["volumes"] == [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}]
    assert container["volumeMounts"] == [{"name": "home", "mountPath": "/home/jovyan"}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["OMP_NUM_THREADS"] == "2" and env["REEFLAB_JOB_ID"] == "0badf00d"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.reeflab:5000"
    command = " ".join(container["command"])
    assert f"reeflab.jobs.runner {FOLDER}" in command and f">> {FOLDER}/job.log" in command
    assert "epochs" not in json.dumps(container) and "rm -rf" not in json.dumps(manifest)  # parameters: spec.json only


@pytest.mark.parametrize(
    "slug, resource, selector, taints",
    [
        ("t4", "nvidia.com/gpu", {"nvidia.com/gpu.product": "Tesla-T4"}, GPU_TAINT),
        ("mig", "nvidia.com/mig-1g.10gb", None, None),
    ],
)
def test_gpu_profiles_request_their_extended_resource_and_nodes(profiles, slug, resource, selector, taints):
    pod = render(profiles, slug)["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits[resource] == "1"
    assert pod.get("nodeSelector") == selector and pod.get("tolerations") == taints


def test_odd_user_names_give_valid_names_and_labels(profiles):
    manifest = render(profiles, "cpu", owner="Anne.Marie@Example.org")
    claim = manifest["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim.startswith("claim-anne-marie-example-org")
    assert manifest["metadata"]["annotations"]["reeflab.io/owner"] == "Anne.Marie@Example.org"


def test_the_manifest_function_alone(profiles):
    profile = load_profiles(profiles).profiles[0]
    manifest = job_manifest(make(), profile, "img:1", "ns", FOLDER, claim="home-alice", home="/home/alice")
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["workingDir"] == "/home/alice"


@pytest.mark.parametrize("slug", ["cpu", "t4", "mig"])
def test_job_pods_mount_no_token_and_pass_pod_security_restricted(profiles, slug):
    pod = render(profiles, slug)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = pod["containers"][0]["securityContext"]
    assert context == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert [set(v) - {"name"} for v in pod["volumes"]] == [{"persistentVolumeClaim"}]  # the user's own home


def test_jobs_go_to_the_users_namespace_the_hub_names(profiles, monkeypatch):
    monkeypatch.setenv("REEFLAB_NAMESPACE", "reeflab-alice")  # set by ReefLabKubeSpawner in the user's pod
    backend = KubernetesJobBackend(profiles_file=str(profiles))
    assert backend.namespace == "reeflab-alice"
    manifest = backend.manifest(make(), FOLDER, load_profiles(profiles).profiles[0])
    assert manifest["metadata"]["namespace"] == "reeflab-alice"
