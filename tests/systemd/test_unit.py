"""The shipped systemd files, checked by systemd's own tools.

``systemd-analyze verify`` refuses a unit whose ExecStart binaries do not exist, and the gateway
is not installed in /opt/chisan on a test machine: the unit is copied with its command paths
pointed at an existing executable, which changes nothing else that verify or the security
analysis looks at. ``systemd-analyze security --offline=true`` scores the hardening without a
running systemd.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "chisan.service"
INSTALLED_CHISAN = "/opt/chisan/.venv/bin/chisan"
MAX_EXPOSURE = 2.5

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def verifiable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit under its own name, its chisan commands pointing at an executable that exists."""
    body = UNIT.read_text() if text is None else text
    assert INSTALLED_CHISAN in body
    target = shutil.which("true") or "/bin/true"
    copy = tmp_path / "chisan.service"
    copy.write_text(body.replace(INSTALLED_CHISAN, target))
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return run(ANALYZE, "verify", "--man=no", "--generators=false", str(unit), cwd=unit.parent)


def exposure(unit: Path) -> float:
    assert ANALYZE is not None
    result = run(ANALYZE, "security", "--offline=true", "--no-pager", str(unit), cwd=unit.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no exposure line in:\n{result.stdout[-2000:]}"
    return float(match.group(1))


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


@needs_analyze
def test_unit_verifies_without_any_warning(tmp_path: Path) -> None:
    result = verify(verifiable_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values too; any line it prints is a defect.
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


@needs_analyze
def test_verify_is_strict_enough_to_catch_a_typo(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtecHome=yes")
    result = verify(verifiable_copy(tmp_path, broken))
    assert "ProtecHome" in result.stderr


@needs_analyze
def test_exposure_score_is_at_most_2_5(tmp_path: Path) -> None:
    score = exposure(verifiable_copy(tmp_path))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}"


@needs_analyze
def test_the_score_reacts_to_the_hardening(tmp_path: Path) -> None:
    """Without the sandbox settings the same unit scores far worse: the parse reads real output."""
    kept = ("Type", "ExecStart", "ExecStartPre", "User", "Group", "Description")
    lines = [
        line
        for line in UNIT.read_text().splitlines()
        if line.startswith("[") or line.partition("=")[0] in kept
    ]
    bare = exposure(verifiable_copy(tmp_path, "\n".join(lines) + "\n"))
    assert bare > MAX_EXPOSURE + 2


def test_unit_has_what_the_daemon_relies_on() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert s["User"] == ["chisan"] and s["SupplementaryGroups"] == ["dialout"]
    assert s["StateDirectory"] == ["chisan"] and s["RuntimeDirectory"] == ["chisan"]
    assert s["ConfigurationDirectory"] == ["chisan"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX AF_NETLINK"]
    assert "@system-service" in s["SystemCallFilter"]
    for key in ("StartLimitIntervalSec", "StartLimitBurst", "WatchdogSec"):
        assert key in s
    # The supervisor pings every WatchdogSec/2: a period under 10 s would make a busy Pi flap.
    assert int(s["WatchdogSec"][0]) >= 10
    # The serial port must stay reachable under DevicePolicy=closed.
    assert "char-ttyUSB rw" in s["DeviceAllow"] and "char-ttyACM rw" in s["DeviceAllow"]
    assert "PrivateDevices" not in s
    # The B-route password and the keys come in as credentials named by their file's basename.
    creds = {v.split(":", 1)[0]: v.split(":", 1)[-1] for v in s["LoadCredential"]}
    assert creds["broute-password"] == "/etc/chisan/broute-password"
    assert creds["site-ed25519.pem"] == "/etc/chisan/site-ed25519.pem"
    assert creds["mqtt-client.key"] == "/etc/chisan/mqtt-client.key"


def test_example_config_names_match_the_credentials() -> None:
    """A credential is used only when its name is the basename of the file the config names."""
    creds = {v.split(":", 1)[0] for v in unit_settings(UNIT.read_text())["LoadCredential"]}
    example = (REPO / "config" / "example.toml").read_text()
    assert 'password_file = "/etc/chisan/broute-password"' in example
    assert {"broute-password", "mqtt-password"} <= creds


SYSUSERS = shutil.which("systemd-sysusers")
TMPFILES = shutil.which("systemd-tmpfiles")


def staging_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\n")
    return root


@pytest.mark.skipif(SYSUSERS is None or TMPFILES is None, reason="systemd tools not installed")
def test_sysusers_and_tmpfiles_apply_to_a_staging_root(tmp_path: Path) -> None:
    assert SYSUSERS is not None and TMPFILES is not None
    root = staging_root(tmp_path)
    result = run(SYSUSERS, f"--root={root}", str(SYSTEMD / "chisan.sysusers"))
    assert result.returncode == 0, result.stderr
    passwd = (root / "etc" / "passwd").read_text()
    entry = next(line for line in passwd.splitlines() if line.startswith("chisan:"))
    assert entry.endswith(":/var/lib/chisan:/usr/sbin/nologin")
    assert "dialout:x:20:chisan" in (root / "etc" / "group").read_text()
    result = run(TMPFILES, f"--root={root}", "--create", str(SYSTEMD / "chisan.tmpfiles"))
    assert result.returncode == 0, result.stderr
    assert ((root / "etc" / "chisan").stat().st_mode & 0o777) == 0o750
    assert ((root / "var" / "lib" / "chisan").stat().st_mode & 0o777) == 0o700


def test_udev_rules_are_well_formed() -> None:
    """Every GOTO reaches a LABEL, every line is KEY op "value" pairs, and /dev/wisun is made."""
    text = (SYSTEMD / "99-chisan-wisun.rules").read_text()
    pair = re.compile(r'^[A-Z_]+(\{[A-Za-z_]+\})?(==|!=|\+=|:=|=)"[^"]*"$')
    labels, gotos = set(), set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for item in (part.strip() for part in line.split(", ")):
            assert pair.match(item), f"malformed rule item {item!r} in {line!r}"
            key, value = item.split("=", 1)[0], item.split('"')[1]
            if key == "LABEL":
                labels.add(value)
            elif key == "GOTO":
                gotos.add(value)
    assert gotos and gotos <= labels
    assert 'SYMLINK+="wisun"' in text and 'ENV{ID_MM_DEVICE_IGNORE}="1"' in text
