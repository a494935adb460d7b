"""Kubernetes deployments without a cluster: every manifest validated against the schema kubernetes-validate
ships, and the backend against kmock, an HTTP emulator of the Kubernetes API each test starts on 127.0.0.1."""

import contextlib
import json
import math
import re
import uuid
from datetime import UTC, datetime

import kmock
import kubernetes_validate
import pytest
from kubernetes_asyncio import client
from reeflab import kube
from reeflab.deployments.backends import kubernetes as kb
from reeflab.deployments.backends.base import Endpoint
from reeflab.deployments.models import Deployment, Hardware
from reeflab.deployments.service import DeploymentService
from reeflab.errors import BadRequest, Conflict
from reeflab.profiles import load_profiles

K8S_VERSION = "1.33.0"  # one of the schema sets kubernetes-validate ships in its wheel
NS = "reeflab-test"
NAME = "reeflab-d3adb33f"
DEPLOYMENTS, INGRESSES = "apps/v1/deployments", "networking.k8s.io/v1/ingresses"
POLICIES = "networking.k8s.io/v1/networkpolicies"
OURS = {"app.kubernetes.io/name": "reeflab-module", "app.kubernetes.io/managed-by": "reeflab"}
IMAGE = "quay.io/reeflab/module:0.1.0"
GPU_TAINT = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
T4 = {"nvidia.com/gpu.product": "Tesla-T4"}
MIG = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.10gb"}
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
PROFILES = f"""
image: example.org/lab:1
profiles:
  - {{slug: cpu, display_name: CPU, cpu: 2, memory: 4G}}
  - {{slug: gpu-t4, display_name: T4, cpu: 4, memory: 16G, gpu: {{count: 2, resource: nvidia.com/gpu}},
      node_selector: {json.dumps(T4)}, tolerations: {json.dumps(GPU_TAINT)}}}
  - {{slug: mig, display_name: MIG, cpu: 4, memory: 16G, gpu: {{count: 1, resource: nvidia.com/mig-1g.10gb}},
      node_selector: {json.dumps(MIG)}, tolerations: {json.dumps(GPU_TAINT)}}}
"""


@pytest.fixture
def profiles_file(tmp_path):
    (path := tmp_path / "profiles.yaml").write_text(PROFILES)
    return path


def make(profile: str = "cpu", hardware: Hardware | None = None, **fields) -> Deployment:
    """A deployment as the deployment service stores it."""
    base = dict(id="d3adb33f", owner="alice", module="fish-detector", entry_point="fish_detector", title="Fish")
    base.update(kind="deployment", backend="kubernetes", created=datetime(2026, 11, 23, tzinfo=UTC))
    return Deployment(profile=profile, hardware=hardware or Hardware(cpu=2, memory_MB=4000), **{**base, **fields})


def render(dep: Deployment, profiles_file) -> dict:
    """All manifests of a deployment, each checked against the Kubernetes schema."""
    profile = {p.slug: p for p in load_profiles(profiles_file).profiles}[dep.profile]
    manifests = {"deployment": kb.deployment_manifest(dep, profile, IMAGE, NS), "service": kb.service_manifest(dep, NS)}
    manifests.update(secret=kb.secret_manifest(dep, NS), ingress=kb.ingress_manifest(dep, NS, "deploy.example.org"))
    manifests["policy"] = kb.network_policy_manifest(dep, NS, "hub-ns", ingress_from=[INGRESS_CONTROLLER])
    for manifest in manifests.values():
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    return manifests


INGRESS_CONTROLLER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}


def container(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


GB = {"cpu": "4", "memory": "16000000000"}
# profile, hardware, requests (= limits), node selector, tolerations
HARDWARE = [
    ("cpu", Hardware(cpu=2, memory_MB=4000), {"cpu": "2", "memory": "4000000000"}, None, None),
    ("cpu", Hardware(cpu=1.5, memory_MB=512), {"cpu": "1500m", "memory": "512000000"}, None, None),
    ("gpu-t4", Hardware(cpu=4, memory_MB=16000, gpu=1), {**GB, "nvidia.com/gpu": "1"}, T4, GPU_TAINT),
    ("gpu-t4", Hardware(cpu=4, memory_MB=16000, gpu=2), {**GB, "nvidia.com/gpu": "2"}, T4, GPU_TAINT),
    ("gpu-t4", Hardware(cpu=4, memory_MB=16000, gpu=0), GB, None, None),  # no GPU: not on GPU nodes
    ("mig", Hardware(cpu=4, memory_MB=16000, gpu=1), {**GB, "nvidia.com/mig-1g.10gb": "1"}, MIG, GPU_TAINT),
]


@pytest.mark.parametrize("profile, hardware, resources, selector, taints", HARDWARE)
def test_the_pod_gets_the_deployments_hardware(profiles_file, profile, hardware, resources, selector, taints):
    deployment = render(make(profile, hardware), profiles_file)["deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert container(deployment)["resources"] == {"requests": resources, "limits": resources}
    assert (pod.get("nodeSelector"), pod.get("tolerations")) == (selector, taints)
    assert {"name": "OMP_NUM_THREADS", "value": str(math.ceil(hardware.cpu))} in container(deployment)["env"]


@pytest.mark.parametrize("profile, gpus", [("cpu", 1), ("gpu-t4", 3), ("mig", 2)])
def test_more_gpus_than_the_profile_has_are_refused(profiles_file, profile, gpus):
    with pytest.raises(BadRequest, match=f"{gpus} were asked for"):
        render(make(profile, Hardware(cpu=1, memory_MB=1000, gpu=gpus)), profiles_file)


NAMES = [
    ("d3adb33f", "alice", "fish-detector"),
    ("0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b", "alice.smith@example.org", "plankton_classifier"),
    ("Some_ID.With.Dots" + "x" * 80, "_" + "b" * 70 + "@uni.example", "-odd--module-"),
]


@pytest.mark.parametrize("dep_id, owner, module", NAMES)
def test_names_and_labels_are_valid_for_any_id_user_and_module(profiles_file, dep_id, owner, module):
    manifests = render(make(id=dep_id, owner=owner, module=module), profiles_file)
    name = kb.object_name(dep_id)
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name) and name.startswith("reeflab-")
    assert kb.object_name(dep_id + "y") != name
    for manifest in manifests.values():
        meta = manifest["metadata"]  # the owner's real name is an annotation, for admins
        assert (meta["name"], meta["namespace"], meta["annotations"]["reeflab.io/owner"]) == (name, NS, owner)
        labels = meta["labels"]
        assert {**labels, **OURS, "app.kubernetes.io/instance": name, "reeflab.io/kind": "deployment"} == labels
        assert all(len(v) <= 63 and LABEL_VALUE.match(v) for v in labels.values())
    owner_label = manifests["deployment"]["metadata"]["labels"]["reeflab.io/owner"]
    assert (owner_label == owner) == (owner == "alice")  # kept when it is a valid label value, else escaped
    assert kb.labels(make(owner=owner + "x"))["reeflab.io/owner"] != owner_label
    template = manifests["deployment"]["spec"]["template"]["metadata"]["labels"]
    assert manifests["deployment"]["spec"]["selector"]["matchLabels"].items() <= template.items()
    assert manifests["service"]["spec"]["selector"] == manifests["deployment"]["spec"]["selector"]["matchLabels"]


@pytest.fixture
def server_pod_labels(jp_asyncio_loop, kubespawner, profiles_file):
    """server_pod_labels(username): the labels of the user's server pod as the hub's KubeSpawner renders it."""

    async def render(username: str) -> dict[str, str]:
        spawner = kubespawner(profiles_file, username)
        await spawner.load_user_options()
        return (await spawner.get_pod_manifest()).metadata.labels

    return lambda username: jp_asyncio_loop.run_until_complete(render(username))


@pytest.mark.parametrize("owner", [owner for _, owner, _ in NAMES])
def test_only_the_owners_server_pods_may_reach_the_module_on_its_port(profiles_file, server_pod_labels, owner):
    manifests = render(make(owner=owner), profiles_file)
    policy = manifests["policy"]
    assert policy["metadata"]["name"] == manifests["deployment"]["metadata"]["name"]
    assert policy["spec"]["podSelector"]["matchLabels"] == manifests["deployment"]["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # what comes in; the module may still reach storage
    users, ingress = policy["spec"]["ingress"]
    assert users["ports"] == ingress["ports"] == [{"protocol": "TCP", "port": 5000}]
    [peer] = users["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "hub-ns"}}
    wanted = peer["podSelector"]["matchLabels"].items()
    assert wanted <= server_pod_labels(owner).items(), "the owner's server pod is let in"
    for other in (owner + "x", owner.upper(), "bob"):
        assert not wanted <= server_pod_labels(other).items(), f"{other}'s server pod is kept out"
    assert ingress["from"] == [INGRESS_CONTROLLER]
    without = kb.network_policy_manifest(make(owner=owner), NS, "hub-ns")  # no Ingress: no one else
    kubernetes_validate.validate(without, K8S_VERSION, strict=True)
    assert [rule["from"] for rule in without["spec"]["ingress"]] == [[peer]]


def test_the_module_runs_deepaas_on_5000_with_probes_and_no_privileges(profiles_file):
    manifests = render(make(), profiles_file)
    spec = manifests["deployment"]["spec"]
    module = container(manifests["deployment"])
    assert spec["replicas"] == 1 and module["image"] == IMAGE
    assert [*module["command"], *module["args"]] == ["deepaas-run", "--listen-ip", "0.0.0.0", "--listen-port", "5000"]
    assert module["ports"] == [{"name": "http", "containerPort": 5000, "protocol": "TCP"}]
    env = {e["name"]: e["value"] for e in module["env"]}
    threads = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    assert env == {"DEEPAAS_V2_MODEL": "fish_detector", "YOLO_OFFLINE": "1", **threads}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert module[probe]["httpGet"] == {"path": "/v2/models/", "port": "http"}
    assert module["readinessProbe"]["periodSeconds"] == 5 and module["readinessProbe"]["initialDelaySeconds"] <= 10
    assert module["startupProbe"]["periodSeconds"] * module["startupProbe"]["failureThreshold"] >= 600
    assert module["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert "envFrom" not in module and "reeflab.io/expires" not in manifests["deployment"]["metadata"]["annotations"]
    service = manifests["service"]["spec"]
    assert service["ports"] == [{"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}]
    rule = manifests["ingress"]["spec"]["rules"][0]
    assert rule["host"] == "reeflab-d3adb33f.deploy.example.org"
    assert rule["http"]["paths"][0]["backend"] == {"service": {"name": "reeflab-d3adb33f", "port": {"number": 5000}}}


def test_deepaas_serves_under_the_routes_path_so_its_docs_page_works_through_it(profiles_file):
    """As the local backend does: `--base-path` is the route's full path, and the probes ask under it."""
    profile = {p.slug: p for p in load_profiles(profiles_file).profiles}["cpu"]
    base = "/user/ana@sea.org/reeflab/deployments/d3adb33f"
    manifest = kb.deployment_manifest(make(), profile, IMAGE, NS, base_path=base)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    module = container(manifest)
    assert module["command"] == ["deepaas-run"]
    assert module["args"] == ["--listen-ip", "0.0.0.0", "--listen-port", "5000", "--base-path", base]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert module[probe]["httpGet"] == {"path": f"{base}/v2/models/", "port": "http"}


def test_user_environment_goes_to_a_secret_and_a_try_carries_its_expiry(profiles_file):
    expires, env = datetime(2026, 11, 23, 12, tzinfo=UTC), {"S3_SECRET_KEY": "hunter2", "BATCH": "8"}
    manifests = render(make(kind="try", expires=expires, env=env), profiles_file)
    assert manifests["secret"]["stringData"] == env
    assert container(manifests["deployment"])["envFrom"] == [{"secretRef": {"name": "reeflab-d3adb33f"}}]
    assert "hunter2" not in json.dumps(manifests["deployment"])
    assert manifests["deployment"]["metadata"]["annotations"]["reeflab.io/expires"] == "2026-11-23T12:00:00+00:00"
    assert manifests["deployment"]["metadata"]["labels"]["reeflab.io/kind"] == "try"


def a_pod(deployment: dict, name: str = "pod-1", status: dict | None = None, born: str = "") -> dict:
    """A pod as the Deployment's ReplicaSet makes it (when the Deployment is made, or `born`), with `status`."""
    born = born or deployment["metadata"].get("creationTimestamp") or datetime.now(UTC).isoformat(timespec="seconds")
    meta = {**deployment["spec"]["template"]["metadata"], "name": name, "creationTimestamp": born}
    spec, status = deployment["spec"]["template"]["spec"], status or {"phase": "Pending"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def waiting(reason: str, message: str = "", last: dict | None = None) -> dict:
    now = {"waiting": {"reason": reason, "message": message}}
    state = {"name": "module", "image": IMAGE, "imageID": "", "ready": False, "restartCount": 3, "state": now}
    state["lastState"] = {"terminated": last} if last else {}
    return {"phase": "Running" if last else "Pending", "containerStatuses": [state]}


def unschedulable(message: str, since: str = "2020-01-01T00:00:00Z") -> dict:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    condition["lastTransitionTime"] = since
    return {"phase": "Pending", "conditions": [condition]}


LOOP, KEEPS = "CrashLoopBackOff", "the module keeps crashing: "
CRASHED = {"reason": "Error", "exitCode": 1, "message": "Traceback:\n File x\nImportError: y\nValueError: z\n"}
OOM = {"reason": "OOMKilled", "exitCode": 137}
NO_GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No victims."
NO_CPU = "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory."
TAINTED = "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: hub}."
ONE_GPU = Hardware(cpu=4, memory_MB=16000, gpu=1)
# profile, hardware, pod status, what the user reads
PROBLEMS = [
    ("cpu", None, waiting(LOOP, "back-off", CRASHED), KEEPS + "File x | ImportError: y | ValueError: z"),
    ("cpu", None, waiting(LOOP, "", OOM), KEEPS + "it ran out of memory (limit 4000 MB); restart it with more memory"),
    ("cpu", None, waiting(LOOP, "", {"reason": "Error", "exitCode": 2}), KEEPS + "it exited with code 2 (Error)"),
    ("cpu", None, waiting("ImagePullBackOff", "Back-off"), f"its image {IMAGE} cannot be pulled: Back-off"),
    ("gpu-t4", ONE_GPU, unschedulable(NO_GPU), "no node has 1 nvidia.com/gpu free"),
    ("mig", ONE_GPU, unschedulable(NO_CPU), "no node has 4 CPU and 16000 MB of memory free"),
    ("cpu", None, unschedulable(TAINTED), f"no node can run it: {TAINTED}"),
    ("cpu", None, waiting("ContainerCreating"), None),  # on their way
    ("gpu-t4", ONE_GPU, unschedulable(NO_GPU, since="2999-01-01T00:00:00Z"), None),  # a node may come soon
    ("cpu", None, waiting("ErrImagePull"), None),  # retried before ImagePullBackOff
]


@pytest.mark.parametrize("profile, hardware, status, reason", PROBLEMS)
def test_a_pod_that_will_not_become_ready_is_explained(profiles_file, profile, hardware, status, reason):
    deployment = render(make(profile, hardware), profiles_file)["deployment"]
    assert kb.pod_problem(a_pod(deployment, status=status)) == reason


def test_a_pod_stopped_for_its_memory_is_told_apart(profiles_file):
    deployment = render(make("cpu", None), profiles_file)["deployment"]
    assert kb.ran_out_of_memory(a_pod(deployment, status=waiting(LOOP, "", OOM)))
    assert not kb.ran_out_of_memory(a_pod(deployment, status=waiting(LOOP, "", CRASHED)))


PROGRESSING = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
QUOTA = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota"}
TOO_SLOW, NO_QUOTA = "it did not become ready in time: too slow", "Kubernetes cannot create its pod: exceeded quota"


@pytest.mark.parametrize("condition, reason", [(PROGRESSING, None), (DEADLINE, TOO_SLOW), (QUOTA, NO_QUOTA)])
def test_deployment_conditions_that_mean_failure(condition, reason):
    assert kb.deployment_problem({"status": {"conditions": [condition]}}) == reason


class Emulator(kmock.KubernetesEmulator):
    """kmock, plus what a real API server does and the backend relies on: metadata on create, label selectors."""

    async def _handle(self, request: kmock.Request):
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            meta.update(uid=str(uuid.uuid4()), resourceVersion=str(len(list(self))))
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return await super()._handle(request)

    async def _serve_list(self, request: kmock.Request):
        listing = await super()._serve_list(request)
        wanted = dict(term.split("=", 1) for term in request.params.get("labelSelector", "").split(",") if term)
        listing["items"] = [o for o in listing["items"] if wanted.items() <= o["metadata"].get("labels", {}).items()]
        return listing


@pytest.fixture
def cluster(jp_asyncio_loop, profiles_file):
    """The emulator on 127.0.0.1 and a backend that talks to it; both stopped after the test."""
    stack = contextlib.AsyncExitStack()

    async def start():
        emulator = await stack.enter_async_context(Emulator())
        for resource in ("v1/pods", "v1/secrets", "v1/services", "apps/v1/deployments", INGRESSES, POLICIES):
            emulator.resources[resource] = {}  # lists of undeclared resources answer 404
        await stack.enter_async_context(kmock.Server(emulator))
        api = client.ApiClient(client.Configuration(host=str(emulator.url).rstrip("/")))
        stack.push_async_callback(api.close)
        return emulator, kb.KubernetesBackend(api_client=api, namespace=NS, profiles_file=str(profiles_file))

    try:  # the tests run in pytest-jupyter's loop (tests/conftest.py): start and stop in that one
        yield jp_asyncio_loop.run_until_complete(start())
    finally:
        jp_asyncio_loop.run_until_complete(stack.aclose())


def seen(emulator: Emulator, method: str) -> list[str]:
    """What the emulator got requests of `method` for: "<resource>" or "<resource>/<name>"."""
    return [re.sub(r"^/apis?/.*?namespaces/[^/]+/", "", r.url.path) for r in emulator if r.method == method]


def stored(emulator: Emulator, resource: str) -> dict:
    return emulator.objects[resource, NS, NAME].raw


async def test_start_creates_the_objects_and_status_follows_the_deployment(cluster):
    emulator, backend = cluster
    dep = make(env={"API_TOKEN": "s3cret"})
    dep.runtime = await backend.start(dep, folder=None)
    assert dep.runtime == {"namespace": NS, "name": NAME, "service_host": f"{NAME}.{NS}.svc", "port": 5000}
    assert backend.endpoint(dep) == Endpoint(f"{NAME}.{NS}.svc", 5000)
    assert backend.endpoint(dep).unix_socket is None
    # the policy first: the module's pod is never reachable by anyone but its owner's server
    assert seen(emulator, "POST") == ["networkpolicies", "secrets", "deployments", "services"]
    policy = stored(emulator, POLICIES)
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    assert policy["spec"] == kb.network_policy_manifest(dep, NS, backend.server_namespace)["spec"]
    assert backend.server_namespace == NS  # outside a pod: user servers are next to the deployments
    assert stored(emulator, "v1/secrets")["stringData"] == {"API_TOKEN": "s3cret"}
    assert stored(emulator, DEPLOYMENTS)["spec"] == render(dep, backend.profiles_file)["deployment"]["spec"]
    assert (await backend.status(dep)).state == "starting"
    # the crashing pods of another deployment, or of this one before a restart, are no problem of this one
    other = render(make(id="other"), backend.profiles_file)["deployment"]
    emulator.objects["v1/pods", NS, "other-1"] = a_pod(other, "other-1", waiting(LOOP, "", OOM))
    old = a_pod(stored(emulator, DEPLOYMENTS), "old-1", waiting(LOOP, "", OOM), born="2020-01-01T00:00:00Z")
    emulator.objects["v1/pods", NS, "old-1"] = old  # from before a restart: the Deployment is newer
    emulator.objects["v1/pods", NS, "pod-1"] = a_pod(stored(emulator, DEPLOYMENTS), status=waiting("ContainerCreating"))
    assert (await backend.status(dep)).state == "starting"
    emulator.objects[DEPLOYMENTS, NS, NAME].patch({"status": {"replicas": 1, "readyReplicas": 1}})
    assert (await backend.status(dep)).state == "ready"


async def test_the_users_server_starts_it_under_its_route_and_proxies_that_path(cluster, tmp_path):
    """Started by the deployment service of a user's server (base URL /user/<name>/), it serves under
    /user/<name>/reeflab/deployments/<id>, the path the route forwards (jupyter-server-proxy's absolute_url)."""
    _, plain = cluster
    service = DeploymentService(
        root_dir=str(tmp_path), backend_class=kb.KubernetesBackend, base_url="/user/ana%40sea.org/"
    )
    backend = service.backend
    backend.api_client, backend.namespace, backend.profiles_file = plain.api_client, NS, plain.profiles_file
    backend.ingress_host = "deploy.example.org"
    dep = make()
    dep.runtime = await backend.start(dep, folder=None)
    base = "/user/ana@sea.org/reeflab/deployments/d3adb33f"  # decoded: DEEPaaS matches decoded paths
    assert dep.runtime["base_path"] == base == service.route_path(dep.id)
    assert dep.runtime["url"] == f"https://{NAME}.deploy.example.org/user/ana%40sea.org/reeflab/deployments/d3adb33f/"
    emulator = cluster[0]
    module = stored(emulator, DEPLOYMENTS)["spec"]["template"]["spec"]["containers"][0]
    assert module["args"][-2:] == ["--base-path", base]
    assert module["readinessProbe"]["httpGet"]["path"] == f"{base}/v2/models/"
    assert backend.endpoint(dep) == Endpoint(f"{NAME}.{NS}.svc", 5000, base_path=base)
    # one started before deployments had a base path still serves at its root
    older = make(runtime={k: v for k, v in dep.runtime.items() if k != "base_path"})
    assert backend.endpoint(older).base_path == ""
    await backend.stop(dep)


async def test_an_operators_options_and_a_stop_that_deletes_everything_and_may_be_repeated(cluster):
    emulator, backend = cluster
    backend.ingress_host, backend.ingress_annotations = "deploy.example.org", {"example.org/auth": "oidc"}
    backend.service_account, backend.extra_labels = "modules", {"team": "fish"}
    backend.image, backend.gpu_image = "registry.example.org/{module}:1", "registry.example.org/{module}-cuda:1"
    dep = make(env={"A": "1"})
    dep.runtime = await backend.start(dep, folder=None)
    assert dep.runtime["url"] == f"https://{NAME}.deploy.example.org/"
    resources = [INGRESSES, "v1/services", DEPLOYMENTS, POLICIES, "v1/secrets"]
    for resource in resources:  # as the API server stored them, uid and all
        kubernetes_validate.validate(stored(emulator, resource), K8S_VERSION, strict=True)
        assert stored(emulator, resource)["metadata"]["labels"]["team"] == "fish"
    assert stored(emulator, INGRESSES)["metadata"]["annotations"]["example.org/auth"] == "oidc"
    assert stored(emulator, INGRESSES)["spec"]["rules"][0]["host"] == f"{NAME}.deploy.example.org"
    pod = stored(emulator, DEPLOYMENTS)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "modules"
    assert pod["containers"][0]["image"] == "registry.example.org/fish-detector:1"  # CPU: not the GPU image
    [_, controller] = stored(emulator, POLICIES)["spec"]["ingress"]  # with an Ingress, its controller gets in
    assert controller["from"] == backend.ingress_from == [INGRESS_CONTROLLER]
    await backend.stop(dep)
    assert seen(emulator, "DELETE") == [f"{r.split('/')[-1]}/{NAME}" for r in resources]
    assert all(emulator.objects[r, NS, NAME].deleted for r in resources)
    assert (await backend.status(dep)).state == "stopped"
    await backend.stop(dep)  # every object answers 404 now
    assert seen(emulator, "DELETE") == [f"{r.split('/')[-1]}/{NAME}" for r in resources * 2]


@pytest.mark.parametrize("profile, hardware, status, reason", [PROBLEMS[0], PROBLEMS[4]])
async def test_a_failing_pod_makes_the_deployment_failed_with_the_reason(cluster, profile, hardware, status, reason):
    emulator, backend = cluster
    dep = make(profile, hardware)
    dep.runtime = await backend.start(dep, folder=None)
    emulator.objects["v1/pods", NS, "pod-1"] = a_pod(stored(emulator, DEPLOYMENTS), status=status)
    found = await backend.status(dep)
    assert (found.state, found.reason) == ("failed", reason)


async def test_a_name_taken_in_the_cluster_is_a_clear_conflict_and_nothing_is_left_behind(cluster):
    emulator, backend = cluster
    emulator.objects["v1/services", NS, NAME] = {"metadata": {"name": NAME, "namespace": NS}}
    with pytest.raises(Conflict, match=f"A Service '{NAME}' already exists in namespace '{NS}'"):
        await backend.start(make(env={"A": "1"}), folder=None)
    assert seen(emulator, "DELETE") == [f"networkpolicies/{NAME}", f"secrets/{NAME}", f"deployments/{NAME}"]
    assert not emulator.objects["v1/services", NS, NAME].deleted  # someone else's: kept


async def test_logs_are_the_last_lines_of_the_pod(cluster):
    emulator, backend = cluster
    dep = make()
    dep.runtime = await backend.start(dep, folder=None)
    assert await backend.logs(dep, folder=None, tail=5) == []
    emulator.objects["v1/pods", NS, "pod-1"] = a_pod(stored(emulator, DEPLOYMENTS))
    emulator[f"get /api/v1/namespaces/{NS}/pods/pod-1/log"] << b'{"json": "looking"}\n42\nmodel ready\n'
    assert await backend.logs(dep, folder=None, tail=5) == ['{"json": "looking"}', "42", "model ready"]
    assert [r.params["tailLines"] for r in emulator if r.url.path.endswith("/log")] == ["5"]


def test_the_namespace_comes_from_the_environment_or_the_pod(monkeypatch, tmp_path):
    monkeypatch.setattr(kube, "NAMESPACE_FILE", tmp_path / "namespace")
    monkeypatch.delenv("REEFLAB_NAMESPACE", raising=False)
    assert kb.KubernetesBackend().namespace == "reeflab"
    (tmp_path / "namespace").write_text("ai-platform\n")
    assert kb.KubernetesBackend().namespace == "ai-platform"
    monkeypatch.setenv("REEFLAB_NAMESPACE", "mine")
    assert kb.KubernetesBackend().namespace == "mine"


@pytest.mark.parametrize(
    "environment, mode, driver",
    [
        ({}, "none", ""),
        ({"REEFLAB_STORAGE_MOUNTS": "csi", "REEFLAB_STORAGE_CSI_DRIVER": "csi.example.org"}, "csi", "csi.example.org"),
        ({"REEFLAB_STORAGE_MOUNTS": "sidecar"}, "sidecar", ""),
        ({"REEFLAB_STORAGE_MOUNTS": "fuse"}, "none", ""),  # unknown: nothing mounted, nothing privileged
    ],
)
def test_the_storage_mount_mode_comes_from_the_users_server(monkeypatch, environment, mode, driver):
    for key in ("REEFLAB_STORAGE_MOUNTS", "REEFLAB_STORAGE_CSI_DRIVER"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    backend = kb.KubernetesBackend()
    assert (backend.storage_mount_mode, backend.storage_csi_driver) == (mode, driver)


async def test_without_mounts_a_deployment_with_storage_is_refused_before_anything_is_made(cluster):
    emulator, backend = cluster
    backend.storage_mount_mode = "none"
    with pytest.raises(BadRequest, match="This cluster mounts no storage into deployments"):
        await backend.start(make(storage=["lake"]), folder=None)
    assert seen(emulator, "POST") == []


def test_a_csi_deployment_mounts_each_connection_as_an_inline_volume_of_its_own_secret(profiles_file):
    from pydantic import TypeAdapter
    from reeflab.storage.models import ConnectionRequest, StorageConnection

    keys = {"kind": "s3", "name": "lake", "endpoint": "https://s3.example.org", "bucket": "lake-data"}
    spec = TypeAdapter(ConnectionRequest).validate_python({**keys, "access_key": "AK", "secret_key": "SK-9"})
    lake = StorageConnection(owner="alice", created=datetime.now(UTC), spec=spec, mounted=True)
    dep = make(storage=["lake"])
    keys = {"RCLONE_CONFIG_RL_LAKE_TYPE": "s3", "RCLONE_CONFIG_RL_LAKE_SECRET_ACCESS_KEY": "SK-9"}
    mounts = kb.storage_mounts(dep, [lake], NS, lambda c: dict(keys), mode="csi", csi_driver="csi.example.org")
    profile = {p.slug: p for p in load_profiles(profiles_file).profiles}["cpu"]
    manifest = kb.deployment_manifest(dep, profile, IMAGE, NS, mounts=mounts)
    for each in (manifest, mounts.secret):
        kubernetes_validate.validate(each, K8S_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    [volume] = pod["volumes"]
    assert len(pod["containers"]) == 1 and volume["csi"]["driver"] == "csi.example.org"
    assert volume["csi"]["nodePublishSecretRef"] == {"name": kb.storage_secret_name(dep)}
    assert container(manifest)["volumeMounts"] == [{"name": volume["name"], "mountPath": "/mnt/storage/lake"}]
    assert {"name": "REEFLAB_STORAGE_LAKE", "value": "/mnt/storage/lake"} in container(manifest)["env"]
    assert "SK-9" not in json.dumps(manifest) and mounts.secret["metadata"]["name"] == kb.storage_secret_name(dep)


async def test_a_registered_model_fetches_its_weights_with_the_owners_key_and_stop_deletes_it(cluster, tmp_path):
    """A registered model's deployment (tests/test_registry_kubernetes.py runs the fetch against a real S3): the
    owner's platform key in a Secret of its own, read by the init container only; stop deletes that Secret too."""
    from reeflab.storage.service import StorageService

    emulator, plain = cluster
    storage = StorageService(root_dir=str(tmp_path / "storage"), workspace=str(tmp_path), platform_config_url=None)
    storage.set_platform_connection("alice", "http://s3.example.org", "AKIAALICE", "alice-secret", "alice")
    service = DeploymentService(root_dir=str(tmp_path), backend_class=kb.KubernetesBackend, storage=storage)
    backend = service.backend
    backend.api_client, backend.namespace, backend.profiles_file = plain.api_client, NS, plain.profiles_file
    source, digest = "s3://alice/models/reef-fish/1.0.0/", "ab" * 32
    env = {"REEFLAB_WEIGHTS": "/home/alice/models/weights.pt", "REEFLAB_WEIGHTS_SOURCE": source}
    with pytest.raises(BadRequest, match="needs REEFLAB_WEIGHTS_SHA256"):  # a source set by hand, without a digest
        await backend.start(make(env=env), folder=None)
    assert seen(emulator, "POST") == []
    dep = make(env={**env, "REEFLAB_WEIGHTS_SHA256": digest})
    dep.runtime = await backend.start(dep, folder=None)
    assert seen(emulator, "POST") == ["networkpolicies", "secrets", "deployments", "services"]  # no user values
    secret = emulator.objects["v1/secrets", NS, f"{NAME}-weights"].raw
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": "AKIAALICE", "AWS_SECRET_ACCESS_KEY": "alice-secret"}
    pod = stored(emulator, DEPLOYMENTS)["spec"]["template"]["spec"]
    kubernetes_validate.validate(stored(emulator, DEPLOYMENTS), K8S_VERSION, strict=True)
    [init] = pod["initContainers"]
    assert f"--source={source}" in init["command"] and f"--sha256={digest}" in init["command"]
    assert init["env"] == [{"name": "REEFLAB_S3_ENDPOINT", "value": "http://s3.example.org"}]
    module = pod["containers"][0]
    assert {"name": "REEFLAB_WEIGHTS", "value": "/reeflab/weights/weights.pt"} in module["env"]
    assert "envFrom" not in module  # the key is not the module's
    await backend.stop(dep)
    assert emulator.objects["v1/secrets", NS, f"{NAME}-weights"].deleted
