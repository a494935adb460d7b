"""Storage mounts in kubernetes mode, offline: rclone sidecars rendered into the pod KubeSpawner
makes, validated with kubernetes-validate; secrets only in the Secret, never in the pod."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import kubernetes_validate
import pytest
from pydantic import TypeAdapter
from reeflab.errors import BadRequest
from reeflab.storage.kubernetes import SIDECAR_ROOT, rclone_config, render_mounts, secret_name
from reeflab.storage.models import ConnectionRequest, StorageConnection
from reeflab.storage.rclone import remote_env

K8S_VERSION = "1.33.0"
PROFILES = Path(__file__).resolve().parents[1] / "hub_config" / "profiles.yaml"
S3_SECRET = "s3-secret-Zq81"
DAV_PASSWORD = "app-pass-Kx02"


def connection(**spec) -> StorageConnection:
    return StorageConnection(
        owner="alice", created=datetime.now(UTC), spec=TypeAdapter(ConnectionRequest).validate_python(spec)
    )


CONNECTIONS = [
    connection(kind="s3", name="lake", endpoint="https://minio.example.org", bucket="alice", prefix="fish",
               access_key="AK1", secret_key=S3_SECRET),
    connection(kind="webdav", name="nextcloud", url="https://cloud.example.org/remote.php/dav/files/alice",
               user="alice", password=DAV_PASSWORD),
]  # fmt: skip


@pytest.fixture
def spawner(kubespawner, no_network):
    """A KubeSpawner as the hub config makes it; rendering must not touch the network."""
    return lambda: kubespawner(PROFILES)  # made inside the test's running loop, as KubeSpawner wants


async def test_sidecars_mount_each_connection_in_the_users_pod(spawner):
    spec = render_mounts("alice", CONNECTIONS, remote_env, namespace="reeflab", mode="sidecar")
    spawner = spawner()
    spawner.extra_containers = spec.extra_containers
    spawner.volumes = spec.volumes
    spawner.volume_mounts = spec.volume_mounts
    await spawner.load_user_options()
    pod = spawner.api.api_client.sanitize_for_serialization(await spawner.get_pod_manifest())
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    kubernetes_validate.validate(spec.secret, K8S_VERSION, strict=True)

    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    notebook = containers["notebook"]
    assert {"name": "reeflab-storage", "mountPath": "/home/jovyan/storage", "mountPropagation": "HostToContainer"} in [
        {k: m[k] for k in ("name", "mountPath", "mountPropagation") if k in m} for m in notebook["volumeMounts"]
    ]
    sidecars = [c for name, c in containers.items() if name.startswith("rclone-")]
    assert [c["args"][1:3] for c in sidecars] == [
        ["rl_lake:alice/fish", f"{SIDECAR_ROOT}/lake"],
        ["rl_nextcloud:", f"{SIDECAR_ROOT}/nextcloud"],
    ]
    for sidecar in sidecars:
        assert sidecar["envFrom"] == [{"secretRef": {"name": secret_name("alice")}}]
        assert sidecar["volumeMounts"][0]["mountPropagation"] == "Bidirectional"
        assert sidecar["securityContext"]["privileged"] is True

    # credentials: in the Secret only (WebDAV password obscured, as rclone wants it)
    assert S3_SECRET not in json.dumps(pod) and DAV_PASSWORD not in json.dumps(pod)
    secret = {k: base64.b64decode(v).decode() for k, v in spec.secret["data"].items()}
    assert secret["RCLONE_CONFIG_RL_LAKE_SECRET_ACCESS_KEY"] == S3_SECRET
    assert secret["RCLONE_CONFIG_RL_NEXTCLOUD_TYPE"] == "webdav"
    assert secret["RCLONE_CONFIG_RL_NEXTCLOUD_PASS"] not in ("", DAV_PASSWORD)


def test_no_connection_renders_nothing_in_the_pod():
    spec = render_mounts("alice", [], remote_env)
    assert spec.extra_containers == spec.volumes == spec.volume_mounts == []


def test_odd_user_names_give_valid_kubernetes_names():
    spec = render_mounts("Ana.López@uni.example", CONNECTIONS[:1], remote_env)
    kubernetes_validate.validate(spec.secret, K8S_VERSION, strict=True)
    assert spec.secret["metadata"]["name"] != secret_name("ana-lopez-uni-example")


CSI = "rclone.csi.veloxpack.io"


# mode, driver: sidecars, volumes of the pod, what the Secret holds
MODES = [
    ("sidecar", "", 2, ["reeflab-storage"], "RCLONE_CONFIG_RL_LAKE_SECRET_ACCESS_KEY"),
    ("csi", CSI, 0, ["storage-lake", "storage-nextcloud"], "configData"),
    ("none", "", 0, [], None),
]


@pytest.mark.parametrize("mode, driver, containers, volumes, key", MODES)
def test_each_mount_mode_renders_its_own_volumes(mode, driver, containers, volumes, key):
    spec = render_mounts("alice", CONNECTIONS, remote_env, namespace="reeflab", mode=mode, csi_driver=driver)
    kubernetes_validate.validate(spec.secret, K8S_VERSION, strict=True)
    assert len(spec.extra_containers) == containers
    names = [v["name"] for v in spec.volumes]
    assert len(names) == len(volumes) and all(n.startswith(p) for n, p in zip(names, volumes, strict=True))
    assert (key in spec.secret["data"]) if key else spec.secret["data"] == {}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    notebook = {"name": "notebook", "image": "img", "volumeMounts": spec.volume_mounts}
    pod["spec"] = {"containers": [notebook, *spec.extra_containers], "volumes": spec.volumes}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert S3_SECRET not in json.dumps(pod) and DAV_PASSWORD not in json.dumps(pod)
    assert all(not c["securityContext"].get("privileged") for c in spec.extra_containers) == (mode != "sidecar")


def test_the_csi_secret_is_one_rclone_config_with_a_section_per_connection():
    spec = render_mounts("alice", CONNECTIONS, remote_env, mode="csi", csi_driver=CSI, uid=1001, gid=101)
    config = base64.b64decode(spec.secret["data"]["configData"]).decode()
    lake, nextcloud = config.split("\n\n")
    assert lake.splitlines()[:2] == ["[rl_lake]", "type = s3"]
    assert f"secret_access_key = {S3_SECRET}" in lake and "endpoint = https://minio.example.org" in lake
    assert nextcloud.splitlines()[:2] == ["[rl_nextcloud]", "type = webdav"] and DAV_PASSWORD not in nextcloud
    attributes = spec.volumes[0]["csi"]["volumeAttributes"]
    assert (attributes["remote"], attributes["remotePath"], attributes["uid"], attributes["gid"]) == (
        "rl_lake",
        "alice/fish",
        "1001",
        "101",
    )


@pytest.mark.parametrize("value", ["alice\ntype = local", "alice\r[other]", "a\x00b", "tab\tbed"])
def test_a_setting_that_would_add_lines_to_the_rclone_config_is_refused(value):
    """A WebDAV user name like 'x\\ntype = local' would turn the remote into the node's own files."""
    hostile = connection(kind="webdav", name="evil", url="https://cloud.example.org/dav", user=value, password="p")
    with pytest.raises(BadRequest, match="'evil' has a control character"):
        rclone_config([hostile], remote_env)


@pytest.mark.parametrize(
    "mode, driver, says", [("csi", "", "needs the name of the CSI driver"), ("fuse", "", "use one of csi, sidecar")]
)
def test_a_mode_without_what_it_needs_is_an_error(mode, driver, says):
    with pytest.raises(ValueError, match=says):
        render_mounts("alice", CONNECTIONS, remote_env, mode=mode, csi_driver=driver)
