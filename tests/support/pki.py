"""A throwaway CA with a broker certificate and one client certificate per site (CN = site id),
as a fleet's provisioning would issue them."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA_NAME = "chisan test CA"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _write_pair(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def write_pki(folder: Path, site: str = "sg-0001", sites: Sequence[str] = ()) -> dict[str, Path]:
    """``ca``, ``server_cert``/``server_key``, ``client_cert``/``client_key`` (CN ``site``), and
    ``<site>_cert``/``<site>_key`` for each of ``sites``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert(CA_NAME, ca_key, CA_NAME, ca_key, ca=True)
    out: dict[str, Path] = {"ca": folder / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key = ec.generate_private_key(ec.SECP256R1())
    server = make_cert("127.0.0.1", key, CA_NAME, ca_key, server=True)
    out["server_cert"], out["server_key"] = _write_pair(folder, "server", server, key)
    for name, cn in (("client", site), *((s, s) for s in sites)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = make_cert(cn, key, CA_NAME, ca_key)
        out[f"{name}_cert"], out[f"{name}_key"] = _write_pair(folder, name, cert, key)
    return out
