"""The model registry in kubernetes mode, against the platform's real S3 (SeaweedFS, tests/conftest.py `s3`):
registering uploads the version to the owner's bucket, a Kubernetes deployment of it renders (valid against the
schema) an init container that fetches exactly those weights, and that fetch command, run here against the real
S3, gets them; with one's own key, another user's weights are out of reach."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import kubernetes_validate
import pytest
from reeflab.catalog.service import CatalogService
from reeflab.deployments.backends import kubernetes as kb
from reeflab.deployments.models import Deployment, Hardware
from reeflab.modules.fish_detector import model as fish_model
from reeflab.modules.metadata import METADATA_FILE
from reeflab.profiles import load_profiles
from reeflab.storage.platform_s3 import PlatformS3, StorageUnavailable, user_bucket
from reeflab.training import weights_store
from reeflab.training.registry import WEIGHTS_ENV, ModelRegistry, RegisterRequest
from reeflab.training.weights_store import ObjectStore

pytestmark = pytest.mark.timeout(300)

K8S_VERSION = "1.33.0"
NS = "reeflab-ana"
IMAGE = "quay.io/reeflab/module:0.1.0"
FISH_WEIGHTS = Path(fish_model.model_path())
PROFILES = Path(__file__).resolve().parents[1] / "hub_config" / "profiles.yaml"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The yolo-detector module as the catalogue gives it: the base of registered detection weights."""
    work = tmp_path_factory.mktemp("catalog")
    catalog = CatalogService(cache_dir=str(work / "cache"), registry_dir=str(work / "models"), remote_indexes=[])
    return catalog.get("yolo-detector")


@pytest.fixture(scope="module")
def stores(s3):
    """ana's and bob's places on the platform S3: their own bucket and their own key, as the platform makes them."""
    bob_key = PlatformS3(s3.endpoint, s3.key).user_key("bob")
    return {
        "ana": ObjectStore(s3.endpoint, s3.ana_key["access_key"], s3.ana_key["secret_key"], user_bucket("ana")),
        "bob": ObjectStore(s3.endpoint, bob_key["access_key"], bob_key["secret_key"], user_bucket("bob")),
    }


def registry_of(owner: str, stores: dict, tmp_path: Path) -> tuple[ModelRegistry, Path]:
    home = tmp_path / owner
    (home / "runs").mkdir(parents=True)
    shutil.copy(FISH_WEIGHTS, home / "runs" / "fish.pt")
    return ModelRegistry(tmp_path / f"{owner}-models", home, store=lambda who: stores[who]), home


def register(registry: ModelRegistry, owner: str, base, name: str, version: str = "1.0.0"):
    request = RegisterRequest(name=name, version=version, base_module="yolo-detector", weights="runs/fish.pt")
    return registry.register(owner, request, base, registry.source_file("runs/fish.pt"), "detect")


def deployment_of(entry, owner: str = "ana", **env) -> Deployment:
    """A deployment of the registered module, as the deployment service makes it (its env: the entry's deploy_env)."""
    return Deployment(
        id="d3adb33f", owner=owner, module=entry.id, entry_point=entry.entry_point, title=entry.title,
        kind="deployment", backend="kubernetes", created=datetime(2026, 12, 6, tzinfo=UTC), profile="cpu-small",
        hardware=Hardware(cpu=1, memory_MB=2000), env={**entry.deploy_env, **env},
    )  # fmt: skip


def render(dep: Deployment, endpoint: str, key: dict[str, str]) -> dict:
    profile = {p.slug: p for p in load_profiles(PROFILES).profiles}["cpu-small"]
    fetch = kb.fetch_container(dep, endpoint)
    manifests = {
        "deployment": kb.deployment_manifest(dep, profile, IMAGE, NS, fetch=fetch),
        "secret": kb.secret_manifest(dep, NS),
        "weights_secret": kb.weights_secret_manifest(dep, NS, key),
    }
    for manifest in manifests.values():
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    return manifests


def run_fetch(manifests: dict, dest: Path) -> subprocess.CompletedProcess:
    """The init container's command, run here: its env, its Secret's values, the emptyDir replaced by `dest`."""
    [init] = manifests["deployment"]["spec"]["template"]["spec"]["initContainers"]
    command = init["command"]
    assert command[:3] == ["python", "-m", "reeflab.training.weights_store"]
    assert command[-1] == f"--dest={kb.WEIGHTS_DIR}"
    assert init["envFrom"] == [{"secretRef": {"name": manifests["weights_secret"]["metadata"]["name"]}}]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REEFLAB_"))}
    env.update({e["name"]: e["value"] for e in init["env"]}, **manifests["weights_secret"]["stringData"])
    argv = [sys.executable, *command[1:-1], f"--dest={dest}"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_registered_model_deploys_in_kubernetes_with_exactly_its_weights(s3, stores, base, tmp_path):
    registry, _ = registry_of("ana", stores, tmp_path)
    model = register(registry, "ana", base, "reef-fish")
    version = model.versions[-1]
    assert version.location == f"s3://{user_bucket('ana')}/models/reef-fish/1.0.0/"
    listed = stores["ana"].client().list_objects_v2(Bucket=user_bucket("ana"), Prefix="models/reef-fish/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        f"models/reef-fish/1.0.0/{METADATA_FILE}",
        "models/reef-fish/1.0.0/weights.pt",
    ]

    [entry] = registry.entries()
    dep = deployment_of(entry, API_TOKEN="s3cret")
    manifests = render(
        dep, s3.endpoint, {"access_key": stores["ana"].access_key, "secret_key": stores["ana"].secret_key}
    )
    pod = manifests["deployment"]["spec"]["template"]["spec"]
    [module] = pod["containers"]
    [init] = pod["initContainers"]
    env = {e["name"]: e["value"] for e in module["env"]}
    # the module loads a local file, as in local mode: the emptyDir the init container filled, read-only
    assert env[WEIGHTS_ENV] == f"{kb.WEIGHTS_DIR}/weights.pt"
    assert {"name": "reeflab-weights", "mountPath": kb.WEIGHTS_DIR, "readOnly": True} in module["volumeMounts"]
    assert {"name": "reeflab-weights", "emptyDir": {"sizeLimit": "2Gi"}} in pod["volumes"]
    assert init["volumeMounts"] == [{"name": "reeflab-weights", "mountPath": kb.WEIGHTS_DIR}]
    assert f"--source={version.location}" in init["command"] and f"--sha256={version.sha256}" in init["command"]
    # the key is the init container's only: not in the module's env nor its Secret, which keeps the user's values
    assert manifests["secret"]["stringData"] == {"API_TOKEN": "s3cret"}
    assert "AWS_ACCESS_KEY_ID" not in env and module["envFrom"] == [{"secretRef": {"name": kb.object_name(dep.id)}}]
    assert manifests["weights_secret"]["stringData"]["AWS_ACCESS_KEY_ID"] == stores["ana"].access_key

    # the fetch itself, against the real S3: exactly the registered bytes, and the version's metadata
    dest = tmp_path / "emptydir"
    done = run_fetch(manifests, dest)
    assert done.returncode == 0, done.stderr
    assert sha256(dest / "weights.pt") == version.sha256 == sha256(FISH_WEIGHTS)
    stored_metadata = registry.root / "reef-fish" / "1.0.0" / METADATA_FILE
    assert (dest / METADATA_FILE).read_text() == stored_metadata.read_text()

    # deleting the model deletes its objects too
    registry.delete("reef-fish")
    listed = stores["ana"].client().list_objects_v2(Bucket=user_bucket("ana"), Prefix="models/reef-fish/")
    assert not listed.get("Contents")


def test_another_users_weights_are_out_of_reach_and_a_changed_object_is_refused(s3, stores, base, tmp_path):
    bobs, _ = registry_of("bob", stores, tmp_path)
    bob_version = register(bobs, "bob", base, "bob-fish").versions[-1]
    assert bob_version.location.startswith(f"s3://{user_bucket('bob')}/")
    [bob_entry] = bobs.entries()
    ana_key = {"access_key": stores["ana"].access_key, "secret_key": stores["ana"].secret_key}

    # ana's deployment pointed at bob's weights, with her key: refused by S3, nothing written
    dest = tmp_path / "stolen"
    done = run_fetch(render(deployment_of(bob_entry, owner="ana"), s3.endpoint, ana_key), dest)
    assert done.returncode == 1
    assert "cannot fetch the registered weights" in done.stderr and "(403)" in done.stderr, done.stderr
    assert not (dest / "weights.pt").exists()
    # ... while bob's own deployment, with his key, fetches them
    bob_key = {"access_key": stores["bob"].access_key, "secret_key": stores["bob"].secret_key}
    done = run_fetch(render(deployment_of(bob_entry, owner="bob"), s3.endpoint, bob_key), tmp_path / "bobs")
    assert done.returncode == 0 and sha256(tmp_path / "bobs" / "weights.pt") == bob_version.sha256, done.stderr

    # her own version, changed in the bucket after registration: the digest check refuses it
    anas, _ = registry_of("ana", stores, tmp_path)
    version = register(anas, "ana", base, "reef-fish-2").versions[-1]
    bucket, prefix = weights_store.split(version.location)
    stores["ana"].client().put_object(Bucket=bucket, Key=prefix + "weights.pt", Body=b"not the registered weights")
    [entry] = anas.entries()
    dest = tmp_path / "changed"
    done = run_fetch(render(deployment_of(entry), s3.endpoint, ana_key), dest)
    assert done.returncode == 1 and f"not the registered {version.sha256}" in done.stderr, done.stderr
    assert not (dest / "weights.pt").exists()


def test_without_platform_storage_nothing_is_registered(stores, base, tmp_path):
    registry, home = registry_of("ana", stores, tmp_path)
    registry.store = lambda owner: None
    with pytest.raises(StorageUnavailable, match="platform storage"):
        register(registry, "ana", base, "reef-fish")
    assert registry.list() == []


# -- through ReefLab's API: a server whose deployments go to Kubernetes registers into the owner's bucket ----------


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {
        **jp_server_config,
        "HubIdentity": {"standalone_name": "ana"},
        "DeploymentService": {
            "root_dir": str(tmp_path / "deployments"),
            "backend_class": "reeflab.deployments.backends.kubernetes.KubernetesBackend",
        },
        "CatalogService": {"cache_dir": str(tmp_path / "cache"), "registry_dir": str(tmp_path / "models")},
        "ModuleCheckService": {"check_registrations": False},
        "TrackingService": {"tracking_uri": ""},
        "StorageService": {"root_dir": str(tmp_path / "storage"), "platform_config_url": None},
    }


async def test_registering_on_a_kubernetes_server_uploads_to_the_owners_bucket(jp_fetch, jp_serverapp, jp_root_dir, s3):
    import json

    from tornado.httpclient import HTTPClientError

    (jp_root_dir / "runs").mkdir()
    shutil.copy(FISH_WEIGHTS, jp_root_dir / "runs" / "fish.pt")
    body = {"name": "reef-api", "version": "1.0.0", "base_module": "yolo-detector", "weights": "runs/fish.pt"}

    async def post():
        answer = await jp_fetch("reeflab", "api", "training", "models", method="POST", body=json.dumps(body))
        return json.loads(answer.body)

    # no platform storage yet: refused, saying why, and nothing registered
    with pytest.raises(HTTPClientError) as err:
        await post()
    assert err.value.code == 503 and "platform storage" in json.loads(err.value.response.body)["message"]
    storage = jp_serverapp.web_app.settings["reeflab"].storage
    storage.set_platform_connection("ana", s3.endpoint, s3.ana_key["access_key"], s3.ana_key["secret_key"], "ana")
    model = await post()
    assert model["versions"][0]["location"] == "s3://ana/models/reef-api/1.0.0/"
    got = s3.client(key=s3.ana_key).get_object(Bucket="ana", Key="models/reef-api/1.0.0/weights.pt")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == model["versions"][0]["sha256"] == sha256(FISH_WEIGHTS)
