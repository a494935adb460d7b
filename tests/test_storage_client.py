"""reeflab.client.storage against a real jupyter-server with the extension and a real WebDAV server."""

from __future__ import annotations

import asyncio
import os

import pytest
from reeflab.client import ReefLabClientError
from reeflab.client import storage as client_storage

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {**jp_server_config, "StorageService": {"root_dir": str(tmp_path / "storage-state")}}


async def off_loop(func, *args, **kwargs):
    """The client is synchronous: call it from a thread while the test's loop serves the requests."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


async def test_connect_ls_upload_download_mount_copy(connection, dav, tmp_path, jp_root_dir):
    cloud = await off_loop(
        client_storage.connect, "cloud", url=dav.url, user=dav.user, password=dav.password, connection=connection
    )
    assert cloud.info["kind"] == "webdav" and "password" not in cloud.info
    assert repr(cloud) == f"<Storage cloud: WebDAV folder {dav.url}>"
    assert cloud.bucket_path is None and cloud.path("survey/a.jpg") == "cloud:survey/a.jpg"
    assert await off_loop(cloud.mkdir, "survey/empty") == "survey/empty"
    assert (dav.root / "survey" / "empty").is_dir()
    with pytest.raises(ReefLabClientError) as err:
        await off_loop(cloud.mkdir, "survey/empty")
    assert err.value.status == 409 and "already has a folder 'survey/empty'" in err.value.message
    (dav.root / "survey" / "empty").rmdir()
    local = tmp_path / "counts.csv"
    local.write_text("site,fish\nA,3\n")
    assert await off_loop(cloud.upload, local, "survey/counts.csv") == "survey/counts.csv"
    assert [e["name"] for e in await off_loop(cloud.ls, "survey")] == ["counts.csv"]
    fetched = await off_loop(cloud.download, "survey/counts.csv", tmp_path / "back.csv")
    assert fetched.read_text() == "site,fish\nA,3\n"
    for n in range(5):  # more entries than one page
        (dav.root / "survey" / f"x{n}.txt").write_text("x")
    assert len(await off_loop(cloud.ls, "survey", limit=2)) == 6

    mount = await off_loop(cloud.mount)
    try:
        assert mount["state"] == "mounted"
        assert (jp_root_dir / "storage" / "cloud" / "survey" / "counts.csv").read_text() == "site,fish\nA,3\n"
    finally:
        assert (await off_loop(cloud.unmount))["state"] == "unmounted"

    done = await off_loop(cloud.copy, "survey", "data/survey", progress=False)
    assert done["state"] == "done" and sorted(os.listdir(jp_root_dir / "data" / "survey"))[0] == "counts.csv"

    with pytest.raises(ReefLabClientError) as err:
        await off_loop(cloud.delete, "survey")
    assert err.value.status == 400 and "confirm" in err.value.message
    assert (await off_loop(cloud.delete, "survey", confirm="survey"))["deleted"] == 6
    assert [s.name for s in await off_loop(client_storage.connections, connection=connection)] == ["cloud"]
    await off_loop(cloud.remove)
    with pytest.raises(ReefLabClientError) as err:
        await off_loop(client_storage.get, "cloud", connection=connection)
    assert err.value.status == 404


async def test_a_wrong_password_is_refused_with_the_reason(connection, dav):
    with pytest.raises(ReefLabClientError) as err:
        await off_loop(client_storage.connect, "cloud", url=dav.url, user="ana", password="nope", connection=connection)
    assert err.value.status == 400 and "refused user 'ana'" in err.value.message
