"""Storage on the real hub, as users get it: alice connects and mounts her Nextcloud; bob neither
sees nor uses it; her mount outlives a restart of her server; no secret in any answer or log."""

from __future__ import annotations

import psutil
import pytest
from reeflab.client import Connection, ReefLabClientError
from reeflab.client import storage as client_storage
from reeflab.storage.platform_s3 import user_bucket
from reeflab.storage.testing import WebDAVProcess
from reeflab.testing.hub import run_in_kernel
from reeflab.testing.process import wait_until

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def dav(tmp_path_factory):
    with WebDAVProcess(tmp_path_factory.mktemp("webdav"), user="alice") as server:
        yield server


def test_a_users_connection_is_hers_alone_and_her_mount_outlives_a_restart(hub, servers, dav):
    alice_url, alice_token = servers["alice"]
    bob_url, bob_token = servers["bob"]
    alice = Connection(alice_url, alice_token)
    cloud = client_storage.connect("cloud", url=dav.url, user=dav.user, password=dav.password, connection=alice)
    assert cloud.mount()["state"] == "mounted"
    try:
        # bob: his own server has no such connection; alice's server refuses his token outright
        bob = Connection(bob_url, bob_token)
        # ... only his own bucket on the platform's S3 (keys from the serverless engine)
        (platform,) = [s.info for s in client_storage.connections(connection=bob)]
        assert platform["name"] == "reeflab" and platform["bucket"] == user_bucket("bob") and platform["platform"]
        with pytest.raises(ReefLabClientError) as err:
            client_storage.get("cloud", connection=bob)
        assert err.value.status == 404
        as_bob = Connection(alice_url, bob_token)
        for action in (
            lambda: client_storage.connections(connection=as_bob),
            lambda: as_bob.get("storage", "connections", "cloud", "files"),
            lambda: as_bob.request("DELETE", "storage", "connections", "cloud"),
        ):
            with pytest.raises(ReefLabClientError) as err:
                action()
            assert err.value.status in (401, 403)

        # a restart of alice's server: the mount stays, and her new server shows it mounted
        hub.stop_server("alice")
        alice = Connection(hub.spawn("alice"), alice_token)
        (info,) = [s.info for s in client_storage.connections(connection=alice) if s.name == "cloud"]
        assert info["mount"]["state"] == "mounted", info["mount"]
        mountpoint = hub.homes / "alice" / "storage" / "cloud"
        assert mounted(mountpoint)
        # from her notebook: write into the mount, then copy the file to her platform bucket
        printed = run_in_kernel(
            alice.url,
            alice_token,
            "open('storage/cloud/from-notebook.txt', 'w').write('alice was here')\n"
            "from reeflab.client import storage\n"
            "storage.get('reeflab').upload('storage/cloud/from-notebook.txt', 'in/from-notebook.txt')\n"
            "print('uploaded')",
        )
        assert printed.strip().endswith("uploaded"), printed
        wait_until(lambda: (dav.root / "from-notebook.txt").exists(), 20, "the file on the WebDAV server")
        mine = client_storage.get("reeflab", connection=alice)
        assert mine.info["bucket"] == user_bucket("alice")
        assert [e["name"] for e in mine.ls("in")] == ["from-notebook.txt"]
    finally:
        client_storage.get("cloud", connection=alice).unmount()
    assert not mounted(hub.homes / "alice" / "storage" / "cloud")
    assert dav.password not in hub.log_path.read_text(errors="replace")


def mounted(path) -> bool:
    """Whether `path` is a mount point, from the kernel's table (root may not stat another account's FUSE mount)."""
    return any(p.mountpoint == str(path) for p in psutil.disk_partitions(all=True))
