"""The pure info / hex-mode machines and the survey tally, fed events directly."""

from __future__ import annotations

import pytest

from drivers.broute.actions import StartTimer, TimerExpired, Write
from drivers.broute.dialect import Dialect
from drivers.broute.info import (
    HexModeDone,
    HexModeMachine,
    InfoFailed,
    InfoMachine,
    ModuleInfo,
    data_mode_of,
)
from drivers.broute.parser import DataMode, LineParser, PanDescriptor
from drivers.broute.survey import Survey, Verdict, verdict

EINFO_A1 = b"EINFO FE80:0000:0000:0000:021D:1290:1234:5678 001D129012345678 21 FFFF FFFE\r\n"


def writes(actions: list[object]) -> list[str]:
    return [a.display for a in actions if isinstance(a, Write)]


def feed(machine: InfoMachine, parser: LineParser, text: bytes) -> list[object]:
    out: list[object] = []
    for event in parser.feed(text):
        out.extend(machine.handle(event))
    return out


def test_info_skips_a_missing_skappver_and_reports_a_missing_ropt() -> None:
    machine, parser = InfoMachine(), LineParser()
    assert writes(list(machine.start())) == ["SKVER"]
    assert writes(feed(machine, parser, b"EVER 1.2.10\r\nOK\r\n")) == ["SKAPPVER"]
    assert writes(feed(machine, parser, b"FAIL ER04\r\n")) == ["SKINFO"]
    assert writes(feed(machine, parser, EINFO_A1 + b"OK\r\n")) == ["ROPT"]
    (outcome,) = feed(machine, parser, b"FAIL ER04\r\n")
    assert isinstance(outcome, ModuleInfo)
    assert outcome.app_version is None and outcome.data_mode is None
    assert outcome.ropt == "FAIL ER04" and outcome.dialect is Dialect.BP35A1
    assert outcome.channel == 0x21 and outcome.mac == "001D129012345678"
    assert machine.done


def test_info_fails_plainly_when_the_module_is_silent() -> None:
    machine = InfoMachine(command_timeout=2.0)
    actions = machine.start()
    assert any(isinstance(a, StartTimer) and a.seconds == 2.0 for a in actions)
    (failed,) = machine.handle(TimerExpired())
    assert isinstance(failed, InfoFailed)
    assert "did not answer SKVER within 2 s" in failed.message


def test_hexmode_writes_wopt_only_after_ropt_00_and_checks_it() -> None:
    machine, parser = HexModeMachine(), LineParser()
    machine.start()
    feed(machine, parser, b"EVER 1.2.10\r\nOK\r\n")
    feed(machine, parser, b"EAPPVER rev26e\r\nOK\r\n")
    feed(machine, parser, EINFO_A1 + b"OK\r\n")
    assert writes(feed(machine, parser, b"OK 00\r")) == ["WOPT 01"]
    assert writes(feed(machine, parser, b"OK\r")) == ["ROPT"]
    (done,) = feed(machine, parser, b"OK 01\r")
    assert done == HexModeDone(written=True, before=DataMode.BINARY, after=DataMode.HEX)


def test_hexmode_on_a_hex_module_writes_nothing() -> None:
    machine, parser = HexModeMachine(), LineParser()
    machine.start()
    feed(machine, parser, b"EVER 1.2.10\r\nOK\r\nEAPPVER x\r\nOK\r\n")
    feed(machine, parser, EINFO_A1 + b"OK\r\n")
    (done,) = feed(machine, parser, b"OK 01\r")
    assert done == HexModeDone(written=False, before=DataMode.HEX, after=DataMode.HEX)


def test_hexmode_reports_a_write_that_did_not_take() -> None:
    machine, parser = HexModeMachine(), LineParser()
    machine.start()
    feed(machine, parser, b"EVER 1.2.10\r\nOK\r\nEAPPVER x\r\nOK\r\n" + EINFO_A1 + b"OK\r\n")
    feed(machine, parser, b"OK 00\r")
    feed(machine, parser, b"OK\r")
    (failed,) = feed(machine, parser, b"OK 00\r")
    assert isinstance(failed, InfoFailed) and "not in hex mode" in failed.message


@pytest.mark.parametrize(("value", "mode"), [("01", DataMode.HEX), ("00", DataMode.BINARY)])
def test_data_mode_of(value: str, mode: DataMode) -> None:
    assert data_mode_of(value) is mode
    assert data_mode_of("zz") is None and data_mode_of(None) is None


@pytest.mark.parametrize(
    ("min_rssi", "seen", "rounds", "expected"),
    [
        (-80.0, 5, 5, Verdict.GOOD),
        (-80.1, 5, 5, Verdict.MARGINAL),
        (-60.0, 4, 5, Verdict.MARGINAL),
        (-90.0, 3, 6, Verdict.MARGINAL),
        (-90.1, 6, 6, Verdict.POOR),
        (-60.0, 2, 5, Verdict.POOR),
        (-60.0, 0, 5, Verdict.POOR),
    ],
)
def test_verdict_thresholds(min_rssi: float, seen: int, rounds: int, expected: Verdict) -> None:
    assert verdict(min_rssi, seen, rounds) is expected


def test_survey_counts_a_pan_once_per_round() -> None:
    pan = PanDescriptor(channel=0x21, pan_id=0x8888, mac="001c6400030c12a4", lqi=0xB4)
    survey = Survey()
    survey.add_round([pan, pan])
    survey.add_round([])
    (entry,) = survey.results()
    assert entry.lqis == [0xB4] and entry.mac == "001C6400030C12A4"
    assert survey.verdict_of(entry) is Verdict.MARGINAL  # heard in half the rounds
