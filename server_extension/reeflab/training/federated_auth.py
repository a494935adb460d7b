"""Site tokens as Flower SuperNode keys, and the TLS a federation's SuperLink serves.

ReefLab uses Flower's own SuperNode authentication (`flower-superlink --enable-supernode-auth`):
every request a SuperNode makes is signed with its private key, and the SuperLink accepts only nodes
whose public key was registered with `flwr supernode register` (and refuses them again once
`flwr supernode unregister`ed). The platform manages the keys: a site's token (`rlf_...`, shown once)
*is* its key, because the SuperNode's P-384 private key is derived from it. The platform keeps only
the token's hash and the derived public key; `reeflab federated join` derives the private key at the
site. One secret per site, nothing to send but the token, revocation through Flower itself.

Flower requires TLS for node authentication: each federation gets its own CA and server certificate
(for `bind_ip` and `public_host`); sites verify the SuperLink with that CA (`--root-certificates`).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PREFIX = "rlf_"  # ReefLab Flower token: recognisable in a leak scan
_CURVE = ec.SECP384R1()
_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973


def token_hash(token: str) -> str:
    """Tokens are 256-bit random strings: a plain SHA-256 is enough to keep them unusable at rest."""
    return hashlib.sha256(token.encode()).hexdigest()


def node_key(token: str) -> ec.EllipticCurvePrivateKey:
    """The SuperNode private key of a token (P-384, deterministic: the site derives it from the token alone)."""
    if not token.startswith(PREFIX):
        raise ValueError(f"not a ReefLab federated token (they start with '{PREFIX}')")
    digest = hashlib.sha512(b"reeflab-flower-supernode\0" + token.encode()).digest()
    return ec.derive_private_key(int.from_bytes(digest, "big") % (_ORDER - 1) + 1, _CURVE)


def node_public_key(token: str) -> str:
    """The OpenSSH public key `flwr supernode register` takes."""
    public = node_key(token).public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def node_private_pem(token: str) -> bytes:
    """The private key as `flower-supernode --auth-supernode-private-key` reads it (OpenSSH PEM)."""
    return node_key(token).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls(folder: Path, hosts: list[str], days: int = 365) -> dict[str, Path]:
    """A CA and a server certificate for `hosts` in `folder`: {ca, cert, key} paths (keys 0600)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(_CURVE)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("ReefLab federation CA"))
        .issuer_name(_name("ReefLab federation CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(_CURVE)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.crt", "cert": folder / "server.crt", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    paths["key"].touch(mode=0o600)
    paths["key"].write_bytes(pem)
    return paths
