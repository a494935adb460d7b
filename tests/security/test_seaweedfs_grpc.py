"""SeaweedFS's gRPC ports, tried as a local process without the platform's certificates would.

Every gRPC port of the platform's SeaweedFS (found by listing the weed process's listening sockets,
not from a list we keep) and its Unix-socket twin in /tmp must refuse a caller that speaks plain
gRPC, one that speaks TLS but has no client certificate, and one whose client certificate comes
from another CA; `weed shell` and `weed filer.cat` without our security.toml read nothing. Each
refusal is checked against a control with the real client certificate that does read the bucket,
so a probe that would fail anyway proves nothing. S3 keeps working with each user's own key.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import psutil
import pytest
from botocore.exceptions import ClientError
from reeflab.storage.platform_s3 import PlatformS3, s3_client
from reeflab.storage.seaweedfs import _issue_certificates, weed_binary
from reeflab.storage.testing import SeaweedProcess

pytestmark = pytest.mark.timeout(300)

SECRET = b"ana's private reef survey"
# filer_pb.ListEntriesRequest{directory: "/buckets"}: field 1, length-delimited
LIST_BUCKETS = b"\x0a\x08/buckets"
LIST_ENTRIES = "/filer_pb.SeaweedFiler/ListEntries"
HTTP_FLAGS = ("-s3.port", "-master.port", "-volume.port", "-filer.port", "-admin.port")


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    with SeaweedProcess(tmp_path_factory.mktemp("grpc") / "store") as server:
        platform = PlatformS3(server.endpoint, server.key)
        server.user_keys = {name: platform.user_key(name) for name in ("ana", "bob")}
        s3_client(server.endpoint, server.user_keys["ana"]).put_object(Bucket="ana", Key="survey.txt", Body=SECRET)
        yield server


@pytest.fixture(scope="module")
def ports(seaweed) -> dict[str, int]:
    """The weed process's flags `-<name>.port[.grpc]=N` as {"-<name>.port[.grpc]": N}."""
    found = (re.fullmatch(r"(-\w+\.port(?:\.grpc)?)=(\d+)", arg) for arg in psutil.Process(seaweed.proc.pid).cmdline())
    return {flag.group(1): int(flag.group(2)) for flag in found if flag}


@pytest.fixture(scope="module")
def grpc_ports(seaweed, ports) -> list[int]:
    """Every TCP port weed listens on that is not one of its HTTP ports: its gRPC ports, whatever they are."""
    weed = psutil.Process(seaweed.proc.pid)
    connections = getattr(weed, "net_connections", None) or weed.connections  # psutil < 6 names it connections
    listening = {c.laddr.port for c in connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    found = sorted(listening - {ports[flag] for flag in HTTP_FLAGS})
    # the listing and the flags agree: master, volume, filer, S3 and admin gRPC, nothing unexpected
    assert found == sorted(port for flag, port in ports.items() if flag.endswith(".grpc"))
    assert ports["-filer.port.grpc"] in found and len(found) == 5
    return found


@pytest.fixture(scope="module")
def certificates(seaweed) -> Path:
    return seaweed.state / "tls"


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> Path:
    """A CA of someone else's and a client certificate it signed (same names, same kind of key)."""
    folder = tmp_path_factory.mktemp("foreign-ca")
    _issue_certificates(folder, ("client",))
    return folder


def _list_buckets(target: str, credentials: grpc.ChannelCredentials | None) -> bytes:
    """The filer's raw ListEntries("/buckets") answer (what `weed shell` would show), over `target`."""
    options = [("grpc.ssl_target_name_override", "localhost")]  # our certificates name localhost and 127.0.0.1
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials, options=options)
    with channel:
        return b"".join(channel.unary_stream(LIST_ENTRIES)(LIST_BUCKETS, timeout=10))


def _credentials(trusted: Path, client: Path | None) -> grpc.ChannelCredentials:
    """TLS trusting the CA in `trusted`, presenting the client certificate in `client` (None: no certificate)."""
    ca = (trusted / "ca.crt").read_bytes()
    if client is None:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(ca, (client / "client.key").read_bytes(), (client / "client.crt").read_bytes())


def _refusals(ours: Path, foreign: Path) -> dict[str, Callable[[], grpc.ChannelCredentials | None]]:
    return {
        "plain gRPC": lambda: None,
        "TLS without a client certificate": lambda: _credentials(ours, None),
        "a client certificate from another CA": lambda: _credentials(ours, foreign),
        "another CA altogether": lambda: _credentials(foreign, foreign),
    }


def test_the_probe_reads_buckets_with_the_platforms_client_certificate(seaweed, ports, certificates):
    """The control: what the filer's gRPC API gives a caller it lets in (every bucket, around S3's IAM)."""
    filer = ports["-filer.port.grpc"]
    for target in (f"127.0.0.1:{filer}", f"unix:/tmp/seaweedfs-filer-grpc-{filer}.sock"):
        answer = _list_buckets(target, _credentials(certificates, certificates))
        assert b"ana" in answer and b"bob" in answer


def test_every_grpc_port_refuses_callers_without_our_client_certificate(grpc_ports, certificates, foreign):
    refusals = _refusals(certificates, foreign)
    for port in grpc_ports:
        targets = [f"127.0.0.1:{port}"]
        targets += [f"unix:{sock}" for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock")]
        for target in targets:
            for how, credentials in refusals.items():
                with pytest.raises(grpc.RpcError) as refused:
                    _list_buckets(target, credentials())
                # refused in the handshake: the call never reaches a gRPC service
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, (target, how, refused.value.details())


def test_weed_tools_without_the_certificates_see_and_change_nothing(seaweed, ports, tmp_path):
    """`weed shell` and `weed filer.cat` run where no security.toml is found list, read and delete nothing.

    Without mTLS the shell lists every bucket and file and deletes any file (the filer's gRPC API skips S3's IAM).
    """
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    master = f"127.0.0.1:{ports['-master.port']}.{ports['-master.port.grpc']}"
    filer = f"127.0.0.1:{ports['-filer.port']}.{ports['-filer.port.grpc']}"
    shell = [weed_binary(), "shell", f"-master={master}", f"-filer={filer}"]
    cat = [weed_binary(), "filer.cat", f"http://127.0.0.1:{ports['-filer.port']}/buckets/ana/survey.txt"]
    attempts = [
        (shell, "s3.bucket.list\n"),
        (shell, "fs.ls -l /buckets/ana\n"),
        (shell, "fs.cat /buckets/ana/survey.txt\n"),
        (shell, "fs.rm /buckets/ana/survey.txt\n"),
        (cat, ""),
    ]

    def start(command: list[str], cwd: Path) -> subprocess.Popen:
        pipe = subprocess.PIPE
        return subprocess.Popen(command, cwd=cwd, env=env, stdin=pipe, stdout=pipe, stderr=subprocess.STDOUT, text=True)

    def output(process: subprocess.Popen, stdin: str) -> str:
        try:
            return process.communicate(stdin, timeout=15)[0]
        except subprocess.TimeoutExpired:  # weed shell keeps retrying a server that refuses it
            process.kill()
            return process.communicate()[0]

    running = [(start(command, tmp_path), stdin) for command, stdin in attempts]  # side by side: each may wait 15 s
    for (command, stdin), (process, _) in zip(attempts, running, strict=True):
        seen = output(process, stdin)
        assert "survey.txt" not in seen and SECRET.decode() not in seen, (command[1], stdin, seen)
        assert not re.search(r"^\s*(ana|bob)\s+size:", seen, re.MULTILINE), (command[1], stdin, seen)
    ana = s3_client(seaweed.endpoint, seaweed.user_keys["ana"])
    assert ana.get_object(Bucket="ana", Key="survey.txt")["Body"].read() == SECRET  # not deleted
    # the control: the same shell from the service's config folder (its security.toml) lists and reads the file
    seen = output(start(shell, seaweed.state / "config"), "fs.ls -l /buckets/ana\nfs.cat /buckets/ana/survey.txt\n")
    assert "survey.txt" in seen and SECRET.decode() in seen


def test_s3_still_answers_each_user_with_their_own_key_only(seaweed):
    ana = s3_client(seaweed.endpoint, seaweed.user_keys["ana"])
    bob = s3_client(seaweed.endpoint, seaweed.user_keys["bob"])
    assert ana.get_object(Bucket="ana", Key="survey.txt")["Body"].read() == SECRET
    bob.put_object(Bucket="bob", Key="notes.txt", Body=b"mine")
    assert bob.get_object(Bucket="bob", Key="notes.txt")["Body"].read() == b"mine"
    for call in (
        lambda: bob.get_object(Bucket="ana", Key="survey.txt"),
        lambda: bob.list_objects_v2(Bucket="ana"),
    ):
        with pytest.raises(ClientError) as denied:
            call()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_certificates_are_private_and_no_ca_key_is_kept(seaweed, certificates):
    from cryptography import x509

    assert certificates.stat().st_mode & 0o777 == 0o700
    assert (seaweed.state / "config").stat().st_mode & 0o777 == 0o700
    files = sorted(certificates.iterdir())
    assert {"ca.crt", "client.crt", "client.key", "filer.crt", "filer.key", "master.crt"} <= {f.name for f in files}
    for path in [*files, seaweed.state / "config" / "security.toml"]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    # only leaf keys: nobody who reads this folder can sign a certificate the servers would accept
    for key in certificates.glob("*.key"):
        cert = x509.load_pem_x509_certificate(key.with_suffix(".crt").read_bytes())
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    security = (seaweed.state / "config" / "security.toml").read_text()
    for section in ("[grpc]", "[grpc.master]", "[grpc.volume]", "[grpc.filer]", "[grpc.s3]", "[grpc.client]"):
        assert section in security
