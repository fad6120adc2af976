"""``chisan setup`` without devices: interactive answers, flags only, refusals, file modes."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli import main
from gateway.config import load

RBID = "00112233445566778899AABBCCDDEEFF"
PASSWORD = "Pa55w0rdXyZ9"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_interactive_answers_make_a_valid_config(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "chisan.toml"
    answers = "\n".join(
        [
            "Bad Site!",  # refused with the reason, asked again
            "sg-0042",
            "http://nope",  # refused
            "mqtt://broker.local:1883",
            "1234",  # refused: not 32 hex
            RBID.lower(),
            PASSWORD,
            "y",  # FIT
            "y",  # write
        ]
    )
    result = CliRunner().invoke(
        main,
        [
            "setup",
            "--output",
            str(out),
            "--no-discover",
            "--serial",
            "/dev/ttyUSB7",
            "--store",
            str(tmp_path / "db"),
        ],
        input=answers + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "site id: 3-64 characters" in result.output
    assert "broker: mqtt://HOST[:PORT]" in result.output
    assert "B-route ID: 32 hexadecimal" in result.output
    assert PASSWORD not in result.output  # hidden input
    cfg = load(out)
    assert cfg.site.id == "sg-0042" and cfg.site.fit is True
    assert cfg.mqtt.url == "mqtt://broker.local:1883"
    assert cfg.broute is not None
    assert cfg.broute.port == "/dev/ttyUSB7" and cfg.broute.id == RBID
    assert cfg.broute.dialect == "auto"
    assert cfg.devices == ()
    secret = out.parent / "broute-password"
    assert secret.read_text() == PASSWORD + "\n"
    assert mode(secret) == 0o600 and mode(out) == 0o640
    assert not list(out.parent.glob(".*"))  # no staging files left behind
    check = CliRunner().invoke(main, ["check-config", "-c", str(out)])
    assert check.exit_code == 0, check.output


def test_flags_only_and_refusal_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "chisan.toml"
    pw = tmp_path / "given-password"
    pw.write_text(PASSWORD + "\n")
    key = tmp_path / "backend.pub.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    args = [
        "setup",
        "--yes",
        "--no-discover",
        "--output",
        str(out),
        "--site",
        "sg-0001",
        "--broker",
        "mqtt://127.0.0.1",
        "--broute-id",
        RBID,
        "--broute-password-file",
        str(pw),
        "--serial",
        "/dev/ttyUSB0",
        "--backend-key",
        str(key),
        "--no-fit",
    ]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert load(out).commands.public_key_file == key
    assert mode(tmp_path / "broute-password") == 0o600
    before = out.read_text()
    again = CliRunner().invoke(main, [*args[:-1], "--fit"])
    assert again.exit_code == 1
    assert f"{out} exists: not replaced (pass --force to replace it)" in again.output
    assert out.read_text() == before
    forced = CliRunner().invoke(main, [*args[:-1], "--fit", "--force"])
    assert forced.exit_code == 0, forced.output
    assert load(out).site.fit is True


def test_missing_answers_with_yes_are_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["setup", "--yes", "--no-discover", "--output", str(tmp_path / "c.toml"), "--site", "s-1x"],
    )
    assert result.exit_code == 2
    assert "missing answers with --yes: --broker (broker URL)" in result.output
    assert not (tmp_path / "c.toml").exists()


def test_password_from_stdin_and_a_different_existing_secret(tmp_path: Path) -> None:
    out = tmp_path / "chisan.toml"
    (tmp_path / "broute-password").write_text("SomethingElse\n")
    args = [
        "setup",
        "-y",
        "--no-discover",
        "-o",
        str(out),
        "--site",
        "sg-0009",
        "--broker",
        "mqtts://broker.example.jp:8883",
        "--ca-file",
        str(tmp_path / "ca.pem"),
        "--broute-id",
        RBID,
        "--broute-password-stdin",
        "--serial",
        "/dev/ttyUSB0",
        "--no-fit",
    ]
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    refused = CliRunner().invoke(main, args, input=PASSWORD + "\n")
    assert refused.exit_code == 1
    assert "exists with another password: not replaced" in refused.output
    assert not out.exists()
    done = CliRunner().invoke(main, [*args, "--force"], input=PASSWORD + "\n")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "broute-password").read_text() == PASSWORD + "\n"
    assert load(out).mqtt.ca_file == tmp_path / "ca.pem"
    bad = CliRunner().invoke(main, [*args, "--force"], input="has space\n")
    assert bad.exit_code == 2 and "no spaces" in bad.output
