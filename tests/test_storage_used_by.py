"""Storage used by the rest of the platform, with real servers: a notebook job reads an image list from a
WebDAV connection (wsgidav) and writes a CSV to an S3 connection (SeaweedFS) and a summary back to WebDAV;
the credentials reach the job only, never its record, its log, the API answers, the job folder or `ps`.
Deployments mount connections: locally on the real rclone mount, in kubernetes as validated sidecars."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import kubernetes_validate
import nbformat
import psutil
import pytest
from pydantic import ValidationError
from reeflab.deployments.backends import kubernetes as kb
from reeflab.deployments.models import Deployment, DeploymentRequest, Hardware
from reeflab.deployments.service import DeploymentService
from reeflab.errors import BadRequest
from reeflab.hub.config import REPO
from reeflab.jobs.models import JobRequest
from reeflab.profiles import load_profiles
from reeflab.storage.rclone import remote_env
from reeflab.storage.service import StorageService
from tornado.httpclient import HTTPClientError

pytestmark = pytest.mark.timeout(240)

READ_LIST = """\
import csv, os, boto3
images = open(os.environ["IMAGES"]).read().split()
rows = "".join(f"{name},{len(name)}\\n" for name in images)
bucket, _, key = os.environ["REPORT"].removeprefix("s3://").partition("/")
boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=("image,chars\\n" + rows).encode())
open(os.environ["SUMMARY"], "w").write(f"{len(images)} images\\n")
print("listed", len(images), "images", flush=True)"""


@pytest.fixture(scope="module")
def dav(dav):
    """The shared WebDAV server, with a list of images."""
    (dav.root / "images").mkdir()
    (dav.root / "images" / "list.txt").write_text("reef-001.jpg\nreef-002.jpg\nwreck-003.jpg\n")
    return dav


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)  # no hub: no platform connection, no activity
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(REPO / "hub_config" / "profiles.yaml")},
        "StorageService": {"root_dir": str(tmp_path / "storage-state")},
        "JobService": {"root_dir": str(tmp_path / "jobs"), "poll_interval": 0.3},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture
def reeflab(jp_serverapp, jp_asyncio_loop):
    services = jp_serverapp.web_app.settings["reeflab"]
    yield services
    jp_asyncio_loop.run_until_complete(services.jobs.stop_all())


class Api:
    """The REST API as the panel and the client call it; keeps every answer to look for secrets later."""

    def __init__(self, jp_fetch):
        self.jp_fetch = jp_fetch
        self.answers: list[bytes] = []

    async def __call__(self, method: str, *path: str, body=None, **kwargs):
        raw = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        try:
            response = await self.jp_fetch("reeflab", "api", *path, method=method, body=raw, **kwargs)
        except HTTPClientError as err:
            self.answers.append(err.response.body if err.response else b"")
            raise
        self.answers.append(response.body)
        return json.loads(response.body) if response.body else None

    async def refused(self, method: str, *path: str, body=None) -> tuple[int, str]:
        with pytest.raises(HTTPClientError) as err:
            await self(method, *path, body=body)
        return err.value.code, json.loads(err.value.response.body)["message"]


@pytest.fixture
def api(jp_fetch):
    return Api(jp_fetch)


async def connect(api: Api, dav, s3) -> list[str]:
    """A WebDAV folder and an S3 bucket, as a user connects them; returns their secrets."""
    await api(
        "POST",
        "storage",
        "connections",
        body={"kind": "webdav", "name": "cloud", "url": dav.url, "user": dav.user, "password": dav.password},
    )
    await api("POST", "storage", "connections",
              body={"kind": "s3", "name": "lake", "endpoint": s3.endpoint, "bucket": "ana",
                    "access_key": s3.ana_key["access_key"], "secret_key": s3.ana_key["secret_key"]})  # fmt: skip
    return [dav.password, s3.ana_key["secret_key"]]


def notebook(path: Path, *sources: str) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path.name


def command_lines() -> str:
    """Every process's command line, as `ps -ef` shows them to anyone on the machine."""
    lines = []
    for proc in psutil.process_iter():
        try:
            lines.append(" ".join(proc.cmdline()))
        except psutil.Error:
            pass
    return "\n".join(lines)


async def wait_for_job(api: Api, job_id: str, timeout: float = 150) -> tuple[dict, set[str]]:
    """The ended job, and every command line seen while it ran (rclone copies and the kernel included)."""
    seen: set[str] = set()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await api("GET", "jobs", job_id)
        seen.add(command_lines())
        if job["state"] in ("completed", "failed", "cancelled"):
            return job, seen
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {job}"
        await asyncio.sleep(0.2)


async def test_a_job_reads_webdav_and_writes_s3_and_no_secret_leaks(api, dav, s3, jp_root_dir, reeflab):
    secrets = await connect(api, dav, s3)
    name = notebook(jp_root_dir / "list.ipynb", "import time; time.sleep(1.5)", READ_LIST)
    body = {
        "notebook": name,
        "inputs": {"IMAGES": "cloud:images/list.txt"},
        "outputs": {"REPORT": "lake:reports/images.csv", "SUMMARY": "cloud:results/summary.txt"},
    }
    job = await api("POST", "jobs", body=body)
    assert job["inputs"] == body["inputs"] and job["outputs"] == body["outputs"]
    done, seen = await wait_for_job(api, job["id"])
    assert done["state"] == "completed", done

    # the S3 object and the WebDAV file, as the user finds them
    keys = {"aws_access_key_id": s3.ana_key["access_key"], "aws_secret_access_key": s3.ana_key["secret_key"]}
    ana = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1", **keys)
    csv = ana.get_object(Bucket="ana", Key="reports/images.csv")["Body"].read().decode()
    assert csv.splitlines() == ["image,chars", "reef-001.jpg,12", "reef-002.jpg,12", "wreck-003.jpg,13"]
    assert (dav.root / "results" / "summary.txt").read_text() == "3 images\n"
    listing = await api("GET", "storage", "connections", "cloud", "files", params={"path": "results"})
    assert [item["name"] for item in listing["items"]] == ["summary.txt"]

    # no secret anywhere a person or another user could look
    log = await api("GET", "jobs", job["id"], "log", params={"tail": "1000"})
    assert any("input IMAGES: copying rl_cloud:images/list.txt" in line for line in log["lines"])
    await api("GET", "jobs")
    folder = reeflab.jobs.folder(reeflab.jobs.get(done["owner"], job["id"]))
    on_disk = [path.read_bytes() for path in folder.rglob("*") if path.is_file() and path.suffix != ".txt"]
    output = (jp_root_dir / done["output"]).read_bytes()
    for secret in secrets:
        assert not any(secret.encode() in answer for answer in api.answers)
        assert not any(secret in line for line in log["lines"])
        assert not any(secret.encode() in text for text in [*on_disk, output])
        assert not any(secret in lines for lines in seen), "a secret was on a command line"
    assert folder.stat().st_mode & 0o077 == 0  # the scratch copies are the user's only


async def test_a_missing_input_fails_the_job_with_the_reason(api, dav, s3, jp_root_dir, reeflab):
    await connect(api, dav, s3)
    name = notebook(jp_root_dir / "list.ipynb", READ_LIST)
    body = {"notebook": name, "inputs": {"IMAGES": "cloud:images/nothing.txt"}, "outputs": {}}
    job = await api("POST", "jobs", body=body)
    done, _ = await wait_for_job(api, job["id"])
    assert done["state"] == "failed"
    assert done["reason"].startswith("input IMAGES could not be copied from rl_cloud:images/nothing.txt")
    assert done["progress"]["cell"] == 0  # the notebook never started


@pytest.mark.parametrize(
    "change, says",
    [
        ({"inputs": {"IMAGES": "nowhere:images"}}, "input IMAGES: No storage connection 'nowhere'"),
        ({"inputs": {"IMAGES": "images/list.txt"}}, "write the location as '<connection>:<path>'"),
        ({"inputs": {"AWS_SECRET_ACCESS_KEY": "lake:x"}}, "reserved by ReefLab"),
        ({"inputs": {"IMAGES": "cloud:../../etc"}}, "'..' is not allowed"),
        ({"inputs": {"A": "cloud:a"}, "outputs": {"A": "lake:a"}}, "either an input or an output"),
    ],
)
async def test_bad_storage_references_are_refused_and_nothing_runs(api, dav, s3, jp_root_dir, reeflab, change, says):
    await connect(api, dav, s3)
    name = notebook(jp_root_dir / "list.ipynb", READ_LIST)
    status, message = await api.refused("POST", "jobs", body={"notebook": name, **change})
    assert status == 400 and says in message, message
    assert (await api("GET", "jobs"))["jobs"] == []


async def test_another_users_job_cannot_use_your_connections(api, dav, s3, jp_root_dir, reeflab):
    await connect(api, dav, s3)
    name = notebook(jp_root_dir / "list.ipynb", READ_LIST)
    request = JobRequest(notebook=name, inputs={"IMAGES": "cloud:images/list.txt"})
    profiles = reeflab.profiles.catalog()
    with pytest.raises(BadRequest, match="No storage connection 'cloud'"):
        await reeflab.jobs.submit("bob", [], request, profiles)
    assert reeflab.jobs.list("bob") == []


# -- deployments ---------------------------------------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path, dav, s3):
    """Ana's storage service (as her server has it) with a WebDAV folder and an S3 bucket."""
    service = StorageService(root_dir=str(tmp_path / "state"), workspace=str(tmp_path / "home"), mount_timeout=30)
    (tmp_path / "home").mkdir()
    dav_body = {"kind": "webdav", "name": "cloud", "url": dav.url, "user": dav.user, "password": dav.password}
    service.create("ana", dav_body)
    keys = {"access_key": s3.ana_key["access_key"], "secret_key": s3.ana_key["secret_key"]}
    service.create("ana", {"kind": "s3", "name": "lake", "endpoint": s3.endpoint, "bucket": "ana", **keys})
    yield service
    for connection in service.list("ana"):
        service.unmount("ana", connection.name)


def deployment(**fields) -> Deployment:
    base = dict(id="d3adb33f", owner="ana", module="fish-detector", entry_point="fish_detector", title="Fish")
    base.update(kind="deployment", backend="local", created=datetime(2026, 11, 23, tzinfo=UTC), profile="cpu")
    return Deployment(hardware=Hardware(cpu=1, memory_MB=1000), **{**base, **fields})


async def test_a_local_deployment_finds_its_storage_mounted(storage, dav, tmp_path):
    service = DeploymentService(root_dir=str(tmp_path / "deployments"), storage=storage)
    env = await asyncio.get_running_loop().run_in_executor(None, service.backend._mounts, deployment(storage=["cloud"]))
    assert list(env) == ["REEFLAB_STORAGE_CLOUD"]
    mounted = Path(env["REEFLAB_STORAGE_CLOUD"])
    assert mounted == tmp_path / "home" / "storage" / "cloud"
    assert (mounted / "images" / "list.txt").read_text().startswith("reef-001.jpg")
    assert dav.password not in json.dumps(env)

    service._check_storage("ana", ["cloud", "lake"])  # hers: accepted
    with pytest.raises(BadRequest, match="storage: No storage connection 'cloud'"):
        service._check_storage("bob", ["cloud"])  # not bob's
    with pytest.raises(ValidationError, match="REEFLAB_STORAGE_CLOUD is set by ReefLab"):
        DeploymentRequest(module="fish-detector", env={"REEFLAB_STORAGE_CLOUD": "/tmp"})


async def test_a_kubernetes_deployment_mounts_its_storage_with_sidecars(storage, dav, s3, tmp_path):
    profiles = "image: example.org/lab:1\nprofiles:\n  - {slug: cpu, display_name: CPU, cpu: 2, memory: 4G}\n"
    (path := tmp_path / "profiles.yaml").write_text(profiles)
    dep = deployment(storage=["cloud", "lake"], env={"THRESHOLD": "0.4"}, backend="kubernetes")
    connections = [storage.get("ana", name) for name in dep.storage]
    mounts = kb.storage_mounts(dep, connections, "reeflab", remote_env)
    profile = load_profiles(path).profiles[0]
    manifest = kb.deployment_manifest(dep, profile, "example.org/module:1", "reeflab", mounts=mounts)
    for each in (manifest, mounts.secret, kb.secret_manifest(dep, "reeflab")):
        kubernetes_validate.validate(each, "1.33.0", strict=True)

    pod = manifest["spec"]["template"]["spec"]
    module, *sidecars = pod["containers"]
    env = {e["name"]: e["value"] for e in module["env"]}
    assert env["REEFLAB_STORAGE_CLOUD"] == "/mnt/storage/cloud" and env["REEFLAB_STORAGE_LAKE"] == "/mnt/storage/lake"
    assert module["volumeMounts"] == [
        {"name": "reeflab-storage", "mountPath": "/mnt/storage", "mountPropagation": "HostToContainer"}
    ]
    assert module["envFrom"] == [{"secretRef": {"name": "reeflab-d3adb33f"}}]  # the user's env, not the keys
    assert [s["args"][1] for s in sidecars] == ["rl_cloud:", "rl_lake:ana"]
    assert all(s["envFrom"] == [{"secretRef": {"name": "reeflab-d3adb33f-storage"}}] for s in sidecars)
    assert all(s["securityContext"]["runAsUser"] == 0 for s in sidecars)  # the pod's default is non-root
    assert mounts.secret["metadata"]["name"] == "reeflab-d3adb33f-storage"
    assert mounts.secret["metadata"]["labels"]["app.kubernetes.io/instance"] == "reeflab-d3adb33f"
    text = json.dumps(manifest)
    assert dav.password not in text and s3.ana_key["secret_key"] not in text
    keys = {k: base64.b64decode(v).decode() for k, v in mounts.secret["data"].items()}
    assert keys["RCLONE_CONFIG_RL_LAKE_SECRET_ACCESS_KEY"] == s3.ana_key["secret_key"]
