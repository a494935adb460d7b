"""Kubernetes mode, offline: the pods ReefLabKubeSpawner renders from a hardware profiles file, each in
the user's own namespace with the user's ServiceAccount and Pod Security "restricted" settings.

No cluster and no Kubernetes API emulator: KubeSpawner builds the pod manifest without talking
to an API server (every socket connect fails the test), and kubernetes-validate checks it
against the Kubernetes JSON schema it ships.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
from reeflab.hub.kubernetes_isolation import user_namespace
from reeflab.hub.spawners import ReefLabKubeSpawner
from tornado.web import HTTPError

SHIPPED = Path(__file__).resolve().parents[1] / "hub_config" / "profiles.yaml"
K8S_VERSION = "1.33.0"  # one of the schema sets kubernetes-validate ships in its wheel

IMAGE = "quay.io/reeflab/singleuser:0.1.0"
CUDA_IMAGE = "quay.io/reeflab/singleuser-cuda:0.1.0"
GPU_TAINT = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
GB = 10**9  # "4G" in profiles.yaml means what it means to Kubernetes: 4 * 10^9 bytes
ALL_SHIPPED = ["cpu-small", "cpu-large", "gpu-t4", "gpu-a100-mig"]


pytestmark = pytest.mark.usefixtures("no_network")  # rendering a pod needs no network, nor a kubeconfig


@pytest.fixture
def make_spawner(kubespawner):
    """make_spawner(groups, profiles_file=SHIPPED): a spawner as the hub config makes it."""

    def make(groups=(), profiles_file: Path = SHIPPED, name: str = "alice", **traits) -> ReefLabKubeSpawner:
        return kubespawner(profiles_file, name, groups, **traits)

    return make


async def spawn(spawner: ReefLabKubeSpawner, slug: str | None) -> dict:
    """Load the user's choice as JupyterHub does before start(), and render the pod."""
    spawner.user_options = {"profile": slug} if slug else {}
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    manifest = spawner.api.api_client.sanitize_for_serialization(pod)
    manifest.setdefault("apiVersion", "v1")
    manifest.setdefault("kind", "Pod")
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    return manifest


def hardware(manifest: dict) -> dict:
    """What a profile decides in a pod, in the shape the tables below use."""
    spec = manifest["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "notebook")
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]

    def extended(resources: dict) -> dict:
        return {k: str(v) for k, v in resources.items() if k not in ("cpu", "memory")}

    assert extended(requests) == extended(limits), "extended resources need request == limit"
    return {
        "image": container["image"],
        "cpu": (requests["cpu"], limits["cpu"]),
        "memory": (requests["memory"], limits["memory"]),
        "gpu": extended(limits),
        "node_selector": spec.get("nodeSelector") or {},
        "tolerations": spec.get("tolerations") or [],
        "env": {e["name"]: e.get("value") for e in container["env"]},
    }


# slug, a group of its users, image, cpu, memory (bytes), GPU resources, node selector, tolerations
SHIPPED_PODS = [
    ("cpu-small", [], IMAGE, 2, 4 * GB, {}, {}, []),
    ("cpu-large", ["vo.imagine-ai.eu"], IMAGE, 8, 32 * GB, {}, {}, []),
    (
        "gpu-t4",
        ["vo.imagine-ai.eu"],
        CUDA_IMAGE,
        4,
        16 * GB,
        {"nvidia.com/gpu": "1"},
        {"nvidia.com/gpu.product": "Tesla-T4"},
        GPU_TAINT,
    ),
    (
        "gpu-a100-mig",
        ["reeflab-staff"],
        CUDA_IMAGE,
        4,
        16 * GB,
        {"nvidia.com/mig-1g.10gb": "1"},
        {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.10gb"},
        GPU_TAINT,
    ),
]


async def test_the_table_covers_every_shipped_profile(make_spawner):
    assert [row[0] for row in SHIPPED_PODS] == ALL_SHIPPED
    assert [p.slug for p in make_spawner().profile_store.catalog().profiles] == ALL_SHIPPED


def assert_pod_has(pod: dict, image, cpu, memory, gpu, node_selector, tolerations) -> None:
    """The pod carries exactly a profile's hardware: requests equal limits."""
    assert pod["image"] == image
    assert pod["cpu"] == (cpu, cpu)
    assert pod["memory"] == (memory, memory)
    assert pod["gpu"] == gpu
    assert pod["node_selector"] == node_selector
    assert pod["tolerations"] == tolerations


@pytest.mark.parametrize("slug, groups, image, cpu, memory, gpu, node_selector, tolerations", SHIPPED_PODS)
async def test_each_shipped_profile_renders_a_valid_pod_with_its_hardware(
    make_spawner, slug, groups, image, cpu, memory, gpu, node_selector, tolerations
):
    pod = hardware(await spawn(make_spawner(groups), slug))
    assert_pod_has(pod, image, cpu, memory, gpu, node_selector, tolerations)
    assert pod["env"]["REEFLAB_PROFILE"] == slug


async def test_no_choice_gets_the_default_profile(make_spawner):
    pod = hardware(await spawn(make_spawner(), None))
    assert (pod["env"]["REEFLAB_PROFILE"], pod["image"], pod["gpu"]) == ("cpu-small", IMAGE, {})


@pytest.mark.parametrize(
    "groups, offered",
    [
        ([], ["cpu-small"]),
        (["some-other-vo"], ["cpu-small"]),
        (["vo.imagine-ai.eu"], ["cpu-small", "cpu-large", "gpu-t4"]),
        (["reeflab-staff"], ALL_SHIPPED),
    ],
)
async def test_users_are_offered_only_the_profiles_of_their_groups(make_spawner, groups, offered):
    spawner = make_spawner(groups)
    assert [p["slug"] for p in spawner.profile_list(spawner)] == offered
    form = await spawner.get_options_form()
    assert re.findall(r'id="profile-item-([^"]+)"', form) == offered


@pytest.mark.parametrize(
    "groups, slug, status, says",
    [
        ([], "gpu-t4", 403, ["'gpu-t4' is reserved", "vo.imagine-ai.eu", "reeflab-staff"]),
        (["vo.imagine-ai.eu"], "gpu-a100-mig", 403, ["'gpu-a100-mig' is reserved", "reeflab-staff"]),
        ([], "gpu-h100", 400, ["Unknown hardware profile 'gpu-h100'", "Profiles you may use: cpu-small."]),
        (["vo.imagine-ai.eu"], "huge", 400, ["Profiles you may use: cpu-small, cpu-large, gpu-t4."]),
    ],
)
async def test_a_profile_the_user_may_not_have_is_refused_with_a_reason(make_spawner, groups, slug, status, says):
    spawner = make_spawner(groups)
    spawner.user_options = {"profile": slug}
    with pytest.raises(HTTPError) as refused:
        await spawner.load_user_options()
    assert refused.value.status_code == status
    for words in says:
        assert words in refused.value.jupyterhub_message


@pytest.mark.parametrize("first, then", [("gpu-t4", "cpu-small"), ("gpu-a100-mig", "gpu-t4")])
async def test_a_respawn_keeps_nothing_of_the_previous_profile(make_spawner, first, then):
    rows = {row[0]: row for row in SHIPPED_PODS}
    spawner = make_spawner(["reeflab-staff"])
    await spawn(spawner, first)
    pod = hardware(await spawn(spawner, then))
    assert_pod_has(pod, *rows[then][2:])


CUSTOM = """
image: example.org/lab:1
profiles:
  - slug: tiny
    display_name: Tiny
    cpu: 0.5
    memory: 512Mi
  - slug: amd-pair
    display_name: Two AMD GPUs
    cpu: 16
    memory: 64Gi
    gpu: {count: 2, resource: amd.com/gpu}
    node_selector: {accelerator: mi210}
    groups: [hpc]
"""


@pytest.mark.parametrize(
    "slug, cpu, memory, gpu, node_selector",
    [
        ("tiny", 0.5, 512 * 2**20, {}, {}),
        ("amd-pair", 16, 64 * 2**30, {"amd.com/gpu": "2"}, {"accelerator": "mi210"}),
    ],
)
async def test_an_operators_own_profiles_file(make_spawner, tmp_path, slug, cpu, memory, gpu, node_selector):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(CUSTOM)
    pod = hardware(await spawn(make_spawner(["hpc"], profiles), slug))
    assert pod["image"] == "example.org/lab:1"
    assert pod["cpu"] == (cpu, cpu)
    assert pod["memory"] == (memory, memory)
    assert pod["gpu"] == gpu
    assert pod["node_selector"] == node_selector
    assert pod["tolerations"] == []


# names a hostile user would try next to 'ana': each must get a namespace of their own
ADVERSARIAL = ["ana", "ana-lab", "ana.b", "ana-b", "ANA", "аna", "ana--x", "ana_b", "a" * 80, "a" * 80 + "b"]


@pytest.mark.parametrize("prefix", ["reeflab", "jhub", "x" * 40])
def test_every_user_name_gets_a_valid_namespace_of_its_own(prefix):
    names = [user_namespace(prefix, user) for user in ADVERSARIAL]
    assert len(set(names)) == len(ADVERSARIAL)
    for name in names:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name) and name.startswith(prefix + "-")
    assert names[0] == f"{prefix}-ana" and names[1] == f"{prefix}-ana-lab"  # readable where it can be
    assert user_namespace(prefix, "ana") == names[0]  # stable: every spawn finds the same one


@pytest.mark.parametrize("prefix", ["", "x" * 41])
def test_a_prefix_that_leaves_no_room_for_the_user_is_refused(prefix):
    with pytest.raises(ValueError, match="user namespace prefix"):
        user_namespace(prefix, "ana")


RESTRICTED = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


async def test_the_server_runs_in_the_users_namespace_as_its_service_account_without_privileges(make_spawner):
    spawner = make_spawner(name="ana.b")
    pod = await spawn(spawner, None)
    assert spawner.namespace == user_namespace("reeflab", "ana.b")  # 'default' outside a cluster: 'reeflab'
    spec, notebook = pod["spec"], next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    assert (spec["serviceAccountName"], spec["automountServiceAccountToken"]) == ("reeflab-user", True)
    assert RESTRICTED.items() <= notebook["securityContext"].items()
    assert notebook["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["fsGroup"] == 100
    env = spawner.get_env()  # the deployments and jobs backends work in the user's namespace
    assert env["REEFLAB_NAMESPACE"] == spawner.namespace and env["REEFLAB_DEPLOYMENTS"] == "kubernetes"


@pytest.mark.parametrize(
    "environment, namespace",
    [({}, "reeflab-alice"), ({"REEFLAB_NAMESPACE": "jhub"}, "jhub-alice"), ({"REEFLAB_NAMESPACE": "default"}, None)],
)
async def test_users_namespaces_are_named_after_the_hubs(make_spawner, monkeypatch, environment, namespace):
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    spawner = make_spawner()
    assert spawner.namespace == (namespace or "reeflab-alice")
    peer = spawner.server_ingress_from[0]  # the hub's and proxy's pods may reach the server
    hub = environment.get("REEFLAB_NAMESPACE", "default")
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": hub}}
    assert peer["podSelector"] == {"matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}}


async def test_in_one_shared_namespace_user_pods_get_no_kubernetes_token(make_spawner):
    spawner = make_spawner(enable_user_namespaces=False)
    pod = await spawn(spawner, None)
    assert "serviceAccountName" not in pod["spec"] and pod["spec"]["automountServiceAccountToken"] is False
