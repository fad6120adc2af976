"""``chisan broute scan|read`` and ``chisan sim broute`` against the emulator on a pty."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner, Result

from drivers.broute.dialect import Dialect
from drivers.broute.sim import DEFAULT_PASSWORD, DEFAULT_RBID, ThreadedEmulator
from gateway.cli import main
from gateway.clock import SystemClock

from .emulated import meter, module

FAST = ["--timeout", "2", "--min-interval", "0.05"]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands configure logging for their process; give the next test the old setup."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "broute-password"
    path.write_text(DEFAULT_PASSWORD + "\n")
    path.chmod(0o600)
    return path


def emulate(**overrides: Any) -> ThreadedEmulator:
    return ThreadedEmulator(module(**overrides), meter(two_wire=True), SystemClock())


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def read_args(port: str, password_file: Path, *extra: str) -> list[str]:
    return [
        "broute",
        "read",
        "--port",
        port,
        "--id",
        DEFAULT_RBID,
        "--password-file",
        str(password_file),
        *FAST,
        *extra,
    ]


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("dialect", [Dialect.BP35A1, Dialect.BP35C0])
def test_read_json(password_file: Path, dialect: Dialect) -> None:
    with emulate(dialect=dialect) as emu:
        result = invoke(*read_args(emu.path, password_file, "--json"))
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        raw = emu.call(lambda e: (e.meter.import_raw, e.meter.export_raw))
    assert isinstance(data["power_w"], int)
    assert len(data["current_a"]) == 2 and data["current_a"][1] is None  # two-wire: T is null
    assert data["import_kwh"] == pytest.approx(raw[0] / 10)
    assert data["export_kwh"] == pytest.approx(raw[1] / 10)
    boundary = data["boundary"]
    assert boundary["at"].endswith(":00+09:00") or boundary["at"].endswith(":30:00+09:00")
    assert isinstance(boundary["import_kwh"], float) and isinstance(boundary["export_kwh"], float)
    assert data["dialect"] == dialect.value and data["pan"]["pan_id"] == "8888"


def test_read_table(password_file: Path) -> None:
    with emulate() as emu:
        result = invoke(*read_args(emu.path, password_file))
    assert result.exit_code == 0, result.output
    assert "instantaneous power" in result.stdout and "no data" in result.stdout  # T current


def test_scan_json() -> None:
    with emulate(dialect=Dialect.BP35C0, lqi=0x64) as emu:
        result = invoke("broute", "scan", "--port", emu.path, "--duration", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dialect"] == "bp35c0"
    assert data["pans"] == [
        {
            "channel": 33,
            "pan_id": "8888",
            "mac": "001C6400030C12A4",
            "lqi": 100,
            "rssi_dbm": -76.8,
            "pair_id": DEFAULT_RBID[-8:],
        }
    ]


def test_scan_table() -> None:
    with emulate() as emu:
        result = invoke("broute", "scan", "--port", emu.path, "--duration", "2")
    assert result.exit_code == 0, result.output
    assert "001C6400030C12A4" in result.stdout and "-54.8" in result.stdout


def test_missing_port(password_file: Path) -> None:
    line = one_error_line(invoke(*read_args("/dev/ttyUSB9", password_file)))
    assert line == "error: no such port /dev/ttyUSB9: is the Wi-SUN module plugged in?"
    line = one_error_line(invoke("broute", "scan", "--port", "/dev/ttyUSB9"))
    assert "no such port /dev/ttyUSB9" in line


def test_busy_port(password_file: Path) -> None:
    with emulate() as emu, open(emu.path, "rb") as held:
        import fcntl

        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = one_error_line(invoke(*read_args(emu.path, password_file)))
    assert "is busy" in line


def test_wrong_dialect(password_file: Path) -> None:
    with emulate(dialect=Dialect.BP35C0) as emu:
        line = one_error_line(invoke(*read_args(emu.path, password_file, "--dialect", "bp35a1")))
    assert "FAIL ER05" in line and "C-series" in line and "--dialect auto" in line


def test_rejected_credentials(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("WRONGPASSWRD\n")
    wrong.chmod(0o600)
    with emulate() as emu:
        line = one_error_line(invoke(*read_args(emu.path, wrong)))
    assert line.startswith("error: B-route ID or password rejected")


def test_no_pan_found(password_file: Path) -> None:
    with emulate(visible_from=99) as emu:
        line = one_error_line(invoke(*read_args(emu.path, password_file)))
        assert "no PAN found" in line
        line = one_error_line(invoke("broute", "scan", "--port", emu.path, "--duration", "2"))
        assert "no PAN found" in line


def test_open_password_file_is_refused(password_file: Path) -> None:
    password_file.chmod(0o644)
    line = one_error_line(invoke(*read_args("/dev/ttyUSB9", password_file)))
    assert "chmod 600" in line and DEFAULT_PASSWORD not in line


def test_errors_are_one_line_in_a_real_process(password_file: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", *read_args("/dev/ttyUSB9", password_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr == "error: no such port /dev/ttyUSB9: is the Wi-SUN module plugged in?\n"


def test_sim_broute_serves_until_sigterm(password_file: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["sim", "broute", "--dialect", "bp35c0", "--scan-scale", "0.01", "--link-delay", "0.003"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("B-route emulator (bp35c0) on /dev/")
        port = first.split(" on ")[1].strip()
        result = invoke(*read_args(port, password_file, "--json"))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["dialect"] == "bp35c0"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "emulator stopped" in out
