"""Several PV inverters as one PV family, against real SunSpec inverters (a pymodbus server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from drivers.capabilities import DeviceError
from drivers.modbus.adapters import build_modbus
from drivers.modbus.sim import ModbusSim
from drivers.modbus.simdevices import SimPvInverter
from gateway.clock import JST, AcceleratedClock
from gateway.config import DeviceConfig
from gateway.pvgroup import PvGroup

CLOCK = AcceleratedClock(1, datetime(2026, 11, 27, 12, 0, tzinfo=JST))


@pytest.fixture
async def inverters() -> AsyncIterator[tuple[PvGroup, SimPvInverter, SimPvInverter]]:
    big = SimPvInverter(CLOCK, unit_id=1, rated_w=4000)
    small = SimPvInverter(CLOCK, unit_id=2, rated_w=1000, serial="SIMPV0002")
    async with ModbusSim(CLOCK, [big, small]) as sim:
        devices = [
            DeviceConfig(
                name=name,
                kind="pv",
                protocol="modbus",
                host="127.0.0.1",
                port=sim.port,
                unit_id=unit,
                sunspec=True,
            )
            for name, unit in (("roof", 1), ("flex", 2))
        ]
        setup = build_modbus(devices, CLOCK, lambda k, v, at: None)
        try:
            yield PvGroup(list(setup.adapters.values())), big, small
        finally:
            for adapter in setup.adapters.values():
                await adapter.transport.close()


async def test_a_limit_in_watts_is_shared_by_rating(
    inverters: tuple[PvGroup, SimPvInverter, SimPvInverter],
) -> None:
    group, big, small = inverters
    assert await group.shares(3001) == [2400, 600]  # rounded down: never more than allowed
    await group.limit_w(3000)
    assert (big.limit_pct, small.limit_pct) == (60.0, 60.0)
    await group.limit_w(None)
    assert (big.limit_pct, small.limit_pct) == (None, None)


async def test_a_limit_in_percent_reaches_every_inverter(
    inverters: tuple[PvGroup, SimPvInverter, SimPvInverter],
) -> None:
    group, big, small = inverters
    await group.limit_pct(40)
    assert (big.limit_pct, small.limit_pct) == (40.0, 40.0)
    await group.limit_pct(None)
    assert (big.limit_pct, small.limit_pct) == (None, None)


async def test_no_rating_splits_equally_and_a_refusal_is_raised_after_telling_the_rest() -> None:
    rated = SimPvInverter(CLOCK, unit_id=1, rated_w=4000)
    unrated = SimPvInverter(CLOCK, unit_id=2, rated_w=0, serial="SIMPV0003")
    async with ModbusSim(CLOCK, [unrated, rated]) as sim:
        devices = [
            DeviceConfig(
                name=name,
                kind="pv",
                protocol="modbus",
                host="127.0.0.1",
                port=sim.port,
                unit_id=unit,
                sunspec=True,
            )
            for name, unit in (("unrated", 2), ("rated", 1))
        ]
        setup = build_modbus(devices, CLOCK, lambda k, v, at: None)
        group = PvGroup(list(setup.adapters.values()))
        try:
            assert await group.shares(3000) == [1500, 1500]
            with pytest.raises(DeviceError, match=r"unrated.*no WMax/WRtg"):
                await group.limit_w(3000)
            assert rated.limit_pct == 37.5  # told its share although the first one refused
            with pytest.raises(DeviceError, match="no inverter reports its FIT contract"):
                await group.fit_contract()
        finally:
            for adapter in setup.adapters.values():
                await adapter.transport.close()


def test_a_group_has_two_inverters_or_more() -> None:
    with pytest.raises(ValueError, match="two inverters or more"):
        PvGroup([object()])
