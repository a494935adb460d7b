"""rclone FUSE mounts at ~/storage/<name>: files written through the mount reach the real server,
mounts come back after a server restart, and without FUSE the user is told to copy/sync instead."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest
from reeflab.storage.service import StorageService
from reeflab.testing.process import wait_until
from tornado.httpclient import HTTPClientError

# FUSE is part of the test machine (make install-test installs fuse3): no FUSE fails, it does not skip
pytestmark = pytest.mark.timeout(300)


def webdav_body(dav) -> dict:
    return {"kind": "webdav", "name": "cloud", "url": dav.url, "user": dav.user, "password": dav.password}


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {**jp_server_config, "StorageService": {"root_dir": str(tmp_path / "storage-state")}}


@pytest.fixture
def service(jp_serverapp):
    """The server's storage service; whatever a test mounted is unmounted after it."""
    storage = jp_serverapp.web_app.settings["reeflab"].storage
    yield storage
    for owner in list(storage._mounts):
        for connection in storage.list(owner):
            storage.unmount(owner, connection.name)


async def call(jp_fetch, method: str, *path: str, body=None):
    raw = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    response = await jp_fetch("reeflab", "api", "storage", *path, method=method, body=raw, request_timeout=60)
    return json.loads(response.body) if response.body else None


def rclone_mounts(mountpoint: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if str(mountpoint) in (p.info["cmdline"] or [])]


async def test_mount_write_through_it_and_unmount(jp_fetch, dav, service, jp_root_dir):
    await call(jp_fetch, "POST", "connections", body=webdav_body(dav))
    (dav.root / "survey").mkdir()
    (dav.root / "survey" / "counts.csv").write_text("site,fish\nA,3\n")

    mount = await call(jp_fetch, "POST", "connections", "cloud", "mount")
    assert mount == {"state": "mounted", "path": "storage/cloud", "reason": None}
    mountpoint = jp_root_dir / "storage" / "cloud"
    assert os.path.ismount(mountpoint)
    # the file browser shows it like any folder
    contents = json.loads((await jp_fetch("api", "contents", "storage", "cloud", "survey")).body)
    assert [item["name"] for item in contents["content"]] == ["counts.csv"]
    assert (mountpoint / "survey" / "counts.csv").read_text() == "site,fish\nA,3\n"

    (mountpoint / "survey" / "result.txt").write_text("written in a notebook\n")
    wait_until(lambda: (dav.root / "survey" / "result.txt").exists(), 20, "the file on the WebDAV server")
    assert (dav.root / "survey" / "result.txt").read_text() == "written in a notebook\n"

    (process,) = rclone_mounts(mountpoint)
    assert dav.password not in " ".join(process.cmdline())  # nothing secret in `ps`
    listed = await call(jp_fetch, "GET", "connections")
    assert listed["connections"][0]["mount"]["state"] == "mounted"

    unmounted = await call(jp_fetch, "DELETE", "connections", "cloud", "mount")
    assert unmounted["state"] == "unmounted" and not os.path.ismount(mountpoint)
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    logs = "".join(p.read_text(errors="replace") for p in Path(service.root_dir).rglob("*.log"))
    assert dav.password not in logs


def test_s3_mount_writes_reach_the_bucket(s3, tmp_path):
    service = StorageService(root_dir=str(tmp_path / "state"), workspace=str(tmp_path / "home"))
    key = s3.ana_key
    body = {"kind": "s3", "name": "lake", "endpoint": s3.endpoint, "bucket": "ana", "prefix": "mnt"}
    service.create("ana", {**body, "access_key": key["access_key"], "secret_key": key["secret_key"]})
    try:
        assert service.mount("ana", "lake")["state"] == "mounted"
        (tmp_path / "home" / "storage" / "lake" / "plankton.txt").write_text("diatoms")
        client = s3.client(key=key)

        def uploaded():
            return client.list_objects_v2(Bucket="ana", Prefix="mnt/").get("KeyCount")

        wait_until(uploaded, 20, "the object in the bucket")
        assert client.get_object(Bucket="ana", Key="mnt/plankton.txt")["Body"].read() == b"diatoms"
    finally:
        service.unmount("ana", "lake")


def test_mounts_survive_a_server_restart_and_come_back_after_a_crash(dav, tmp_path):
    config = {"root_dir": str(tmp_path / "state"), "workspace": str(tmp_path / "home")}
    before = StorageService(**config)
    before.create("ana", webdav_body(dav))
    before.mount("ana", "cloud")
    mountpoint = tmp_path / "home" / "storage" / "cloud"
    latest = before
    try:
        # a new server process (same state): the mount outlived the old one and is re-attached
        after = StorageService(**config)
        connection = after.get("ana", "cloud")
        assert after.mount_status(connection)["state"] == "mounted"
        (process,) = rclone_mounts(mountpoint)
        after.restore_mounts("ana")
        assert rclone_mounts(mountpoint) == [process]  # re-attached, not mounted twice

        # rclone dies while nobody watches: the state says so, and the next start mounts it again
        os.kill(process.pid, signal.SIGKILL)
        before._manager("ana")._procs[process.pid].wait()  # this test process was its parent: reap it
        latest = StorageService(**config)
        assert latest.mount_status(latest.get("ana", "cloud"))["state"] == "error"
        latest.restore_mounts("ana")
        assert latest.mount_status(latest.get("ana", "cloud"))["state"] == "mounted"
        (mountpoint / "after-crash.txt").write_text("ok")
        wait_until(lambda: (dav.root / "after-crash.txt").exists(), 20, "the file on the WebDAV server")
    finally:
        latest.unmount("ana", "cloud")
    assert not os.path.ismount(mountpoint) and not rclone_mounts(mountpoint)


async def test_without_fuse_mounting_says_so_and_copy_still_works(jp_fetch, dav, service, monkeypatch, jp_root_dir):
    monkeypatch.setenv("PATH", "/nonexistent")  # no fusermount3 on this "server"
    assert (await call(jp_fetch, "GET"))["mounts"]["available"] is False
    await call(jp_fetch, "POST", "connections", body=webdav_body(dav))
    with pytest.raises(HTTPClientError) as err:
        await call(jp_fetch, "POST", "connections", "cloud", "mount")
    message = json.loads(err.value.response.body)["message"]
    assert err.value.code == 501 and "FUSE is not available" in message and "fuse3" in message
    assert "Copy or sync" in message
    (dav.root / "no-fuse.txt").write_text("still reachable")
    transfer = await call(jp_fetch, "POST", "transfers", body={
        "connection": "cloud", "path": "", "workspace_path": "copied", "direction": "download"})  # fmt: skip
    wait = 0
    while (transfer := await call(jp_fetch, "GET", "transfers", transfer["id"]))["state"] == "running" and wait < 300:
        wait += 1
        await __import__("asyncio").sleep(0.2)
    assert transfer["state"] == "done", transfer
    assert (jp_root_dir / "copied" / "no-fuse.txt").read_text() == "still reachable"
