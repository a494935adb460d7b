"""Storage connections through the REST API, against a real WebDAV server (wsgidav, Nextcloud-style
path, basic auth) and a real S3 server (SeaweedFS with per-user IAM keys), both started here."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat

import pytest
from reeflab.errors import NotFound
from reeflab.files import free_port
from reeflab.storage.service import StorageService
from tornado.httpclient import HTTPClientError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path):
    return {**jp_server_config, "StorageService": {"root_dir": str(tmp_path / "storage-state")}}


class Api:
    """The storage REST API as the panel calls it; keeps every answer to check for secrets later."""

    def __init__(self, jp_fetch):
        self.jp_fetch = jp_fetch
        self.answers: list[bytes] = []

    async def __call__(self, method: str, *path: str, body=None, raw: bytes | None = None, **kwargs):
        if raw is None and (body is not None or method in ("POST", "PUT")):
            raw = json.dumps(body or {}).encode()
        try:
            response = await self.jp_fetch(
                "reeflab", "api", "storage", *path, method=method, body=raw, request_timeout=30, **kwargs
            )
        except HTTPClientError as err:
            self.answers.append(err.response.body if err.response else b"")
            raise
        self.answers.append(response.body)
        content_type = response.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            return json.loads(response.body) if response.body else None
        return response.body

    async def refused(self, method: str, *path: str, **kwargs) -> tuple[int, str]:
        with pytest.raises(HTTPClientError) as err:
            await self(method, *path, **kwargs)
        return err.value.code, json.loads(err.value.response.body)["message"]


@pytest.fixture
def api(jp_fetch):
    return Api(jp_fetch)


def webdav_body(dav, **changes) -> dict:
    return {"kind": "webdav", "name": "cloud", "url": dav.url, "user": dav.user, "password": dav.password, **changes}


def s3_body(s3, **changes) -> dict:
    key = s3.ana_key
    body = {"kind": "s3", "name": "lake", "endpoint": s3.endpoint, "bucket": "ana"}
    return {**body, "access_key": key["access_key"], "secret_key": key["secret_key"], **changes}


async def test_webdav_connect_list_upload_download_delete(api, dav, caplog, jp_serverapp):
    caplog.set_level(logging.DEBUG)
    created = await api("POST", "connections", body=webdav_body(dav))
    assert created["name"] == "cloud" and created["kind"] == "webdav" and created["mount"]["state"] == "unmounted"
    assert "password" not in created

    await api("PUT", "connections", "cloud", "file", params={"path": "survey/reef 1.txt"}, raw=b"fish: 3\n")
    assert (dav.root / "survey" / "reef 1.txt").read_bytes() == b"fish: 3\n"  # on the WebDAV server itself
    for n in range(3):
        (dav.root / "survey" / f"extra-{n}.txt").write_text(str(n))

    top = await api("GET", "connections", "cloud", "files")
    assert [(i["name"], i["type"]) for i in top["items"]] == [("survey", "directory")]
    first = await api("GET", "connections", "cloud", "files", params={"path": "survey", "limit": "2"})
    assert len(first["items"]) == 2 and first["next_page"]
    rest = await api("GET", "connections", "cloud", "files", params={"path": "survey", "page": first["next_page"]})
    names = [i["name"] for i in first["items"] + rest["items"]]
    assert names == ["extra-0.txt", "extra-1.txt", "extra-2.txt", "reef 1.txt"] and rest["next_page"] is None

    content = await api("GET", "connections", "cloud", "file", params={"path": "survey/reef 1.txt"})
    assert content == b"fish: 3\n"
    code, message = await api.refused("GET", "connections", "cloud", "file", params={"path": "survey/none.txt"})
    assert code == 404 and "survey/none.txt" in message

    code, message = await api.refused("DELETE", "connections", "cloud", "file", params={"path": "survey"})
    assert code == 400 and "confirm=survey" in message and (dav.root / "survey").exists()
    deleted = await api("DELETE", "connections", "cloud", "file", params={"path": "survey", "confirm": "survey"})
    assert deleted["deleted"] == 4 and not (dav.root / "survey").exists()

    listed = await api("GET", "connections")
    assert [c["name"] for c in listed["connections"]] == ["cloud"]
    await api("DELETE", "connections", "cloud")
    assert (await api("GET", "connections"))["connections"] == []

    everything = b"".join(api.answers).decode(errors="replace") + caplog.text
    assert dav.password not in everything


async def test_wrong_password_or_unreachable_host_fail_fast_with_a_reason(api, dav):
    code, message = await api.refused("POST", "connections", body=webdav_body(dav, password="not-it"))
    assert code == 400 and "refused user 'ana'" in message and "app password" in message
    dead = f"http://127.0.0.1:{free_port()}/remote.php/dav/files/ana"
    code, message = await api.refused("POST", "connections", body=webdav_body(dav, url=dead))
    assert code == 400 and "cannot be reached" in message
    assert (await api("GET", "connections"))["connections"] == []  # nothing stored
    assert "not-it" not in b"".join(api.answers).decode()


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"name": "My Cloud"}, "not a connection name"),
        ({"name": "reeflab"}, "platform's own storage"),
        ({"url": "ftp://x.org/dav"}, "must be an http(s) URL"),
        ({"url": "https://ana:pw@x.org/dav"}, "in their own fields"),
        ({"kind": "ftp"}, "kind"),
        ({"password": ""}, "password"),
    ],
)
async def test_bad_connections_are_refused_with_what_to_fix(api, dav, changes, says):
    code, message = await api.refused("POST", "connections", body=webdav_body(dav, **changes))
    assert code == 400 and says in message
    assert "pw@" not in message


async def test_paths_are_confined(api, dav, tmp_path):
    await api("POST", "connections", body=webdav_body(dav))
    for path in ("../ana/x", "a/../../b", "..", "/../bob"):
        code, message = await api.refused("GET", "connections", "cloud", "files", params={"path": path})
        assert code == 400, path
    code, message = await api.refused(
        "POST", "transfers", body={"connection": "cloud", "workspace_path": "../../etc", "direction": "upload"}
    )
    assert code == 400 and "outside your workspace" in message


async def test_s3_connect_list_upload_download_and_refusals(api, s3):
    created = await api("POST", "connections", body=s3_body(s3, prefix="datasets"))
    assert created["location"] == f"{s3.endpoint}/ana/datasets" and "secret_key" not in created
    await api("PUT", "connections", "lake", "file", params={"path": "fish/a.jpg"}, raw=b"\xff\xd8jpeg")
    stored = s3.client(key=s3.ana_key).get_object(Bucket="ana", Key="datasets/fish/a.jpg")["Body"].read()
    assert stored == b"\xff\xd8jpeg"
    listing = await api("GET", "connections", "lake", "files", params={"path": "fish"})
    assert [(i["name"], i["size"]) for i in listing["items"]] == [("a.jpg", 6)]
    assert await api("GET", "connections", "lake", "file", params={"path": "fish/a.jpg"}) == b"\xff\xd8jpeg"
    assert (await api("POST", "connections", "lake", "test"))["ok"] is True

    code, message = await api.refused("POST", "connections", body=s3_body(s3, name="bad", secret_key="wrong"))
    assert code == 400 and "refused the access key" in message
    # another user's bucket (the admin's, here) with ana's key: refused by the server's IAM
    s3.client().create_bucket(Bucket="someone-else")
    code, message = await api.refused("POST", "connections", body=s3_body(s3, name="other", bucket="someone-else"))
    assert code == 400 and "refused" in message
    assert s3.ana_key["secret_key"] not in b"".join(api.answers).decode(errors="replace")


async def test_new_folders_on_s3_show_as_folders_and_take_uploads(api, s3):
    created = await api("POST", "connections", body=s3_body(s3, prefix="surveyed"))
    assert created["bucket_path"] == "ana/surveyed"
    assert created["description"] == f"bucket ana/surveyed at {s3.endpoint}"
    made = await api("POST", "connections", "lake", "folders", body={"path": "fish-in"})
    assert made == {"connection": "lake", "path": "fish-in"}
    bucket = s3.client(key=s3.ana_key)
    assert bucket.head_object(Bucket="ana", Key="surveyed/fish-in/")["ContentLength"] == 0  # the folder marker
    top = await api("GET", "connections", "lake", "files")
    assert [(i["name"], i["type"], i["path"]) for i in top["items"]] == [("fish-in", "directory", "fish-in")]
    assert (await api("GET", "connections", "lake", "files", params={"path": "fish-in"}))["items"] == []
    await api("PUT", "connections", "lake", "file", params={"path": "fish-in/reef.jpg"}, raw=b"jpeg")
    inside = await api("GET", "connections", "lake", "files", params={"path": "fish-in"})
    assert [(i["name"], i["type"]) for i in inside["items"]] == [("reef.jpg", "file")]
    await api("POST", "connections", "lake", "folders", body={"path": "surveys/2026/dive-1"})  # folders above too
    deep = await api("GET", "connections", "lake", "files", params={"path": "surveys/2026"})
    assert [(i["name"], i["type"]) for i in deep["items"]] == [("dive-1", "directory")]

    code, message = await api.refused("POST", "connections", "lake", "folders", body={"path": "fish-in"})
    assert code == 409 and "already has a folder 'fish-in'" in message
    code, message = await api.refused("POST", "connections", "lake", "folders", body={"path": "fish-in/reef.jpg"})
    assert code == 409 and "file 'fish-in/reef.jpg'" in message
    code, message = await api.refused("POST", "connections", "lake", "folders", body={"path": "fish-in/reef.jpg/x"})
    assert code == 400 and "'fish-in/reef.jpg' is a file" in message
    # deleting folders takes them whole (SeaweedFS keeps an emptied folder unless its own `name/` goes too)
    for folder, files in (("fish-in", 1), ("surveys", 1)):
        deleted = await api("DELETE", "connections", "lake", "file", params={"path": folder, "confirm": folder})
        assert deleted["deleted"] == files
    assert (await api("GET", "connections", "lake", "files"))["items"] == []
    assert "Contents" not in bucket.list_objects_v2(Bucket="ana", Prefix="surveyed/")


@pytest.mark.parametrize(
    "body, says",
    [
        ({"path": ""}, "Name the new folder"),
        ({"path": "a/../../b"}, "'..' is not allowed"),
        ({"path": "a\\b"}, "may not contain '\\'"),
        ({"path": " fish"}, "may not start or end with a space"),
        ({"path": "x" * 256}, "at most 255 bytes"),
        ({"path": "ok\nno"}, "control characters"),
        ({"name": "fish"}, "path: Field required"),
    ],
)
async def test_bad_folder_names_are_refused_with_what_to_fix(api, dav, body, says):
    await api("POST", "connections", body=webdav_body(dav))
    code, message = await api.refused("POST", "connections", "cloud", "folders", body=body)
    assert code == 400 and says in message


async def test_new_folders_on_webdav_and_only_in_your_connections(api, dav):
    created = await api("POST", "connections", body=webdav_body(dav))
    assert created["bucket_path"] is None and created["description"] == f"WebDAV folder {dav.url}"
    await api("POST", "connections", "cloud", "folders", body={"path": "transects/2026-11"})
    assert (dav.root / "transects" / "2026-11").is_dir()  # MKCOL on the WebDAV server itself
    listing = await api("GET", "connections", "cloud", "files", params={"path": "transects"})
    assert [(i["name"], i["type"]) for i in listing["items"]] == [("2026-11", "directory")]
    code, message = await api.refused("POST", "connections", "cloud", "folders", body={"path": "transects/2026-11"})
    assert code == 409 and "already has a folder" in message
    code, message = await api.refused("POST", "connections", "someone-elses", "folders", body={"path": "x"})
    assert code == 404 and "No storage connection 'someone-elses'" in message


async def test_transfers_copy_and_sync_with_progress(api, dav, jp_root_dir):
    await api("POST", "connections", body=webdav_body(dav))
    data = jp_root_dir / "dataset"
    data.mkdir()
    for n in range(3):
        (data / f"img{n}.bin").write_bytes(os.urandom(200_000))
    up = await api("POST", "transfers", body={"connection": "cloud", "path": "ds", "workspace_path": "dataset",
                                              "direction": "upload"})  # fmt: skip
    done = await wait_transfer(api, up["id"])
    assert done["state"] == "done" and done["files"] == 3 and done["bytes"] == 600_000 and done["percent"] == 100
    assert sorted(p.name for p in (dav.root / "ds").iterdir()) == ["img0.bin", "img1.bin", "img2.bin"]

    (dav.root / "ds" / "img0.bin").unlink()
    down = await api("POST", "transfers", body={"connection": "cloud", "path": "ds", "workspace_path": "dataset",
                                                "direction": "download", "mode": "sync"})  # fmt: skip
    assert (await wait_transfer(api, down["id"]))["state"] == "done"
    assert sorted(p.name for p in data.iterdir()) == ["img1.bin", "img2.bin"]  # sync removed what the source lacks
    assert [t["id"] for t in (await api("GET", "transfers"))["transfers"]] == [up["id"], down["id"]]


async def wait_transfer(api, transfer_id: str, timeout: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while (transfer := await api("GET", "transfers", transfer_id))["state"] == "running":
        assert asyncio.get_running_loop().time() < deadline, transfer
        await asyncio.sleep(0.2)
    return transfer


def test_connections_are_private_to_their_owner(dav, tmp_path):
    """Two users on one platform: neither sees nor uses the other's connection; files are 0600."""
    service = StorageService(root_dir=str(tmp_path / "state"), workspace=str(tmp_path))
    service.create("ana", webdav_body(dav))
    assert [c.name for c in service.list("bob")] == []
    for use in (
        lambda: service.get("bob", "cloud"),
        lambda: service.ls("bob", "cloud"),
        lambda: service.mkdir("bob", "cloud", "x"),
        lambda: service.credentials_env("bob", "cloud"),
        lambda: service.resolve("bob", "cloud:data"),
        lambda: service.delete("bob", "cloud"),
    ):
        with pytest.raises(NotFound):
            use()
    assert service.get("ana", "cloud").name == "cloud"
    folder = service.store.folder("ana")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()] == [0o600]


def test_resolve_and_credentials_env_for_jobs(s3, tmp_path):
    """What a job, deployment or serverless service gets for 'lake:fish/in': a location and its credentials."""
    service = StorageService(root_dir=str(tmp_path / "state"), workspace=str(tmp_path))
    service.create("ana", s3_body(s3, prefix="datasets"))
    resolved = service.resolve("ana", "lake:fish/in")
    assert resolved.url == "s3://ana/datasets/fish/in" and resolved.rclone == "rl_lake:ana/datasets/fish/in"
    assert s3.ana_key["secret_key"] not in repr(resolved)
    env = resolved.env
    assert env["AWS_SECRET_ACCESS_KEY"] == s3.ana_key["secret_key"] and env["AWS_ENDPOINT_URL"] == s3.endpoint
    assert env["RCLONE_CONFIG_RL_LAKE_TYPE"] == "s3"
    # the environment works for a real child process: rclone lists the bucket with it
    import subprocess

    from reeflab.storage.rclone import rclone_binary

    service.upload("ana", "lake", "fish/in/x.txt", __import__("io").BytesIO(b"x"))
    listed = subprocess.run(
        [rclone_binary(), "lsf", resolved.rclone], env={"PATH": os.environ["PATH"], **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.stdout.split() == ["x.txt"], listed.stderr
    with pytest.raises(Exception, match="<connection>:<path>"):
        service.resolve("ana", "no-colon")


def test_workspace_paths_stay_in_the_workspace_even_through_symlinks(tmp_path):
    from reeflab.errors import BadRequest
    from reeflab.storage.paths import remote_path, workspace_path

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "escape").symlink_to(tmp_path)  # a link a user made to outside their home
    assert workspace_path(home, "data/x") == (home / "data" / "x").resolve()
    assert workspace_path(home, "/data") == (home / "data").resolve()  # '/' is the workspace's root
    for bad in ("../other", "escape/secret", "data/../../x"):
        with pytest.raises(BadRequest, match="outside your workspace"):
            workspace_path(home, bad)
    assert remote_path("/a//b/./c/") == "a/b/c"
    for bad in ("a/\x00b", "a/../..", "..\\x"):
        with pytest.raises(BadRequest):
            remote_path(bad)
