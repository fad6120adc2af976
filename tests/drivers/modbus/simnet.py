"""Helpers for tests against the pymodbus simulator on loopback: a sim and adapter pair, a driven
ManualClock (shared with the contract test)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from drivers.modbus.adapters import SunSpecBattery, SunSpecPv
from drivers.modbus.sim import ModbusSim, SunSpecSim
from drivers.modbus.simdevices import SimPvInverter
from drivers.modbus.transport import ModbusSettings, ModbusTransport
from gateway.clock import ManualClock
from tests.support.clock import drive as drive_clock

T = TypeVar("T")


async def drive(
    clock: ManualClock, aw: Awaitable[T], *, step: float = 0.5, limit_s: float = 600.0
) -> T:
    """Await ``aw`` while device time passes (the shared helper, with a tighter bound)."""
    return await drive_clock(clock, aw, step=step, limit_s=limit_s)


def transport_for(
    sim: ModbusSim, *, unit_id: int | None = None, timeout_s: float = 0.5, name: str = "battery"
) -> ModbusTransport:
    unit = unit_id if unit_id is not None else next(iter(sim.units))
    settings = ModbusSettings(host=sim.host, port=sim.port, unit_id=unit, timeout_s=timeout_s)
    return ModbusTransport(name, settings)


@contextlib.asynccontextmanager
async def sim_battery(
    clock: ManualClock | None = None, *, revert_s: int | None = None, **sim_options: Any
) -> AsyncIterator[tuple[SunSpecSim, SunSpecBattery, ManualClock]]:
    clock = clock or ManualClock()
    async with SunSpecSim(clock, **sim_options) as sim:
        transport = transport_for(sim)
        adapter = SunSpecBattery(
            "battery", transport, clock, confirm_timeout_s=5.0, revert_s=revert_s
        )
        try:
            yield sim, adapter, clock
        finally:
            await transport.close()


@contextlib.asynccontextmanager
async def sim_pv(
    clock: ManualClock | None = None, *, revert_s: int | None = None, **unit_options: Any
) -> AsyncIterator[tuple[SimPvInverter, SunSpecPv]]:
    clock = clock or ManualClock()
    unit = SimPvInverter(clock, **unit_options)
    async with ModbusSim(clock, [unit]) as sim:
        transport = transport_for(sim, name="pv")
        adapter = SunSpecPv("pv", transport, clock, confirm_timeout_s=5.0, revert_s=revert_s)
        try:
            yield unit, adapter
        finally:
            await transport.close()
