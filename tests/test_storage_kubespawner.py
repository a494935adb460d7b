"""Mounts at scale: KubeSpawner gives a user's pod the connections the user mounted, as inline CSI volumes
(`storage_csi_driver`), or as privileged rclone sidecars where the operator opted into them.

Rendered offline with `KubeSpawner(_mock=True)` from the connection store the hub reads, validated with
kubernetes-validate; the credentials go into the user's Secret (created before the pod), never the pod."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
from kubernetes_asyncio.client.rest import ApiException
from pydantic import TypeAdapter
from reeflab.hub.config import configure_kubernetes
from reeflab.hub.spawners import ReefLabKubeSpawner
from reeflab.storage.kubernetes import secret_name
from reeflab.storage.models import ConnectionRequest, StorageConnection
from reeflab.storage.store import ConnectionStore
from traitlets.config import Config

K8S_VERSION = "1.33.0"
PROFILES = Path(__file__).resolve().parents[1] / "hub_config" / "profiles.yaml"
SECRETS = {"lake": "s3-secret-Zq81", "cloud": "app-pass-Kx02", "old": "s3-old-Pp55", "bobs": "bob-secret-Yy77"}


def connection(owner: str, mounted: bool, **spec) -> StorageConnection:
    spec = TypeAdapter(ConnectionRequest).validate_python(spec)
    return StorageConnection(owner=owner, created=datetime.now(UTC), spec=spec, mounted=mounted)


def s3(owner: str, name: str, mounted: bool) -> StorageConnection:
    keys = {"access_key": "AK" + name, "secret_key": SECRETS[name]}
    return connection(
        owner, mounted, kind="s3", name=name, endpoint="https://s3.example.org", bucket=f"{owner}-data", **keys
    )


@pytest.fixture
def store(tmp_path) -> ConnectionStore:
    """What users' servers wrote (StorageService.root_dir on a volume the hub reads too)."""
    found = ConnectionStore(tmp_path / "storage")
    found.save(s3("alice", "lake", mounted=True))
    found.save(connection("alice", True, kind="webdav", name="cloud", user="alice", password=SECRETS["cloud"],
                          url="https://cloud.example.org/remote.php/dav/files/alice"))  # fmt: skip
    found.save(s3("alice", "old", mounted=False))  # connected, not mounted: no sidecar
    found.save(s3("bob", "bobs", mounted=True))  # another user's
    return found


@pytest.fixture
def make_spawner(kubespawner, no_network, store):
    def make(name: str = "alice", **traits) -> ReefLabKubeSpawner:
        traits = {"storage_root": str(store.root), "storage_mount_mode": "sidecar", **traits}
        return kubespawner(PROFILES, name, **traits)

    return make


async def spawn(spawner: ReefLabKubeSpawner) -> dict:
    await spawner.load_user_options()
    pod = spawner.api.api_client.sanitize_for_serialization(await spawner.get_pod_manifest())
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    return pod


def sidecars(pod: dict) -> list[str]:
    return sorted(c["args"][1] for c in pod["spec"]["containers"] if c["name"].startswith("rclone-"))


class Secrets:
    """The Secrets part of the Kubernetes API, as the spawner calls it (the first create may find one)."""

    def __init__(self, exists: bool):
        self.exists = exists
        self.calls: list[tuple[str, dict]] = []

    async def create_namespaced_secret(self, namespace, body):
        self.calls.append(("create", body))
        if self.exists:
            raise ApiException(status=409, reason="AlreadyExists")

    async def replace_namespaced_secret(self, name, namespace, body):
        self.calls.append(("replace", body))


async def test_the_users_mounted_connections_become_sidecars_and_a_secret(make_spawner):
    spawner = make_spawner("alice")
    pod = await spawn(spawner)
    assert sidecars(pod) == ["rl_cloud:", "rl_lake:alice-data"]  # not 'old' (unmounted), not bob's
    notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    assert {"name": "reeflab-storage", "mountPath": "/home/jovyan/storage", "mountPropagation": "HostToContainer"} in [
        {k: m[k] for k in ("name", "mountPath", "mountPropagation") if k in m} for m in notebook["volumeMounts"]
    ]
    assert not any(secret in json.dumps(pod) for secret in SECRETS.values())

    for exists in (False, True):  # the first spawn creates it, later ones replace it with the current keys
        spawner.api = api = Secrets(exists)
        await spawner.apply_storage_secret()
        assert [verb for verb, _ in api.calls] == (["create", "replace"] if exists else ["create"])
        secret = api.calls[-1][1]
        kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
        assert secret["metadata"]["name"] == secret_name("alice")
        assert secret["metadata"]["namespace"] == spawner.namespace == "reeflab-alice"  # the user's own
        values = {base64.b64decode(v).decode() for v in secret["data"].values()}
        assert SECRETS["lake"] in values and SECRETS["old"] not in values and SECRETS["bobs"] not in values


async def test_a_respawn_after_unmounting_has_no_sidecar_left(make_spawner, store):
    spawner = make_spawner("alice")
    assert len(sidecars(await spawn(spawner))) == 2
    for name in ("lake", "cloud"):
        unmounted = store.load("alice")[name]
        unmounted.mounted = False
        store.save(unmounted)
    pod = await spawn(spawner)  # the same spawner object, as the hub keeps it
    assert sidecars(pod) == []
    assert all(v["name"] != "reeflab-storage" for v in pod["spec"].get("volumes") or [])
    spawner.api = api = Secrets(False)
    await spawner.apply_storage_secret()
    assert api.calls == []


async def test_without_a_storage_root_nothing_is_added(make_spawner):
    spawner = make_spawner("bob")
    spawner.storage_root = ""
    assert sidecars(await spawn(spawner)) == []


CSI = "rclone.csi.veloxpack.io"


async def test_with_a_csi_driver_connections_are_inline_volumes_and_nothing_is_privileged(make_spawner):
    spawner = make_spawner("alice", storage_mount_mode="csi", storage_csi_driver=CSI)
    pod = await spawn(spawner)
    assert sidecars(pod) == [] and len(pod["spec"]["containers"]) == 1
    volumes = {v["name"]: v["csi"] for v in pod["spec"]["volumes"] if "csi" in v}
    assert sorted((v["volumeAttributes"]["remote"], v["volumeAttributes"]["remotePath"]) for v in volumes.values()) == [
        ("rl_cloud", ""),
        ("rl_lake", "alice-data"),
    ]  # not 'old' (unmounted), not bob's
    for volume in volumes.values():
        assert volume["driver"] == CSI and volume["nodePublishSecretRef"] == {"name": secret_name("alice")}
        assert {"uid": "1000", "gid": "100"}.items() <= volume["volumeAttributes"].items()  # jovyan may write
    notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    paths = sorted(m["mountPath"] for m in notebook["volumeMounts"] if m["name"] in volumes)
    assert paths == ["/home/jovyan/storage/cloud", "/home/jovyan/storage/lake"]
    assert not any(secret in json.dumps(pod) for secret in SECRETS.values())
    env = spawner.get_env()
    assert (env["REEFLAB_STORAGE_MOUNTS"], env["REEFLAB_STORAGE_CSI_DRIVER"]) == ("csi", CSI)  # deployments too

    spawner.api = api = Secrets(False)
    await spawner.apply_storage_secret()
    [(_, secret)] = api.calls
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    config = base64.b64decode(secret["data"]["configData"]).decode()
    assert "[rl_lake]" in config and "[rl_cloud]" in config and "[rl_old]" not in config
    assert f"secret_access_key = {SECRETS['lake']}" in config and SECRETS["bobs"] not in config


@pytest.mark.parametrize("driver", ["", CSI])
async def test_without_an_opt_in_or_a_csi_driver_nothing_is_mounted(make_spawner, driver):
    spawner = make_spawner("alice", storage_mount_mode="none", storage_csi_driver=driver)
    pod = await spawn(spawner)
    assert sidecars(pod) == [] and not any("csi" in v for v in pod["spec"].get("volumes") or [])
    assert spawner._storage_secret is None and spawner.get_env()["REEFLAB_STORAGE_MOUNTS"] == "none"


@pytest.mark.parametrize("driver, mode", [("", "none"), (CSI, "csi")])
def test_the_default_mount_mode_is_csi_only_with_a_driver(make_spawner, jp_asyncio_loop, driver, mode):
    async def made() -> str:
        c = Config()
        c.Spawner.environment = {"REEFLAB_PROFILES_FILE": str(PROFILES)}
        configure_kubernetes(c)
        c.ReefLabKubeSpawner.storage_csi_driver = driver
        user = SimpleNamespace(name="alice", id=7, url="/user/alice/", groups=[])
        return ReefLabKubeSpawner(_mock=True, user=user, config=c).storage_mount_mode

    assert jp_asyncio_loop.run_until_complete(made()) == mode
