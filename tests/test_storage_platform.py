"""The platform's own storage: every user gets a `reeflab` connection to their bucket on the
platform S3, with the keys the real serverless engine gives them (GET /system/config)."""

from __future__ import annotations

import io

import pytest
from reeflab.errors import Forbidden
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.storage.platform_s3 import user_bucket
from reeflab.storage.service import StorageService

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with EngineProcess(tmp_path_factory.mktemp("engine") / "state", users=["ana", "bob"], s3=True) as server:
        yield server


def service_for(engine, user: str, tmp_path) -> StorageService:
    """A user's server: it asks the engine with its own token, as under the hub."""
    return StorageService(
        root_dir=str(tmp_path / user / "state"),
        workspace=str(tmp_path / user),
        platform_config_url=engine.url + "/system/config",
        platform_token=engine.tokens[user],
    )


def test_every_user_has_their_platform_bucket(engine, tmp_path):
    ana = service_for(engine, "ana", tmp_path)
    (connection,) = ana.list("ana")
    assert connection.name == "reeflab" and connection.platform and connection.spec.bucket == user_bucket("ana")
    public = ana.public(connection)
    assert "secret_key" not in public
    # named 'reeflab', but its paths are the bucket's: the answer says which bucket
    assert public["bucket_path"] == user_bucket("ana") == "ana"
    assert public["description"] == "your bucket ana on the platform"
    ana.upload("ana", "reeflab", "in/reef.jpg", io.BytesIO(b"jpeg"))
    # the serverless side (oscar-python's minio provider keys) sees the same object
    assert engine.s3("ana").get_object(Bucket=user_bucket("ana"), Key="in/reef.jpg")["Body"].read() == b"jpeg"
    assert [i["name"] for i in ana.ls("ana", "reeflab", "in")["items"]] == ["reef.jpg"]
    # a new folder is a folder for the serverless side too (an input path before any upload)
    assert ana.mkdir("ana", "reeflab", "fish-in") == {"connection": "reeflab", "path": "fish-in"}
    seen = engine.s3("ana").list_objects_v2(Bucket="ana", Delimiter="/")
    assert {"Prefix": "fish-in/"} in seen["CommonPrefixes"]
    with pytest.raises(Forbidden):
        ana.delete("ana", "reeflab")

    bob = service_for(engine, "bob", tmp_path)
    assert bob.get("bob", "reeflab").spec.bucket == user_bucket("bob")
    assert bob.ls("bob", "reeflab")["items"] == []  # bob's own bucket: nothing of ana's


def test_without_an_engine_there_is_no_platform_connection_and_no_error(tmp_path):
    service = StorageService(
        root_dir=str(tmp_path / "state"), workspace=str(tmp_path),
        platform_config_url="http://127.0.0.1:9/system/config", platform_token="x", connect_timeout=1,
    )  # fmt: skip
    assert service.list("ana") == []


def test_the_bucket_is_the_one_the_engine_gave_keys_for(engine, tmp_path):
    """A server whose own user name is not the engine's (a lab outside the hub): its keys open the engine
    user's bucket, so that is the bucket shown and used."""
    ana = service_for(engine, "ana", tmp_path)
    (connection,) = ana.list("root")
    assert connection.spec.bucket == user_bucket("ana") and "ana" in ana.public(connection)["description"]
    ana.test("root", "reeflab")  # a real round trip with those keys
