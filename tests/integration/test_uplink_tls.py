"""mqtts:// with client certificates against a real mosquitto that requires them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.clock import SystemClock
from gateway.config import MqttConfig
from gateway.provenance import init_key, load_private
from gateway.store import Store
from gateway.uplink import Uplink
from tests.support.mosquitto import Mosquitto, free_port

SITE = "sg-0001"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
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


def write_pki(folder: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("chisan test CA", ca_key, "chisan test CA", ca_key, ca=True)
    out: dict[str, Path] = {}
    out["ca"] = folder / "ca.pem"
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(
            SITE if name == "client" else "127.0.0.1", key, "chisan test CA", ca_key, server=server
        )
        out[f"{name}_cert"] = folder / f"{name}.pem"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}_key"] = folder / f"{name}.key"
        out[f"{name}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out[f"{name}_key"].chmod(0o600)
    return out


async def test_mqtts_with_client_certificate(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port)
    broker.conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        # As root, mosquitto drops to its own user, which cannot read pytest's private tmp dir.
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    broker.start()
    init_key(tmp_path / "site.pem")
    store = Store(tmp_path / "chisan.db", SITE, load_private(tmp_path / "site.pem"))
    try:
        good = MqttConfig(
            url=f"mqtts://127.0.0.1:{port}",
            client_id=SITE,
            ca_file=pki["ca"],
            cert_file=pki["client_cert"],
            key_file=pki["client_key"],
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        )
        uplink = Uplink(good, SITE, store, SystemClock())
        task = asyncio.create_task(uplink.run())
        try:
            await asyncio.wait_for(uplink.wait_connected(), 10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Without a client certificate the broker refuses the connection: never connected.
        anonymous = MqttConfig(
            url=f"mqtts://127.0.0.1:{port}",
            client_id=SITE,
            ca_file=pki["ca"],
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        )
        refused = Uplink(anonymous, SITE, store, SystemClock())
        task = asyncio.create_task(refused.run())
        await asyncio.sleep(1.0)
        assert not refused.connected and refused.stats.connects == 0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        store.close()
        broker.stop()
