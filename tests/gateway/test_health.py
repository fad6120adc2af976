"""Health alarms: raised once when a problem starts, cleared once when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.health import HealthMonitor, clock_synchronised, disk_free_fraction
from gateway.logs import logs_shed, shed_logs


def test_meter_lost_and_clock_alarms(tmp_path: Path) -> None:
    clock = ManualClock()
    alarms: list[dict[str, Any]] = []
    meter = {"up": True}
    synced: dict[str, bool | None] = {"v": True}
    mon = HealthMonitor(
        clock,
        alarms.append,
        tmp_path / "chisan.db",
        meter_up=lambda: meter["up"],
        meter_lost_after_s=300,
        check_clock=lambda: synced["v"],
    )
    mon.check()
    assert alarms == []
    meter["up"] = False
    mon.check()
    clock.advance(299)
    mon.check()
    assert alarms == []  # a short outage (re-join) is not an alarm
    clock.advance(2)
    mon.check()
    mon.check()
    assert [(a["kind"], a["active"]) for a in alarms] == [("meter_lost", True)]
    meter["up"] = True
    synced["v"] = False
    mon.check()
    assert [(a["kind"], a["active"]) for a in alarms[1:]] == [
        ("clock_unsynchronised", True),
        ("meter_lost", False),
    ]
    synced["v"] = None  # cannot tell: keep what we said
    mon.check()
    assert len(alarms) == 3


def test_disk_full_alarm(tmp_path: Path) -> None:
    alarms: list[dict[str, Any]] = []
    mon = HealthMonitor(
        ManualClock(),
        alarms.append,
        tmp_path / "x.db",
        disk_min_free=1.01,
        check_clock=lambda: True,
    )
    mon.check()
    assert alarms[0]["kind"] == "disk_full" and alarms[0]["active"] is True
    assert "free at" in alarms[0]["message"]
    shed_logs(False)


def test_probes_answer() -> None:
    assert clock_synchronised() in (True, False, None)
    free = disk_free_fraction(Path("/"))
    assert free is not None and 0 <= free <= 1


def test_store_without_its_reserve_is_disk_full_and_sheds_logs(tmp_path: Path) -> None:
    alarms: list[dict[str, Any]] = []
    reserve = {"held": True}
    mon = HealthMonitor(
        ManualClock(),
        alarms.append,
        tmp_path / "x.db",
        disk_min_free=0.0,
        check_clock=lambda: True,
        store_reserve=lambda: reserve["held"],
    )
    handler = logging.NullHandler()
    logging.getLogger().addHandler(handler)
    try:
        mon.check()
        assert alarms == [] and not logs_shed()
        reserve["held"] = False
        mon.check()
        assert [(a["kind"], a["active"]) for a in alarms] == [("disk_full", True)]
        assert "shed" in alarms[0]["message"] and logs_shed()
        reserve["held"] = True
        mon.check()
        assert [(a["kind"], a["active"]) for a in alarms][1:] == [("disk_full", False)]
        assert not logs_shed()
    finally:
        shed_logs(False)
        logging.getLogger().removeHandler(handler)
