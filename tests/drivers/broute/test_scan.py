from __future__ import annotations

import pytest

from drivers.broute.actions import StartTimer, TimerExpired, Write
from drivers.broute.dialect import Dialect, scan_seconds
from drivers.broute.parser import LineParser
from drivers.broute.scan import (
    ScanAction,
    ScanConfig,
    ScanDone,
    ScanFailed,
    ScanMachine,
    ScanStarted,
)

from .fake_module import FakeModule, Pan


def drive(machine: ScanMachine, fake: FakeModule) -> list[ScanAction]:
    parser = LineParser()
    actions: list[ScanAction] = []
    pending = list(machine.start())
    while pending:
        action = pending.pop(0)
        actions.append(action)
        if isinstance(action, Write):
            parser.command_sent(action.data)
            produced: list[ScanAction] = []
            for event in parser.feed(fake.respond(action.data)):
                produced += machine.handle(event)
            if not produced and not machine.done:
                produced = machine.handle(TimerExpired())
            pending += produced
    return actions


@pytest.mark.parametrize("dialect", [Dialect.BP35A1, Dialect.BP35C0])
def test_lists_every_pan_strongest_first(dialect: Dialect) -> None:
    pans = [Pan(lqi=0x40), Pan(channel=0x3B, pan_id=0x1234, mac="001C640003AAAAAA", lqi=0x90)]
    fake = FakeModule(dialect, pans=pans)
    actions = drive(ScanMachine(ScanConfig(durations=(6,))), fake)
    done = actions[-1]
    assert isinstance(done, ScanDone)
    assert [p.lqi for p in done.pans] == [0x90, 0x40]
    assert done.dialect.has_side == dialect.has_side
    started = [a for a in actions if isinstance(a, ScanStarted)]
    assert started == [ScanStarted(6, scan_seconds(6))]
    timers = [a.seconds for a in actions if isinstance(a, StartTimer)]
    assert timers[-1] == pytest.approx(scan_seconds(6) + 10)
    assert not any("SKSETPWD" in w.display for w in actions if isinstance(w, Write))


def test_longer_scans_until_found_and_empty_result_otherwise() -> None:
    fake = FakeModule(Dialect.BP35A1, pans=[Pan(found_from=7)])
    done = drive(ScanMachine(ScanConfig(durations=(6, 7, 8))), fake)[-1]
    assert isinstance(done, ScanDone) and done.durations == (6, 7) and len(done.pans) == 1
    fake = FakeModule(Dialect.BP35A1, pans=[Pan(found_from=9)])
    done = drive(ScanMachine(ScanConfig(durations=(6, 7))), fake)[-1]
    assert isinstance(done, ScanDone) and done.pans == () and done.durations == (6, 7)


def test_wrong_configured_dialect_fails_clearly() -> None:
    fake = FakeModule(Dialect.BP35C0)
    failed = drive(ScanMachine(ScanConfig(dialect=Dialect.BP35A1, durations=(6,))), fake)[-1]
    assert isinstance(failed, ScanFailed) and failed.wrong_dialect
    assert "C-series" in failed.message


def test_silent_module_times_out() -> None:
    machine = ScanMachine(ScanConfig())
    machine.start()
    failed = machine.handle(TimerExpired())
    assert isinstance(failed[-1], ScanFailed) and "did not answer SKVER" in failed[-1].message


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ScanConfig(durations=())
    with pytest.raises(ValueError):
        ScanConfig(durations=(15,))
