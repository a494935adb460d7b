"""Red team, kubernetes mode: user A's server cannot list, read or delete user B's objects.

Each user has a namespace (hub/kubernetes_isolation.py); the user's ServiceAccount holds a Role there only.
No API server runs here, and kmock (the Kubernetes emulator of the other tests) enforces no RBAC, no
NetworkPolicy and no Pod Security. So three small evaluators in this file do what the cluster would, over
exactly the objects ReefLab renders or creates:

- RBAC: `Authorizer` decides a request from the Roles, RoleBindings, ClusterRoles and ClusterRoleBindings
  (the hub's from hub_config/kubernetes/hub-rbac.yaml, the users' as the hub created them in the emulator).
  The emulator below asks it for every request, by bearer token, and answers 403 as the API server would:
  the refusals are this evaluator's, the calls and objects are the real client's and backends'.
- NetworkPolicy: `reachable` decides whether one pod may open a connection to another.
- Pod Security "restricted": `restricted_violations` lists what the admission check would refuse in a pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import kubernetes_validate
import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from reeflab.deployments.backends import kubernetes as kb
from reeflab.deployments.models import Deployment, Hardware
from reeflab.errors import ReefLabError
from reeflab.hub import kubernetes_isolation as iso
from reeflab.hub.spawners import ReefLabKubeSpawner
from reeflab.jobs.backends.kubernetes import KubernetesJobBackend, job_name
from reeflab.jobs.models import Job
from reeflab.monitoring.kube_status import cluster_capacity, namespace_status
from reeflab.profiles import load_profiles
from reeflab.storage.kubernetes import render_mounts
from reeflab.storage.models import StorageConnection
from tornado.web import HTTPError

REPO = Path(__file__).resolve().parents[2]
HUB_RBAC = REPO / "hub_config" / "kubernetes" / "hub-rbac.yaml"
K8S_VERSION = "1.33.0"
HUB_NS = "reeflab"  # REEFLAB_NAMESPACE: users' namespaces are reeflab-<user>
ALICE, BOB = "reeflab-alice", "reeflab-bob"
PROFILES = "image: example.org/lab:1\nprofiles:\n  - {slug: cpu, display_name: CPU, cpu: 1, memory: 2G}\n"
Manifest = dict[str, Any]


# ---------------------------------------------------------------- RBAC, as the API server decides it


@dataclass
class Authorizer:
    """Kubernetes RBAC over plain manifests: allow-only rules, RoleBindings scoped to their namespace."""

    cluster_roles: dict[str, list[dict]] = field(default_factory=dict)
    cluster_bindings: list[Manifest] = field(default_factory=list)
    roles: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # (namespace, name): rules
    bindings: list[Manifest] = field(default_factory=list)  # RoleBindings, with metadata.namespace

    def add(self, manifest: Manifest) -> None:
        kind, meta = manifest["kind"], manifest["metadata"]
        if kind == "ClusterRole":
            self.cluster_roles[meta["name"]] = manifest.get("rules") or []
        elif kind == "ClusterRoleBinding":
            self.cluster_bindings.append(manifest)
        elif kind == "Role":
            self.roles[meta["namespace"], meta["name"]] = manifest.get("rules") or []
        elif kind == "RoleBinding":
            self.bindings.append(manifest)

    @staticmethod
    def _subject_is(subject: dict, account: tuple[str, str]) -> bool:
        namespace, name = account
        if subject.get("kind") == "ServiceAccount":
            return (subject.get("namespace"), subject.get("name")) == (namespace, name)
        if subject.get("kind") == "User":
            return subject.get("name") == f"system:serviceaccount:{namespace}:{name}"
        groups = {"system:authenticated", "system:serviceaccounts", f"system:serviceaccounts:{namespace}"}
        return subject.get("kind") == "Group" and subject.get("name") in groups

    @staticmethod
    def _rule_allows(rule: dict, verb: str, group: str, resource: str, name: str | None) -> bool:
        base = resource.split("/")[0]
        resources = set(rule.get("resources") or [])
        if "*" not in resources and resource not in resources and f"{base}/*" not in resources:
            return False
        if not ({"*", group} & set(rule.get("apiGroups") or [])) or not ({"*", verb} & set(rule.get("verbs") or [])):
            return False
        names = rule.get("resourceNames") or []
        return not names or (verb not in ("create", "list", "watch", "deletecollection") and name in names)

    def allows(
        self, account: tuple[str, str], verb: str, group: str, resource: str, namespace: str | None, name=None
    ) -> bool:
        """Whether the ServiceAccount (namespace, name) may `verb` the resource, in `namespace` (None: cluster)."""
        granted: list[dict] = []
        for binding in self.cluster_bindings:
            if any(self._subject_is(s, account) for s in binding.get("subjects") or []):
                granted += self.cluster_roles.get(binding["roleRef"]["name"], [])
        for binding in self.bindings:
            where = binding["metadata"]["namespace"]
            if where != namespace or not any(self._subject_is(s, account) for s in binding.get("subjects") or []):
                continue  # a RoleBinding grants nothing outside its own namespace
            ref = binding["roleRef"]
            if ref["kind"] == "ClusterRole":
                granted += self.cluster_roles.get(ref["name"], [])
            else:
                granted += self.roles.get((where, ref["name"]), [])
        return any(self._rule_allows(rule, verb, group, resource, name) for rule in granted)


def grants(rules: list[dict]) -> set[tuple[str, str, str]]:
    """Every (verb, API group, resource) a list of rules allows."""
    found = set()
    for rule in rules:
        for verb in rule["verbs"]:
            found |= {(verb, g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    return found


# ---------------------------------------------------------------- Pod Security "restricted" and NetworkPolicies

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
RESTRICTED_VOLUMES |= {"projected", "secret"}


def restricted_violations(pod: Manifest) -> list[str]:
    """What the Pod Security "restricted" profile (Kubernetes 1.33) would refuse in a pod spec."""
    found = [flag for flag in ("hostNetwork", "hostPID", "hostIPC", "hostUsers") if pod.get(flag) is True]
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if kinds - RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']} of type {sorted(kinds)}")
    level = pod.get("securityContext") or {}
    for c in [*pod.get("initContainers", []), *pod["containers"], *pod.get("ephemeralContainers", [])]:
        context, name = c.get("securityContext") or {}, c["name"]
        caps = context.get("capabilities") or {}
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities not dropped")
        if context.get("runAsNonRoot", level.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if context.get("runAsUser", level.get("runAsUser")) == 0:
            found.append(f"{name}: runs as root")
        seccomp = (context.get("seccompProfile") or level.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
        if any(port.get("hostPort") for port in c.get("ports") or []):
            found.append(f"{name}: hostPort")
    return found


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "the evaluator knows matchLabels only"
    return (selector.get("matchLabels") or {}).items() <= labels.items()


def _peer_matches(peer: dict, policy_namespace: str, source: Pod) -> bool:
    assert "ipBlock" not in peer, "the evaluator knows pod and namespace peers only"
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": source.namespace}):
            return False
    elif source.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or _selects(peer["podSelector"], source.labels)


def reachable(policies: list[Manifest], source: Pod, target: Pod, port: int) -> bool:
    """Whether NetworkPolicies let `source` open a TCP connection to `target` on `port` (ingress rules)."""
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == target.namespace
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], target.labels)
    ]
    if not selecting:
        return True  # a pod no policy selects is not isolated
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports") or []
            if ports and not any(p.get("port") in (None, port) for p in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_matches(peer, target.namespace, source) for peer in peers):
                return True
    return False


# ---------------------------------------------------------------- the emulator, with RBAC and namespaces


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason}
    return aiohttp.web.json_response({**body, "metadata": {}, "message": message}, status=code)


@dataclass(frozen=True)
class Call:
    """One request the emulator decided: who, what, where, and whether RBAC let it through."""

    who: str
    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None
    allowed: bool


class Cluster(kmock.KubernetesEmulator):
    """kmock plus what this test needs of a real API server: namespaces (cluster-scoped objects kmock does
    not parse), replace (PUT), metadata on create, label selectors, and RBAC by bearer token (`Authorizer`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accounts: dict[str, tuple[str, str]] = {}  # bearer token: ServiceAccount (namespace, name)
        self.rbac_seed: list[Manifest] = []  # ClusterRoles and ClusterRoleBindings, applied by an admin
        self.namespaces: dict[str, Manifest] = {}
        self.calls: list[Call] = []

    def authorizer(self) -> Authorizer:
        found = Authorizer()
        for manifest in self.rbac_seed:
            found.add(manifest)
        for (resource, _, _), obj in list(self._objects.items()):
            if resource.group == "rbac.authorization.k8s.io" and not obj.deleted:
                found.add({**obj.raw, "kind": {"roles": "Role", "rolebindings": "RoleBinding"}[resource.plural]})
        return found

    def _decide(self, headers, verb: str, group: str, resource: str, namespace: str | None, name) -> bool:
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        account = self.accounts.get(token)
        allowed = account is not None and self.authorizer().allows(account, verb, group, resource, namespace, name)
        who = f"{account[0]}/{account[1]}" if account else "anonymous"
        self.calls.append(Call(who, verb, group, resource, namespace, name, allowed))
        return allowed

    async def __call__(self, raw_request):
        parts = raw_request.path.strip("/").split("/")
        if parts[:3] != ["api", "v1", "namespaces"] or len(parts) > 4:
            return await super().__call__(raw_request)
        name = parts[3] if len(parts) == 4 else None
        verb = {"GET": "get" if name else "list", "POST": "create", "PATCH": "patch", "DELETE": "delete"}
        verb = verb[raw_request.method]
        if not self._decide(raw_request.headers, verb, "", "namespaces", None, name):
            return _status(403, "Forbidden", f'namespaces "{name or ""}" is forbidden')
        body = json.loads(await raw_request.read() or b"null")
        if verb == "create":
            name = body["metadata"]["name"]
            if name in self.namespaces:
                return _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            meta = body["metadata"]
            meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            self.namespaces[name] = {**body, "status": {"phase": "Active"}}
            return aiohttp.web.json_response(self.namespaces[name], status=201)
        if name not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{name}" not found')
        found = self.namespaces[name]
        if verb == "patch":
            for key in ("labels", "annotations"):
                found["metadata"][key] = {**found["metadata"].get(key, {}), **body["metadata"].get(key, {})}
        elif verb == "delete":  # at once, with everything in it (a real one is Terminating for a while)
            del self.namespaces[name]
            for (_, namespace, _), obj in list(self._objects.items()):
                if namespace == name and not obj.deleted:
                    obj.delete()
        return aiohttp.web.json_response(found)

    async def _handle(self, request: kmock.Request):
        if request.resource is None or request.resource.version is None or request.resource.plural is None:
            return await super()._handle(request)  # discovery
        method, named = request.method.name, request.name is not None
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
        verb = verb or ({"GET": "get", "DELETE": "delete"}[method] if named else {"GET": "list"}.get(method))
        if request.params.get("watch") == "true":
            verb = "watch"
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        group, namespace = request.resource.group or "", request.namespace
        if not self._decide(request.headers, verb, group, resource, namespace, request.name):
            what = f"{resource}.{group}" if group else resource
            return _status(403, "Forbidden", f'{what} is forbidden in namespace "{namespace}"')
        if namespace is not None and namespace not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{namespace}" not found')
        if verb == "update":
            key = (request.resource, namespace, request.name)
            if key not in self._objects or self._objects[key].deleted:
                return _status(404, "NotFound", f'{resource} "{request.name}" not found')
            self.objects[key] = request.data
            return aiohttp.web.json_response(request.data)
        if verb == "create" and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("namespace", namespace)
            meta.update(uid=str(uuid.uuid4()), resourceVersion=str(len(self.calls)))
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        response = await super()._handle(request)
        if verb == "create" and response.status == 200:  # the API server answers a creation 201 Created
            response.set_status(201)
        return response

    async def _serve_list(self, request: kmock.Request):
        listing = await super()._serve_list(request)
        wanted = dict(term.split("=", 1) for term in request.params.get("labelSelector", "").split(",") if term)
        listing["items"] = [o for o in listing["items"] if wanted.items() <= o["metadata"].get("labels", {}).items()]
        return listing


RESOURCES = [
    "v1/pods", "v1/secrets", "v1/services", "v1/serviceaccounts", "v1/resourcequotas", "v1/persistentvolumeclaims",
    "apps/v1/deployments", "batch/v1/jobs", "networking.k8s.io/v1/networkpolicies", "networking.k8s.io/v1/ingresses",
    "rbac.authorization.k8s.io/v1/roles", "rbac.authorization.k8s.io/v1/rolebindings",
    "jobset.x-k8s.io/v1alpha2/jobsets",
]  # fmt: skip
TOKENS = {"hub-token": (HUB_NS, "hub"), "alice-token": (ALICE, iso.SERVICE_ACCOUNT), "bob-token": (BOB, "reeflab-user")}


@dataclass
class World:
    """The emulator, a client per identity, and the hub's spawner for a user."""

    cluster: Cluster
    clients: dict[str, client.ApiClient]
    spawner: Any  # spawner(name, id, **traits) -> ReefLabKubeSpawner talking to the cluster as the hub
    profiles: Path


def hub_rbac() -> list[Manifest]:
    return list(yaml.safe_load_all(HUB_RBAC.read_text()))


@pytest.fixture
def world(jp_asyncio_loop, monkeypatch, tmp_path, kubespawner):
    (profiles := tmp_path / "profiles.yaml").write_text(PROFILES)
    stack = contextlib.AsyncExitStack()

    async def start() -> World:
        cluster = await stack.enter_async_context(Cluster())
        for resource in RESOURCES:
            cluster.resources[resource] = {}  # lists of undeclared resources answer 404
        await stack.enter_async_context(kmock.Server(cluster))
        cluster.accounts.update(TOKENS)
        cluster.rbac_seed = hub_rbac()  # what an admin applies once
        cluster.namespaces[HUB_NS] = {"metadata": {"name": HUB_NS, "labels": {"kubernetes.io/metadata.name": HUB_NS}}}
        clients = {}
        for token in TOKENS:
            config = client.Configuration(host=str(cluster.url).rstrip("/"))
            config.api_key, config.api_key_prefix = {"BearerToken": token}, {"BearerToken": "Bearer"}
            clients[token.removesuffix("-token")] = api = client.ApiClient(config)
            stack.push_async_callback(api.close)

        def spawner(name: str, user_id: int = 7, **traits) -> ReefLabKubeSpawner:
            monkeypatch.setenv("REEFLAB_NAMESPACE", HUB_NS)
            made = kubespawner(profiles, name, user_id=user_id, **traits)
            made.api = client.CoreV1Api(clients["hub"])
            return made

        return World(cluster, clients, spawner, profiles)

    try:
        yield jp_asyncio_loop.run_until_complete(start())
    finally:

        async def stop():
            # KubeSpawner's shared API client lives in a task that closes it when cancelled
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stack.aclose()

        jp_asyncio_loop.run_until_complete(stop())


def deployment(owner: str = "alice", **fields) -> Deployment:
    base = dict(id="d3adb33f", owner=owner, module="fish-detector", entry_point="fish_detector", title="Fish")
    base.update(kind="deployment", backend="kubernetes", created=datetime(2026, 11, 23, tzinfo=UTC), profile="cpu")
    return Deployment(hardware=Hardware(cpu=1, memory_MB=1000), **{**base, **fields})


def job(owner: str = "alice") -> Job:
    base = dict(id="0badf00d", owner=owner, title="train", notebook="train.ipynb", output="out.ipynb")
    base.update(kernel="python3", profile="cpu", cpu=1, memory_MB=2000, backend="kubernetes")
    return Job(**base, created=datetime(2026, 11, 23, tzinfo=UTC), parameters={})


# ---------------------------------------------------------------- what the hub may do, and what it grants


def test_the_hub_rbac_file_is_the_generated_one_and_valid():
    manifests = hub_rbac()
    assert manifests == iso.hub_rbac_manifests(HUB_NS, "hub"), "regenerate hub-rbac.yaml from hub_rbac_manifests()"
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize("ingresses", [False, True])
def test_the_hub_holds_every_permission_it_grants(ingresses):
    """The API server refuses a RoleBinding to a Role with rights its creator lacks (no escalate/bind)."""
    hub = Authorizer()
    for manifest in hub_rbac():
        hub.add(manifest)
    for verb, group, resource in grants(iso.user_rules(ingresses)):
        assert hub.allows((HUB_NS, "hub"), verb, group, resource, ALICE), (verb, group, resource)
    assert not any(v in ("escalate", "bind", "impersonate", "*") for r in iso.hub_rules() for v in r["verbs"])
    assert all("*" not in r["resources"] + r["apiGroups"] for r in iso.hub_rules())


def spec(name: str = ALICE, **fields) -> iso.UserNamespace:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": HUB_NS}}}]
    return iso.UserNamespace(**{"name": name, "owner": "alice", "owner_id": "7", "hub_peers": peers, **fields})


@pytest.mark.parametrize(
    "fields, level, quota, ingresses",
    [
        ({}, "restricted", None, False),
        ({"pod_security": "privileged"}, "privileged", None, False),
        ({"quota": {"requests.nvidia.com/gpu": "1", "pods": 20}}, "restricted", {"pods": "20"}, False),
        ({"ingresses": True}, "restricted", None, True),
    ],
)
def test_the_namespace_objects_are_valid_and_say_what_they_should(fields, level, quota, ingresses):
    wanted = spec(**fields)
    objects = [iso.namespace_manifest(wanted), *iso.namespaced_manifests(wanted)]
    for manifest in objects:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        assert manifest["metadata"].get("namespace", ALICE) == ALICE
    namespace = objects[0]["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == level
    assert namespace["annotations"] == {iso.OWNER: "alice", iso.OWNER_ID: "7"}
    kinds = {m["kind"]: m for m in objects}
    assert kinds["ServiceAccount"]["automountServiceAccountToken"] is False
    assert kinds["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "reeflab-user", "namespace": ALICE}]
    assert kinds["RoleBinding"]["roleRef"]["kind"] == "Role"  # never a ClusterRole: nothing beyond this namespace
    assert (("create", "networking.k8s.io", "ingresses") in grants(kinds["Role"]["rules"])) is ingresses
    assert ("ResourceQuota" in kinds) is bool(quota)
    if quota:
        assert quota.items() <= kinds["ResourceQuota"]["spec"]["hard"].items()


# ---------------------------------------------------------------- alice's ServiceAccount, rule by rule

ALICE_SA = (ALICE, "reeflab-user")
OWN_NEEDS = sorted(grants(iso.USER_RULES))
REFUSED = [  # verb, group, resource, namespace: each must be refused to alice's server
    ("list", "", "pods", BOB),  # bob's pod spec holds his JUPYTERHUB_API_TOKEN
    ("get", "", "pods", BOB),
    ("get", "", "pods/log", BOB),
    ("get", "", "secrets", BOB),  # his storage keys
    ("list", "", "secrets", BOB),
    ("delete", "apps", "deployments", BOB),
    ("create", "apps", "deployments", BOB),
    ("get", "apps", "deployments", BOB),
    ("delete", "batch", "jobs", BOB),
    ("delete", "networking.k8s.io", "networkpolicies", BOB),  # opening his pods
    ("list", "", "pods", None),  # every namespace at once
    ("list", "", "secrets", None),
    ("get", "", "namespaces", None),
    ("create", "", "namespaces", None),
    ("patch", "", "namespaces", None),  # e.g. its Pod Security level
    ("create", "", "pods", ALICE),  # pods only through Deployments and Jobs, which the namespace vets
    ("get", "", "secrets", ALICE),
    ("list", "", "secrets", ALICE),
    ("create", "rbac.authorization.k8s.io", "rolebindings", ALICE),
    ("create", "rbac.authorization.k8s.io", "roles", ALICE),
    ("create", "networking.k8s.io", "ingresses", ALICE),  # a host name of someone else's (off by default)
    ("create", "", "persistentvolumeclaims", ALICE),
    ("create", "", "serviceaccounts/token", ALICE),
    ("create", "", "pods/exec", ALICE),
]


def users_authorizer() -> Authorizer:
    found = Authorizer()
    for manifest in hub_rbac():
        found.add(manifest)
    for each in (spec(ALICE), spec(BOB, owner="bob", owner_id="8")):
        for manifest in iso.namespaced_manifests(each):
            found.add(manifest)
    return found


@pytest.mark.parametrize("verb, group, resource", OWN_NEEDS)
def test_alice_may_do_what_the_backends_need_in_her_namespace_only(verb, group, resource):
    rbac = users_authorizer()
    assert rbac.allows(ALICE_SA, verb, group, resource, ALICE)
    assert not rbac.allows(ALICE_SA, verb, group, resource, BOB)
    assert not rbac.allows(ALICE_SA, verb, group, resource, None)


@pytest.mark.parametrize("verb, group, resource, namespace", REFUSED)
def test_alice_is_refused_what_would_reach_beyond_her_things(verb, group, resource, namespace):
    assert not users_authorizer().allows(ALICE_SA, verb, group, resource, namespace, "anything")


# ---------------------------------------------------------------- against the emulator


async def test_the_backends_work_in_alices_namespace_and_need_every_rule_of_her_role(world, tmp_path):
    hub = world.spawner("alice")
    await hub.ensure_user_namespace()
    await hub.ensure_user_namespace()  # every spawn: idempotent (replaces what exists)
    await world.spawner("bob", 8).ensure_user_namespace()
    assert all(call.allowed for call in world.cluster.calls), "the hub's ClusterRole is enough for the hub"
    assert sorted(world.cluster.namespaces) == sorted([HUB_NS, ALICE, BOB])

    world.cluster.calls.clear()
    mine = world.clients["alice"]
    backend = kb.KubernetesBackend(api_client=mine, namespace=ALICE, server_namespace=ALICE)
    backend.profiles_file = str(world.profiles)
    dep = deployment(env={"TOKEN": "s3cret"})
    dep.runtime = await backend.start(dep, folder=None)
    assert (await backend.status(dep)).state == "starting"
    template = world.cluster.objects["apps/v1/deployments", ALICE, dep.runtime["name"]].raw
    world.cluster.objects["v1/pods", ALICE, "pod-1"] = {
        "metadata": {**template["spec"]["template"]["metadata"], "name": "pod-1", "namespace": ALICE},
        "spec": template["spec"]["template"]["spec"],
        "status": {"phase": "Running"},
    }
    world.cluster[f"get /api/v1/namespaces/{ALICE}/pods/pod-1/log"] << b"model ready\n"
    assert await backend.logs(dep, folder=None, tail=5) == ["model ready"]
    await backend.stop(dep)

    jobs = KubernetesJobBackend(api_client=mine, namespace=ALICE, profiles_file=str(world.profiles))
    folder = tmp_path / "job"
    folder.mkdir()
    profile = load_profiles(world.profiles).profiles[0]
    task = job()
    task.runtime = await jobs.start(task, folder, {}, profile, secrets={"AWS_SECRET_ACCESS_KEY": "k"})
    assert (await jobs.status(task, folder)).get("state") != "failed"
    await jobs.stop(task, folder)
    spread = job()  # a distributed job on several nodes: a JobSet
    spread.id, spread.processes, spread.nodes = "0dd5e75e", 1, 2
    spread.runtime = await jobs.start(spread, folder, {}, profile)
    assert spread.runtime["kind"] == "JobSet" and (await jobs.status(spread, folder)).get("state") != "failed"
    await jobs.stop(spread, folder)

    status = await namespace_status(mine, ALICE)  # her status in kubernetes mode: the pods of her namespace
    assert status["namespace"] == ALICE and all(p["name"] for p in status["pods"])

    calls = world.cluster.calls
    assert calls and all(c.allowed and c.who == f"{ALICE}/reeflab-user" and c.namespace == ALICE for c in calls)
    used = {(c.verb, c.group, c.resource) for c in calls}
    assert used == grants(iso.USER_RULES), "the Role holds exactly what the backends use"


async def test_alices_server_cannot_list_read_or_delete_bobs_objects(world):
    await world.spawner("alice").ensure_user_namespace()
    await world.spawner("bob", 8).ensure_user_namespace()
    bobs = kb.KubernetesBackend(api_client=world.clients["bob"], namespace=BOB, server_namespace=BOB)
    bobs.profiles_file = str(world.profiles)
    dep = deployment("bob", env={"TOKEN": "bobs-s3cret"})
    dep.runtime = await bobs.start(dep, folder=None)
    world.cluster.calls.clear()

    mine = world.clients["alice"]
    core, apps = client.CoreV1Api(mine), client.AppsV1Api(mine)
    attempts = {
        "list his pods": core.list_namespaced_pod(BOB),
        "read his Secret": core.read_namespaced_secret(dep.runtime["name"], BOB),
        "list his Secrets": core.list_namespaced_secret(BOB),
        "delete his Deployment": apps.delete_namespaced_deployment(dep.runtime["name"], BOB),
        "list every pod": core.list_pod_for_all_namespaces(),
        "read the cluster's free capacity": cluster_capacity(mine),  # nodes and every pod: the hub's to read
        "read his namespace": core.read_namespace(BOB),
        "create a pod": core.create_namespaced_pod(ALICE, {"metadata": {"name": "x"}, "spec": {"containers": []}}),
    }
    for what, call in attempts.items():
        with pytest.raises(ApiException) as refused:
            await call
        assert refused.value.status == 403, what
    # through the backends too, as a kernel could configure them: a message, nothing done
    theirs = kb.KubernetesBackend(api_client=mine, namespace=BOB, server_namespace=BOB)
    theirs.profiles_file = str(world.profiles)
    with pytest.raises(ReefLabError, match=f"may not manage .* in namespace '{BOB}'"):
        await theirs.stop(dep)
    with pytest.raises(ReefLabError, match=f"may not manage .* in namespace '{BOB}'"):
        await theirs.start(deployment("alice", id="ca11ab1e"), folder=None)
    assert not any(call.allowed for call in world.cluster.calls)
    assert not world.cluster.objects["apps/v1/deployments", BOB, dep.runtime["name"]].deleted
    assert (await bobs.status(dep)).state == "starting"


@pytest.mark.parametrize(
    "existing, user, user_id, says",
    [
        ({"metadata": {"name": "reeflab-system"}}, "system", 9, "was not made by ReefLab for a user"),
        (iso.namespace_manifest(spec(BOB, owner="bob", owner_id="8")), "bob", 12, "belongs to another user"),
    ],
)
async def test_a_namespace_that_is_not_the_users_is_refused_and_left_alone(world, existing, user, user_id, says):
    name = existing["metadata"]["name"]
    world.cluster.namespaces[name] = json.loads(json.dumps(existing))  # a platform namespace; a deleted bob's
    hub = world.spawner(user, user_id)
    assert hub.namespace == name
    with pytest.raises(HTTPError) as refused:
        await hub._start()
    assert refused.value.status_code == 409 and says in refused.value.jupyterhub_message
    assert [c.verb for c in world.cluster.calls] == ["create", "get"], "nothing made or changed in it"
    await hub.delete_forever()  # deleting that user deletes nothing in it, not even a PVC of their name
    assert [c.verb for c in world.cluster.calls] == ["create", "get", "get"] and name in world.cluster.namespaces


async def test_deleting_a_user_deletes_their_namespace_and_a_namesake_starts_afresh(world):
    alice = world.spawner("alice")
    await alice.ensure_user_namespace()
    alice._storage_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": ALICE}}
    await alice.apply_storage_secret()
    await alice.delete_forever()
    assert ALICE not in world.cluster.namespaces
    assert world.cluster.objects["v1/secrets", ALICE, "keys"].deleted
    assert all(call.allowed for call in world.cluster.calls)
    again = world.spawner("alice", 99)  # a new user of the same name
    await again.ensure_user_namespace()
    assert world.cluster.namespaces[ALICE]["metadata"]["annotations"][iso.OWNER_ID] == "99"


async def test_the_namespace_follows_the_storage_mount_mode(world):
    await world.spawner("alice", storage_mount_mode="sidecar").ensure_user_namespace()
    labels = world.cluster.namespaces[ALICE]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    await world.spawner("alice", storage_csi_driver="rclone.csi.veloxpack.io").ensure_user_namespace()
    labels = world.cluster.namespaces[ALICE]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# ---------------------------------------------------------------- Pod Security and NetworkPolicies


def csi_connection(owner: str = "alice") -> StorageConnection:
    from pydantic import TypeAdapter
    from reeflab.storage.models import ConnectionRequest

    keys = {"kind": "s3", "name": "lake", "endpoint": "https://s3.example.org", "bucket": "lake-data"}
    request = TypeAdapter(ConnectionRequest).validate_python({**keys, "access_key": "AK", "secret_key": "SK"})
    return StorageConnection(owner=owner, created=datetime.now(UTC), spec=request, mounted=True)


def rendered_server(world: World, **traits) -> Manifest:
    async def render() -> Manifest:
        spawner = world.spawner("alice", **traits)
        await spawner.load_user_options()
        if traits.get("storage_mount_mode") or traits.get("storage_csi_driver"):
            mode, driver = spawner.storage_mount_mode, spawner.storage_csi_driver
            spec = render_mounts("alice", [csi_connection()], lambda c: {}, mode=mode, csi_driver=driver)
            spawner.extra_containers, spawner.volumes = spec.extra_containers, spec.volumes
        pod = await spawner.get_pod_manifest()
        return spawner.api.api_client.sanitize_for_serialization(pod)

    return render()


@pytest.mark.parametrize(
    "traits, violations",
    [
        ({}, []),
        ({"storage_csi_driver": "rclone.csi.veloxpack.io"}, []),
        ({"storage_mount_mode": "sidecar"}, ["privileged", "allowPrivilegeEscalation", "capabilities", "root"]),
    ],
)
async def test_the_users_server_pod_passes_pod_security_restricted_unless_sidecars(world, traits, violations):
    pod = await rendered_server(world, **traits)
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **pod}, K8S_VERSION, strict=True)
    found = " ".join(restricted_violations(pod["spec"]))
    assert all(word in found for word in violations) and bool(found) == bool(violations), found
    assert pod["spec"]["serviceAccountName"] == "reeflab-user" and pod["spec"]["automountServiceAccountToken"]


@pytest.mark.parametrize("mode, compliant", [("none", True), ("csi", True), ("sidecar", False)])
def test_deployment_and_job_pods_pass_pod_security_restricted_unless_sidecars(tmp_path, mode, compliant):
    (profiles := tmp_path / "profiles.yaml").write_text(PROFILES)
    profile = load_profiles(profiles).profiles[0]
    dep = deployment(storage=["lake"] if mode != "none" else [])
    mounts = kb.storage_mounts(dep, [csi_connection()], ALICE, lambda c: {}, mode=mode, csi_driver="csi.example.org")
    manifest = kb.deployment_manifest(dep, profile, "example.org/module:1", ALICE, mounts=mounts)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    assert (restricted_violations(pod) == []) is compliant
    assert pod["automountServiceAccountToken"] is False
    backend = KubernetesJobBackend(namespace=ALICE, profiles_file=str(profiles))
    task = backend.manifest(job(), tmp_path, profile, secret=job_name("0badf00d"))
    assert restricted_violations(task["spec"]["template"]["spec"]) == []
    assert task["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


HUB_POD = Pod(HUB_NS, {"component": "hub", "hub.jupyter.org/network-access-singleuser": "true"})
PROXY_POD = Pod(HUB_NS, {"component": "proxy", "hub.jupyter.org/network-access-singleuser": "true"})
INGRESS_POD = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})


async def test_other_users_pods_reach_neither_the_server_nor_the_deployments(world):
    pods: dict[str, Pod] = {}
    policies: list[Manifest] = []
    for user, uid in (("alice", 7), ("bob", 8)):
        spawner = world.spawner(user, uid)
        policies += iso.network_policy_manifests(spawner.isolation())
        await spawner.load_user_options()
        labels = (await spawner.get_pod_manifest()).metadata.labels
        pods[f"{user} server"] = Pod(spawner.namespace, labels)
        dep = deployment(user)
        ns = spawner.namespace
        policies.append(kb.network_policy_manifest(dep, ns, ns, ingress_from=[kb.KubernetesBackend().ingress_from[0]]))
        template = kb.deployment_manifest(dep, load_profiles(world.profiles).profiles[0], "img:1", ns)
        pods[f"{user} deployment"] = Pod(ns, template["spec"]["template"]["metadata"]["labels"])
        pods[f"{user} job"] = Pod(ns, {"app.kubernetes.io/name": "reeflab-job"})
    for policy in policies:
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    pods.update({"hub": HUB_POD, "proxy": PROXY_POD, "ingress controller": INGRESS_POD})
    expected = {  # source, target: may connect (server on 8888, deployments on 5000)
        ("bob server", "alice server"): False,
        ("bob server", "alice deployment"): False,
        ("bob deployment", "alice deployment"): False,
        ("bob job", "alice server"): False,
        ("ingress controller", "alice server"): False,
        ("hub", "alice deployment"): False,
        ("alice server", "alice deployment"): True,
        ("alice job", "alice deployment"): True,  # the same user's
        ("hub", "alice server"): True,
        ("proxy", "bob server"): True,
        ("ingress controller", "alice deployment"): True,  # only with an Ingress (the backend's policy)
    }
    for (source, target), allowed in expected.items():
        port = 5000 if "deployment" in target else 8888
        assert reachable(policies, pods[source], pods[target], port) is allowed, (source, target)


def test_a_registered_models_pod_and_mlflows_pod_pass_pod_security_restricted(tmp_path):
    """The init container fetching registered weights, and the cluster's MLflow (hub_config/kubernetes/mlflow.yaml)."""
    from reeflab.training.kubernetes import tracking_manifests

    (profiles := tmp_path / "profiles.yaml").write_text(PROFILES)
    source = {"REEFLAB_WEIGHTS_SOURCE": "s3://alice/models/m/1/", "REEFLAB_WEIGHTS_SHA256": "ab" * 32}
    dep = deployment(env=source)
    fetch = kb.fetch_container(dep, "http://s3.example.org")
    manifest = kb.deployment_manifest(
        dep, load_profiles(profiles).profiles[0], "example.org/module:1", ALICE, fetch=fetch
    )
    pod = manifest["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["fetch-weights"]
    assert restricted_violations(pod) == [] and pod["automountServiceAccountToken"] is False
    mlflow = tracking_manifests()[0]["spec"]["template"]["spec"]
    assert restricted_violations(mlflow) == [] and mlflow["automountServiceAccountToken"] is False
