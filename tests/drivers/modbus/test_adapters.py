"""SunSpec adapters against the simulator served by a real pymodbus TCP server on loopback."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from drivers.capabilities import BatteryMode, DeviceError, PvState
from drivers.modbus.adapters import (
    BATTERY_MODE,
    BATTERY_SOC_PCT,
    ModbusNotFollowing,
    ModbusSetpointError,
    SunSpecPv,
    build_modbus,
)
from drivers.modbus.registermap import RegisterSpec
from drivers.modbus.sim import SunSpecSim, free_port
from drivers.modbus.sunspec import StorageOffsets
from drivers.modbus.transport import (
    ModbusRefused,
    ModbusSettings,
    ModbusTimeout,
    ModbusTransport,
    ModbusUnreachable,
)
from gateway.clock import ManualClock
from gateway.config import DeviceConfig
from tests.drivers.modbus.simnet import drive, sim_battery, transport_for


def storage_reg(sim: SunSpecSim, offset: int) -> int:
    image = sim.battery.image
    return image.words[image.spans[124].start + offset]


async def test_discovery_and_common_model() -> None:
    async with sim_battery() as (_, battery, _):
        models = await battery.models()
        assert sorted(models) == [1, 103, 120, 124]
        common = await battery.common()
        assert common.manufacturer == "Chisan Sim" and common.serial == "SIM0001"


async def test_discovery_at_base_zero() -> None:
    async with sim_battery(base=0) as (_, battery, _):
        assert (await battery.models())[124].address == 152


async def test_commands_write_the_registers_and_read_them_back() -> None:
    async with sim_battery() as (sim, battery, clock):
        await drive(clock, battery.charge(2000))
        assert storage_reg(sim, StorageOffsets.STOR_CTL_MOD) == 1
        assert storage_reg(sim, StorageOffsets.IN_W_RTE) == 4000  # 40.00 % of 5000 W
        assert (await battery.power_w()).value == 2000
        await drive(clock, battery.discharge(1250))
        assert storage_reg(sim, StorageOffsets.STOR_CTL_MOD) == 2
        assert storage_reg(sim, StorageOffsets.OUT_W_RTE) == 2500
        assert (await battery.power_w()).value == -1250
        assert (await battery.mode()).value is BatteryMode.DISCHARGE
        await drive(clock, battery.standby())
        assert storage_reg(sim, StorageOffsets.STOR_CTL_MOD) == 3
        assert storage_reg(sim, StorageOffsets.IN_W_RTE) == 0
        assert storage_reg(sim, StorageOffsets.OUT_W_RTE) == 0
        assert (await battery.mode()).value is BatteryMode.STANDBY
        await drive(clock, battery.auto())
        assert storage_reg(sim, StorageOffsets.STOR_CTL_MOD) == 0
        assert (await battery.mode()).value is BatteryMode.AUTO


async def test_soc_follows_the_clock_and_stops_when_full() -> None:
    async with sim_battery(soc_pct=95, capacity_wh=10000) as (sim, battery, clock):
        await drive(clock, battery.charge(5000))
        clock.advance(360)  # 500 Wh = 5 %
        assert (await battery.soc_pct()).value == pytest.approx(100.0, abs=0.2)
        clock.advance(3600)
        assert (await battery.soc_pct()).value == 100.0
        assert (await battery.power_w()).value == 0
        assert sim.battery.charged_wh == pytest.approx(500, abs=20)


async def test_setpoint_above_wchamax_or_not_positive_is_refused() -> None:
    async with sim_battery() as (sim, battery, _):
        with pytest.raises(ModbusSetpointError, match="above"):
            await battery.charge(6000)
        for bad in (0, -1, True, 1.5):
            with pytest.raises(ModbusSetpointError):
                await battery.discharge(bad)  # type: ignore[arg-type]
        assert storage_reg(sim, StorageOffsets.STOR_CTL_MOD) == 0


async def test_device_that_does_not_follow_is_reported() -> None:
    async with sim_battery() as (sim, battery, clock):
        sim.battery.follow = False
        with pytest.raises(ModbusNotFollowing, match="charge") as info:
            await drive(clock, battery.charge(1000))
        assert info.value.device == "battery"


async def test_silent_device_times_out_then_recovers() -> None:
    async with sim_battery() as (sim, battery, _):
        await battery.soc_pct()
        sim.stall()
        with pytest.raises(ModbusTimeout) as info:
            await battery.soc_pct()
        assert isinstance(info.value, DeviceError) and info.value.device == "battery"
        sim.stall(False)
        assert (await battery.soc_pct()).value == 50.0
        assert battery.transport.reconnects == 2


async def test_unreachable_device_is_a_device_error() -> None:
    transport = ModbusTransport(
        "nobody", ModbusSettings(host="127.0.0.1", port=free_port(), timeout_s=0.5)
    )
    with pytest.raises(ModbusUnreachable) as info:
        await transport.read(40000, 2)
    assert info.value.device == "nobody" and "nobody" in str(info.value)


async def test_illegal_writes_are_refused() -> None:
    async with sim_battery() as (sim, battery, _):
        with pytest.raises(ModbusRefused):
            await battery.transport.write(sim.base + sim.battery.image.spans[103].start, [1])


async def test_not_sunspec_is_a_protocol_error() -> None:
    clock = ManualClock()
    async with SunSpecSim(clock, base=50000) as sim:
        transport = transport_for(sim)
        pv = SunSpecPv("pv", transport, clock, bases=(40000, 0))
        with pytest.raises(DeviceError, match="no SunS marker"):
            await pv.generation_w()
        await transport.close()


async def test_pv_adapter_reads_the_inverter_model() -> None:
    clock = ManualClock()
    async with SunSpecSim(clock) as sim:
        sim.battery.auto_power_w = -3000.0  # the inverter delivers 3 kW to AC
        transport = transport_for(sim)
        pv = SunSpecPv("pv", transport, clock)
        assert isinstance(pv, PvState)
        assert (await pv.generation_w()).value == 3000
        before = (await pv.generated_wh()).value
        clock.advance(3600)
        after = (await pv.generated_wh()).value
        assert before is not None and after is not None and after - before == 3000
        await transport.close()


async def test_build_modbus_and_poller() -> None:
    clock = ManualClock()
    async with SunSpecSim(clock) as sim:
        devices = [
            DeviceConfig("bat", "battery", "modbus", host=sim.host, port=sim.port, sunspec=True),
            DeviceConfig(  # an incomplete register map: no mode, no setpoints
                "raw",
                "battery",
                "modbus",
                host=sim.host,
                registers=(RegisterSpec("power_w", 1), RegisterSpec("soc_pct", 3)),
            ),
            DeviceConfig("wh", "water_heater", "modbus", host=sim.host, sunspec=True),
            DeviceConfig("off", "battery", "modbus", host=sim.host, sunspec=True, enabled=False),
        ]
        seen: list[tuple[str, Any, datetime]] = []
        setup = build_modbus(devices, clock, lambda k, v, at: seen.append((k, v, at)))
        assert list(setup.adapters) == ["bat"] and set(setup.skipped) == {"raw", "wh"}
        assert [c.name for c in setup.components] == ["bat"]
        poller = setup.pollers[0]
        task = asyncio.ensure_future(poller.run())
        for _ in range(200):
            await asyncio.sleep(0.005)
            if poller.polls:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        readings = {k: v for k, v, _ in seen}
        assert readings[BATTERY_SOC_PCT] == 50.0 and readings[BATTERY_MODE] == "auto"
        assert all(at == clock.now() for _, _, at in seen)
