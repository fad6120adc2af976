"""The readings hub: sums over several devices of one kind, dated by their oldest part."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from gateway.clock import JST
from gateway.readings import BATTERY_POWER_W, PV_POWER_W, Reading, ReadingsHub

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=JST)


def summing_hub() -> tuple[ReadingsHub, list[tuple[str, Reading]]]:
    hub = ReadingsHub()
    heard: list[tuple[str, Reading]] = []
    hub.subscribe(lambda key, reading: heard.append((key, reading)))
    hub.sum_over(PV_POWER_W, ["roof", "flex"])
    return hub, heard


def test_a_sum_is_known_once_every_part_has_reported() -> None:
    hub, heard = summing_hub()
    hub.update(PV_POWER_W, 3000.0, T0, "device", device="roof")
    unknown = Reading(None, T0, "sum")  # half a home's PV is not its PV
    assert hub.latest(PV_POWER_W) == unknown
    hub.update(PV_POWER_W, 1200.0, T0 + timedelta(seconds=4), "device", device="flex")
    total = hub.latest(PV_POWER_W)
    assert total == Reading(4200.0, T0, "sum")
    assert heard == [(PV_POWER_W, unknown), (PV_POWER_W, total)]
    assert {n: r.value for n, r in hub.by_device(PV_POWER_W).items()} == {
        "roof": 3000.0,
        "flex": 1200.0,
    }


def test_a_sum_is_as_old_as_its_oldest_part() -> None:
    """A fresh reading of one inverter never makes a stale one look fresh."""
    hub, _ = summing_hub()
    hub.update(PV_POWER_W, 3000.0, T0, device="roof")
    hub.update(PV_POWER_W, 1000.0, T0, device="flex")
    later = T0 + timedelta(minutes=10)
    hub.update(PV_POWER_W, 2500.0, later, device="roof")  # flex stopped answering at T0
    total = hub.latest(PV_POWER_W)
    assert total is not None and total.value == 3500.0 and total.at == T0
    hub.update(PV_POWER_W, 900.0, later, device="flex")
    total = hub.latest(PV_POWER_W)
    assert total is not None and total.value == 3400.0 and total.at == later


def test_an_unknown_part_makes_the_sum_unknown() -> None:
    hub, _ = summing_hub()
    hub.update(PV_POWER_W, 3000.0, T0, device="roof")
    hub.update(PV_POWER_W, None, T0, device="flex")  # the device said "no data"
    total = hub.latest(PV_POWER_W)
    assert total is not None and total.value is None


def test_keys_without_a_sum_keep_the_latest_and_each_device() -> None:
    hub, _ = summing_hub()
    hub.update(BATTERY_POWER_W, -500.0, T0, "device", device="battery")
    latest = hub.latest(BATTERY_POWER_W)
    assert latest is not None and latest.value == -500.0
    assert set(hub.by_device(BATTERY_POWER_W)) == {"battery"}
    hub.update(PV_POWER_W, 100.0, T0, device="stranger")  # not one of the summed inverters
    assert hub.latest(PV_POWER_W) is None  # and no part of the sum has reported
    assert "stranger" in hub.by_device(PV_POWER_W)


def test_telemetry_shows_the_sum() -> None:
    hub, _ = summing_hub()
    hub.update(PV_POWER_W, 3000, T0, device="roof")
    hub.update(PV_POWER_W, 1000, T0 + timedelta(seconds=1), device="flex")
    assert hub.telemetry()[PV_POWER_W] == {"value": 4000, "at": T0.isoformat()}


def test_a_sum_needs_a_device() -> None:
    with pytest.raises(ValueError, match="at least one device"):
        ReadingsHub().sum_over(PV_POWER_W, [])
