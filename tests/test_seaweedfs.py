"""The platform's S3 server: a real SeaweedFS started as the hub starts it, with per-user keys."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta

import psutil
import pytest
import requests
from botocore.exceptions import ClientError
from reeflab.errors import BadRequest
from reeflab.storage import seaweedfs
from reeflab.storage.platform_s3 import PlatformS3, check_path, s3_client, user_bucket
from reeflab.storage.seaweedfs import grpc_certificates
from reeflab.storage.testing import SeaweedProcess


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    with SeaweedProcess(tmp_path_factory.mktemp("s3") / "store") as server:
        yield server


def test_each_user_gets_own_bucket_and_key_and_nothing_else(seaweed):
    platform = PlatformS3(seaweed.endpoint, seaweed.key)
    alice = s3_client(seaweed.endpoint, platform.user_key("alice"))
    bob_key = platform.user_key("Bob Smith")
    bob = s3_client(seaweed.endpoint, bob_key)
    alice.put_object(Bucket="alice", Key="in/reef.jpg", Body=b"jpeg")
    # more buckets are made by the platform, which records them as alice's and grants exactly those
    platform.ensure_bucket("alice--results")
    platform.grant("alice", ["alice--results"])
    alice.put_object(Bucket="alice--results", Key="r.json", Body=b"{}")
    assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == ["alice", "alice--results"]
    assert [b["Name"] for b in bob.list_buckets()["Buckets"]] == [user_bucket("Bob Smith")]
    for call in (
        lambda: bob.get_object(Bucket="alice", Key="in/reef.jpg"),
        lambda: bob.put_object(Bucket="alice", Key="x", Body=b"x"),
        lambda: bob.list_objects_v2(Bucket="alice"),
        lambda: bob.create_bucket(Bucket="alice-stolen"),
        lambda: alice.create_bucket(Bucket="alice--made-by-hand"),  # only through the platform
    ):
        with pytest.raises(ClientError) as denied:
            call()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    # asking again gives the same key while the server still knows it
    assert platform.user_key("Bob Smith", bob_key) == bob_key


def test_files_are_reachable_only_through_s3(seaweed):
    """The filer's own HTTP port (which skips S3's access checks) needs a signed token."""
    weed = psutil.Process(seaweed.proc.pid)
    filer_port = next(
        int(re.search(r"=(\d+)$", arg).group(1)) for arg in weed.cmdline() if arg.startswith("-filer.port=")
    )
    admin = s3_client(seaweed.endpoint, seaweed.key)
    admin.create_bucket(Bucket="private")
    admin.put_object(Bucket="private", Key="secret.txt", Body=b"x")
    assert requests.get(f"http://127.0.0.1:{filer_port}/buckets/private/secret.txt", timeout=5).status_code == 401
    assert requests.put(f"http://127.0.0.1:{filer_port}/buckets/private/evil", data=b"x", timeout=5).status_code == 401


def test_admin_secret_never_on_a_command_line(seaweed):
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert seaweed.key["secret_key"] not in listing
    assert (seaweed.key_file.stat().st_mode & 0o777) == 0o600


def test_data_and_users_survive_a_restart(tmp_path):
    with SeaweedProcess(tmp_path / "store") as first:
        platform = PlatformS3(first.endpoint, first.key)
        key = platform.user_key("carol")
        s3_client(first.endpoint, key).put_object(Bucket="carol", Key="kept.txt", Body=b"still here")
    ca = (tmp_path / "store" / "tls" / "ca.crt").read_bytes()
    with SeaweedProcess(tmp_path / "store") as second:
        assert (tmp_path / "store" / "tls" / "ca.crt").read_bytes() == ca  # the gRPC certificates are reused
        assert PlatformS3(second.endpoint, second.key).user_key("carol", key) == key
        body = s3_client(second.endpoint, key).get_object(Bucket="carol", Key="kept.txt")["Body"].read()
        assert body == b"still here"


def test_grpc_certificates_are_reused_and_remade_when_missing_or_near_their_end(tmp_path, monkeypatch):
    """Made once (0600 in a 0700 folder); a lost file or a certificate near its end gets a whole new CA."""
    tls = grpc_certificates(tmp_path)
    first = {f.name: f.read_bytes() for f in tls.iterdir()}
    assert {"ca.crt", "client.crt", "client.key", "filer.crt", "master.key"} <= set(first)
    assert tls.stat().st_mode & 0o777 == 0o700 and all(f.stat().st_mode & 0o777 == 0o600 for f in tls.iterdir())
    assert not list(tls.glob("ca.key"))  # the CA's private key is never kept
    (tls / "volume.crt").chmod(0o644)
    assert {f.name: f.read_bytes() for f in grpc_certificates(tmp_path).iterdir()} == first
    assert (tls / "volume.crt").stat().st_mode & 0o777 == 0o600  # a widened mode is narrowed again
    (tls / "filer.key").unlink()
    second = {f.name: f.read_bytes() for f in grpc_certificates(tmp_path).iterdir()}
    assert set(second) == set(first) and all(second[name] != first[name] for name in first)
    monkeypatch.setattr(seaweedfs, "RENEW_BEFORE", timedelta(days=seaweedfs.CERT_DAYS + 1))  # all "near their end"
    third = {f.name: f.read_bytes() for f in grpc_certificates(tmp_path).iterdir()}
    assert third["ca.crt"] != second["ca.crt"]
    # a certificate signed by another CA is not accepted either
    (tls / "s3.crt").write_bytes(first["s3.crt"])
    monkeypatch.undo()
    assert grpc_certificates(tmp_path).joinpath("ca.crt").read_bytes() != third["ca.crt"]


def test_storage_paths_are_confined_to_own_buckets():
    assert check_path("alice", "alice/in", "input.path") == ("alice", "in")
    assert check_path("alice", "alice--fish/in/", "input.path") == ("alice--fish", "in")
    for bad in ("bob/in", "alicex/in", "alice-fish/in", "alice--fish--x/in", "alice/../bob", "/"):
        with pytest.raises(BadRequest) as refused:
            check_path("alice", bad, "input.path")
        assert "input.path" in refused.value.message
    assert user_bucket("Ana.Lopez@uni") != user_bucket("ana-lopez-uni")
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{2,62}", user_bucket("x"))
