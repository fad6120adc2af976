"""``chisan modbus scan|read`` against ``chisan sim modbus`` running as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivers.modbus.sim import free_port
from gateway.cli import main

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["modbus", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def start_sim(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``chisan sim modbus ARGS`` in its own process; returns it and its banner line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sim", "modbus", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stderr is not None
    banner = proc.stderr.readline()
    assert "Modbus simulator on" in banner, banner + proc.stderr.read()
    return proc, banner


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def sim_port() -> Iterator[int]:
    port = free_port()
    proc, banner = start_sim("--port", str(port), "--battery", "802")
    assert f"127.0.0.1:{port}" in banner
    try:
        yield port
    finally:
        stop(proc)
        assert proc.returncode == 0


def test_scan_table_and_json(sim_port: int) -> None:
    code, out, err = run("scan", f"127.0.0.1:{sim_port}")
    assert code == 0, err
    for text in ("common", "inverter_three_phase", "nameplate", "controls", "40004", "66"):
        assert text in out
    code, out, _ = run("scan", f"127.0.0.1:{sim_port}", "--unit", "2", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["base"] == 40000 and data["unit"] == 2 and data["notes"] == []
    assert [(m["id"], m["name"], m["length"]) for m in data["models"]] == [
        (1, "common", 66),
        (701, "DERMeasureAC", 153),
        (702, "DERCapacity", 50),
        (704, "DERCtlAC", 65),
        (713, "DERStorageCapacity", 7),
        (802, "battery", 62),
    ]


def test_read_decodes_with_units(sim_port: int) -> None:
    code, out, err = run("read", f"127.0.0.1:{sim_port}", "--model", "120", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["model"] == 120 and data["name"] == "nameplate"
    assert data["points"]["WRtg"] == {"value": 4500, "units": "W"}
    assert data["points"]["DERTyp"] == {"value": 4, "units": None}
    assert data["points"]["VArRtgQ1"]["value"] is None  # not implemented
    code, out, _ = run("read", f"127.0.0.1:{sim_port}", "--unit", "2", "--model", "802")
    assert code == 0
    assert "SoC" in out and "%WHRtg" in out and "50" in out


def test_clear_one_line_errors(sim_port: int) -> None:
    code, out, err = run("read", f"127.0.0.1:{sim_port}", "--model", "124")
    assert code == 1 and out == ""
    assert err == f"error: 127.0.0.1:{sim_port} has no model 124 (models: 1, 103, 120, 123)\n"
    dead = free_port()
    code, _, err = run("scan", f"127.0.0.1:{dead}", "--timeout", "1")
    assert code == 1 and err == f"error: cannot connect to 127.0.0.1:{dead}\n"
    code, _, err = run("scan", "127.0.0.1:notaport")
    assert code == 2 and "port must be 1..65535" in err
    code, _, err = run("read", f"127.0.0.1:{sim_port}", "--model", "0")
    assert code == 2


def test_timeout_and_exception_codes() -> None:
    port = free_port()
    proc, _ = start_sim("--port", str(port), "--no-answer")
    try:
        code, _, err = run("scan", f"127.0.0.1:{port}", "--timeout", "0.3")
        assert code == 1 and "no answer within 0.3 s" in err and err.count("\n") == 1
    finally:
        stop(proc)
    port = free_port()
    proc, _ = start_sim("--port", str(port), "--exception", "2")
    try:
        code, _, err = run("scan", f"127.0.0.1:{port}")
        assert code == 1 and err.startswith("error: ") and "not a SunSpec device" in err
    finally:
        stop(proc)


def test_sim_rtu_prints_its_pty_and_serves_it() -> None:
    proc, banner = start_sim("--rtu", "--battery", "124", "--base", "0")
    try:
        path = banner.split("RTU on ", 1)[1].split(":", 1)[0]
        assert os.path.exists(path)
        code = (
            "import asyncio\n"
            "from drivers.modbus.transport import ModbusSettings, ModbusTransport\n"
            "from drivers.modbus.discovery import walk_chain\n"
            "async def main():\n"
            f"    t = ModbusTransport('rtu', ModbusSettings(serial={path!r}, baudrate=19200,"
            " unit_id=2, timeout_s=2))\n"
            "    chain = await walk_chain(t.read)\n"
            "    print(chain.base, [e.model_id for e in chain.entries])\n"
            "    await t.close()\n"
            "asyncio.run(main())\n"
        )
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "0 [1, 120, 103, 124]"
        assert time.monotonic() - started < 20
    finally:
        stop(proc)


def test_sim_needs_a_port_or_rtu() -> None:
    result = CliRunner().invoke(main, ["sim", "modbus"])
    assert result.exit_code == 2 and "--port is required" in result.stderr
