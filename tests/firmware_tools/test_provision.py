"""``firmware-tools/provision`` into a staging root (``--root``), as a subprocess.

The staging root starts as a bare system root (an /etc/passwd and /etc/group): the user, the
folders, the secrets, the config and the systemd files all come from the tool. Owners are checked
when the tests run as root (the tool sets them only then); modes always.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import config, provenance
from tests.conftest import REPO

TOOL = REPO / "firmware-tools" / "provision"
SITE = "sg-0042"
RBID = "0123456789abcdef0123456789abcdef"
PASSWORD = "Pa55w0rdXyZ9"
IS_ROOT = os.geteuid() == 0


def provision(
    root: Path, *extra: str, password: Path | None = None
) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable,
        str(TOOL),
        "--site-id",
        SITE,
        "--fit",
        "no",
        "--broker",
        "mqtt://market.example:1883",
        "--broute-id",
        RBID,
        "--root",
        str(root),
        *extra,
    ]
    if password is not None:
        args += ["--broute-password-file", str(password)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def password(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\n")
    return root


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int, int]]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (path.read_bytes(), st.st_mode, st.st_uid, st.st_gid)
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def chisan_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "chisan":
            return int(fields[2]), int(fields[3])
    raise AssertionError("no chisan user in the staging root")


def test_dry_run_lists_every_action_and_touches_nothing(root: Path, password: Path) -> None:
    before = snapshot(root)
    result = provision(root, "--dry-run", password=password)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for path in (
        "/etc/systemd/system/chisan.service",
        "/usr/lib/sysusers.d/chisan.conf",
        "/usr/lib/tmpfiles.d/chisan.conf",
        "/etc/udev/rules.d/99-chisan-wisun.rules",
        "/etc/chisan/broute-password",
        "/etc/chisan/site-ed25519.pem",
        "/etc/chisan/mqtt-client.key",
        "/etc/chisan/mqtt-client.csr",
        "/etc/chisan/chisan.toml",
    ):
        assert f"would create {path}" in out
    assert "skipped under --root: systemctl enable chisan.service" in out
    assert "would run: chisan check-config" in out
    assert "nothing was changed" in out
    assert snapshot(root) == before
    assert sorted(p.name for p in root.rglob("*")) == ["etc", "group", "passwd"]


def test_real_run_writes_private_secrets_and_a_valid_config(root: Path, password: Path) -> None:
    result = provision(root, password=password)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check-config:" in result.stdout and "OK" in result.stdout
    conf = root / "etc" / "chisan"
    secrets = ["broute-password", "site-ed25519.pem", "mqtt-client.key"]
    for name in secrets:
        assert mode(conf / name) == 0o600, name
    assert mode(conf / "chisan.toml") == 0o640
    assert mode(conf / "mqtt-client.csr") == 0o644
    assert mode(conf) == 0o750 and mode(root / "var" / "lib" / "chisan") == 0o700
    assert (conf / "broute-password").read_text() == PASSWORD + "\n"
    if IS_ROOT:
        uid, gid = chisan_ids(root)
        for name in secrets:
            st = (conf / name).stat()
            assert (st.st_uid, st.st_gid) == (uid, gid), name
        st = (conf / "chisan.toml").stat()
        assert (st.st_uid, st.st_gid) == (0, gid)
        assert "dialout:x:20:chisan" in (root / "etc" / "group").read_text()

    # The written config passes check-config on its own, and names the files just written.
    check = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(conf / "chisan.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    cfg = config.load(conf / "chisan.toml")
    assert cfg.site.id == SITE and cfg.site.fit is False
    assert cfg.broute is not None and cfg.broute.id == RBID.upper()
    assert cfg.broute.port == "/dev/wisun"
    assert cfg.store.site_key == conf / "site-ed25519.pem"
    assert cfg.broute.password_file == conf / "broute-password"
    provenance.load_private(cfg.store.site_key)  # an Ed25519 key the daemon accepts

    # The CSR is for the MQTT client key and this site, and its signature verifies.
    csr = x509.load_pem_x509_csr((conf / "mqtt-client.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SITE
    key = serialization.load_pem_private_key((conf / "mqtt-client.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert csr.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def test_second_run_changes_nothing_and_says_so(root: Path, password: Path) -> None:
    assert provision(root, password=password).returncode == 0
    before = snapshot(root)
    again = provision(root, password=password)
    assert again.returncode == 0, again.stderr
    assert "already provisioned: nothing changed" in again.stdout
    assert not [line for line in again.stdout.splitlines() if line.startswith(("create", "update"))]
    assert snapshot(root) == before


def test_keys_are_never_replaced_and_a_lost_csr_is_remade(root: Path, password: Path) -> None:
    assert provision(root, password=password).returncode == 0
    conf = root / "etc" / "chisan"
    site_key, mqtt_key = (
        (conf / "site-ed25519.pem").read_bytes(),
        (conf / "mqtt-client.key").read_bytes(),
    )
    (conf / "mqtt-client.csr").unlink()
    (conf / "broute-password").chmod(0o644)
    new_password = password.parent / "pw2"
    new_password.write_text("NewPassw0rd1\n")
    result = provision(root, password=new_password)
    assert result.returncode == 0, result.stderr
    assert "create /etc/chisan/mqtt-client.csr" in result.stdout
    assert "update /etc/chisan/broute-password" in result.stdout
    assert "provisioned: 2 change(s)" in result.stdout
    assert (conf / "site-ed25519.pem").read_bytes() == site_key
    assert (conf / "mqtt-client.key").read_bytes() == mqtt_key
    assert (conf / "broute-password").read_text() == "NewPassw0rd1\n"
    assert mode(conf / "broute-password") == 0o600
    # Only the mode wrong: fixed, nothing else.
    (conf / "broute-password").chmod(0o640)
    fixed = provision(root, password=new_password)
    assert "chmod 0600 /etc/chisan/broute-password" in fixed.stdout
    assert "provisioned: 1 change(s)" in fixed.stdout


def test_installed_unit_points_at_this_install_and_verifies(root: Path, password: Path) -> None:
    assert provision(root, password=password).returncode == 0
    unit = root / "etc" / "systemd" / "system" / "chisan.service"
    text = unit.read_text()
    assert f"ExecStart={REPO}/.venv/bin/chisan run -c /etc/chisan/chisan.toml" in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    result = subprocess.run(
        [analyze, "verify", "--man=no", "--generators=false", str(unit)],
        capture_output=True,
        text=True,
        cwd=unit.parent,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_a_backend_key_goes_into_the_config(root: Path, password: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = tmp_path / "backend.pem"
    pub.write_text(provenance.public_key_pem(Ed25519PrivateKey.generate()))
    result = provision(root, "--backend-key", str(pub), password=password)
    assert result.returncode == 0, result.stdout + result.stderr
    cfg = config.load(root / "etc" / "chisan" / "chisan.toml")
    assert cfg.commands.public_key_file == root / "etc" / "chisan" / "backend-ed25519.pub.pem"
    assert cfg.commands.require_signature


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site-id", "Bad_Site"], "--site-id 'Bad_Site'"),
        (["--broute-id", "1234"], "--broute-id: expected 32 hexadecimal characters"),
        (["--broker", "http://x"], "--broker 'http://x'"),
    ],
)
def test_bad_input_is_one_clear_line(
    root: Path, password: Path, args: list[str], message: str
) -> None:
    result = provision(root, *args, password=password)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "etc" / "chisan").exists()


def test_tls_broker_needs_and_gets_its_ca(root: Path, password: Path, tmp_path: Path) -> None:
    tls = ("--broker", "mqtts://market.example:8883")
    refused = provision(root, *tls, password=password)
    assert refused.returncode == 1 and "mqtts:// needs --ca-file" in refused.stderr
    ca = tmp_path / "ca.pem"
    ca.write_bytes(self_signed_ca())
    result = provision(root, *tls, "--ca-file", str(ca), password=password)
    assert result.returncode == 0, result.stdout + result.stderr
    cfg = config.load(root / "etc" / "chisan" / "chisan.toml")
    assert cfg.mqtt.tls and cfg.mqtt.ca_file == root / "etc" / "chisan" / "ca.pem"
    assert (root / "etc" / "chisan" / "ca.pem").read_bytes() == ca.read_bytes()


def self_signed_ca() -> bytes:
    import datetime

    from cryptography.hazmat.primitives import hashes

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_fresh_root_needs_the_broute_password(root: Path) -> None:
    result = provision(root)
    assert result.returncode == 1
    assert "give --broute-password-file" in result.stderr
