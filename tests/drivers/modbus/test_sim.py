"""The simulator as a SunSpec device: discovery at every base address, broken chains, faults,
RTU over a pty, and a third-party client (pysunspec2) reading it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import structlog

from drivers.modbus.adapters import ModbusProtocolError, SunSpecBattery, SunSpecPv
from drivers.modbus.discovery import NoMarker, walk_chain
from drivers.modbus.sim import ModbusSim, SunSpecSim, home_units
from drivers.modbus.simdevices import SimImage, SimPvInverter, SimUnit, clear_sky_w
from drivers.modbus.sunspec import MARKER, encode_model
from drivers.modbus.transport import (
    ModbusError,
    ModbusRefused,
    ModbusSettings,
    ModbusTimeout,
    ModbusTransport,
)
from gateway.clock import ManualClock
from tests.drivers.modbus.simnet import transport_for


@pytest.mark.parametrize("base", [40000, 0, 50000])
async def test_discovery_at_each_base_address(base: int) -> None:
    clock = ManualClock()
    async with SunSpecSim(clock, base=base) as sim:
        transport = transport_for(sim)
        battery = SunSpecBattery("battery", transport, clock)
        models = await battery.models()
        assert sorted(models) == [1, 103, 120, 124]
        assert models[1].address == base + 4
        assert battery.chain is not None and battery.chain.base == base
        assert battery.chain.notes == []
        await transport.close()


def _broken_unit(clock: ManualClock) -> SimUnit:
    """Common model, an unknown vendor model, a 103 too short to decode, a good 120, and no
    end marker: the read after the last model is refused (illegal address)."""
    image = SimImage([(1, {"Mn": "Odd Inc", "DA": 1}, ())], end_marker=False)
    image.words += [64123, 3, 1, 2, 3]
    image.words += [103, 20, *([0] * 20)]
    plate = encode_model(120, {"DERTyp": 4, "WRtg": 3000, "WRtg_SF": 0})
    image.words += [120, len(plate), *plate]
    return SimUnit(clock, image, 1)


async def test_broken_chain_is_tolerated_and_said_once() -> None:
    clock = ManualClock()
    async with ModbusSim(clock, [_broken_unit(clock)]) as sim:
        transport = transport_for(sim, name="odd")
        chain = await walk_chain(transport.read)
        assert [(e.model_id, e.name, e.problem is None) for e in chain.entries] == [
            (1, "common", True),
            (64123, "unknown", True),
            (103, "inverter_three_phase", False),
            (120, "nameplate", True),
        ]
        assert sorted(chain.usable) == [1, 120, 64123]
        assert any("103" in n and "needs 50" in n for n in chain.notes)
        assert any("without an end marker" in n for n in chain.notes)
        pv = SunSpecPv("odd", transport, clock)
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(ModbusProtocolError, match="needs model 101 or 102"):
                await pv.models()
            with pytest.raises(ModbusProtocolError):
                await pv.models()
        said = [e["problem"] for e in logs if e["event"] == "SunSpec chain problem"]
        assert len(said) == 2 and said == chain.notes  # two problems, each said once
        await transport.close()


async def test_chain_ending_in_zeros_and_no_marker() -> None:
    words = {0: [0, 0], 40000: list(MARKER), 40002: [1, 66], 40070: [0, 0]}

    async def read(address: int, count: int) -> list[int]:
        if address in words:
            return words[address]
        raise ModbusRefused("x", "illegal address")

    chain = await walk_chain(read)
    assert [e.model_id for e in chain.entries] == [1] and "ID 0" in chain.notes[0]
    with pytest.raises(NoMarker, match="no SunS marker at 0, 50000"):
        await walk_chain(read, (0, 50000))


async def test_exception_codes_and_second_client_refused() -> None:
    clock = ManualClock()
    async with SunSpecSim(clock) as sim:
        first = transport_for(sim)
        second = transport_for(sim, name="second")
        assert (await first.read(40000, 2)) == list(MARKER)
        sim.exception_code = 6  # slave device busy
        with pytest.raises(ModbusRefused, match="refused"):
            await first.read(40000, 2)
        sim.exception_code = None
        sim.refuse_second_client()
        with pytest.raises(ModbusError):
            await second.read(40000, 2)
        assert (await first.read(40000, 2)) == list(MARKER)  # the first client is unaffected
        sim.refuse_second_client(False)
        assert (await second.read(40000, 2)) == list(MARKER)
        await first.close()
        await second.close()


async def test_one_silent_device_does_not_stall_another() -> None:
    clock = ManualClock()
    async with SunSpecSim(clock) as silent, SunSpecSim(clock) as healthy:
        slow, fast = transport_for(silent, timeout_s=1.0), transport_for(healthy)
        silent.stall()
        stuck = asyncio.ensure_future(slow.read(40000, 2))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(5):
            assert (await fast.read(40000, 2)) == list(MARKER)
        assert loop.time() - start < 0.5 and not stuck.done()
        with pytest.raises(ModbusTimeout):
            await stuck
        silent.stall(False)
        await slow.close()
        await fast.close()


async def test_rtu_over_a_pty() -> None:
    clock = ManualClock()
    clock.set(clock.now().replace(hour=12))
    async with ModbusSim(clock, home_units(clock), rtu=True) as sim:
        assert sim.rtu_path.startswith("/dev/")
        pv_link = ModbusTransport(
            "pv", ModbusSettings(serial=sim.rtu_path, baudrate=19200, unit_id=1, timeout_s=1.0)
        )
        pv = SunSpecPv("pv", pv_link, clock)
        assert sorted(await pv.models()) == [1, 103, 120, 123]
        assert (await pv.generation_w()).value == round(4500 * 0.85)
        await pv_link.close()
        battery_link = ModbusTransport(
            "bat", ModbusSettings(serial=sim.rtu_path, baudrate=19200, unit_id=2, timeout_s=1.0)
        )
        battery = SunSpecBattery("bat", battery_link, clock)
        assert (await battery.soc_pct()).value == 50.0
        await battery_link.close()


def test_pv_curve_is_the_echonet_simulators() -> None:
    from drivers.echonet.sim.devices import SimPv

    clock = ManualClock()
    echonet = SimPv(clock, rated_w=4500)
    for hour in (5, 7, 9, 12, 15, 17, 19):
        clock.set(clock.now().replace(hour=hour, minute=30))
        assert clear_sky_w(4500, clock) == echonet.clear_sky_w()


def _scan_with_pysunspec2(port: int, unit: int) -> dict[str, object]:
    from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP  # type: ignore[import-untyped]

    device = SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr="127.0.0.1", ipport=port)
    try:
        device.scan()
        found: dict[str, object] = {
            "models": sorted(k for k in device.models if isinstance(k, int))
        }
        found["Mn"] = device.common[0].Mn.value
        if 123 in device.models:
            found["W"] = device.models[103][0].W.cvalue
            controls = device.models[123][0]
            controls.WMaxLimPct.cvalue = 50
            controls.WMaxLim_Ena.value = 1
            controls.write()
        if 124 in device.models:
            found["ChaState"] = device.models[124][0].ChaState.cvalue
        if 802 in device.models:
            found["SoC"] = device.models[802][0].SoC.cvalue
            found["WSet_SF"] = device.models[704][0].WSet_SF.value
        return found
    finally:
        device.close()


@pytest.mark.parametrize("variant", ["124", "802"])
async def test_pysunspec2_reads_the_simulator(variant: str) -> None:
    clock = ManualClock()
    clock.set(clock.now().replace(hour=12))
    units: Sequence[SimUnit] = home_units(clock, battery_variant=variant)
    async with ModbusSim(clock, units) as sim:
        pv = await asyncio.to_thread(_scan_with_pysunspec2, sim.port, 1)
        assert pv["models"] == [1, 103, 120, 123] and pv["Mn"] == "Chisan Sim"
        assert pv["W"] == round(4500 * 0.85)
        pv_unit = sim.unit(1)
        assert isinstance(pv_unit, SimPvInverter) and pv_unit.limit_pct == 50.0
        battery = await asyncio.to_thread(_scan_with_pysunspec2, sim.port, 2)
        if variant == "124":
            assert battery["models"] == [1, 103, 120, 124] and battery["ChaState"] == 50.0
        else:
            assert battery["models"] == [1, 701, 702, 704, 713, 802]
            assert battery["SoC"] == 50.0 and battery["WSet_SF"] == 0
