"""``chisan setup`` discovering a simulated home: the B-route module emulator on a pty (scan and
dialect), an ECHONET node on loopback (unicast discovery, the PV's FIT contract) and a SunSpec
storage inverter on a real pymodbus server; the config it writes loads and matches them."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from drivers.broute.dialect import Dialect
from drivers.broute.sim import DEFAULT_RBID, MeterModelConfig, ModuleConfig, PtyEmulator
from drivers.echonet.sim import SimNode
from drivers.modbus.sim import SunSpecSim
from gateway.clock import SystemClock
from gateway.config import load
from tests.conftest import venv_bin

NODE = "127.0.4.5"
LOCAL = "127.0.4.12"
MULTICAST_NODE = "127.0.4.8"
MULTICAST_LOCAL = "127.0.4.13"
PASSWORD = "Pa55w0rdXyZ9"


async def _chisan(*args: str, stdin: str = "") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        venv_bin("chisan"),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 90)
    return proc.returncode or 0, out.decode()


async def test_setup_writes_what_it_discovered(tmp_path: Path) -> None:
    clock = SystemClock()
    module = ModuleConfig(
        dialect=Dialect.BP35C0, link_delay=0.003, link_jitter=0.0, scan_scale=0.02
    )
    node = SimNode(NODE, devices=("pv", "battery", "water_heater"), clock=clock, fit=True)
    async with (
        PtyEmulator(module, MeterModelConfig(), clock) as emu,
        node,
        SunSpecSim(clock, host="127.0.0.1") as sunspec,
    ):
        out = tmp_path / "etc" / "chisan.toml"
        code, text = await _chisan(
            "setup",
            "--yes",
            "--output",
            str(out),
            "--site",
            "sg-0100",
            "--broker",
            "mqtt://127.0.0.1:1883",
            "--broute-id",
            DEFAULT_RBID,
            "--broute-password-stdin",
            "--serial",
            emu.path,
            "--bind",
            LOCAL,
            "--echonet-host",
            NODE,
            "--modbus-host",
            f"127.0.0.1:{sunspec.port}/1",
            "--modbus-host",
            "127.0.0.1:1/1",  # nothing there: a warning, not a failure
            "--store",
            str(tmp_path / "chisan.db"),
            stdin=PASSWORD + "\n",
        )
    assert code == 0, text
    assert "meter heard: channel 33, PAN 8888" in text
    assert "warning: no SunSpec device at 127.0.0.1:1" in text
    assert "site.fit = true (from the PV's FIT contract property)" in text
    cfg = load(out)
    assert cfg.site.id == "sg-0100" and cfg.site.fit is True
    assert cfg.broute is not None
    assert cfg.broute.port == emu.path and cfg.broute.dialect == "bp35c0"
    assert cfg.broute.id == DEFAULT_RBID
    assert cfg.echonet.bind == LOCAL
    devices = {(d.name, d.kind, d.protocol, d.host, d.eoj, d.port) for d in cfg.devices}
    assert devices == {
        ("pv", "pv", "echonet", NODE, "027901", None),
        ("battery", "battery", "echonet", NODE, "027D01", None),
        ("water_heater", "water_heater", "echonet", NODE, "026B01", None),
        ("battery-2", "battery", "modbus", "127.0.0.1", None, sunspec.port),
    }
    modbus = next(d for d in cfg.devices if d.protocol == "modbus")
    assert modbus.sunspec and modbus.unit_id == 1
    secret = out.parent / "broute-password"
    assert secret.read_text() == PASSWORD + "\n"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    code, text = await _chisan("check-config", "-c", str(out))
    assert code == 0, text


async def test_interactive_setup_with_discovery(tmp_path: Path) -> None:
    """Prompts on a pipe: the installer types the answers discovery cannot give."""
    clock = SystemClock()
    module = ModuleConfig(link_delay=0.003, link_jitter=0.0, scan_scale=0.02)
    node = SimNode(NODE, devices=("battery",), clock=clock)
    async with PtyEmulator(module, MeterModelConfig(), clock) as emu, node:
        out = tmp_path / "chisan.toml"
        answers = ["sg-0200", "mqtt://127.0.0.1", DEFAULT_RBID, PASSWORD, "n", "y"]
        code, text = await _chisan(
            "setup",
            "-o",
            str(out),
            "--serial",
            emu.path,
            "--bind",
            LOCAL,
            "--echonet-host",
            NODE,
            stdin="\n".join(answers) + "\n",
        )
    assert code == 0, text
    assert "Site id" in text and "B-route password" in text and "feed-in tariff" in text
    assert PASSWORD not in text
    cfg = load(out)
    assert cfg.site.fit is False and cfg.broute is not None and cfg.broute.dialect == "bp35a1"
    assert [(d.name, d.eoj) for d in cfg.devices] == [("battery", "027D01")]


async def test_multicast_discovery_and_a_missing_module(tmp_path: Path) -> None:
    """No --echonet-host: the node is found by multicast. A module that is not plugged in is a
    warning (the daemon keeps trying), not a reason to write nothing."""
    node = SimNode(
        MULTICAST_NODE,
        devices=("battery",),
        clock=SystemClock(),
        multicast_interface=MULTICAST_NODE,
    )
    async with node:
        if not node.multicast_joined:
            pytest.skip("cannot join 224.0.23.0 on loopback here")
        out = tmp_path / "chisan.toml"
        code, text = await _chisan(
            "setup",
            "-y",
            "-o",
            str(out),
            "--site",
            "sg-0300",
            "--broker",
            "mqtt://127.0.0.1",
            "--broute-id",
            DEFAULT_RBID,
            "--broute-password-stdin",
            "--serial",
            str(tmp_path / "ttyUSB9"),
            "--bind",
            MULTICAST_LOCAL,
            "--no-fit",
            stdin=PASSWORD + "\n",
        )
    assert code == 0, text
    assert "looking for ECHONET devices by multicast" in text
    assert f"warning: B-route scan failed: no such port {tmp_path / 'ttyUSB9'}" in text
    cfg = load(out)
    mine = [(d.kind, d.eoj) for d in cfg.devices if d.host == MULTICAST_NODE]
    if not mine:
        pytest.skip("multicast is not delivered on loopback here")
    assert mine == [("battery", "027D01")]
    assert cfg.broute is not None and cfg.broute.dialect == "auto"
