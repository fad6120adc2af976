"""``firmware-tools/wisun-tool`` as installers run it: a subprocess on the emulator's real pty."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.broute.dialect import Dialect
from drivers.broute.parser import lqi_to_rssi
from drivers.broute.sim import DEFAULT_RBID, NeighbourPan, ThreadedEmulator
from gateway.clock import SystemClock
from tests.conftest import REPO
from tests.drivers.broute.emulated import meter, module

TOOL = REPO / "firmware-tools" / "wisun-tool"
NEIGHBOUR = NeighbourPan(mac="001C640003AA0001", pan_id=0x1234, channel=0x2B, lqi=0x30)


def tool(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[ThreadedEmulator]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    with ThreadedEmulator(module(**overrides), meter(), SystemClock()) as emu:
        yield emu


def info_json(port: str) -> dict[str, Any]:
    result = tool("info", "--port", port, "--json", "--timeout", "3")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_the_tool_is_an_executable_script() -> None:
    assert TOOL.stat().st_mode & 0o111
    assert TOOL.read_text().startswith("#!/usr/bin/env python3\n")


@pytest.mark.parametrize(
    ("emulator", "dialect", "mode"),
    [
        ({"dialect": Dialect.BP35A1, "hex_data": True}, "bp35a1", "hex"),
        ({"dialect": Dialect.BP35C0, "hex_data": False}, "bp35c0", "binary"),
    ],
    indirect=["emulator"],
)
def test_info_reads_versions_address_dialect_and_data_mode(
    emulator: ThreadedEmulator, dialect: str, mode: str
) -> None:
    data = info_json(emulator.path)
    cfg = emulator.pty.module_config
    assert data["version"] == ("1.5.2" if cfg.dialect.has_side else "1.2.10")
    assert data["app_version"] == "rev26e"
    assert data["mac"] == cfg.module_mac
    assert data["dialect"] == dialect
    assert data["data_mode"] == mode
    assert data["ropt"] == ("01" if mode == "hex" else "00")
    # Read-only: nothing but queries reached the module.
    sent = emulator.call(lambda m: list(m.stats.commands))
    assert sent == ["SKVER", "SKAPPVER", "SKINFO", "ROPT"]
    assert emulator.call(lambda m: m.stats.wopt_writes) == 0


@pytest.mark.parametrize("emulator", [{"ropt": False}], indirect=True)
def test_info_on_firmware_without_ropt_says_so(emulator: ThreadedEmulator) -> None:
    data = info_json(emulator.path)
    assert data["data_mode"] is None and data["ropt"] == "FAIL ER04"
    text = tool("info", "--port", emulator.path)
    assert text.returncode == 0
    assert "not reported (ROPT: FAIL ER04)" in text.stdout
    assert "firmware (SKVER)" in text.stdout and "1.2.10" in text.stdout


@pytest.mark.parametrize("emulator", [{"hex_data": False}], indirect=True)
def test_hexmode_asks_then_writes_once_and_refuses_the_second_time(
    emulator: ThreadedEmulator,
) -> None:
    declined = tool("hexmode", "--port", emulator.path, stdin="n\n")
    assert declined.returncode == 1
    assert "writes the module's flash" in declined.stdout
    assert "nothing written" in declined.stderr
    assert emulator.call(lambda m: m.stats.wopt_writes) == 0

    accepted = tool("hexmode", "--port", emulator.path, stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "ROPT now answers 01" in accepted.stdout
    assert emulator.call(lambda m: (m.stats.wopt_writes, m.ropt)) == (1, 1)
    assert info_json(emulator.path)["data_mode"] == "hex"

    again = tool("hexmode", "--port", emulator.path, "--yes")
    assert again.returncode == 1
    assert "already prints hex" in again.stderr and "refusing" in again.stderr
    assert emulator.call(lambda m: m.stats.wopt_writes) == 1


@pytest.mark.parametrize("emulator", [{"hex_data": False}], indirect=True)
def test_hexmode_yes_skips_the_question(emulator: ThreadedEmulator) -> None:
    result = tool("hexmode", "--port", emulator.path, "--yes")
    assert result.returncode == 0, result.stderr
    assert "Switch to hex output now?" not in result.stdout
    assert emulator.call(lambda m: m.stats.wopt_writes) == 1


@pytest.mark.parametrize("emulator", [{"ropt": False}], indirect=True)
def test_hexmode_refuses_a_module_without_ropt(emulator: ThreadedEmulator) -> None:
    result = tool("hexmode", "--port", emulator.path, "--yes")
    assert result.returncode == 1
    assert "nothing to switch" in result.stderr
    assert "WOPT 01" not in emulator.call(lambda m: m.stats.commands)


def survey_json(port: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    result = tool("survey", "--port", port, "--json", "--timeout", "3", *extra)
    return result.returncode, json.loads(result.stdout or "{}"), result.stderr


@pytest.mark.parametrize(
    "emulator",
    [{"dialect": Dialect.BP35C0, "lqi_spread": 12, "neighbours": (NEIGHBOUR,), "seed": 7}],
    indirect=True,
)
def test_survey_summarises_each_pan_over_the_rounds(emulator: ThreadedEmulator) -> None:
    code, report, err = survey_json(emulator.path, "--rounds", "4", "--id", DEFAULT_RBID)
    assert code == 0, err
    assert report["rounds"] == 4 and report["dialect"] == "bp35c0"
    assert emulator.call(lambda m: m.stats.scans) == 4
    pans = {p["mac"]: p for p in report["pans"]}
    cfg = emulator.pty.module_config
    own, other = pans[cfg.meter_mac], pans[NEIGHBOUR.mac]
    assert own["own_meter"] is True and other["own_meter"] is False
    assert own["seen"] == 4 and len(own["lqi"]) == 4
    assert len(set(own["lqi"])) > 1, "the emulator's fading should vary the LQI"
    assert all(abs(lqi - cfg.lqi) <= 12 for lqi in own["lqi"])
    rssi = [lqi_to_rssi(v) for v in own["lqi"]]
    assert own["rssi_dbm"]["min"] == round(min(rssi), 1)
    assert own["rssi_dbm"]["max"] == round(max(rssi), 1)
    assert own["rssi_dbm"]["mean"] == round(sum(rssi) / 4, 1)
    assert own["verdict"] == "good"
    assert other["verdict"] == "poor"  # 0x30 ± 12 is about -91 dBm or worse
    assert other["pan_id"] == "1234" and other["channel"] == 0x2B
    assert f"placement: GOOD for this home's meter {cfg.meter_mac}" in err


@pytest.mark.parametrize("emulator", [{"lqi": 0x40}], indirect=True)
def test_survey_table_and_a_marginal_verdict(emulator: ThreadedEmulator) -> None:
    result = tool("survey", "--port", emulator.path, "--rounds", "2")
    assert result.returncode == 0, result.stderr
    # LQI 0x40 = 64: 0.275 × 64 − 104.27 = −86.7 dBm, between −90 and −80.
    assert "-86.7/-86.7/-86.7" in result.stdout
    assert "marginal" in result.stdout and "thresholds: good" in result.stdout
    assert "placement: MARGINAL for the strongest PAN" in result.stdout


@pytest.mark.parametrize("emulator", [{"lqi": 0x28}], indirect=True)
def test_survey_exits_2_on_a_poor_placement(emulator: ThreadedEmulator) -> None:
    code, report, err = survey_json(emulator.path, "--rounds", "2")
    assert code == 2
    assert report["pans"][0]["verdict"] == "poor"
    assert "placement: POOR" in err


@pytest.mark.parametrize("emulator", [{"meter_off": True}], indirect=True)
def test_survey_with_nothing_in_range(emulator: ThreadedEmulator) -> None:
    code, report, err = survey_json(emulator.path, "--rounds", "2")
    assert code == 1
    assert report["pans"] == []
    assert "no PAN heard in 2 scan(s)" in err


@pytest.mark.parametrize("emulator", [{}], indirect=True)
def test_survey_names_a_missing_own_meter(emulator: ThreadedEmulator) -> None:
    code, _, err = survey_json(emulator.path, "--rounds", "1", "--id", "F" * 32)
    assert code == 1
    assert "no PAN with pair ID FFFFFFFF" in err


def test_a_missing_port_is_one_line_and_exit_1(tmp_path: Any) -> None:
    result = tool("info", "--port", str(tmp_path / "ttyUSB9"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
