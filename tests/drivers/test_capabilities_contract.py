"""The capability contract every battery adapter passes, whatever protocol is underneath.

Each implementation contributes a harness: an adapter talking to its simulated device, the
ManualClock both share, and ``settle`` to await a command while device time passes. The ECHONET
storage battery is the first; a Modbus battery adds its harness to ``HARNESSES`` and must pass
the same tests unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from drivers.capabilities import (
    BatteryControl,
    BatteryCounters,
    BatteryInfo,
    BatteryMode,
    BatteryRatings,
    BatteryState,
    DeviceError,
    Measured,
    PvLimit,
    PvState,
)
from gateway.clock import ManualClock

T = TypeVar("T")


@dataclass
class BatteryHarness:
    adapter: Any
    clock: ManualClock
    settle: Callable[[Awaitable[Any]], Awaitable[Any]]
    """Await a command while the device's (and adapter's) clock moves on."""
    capacity_wh: int


@contextlib.asynccontextmanager
async def echonet_battery() -> AsyncIterator[BatteryHarness]:
    from drivers.echonet.adapters import EchonetBattery
    from drivers.echonet.sim import SimNode
    from tests.drivers.echonet.netsim import gateway_transport, next_address
    from tests.support.clock import drive

    clock = ManualClock()
    sim = SimNode(next_address(), devices=("battery",), clock=clock, soc_pct=50, mode_delay_s=3)
    async with sim, gateway_transport(clock) as transport:
        adapter = EchonetBattery("battery", sim.bind, "027D01", transport, clock)

        async def settle(aw: Awaitable[Any]) -> Any:
            return await drive(clock, aw)

        yield BatteryHarness(adapter, clock, settle, capacity_wh=9800)


@contextlib.asynccontextmanager
async def modbus_battery() -> AsyncIterator[BatteryHarness]:
    from tests.drivers.modbus.simnet import drive, sim_battery

    clock = ManualClock()
    async with sim_battery(clock, soc_pct=50, capacity_wh=9800) as (_, adapter, _):

        async def settle(aw: Awaitable[Any]) -> Any:
            return await drive(clock, aw)

        yield BatteryHarness(adapter, clock, settle, capacity_wh=9800)


@contextlib.asynccontextmanager
async def modbus_map_battery() -> AsyncIterator[BatteryHarness]:
    """A non-SunSpec hybrid inverter driven through the register map an installer configures."""
    import tempfile
    from pathlib import Path

    from drivers.modbus.adapters import adapter_for
    from tests.drivers.modbus.mapsim import (
        BATTERY_REGISTERS,
        MapSim,
        config_text,
        device_toml,
        load_text,
        tcp_server,
    )
    from tests.drivers.modbus.simnet import drive

    clock = ManualClock()
    sim = MapSim(clock, soc_pct=50, capacity_wh=9800)
    async with tcp_server(sim.device(3)) as served:
        where = f'host = "{served.host}"\nport = {served.port}\ntimeout_s = 0.5'
        text = config_text(
            device_toml("battery", "battery", BATTERY_REGISTERS, where=where, unit_id=3)
        )
        with tempfile.TemporaryDirectory() as folder:
            (device,) = load_text(text, Path(folder)).devices
        adapter = adapter_for(device, clock, confirm_timeout_s=5.0)
        try:

            async def settle(aw: Awaitable[Any]) -> Any:
                return await drive(clock, aw)

            yield BatteryHarness(adapter, clock, settle, capacity_wh=9800)
        finally:
            await adapter.transport.close()


@contextlib.asynccontextmanager
async def modbus_der_battery() -> AsyncIterator[BatteryHarness]:
    """A SunSpec battery with the DER models (701/702/704/713/802): absolute-watt WSet."""
    from tests.drivers.modbus.simnet import drive, sim_battery

    clock = ManualClock()
    async with sim_battery(clock, variant="802", soc_pct=50, capacity_wh=9800) as (_, adapter, _):

        async def settle(aw: Awaitable[Any]) -> Any:
            return await drive(clock, aw)

        yield BatteryHarness(adapter, clock, settle, capacity_wh=9800)


HARNESSES: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[BatteryHarness]]] = {
    "echonet": echonet_battery,
    "modbus": modbus_battery,
    "modbus-map": modbus_map_battery,
    "modbus-802": modbus_der_battery,
}


@pytest.fixture(params=sorted(HARNESSES))
async def battery(request: pytest.FixtureRequest) -> AsyncIterator[BatteryHarness]:
    async with HARNESSES[request.param]() as harness:
        yield harness


async def test_implements_the_battery_protocols(battery: BatteryHarness) -> None:
    for protocol in (BatteryState, BatteryInfo, BatteryControl, BatteryCounters):
        assert isinstance(battery.adapter, protocol), protocol.__name__


async def test_measurements_carry_the_injected_clock_time(battery: BatteryHarness) -> None:
    adapter, clock = battery.adapter, battery.clock
    for read in (adapter.soc_pct, adapter.power_w, adapter.mode):
        measured = await read()
        assert isinstance(measured, Measured)
        assert measured.at == clock.now()
        assert measured.at.utcoffset() is not None
    clock.advance(90)
    later = await adapter.soc_pct()
    assert later.at == clock.now()
    soc = later.value
    assert isinstance(soc, float | int) and 0 <= soc <= 100
    assert (await adapter.charged_wh()).at == clock.now()


async def test_ratings(battery: BatteryHarness) -> None:
    ratings = await battery.adapter.ratings()
    assert isinstance(ratings, BatteryRatings)
    assert ratings.max_charge_w is not None and ratings.max_charge_w > 0
    assert ratings.max_discharge_w is not None and ratings.max_discharge_w > 0
    assert ratings.capacity_wh == battery.capacity_wh
    assert ratings.reverse_flow_ok in (True, False, None)


async def test_charge_means_positive_power_and_rising_soc(battery: BatteryHarness) -> None:
    adapter = battery.adapter
    before_soc = (await adapter.soc_pct()).value
    before_wh = (await adapter.charged_wh()).value
    await battery.settle(adapter.charge(1000))
    assert (await adapter.mode()).value is BatteryMode.CHARGE
    power = (await adapter.power_w()).value
    assert power is not None and power > 0
    battery.clock.advance(3600)
    assert (await adapter.soc_pct()).value > before_soc
    charged = (await adapter.charged_wh()).value
    assert charged is not None and before_wh is not None
    assert charged - before_wh == pytest.approx(power, rel=0.05)


async def test_discharge_means_negative_power_and_falling_soc(battery: BatteryHarness) -> None:
    adapter = battery.adapter
    before_soc = (await adapter.soc_pct()).value
    before_wh = (await adapter.discharged_wh()).value
    await battery.settle(adapter.discharge(1500))
    assert (await adapter.mode()).value is BatteryMode.DISCHARGE
    power = (await adapter.power_w()).value
    assert power is not None and power < 0
    battery.clock.advance(3600)
    assert (await adapter.soc_pct()).value < before_soc
    discharged = (await adapter.discharged_wh()).value
    assert discharged is not None and before_wh is not None
    assert discharged - before_wh == pytest.approx(-power, rel=0.05)


async def test_standby_means_no_power(battery: BatteryHarness) -> None:
    adapter = battery.adapter
    await battery.settle(adapter.discharge(1000))
    await battery.settle(adapter.standby())
    assert (await adapter.mode()).value is BatteryMode.STANDBY
    power = (await adapter.power_w()).value
    assert power is not None and abs(power) < 50


async def test_auto_hands_control_back(battery: BatteryHarness) -> None:
    adapter = battery.adapter
    await battery.settle(adapter.charge(800))
    await battery.settle(adapter.auto())
    assert (await adapter.mode()).value is BatteryMode.AUTO


async def test_non_positive_setpoints_are_refused(battery: BatteryHarness) -> None:
    for command in (battery.adapter.charge, battery.adapter.discharge):
        for watts in (0, -500):
            with pytest.raises(DeviceError):
                await command(watts)
    assert (await battery.adapter.mode()).value is not BatteryMode.CHARGE


# ------------------------------------------------------------------------------------------ PV


@dataclass
class PvHarness:
    adapter: Any
    clock: ManualClock
    settle: Callable[[Awaitable[Any]], Awaitable[Any]]
    rated_w: int


@contextlib.asynccontextmanager
async def echonet_pv() -> AsyncIterator[PvHarness]:
    from drivers.echonet.adapters import EchonetPv
    from drivers.echonet.sim import SimNode
    from tests.drivers.echonet.netsim import gateway_transport
    from tests.support.clock import drive

    clock = ManualClock()
    clock.set(clock.now().replace(hour=12))
    sim = SimNode("127.0.1.31", devices=("pv",), clock=clock, pv_rated_w=4500)
    async with sim, gateway_transport(clock) as transport:
        adapter = EchonetPv("pv", sim.bind, "027901", transport, clock)

        async def settle(aw: Awaitable[Any]) -> Any:
            return await drive(clock, aw)

        yield PvHarness(adapter, clock, settle, rated_w=4500)


@contextlib.asynccontextmanager
async def modbus_pv() -> AsyncIterator[PvHarness]:
    from tests.drivers.modbus.simnet import drive, sim_pv

    clock = ManualClock()
    clock.set(clock.now().replace(hour=12))
    async with sim_pv(clock, rated_w=4500) as (_, adapter):

        async def settle(aw: Awaitable[Any]) -> Any:
            return await drive(clock, aw)

        yield PvHarness(adapter, clock, settle, rated_w=4500)


PV_HARNESSES: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[PvHarness]]] = {
    "echonet": echonet_pv,
    "modbus": modbus_pv,
}


@pytest.fixture(params=sorted(PV_HARNESSES))
async def pv(request: pytest.FixtureRequest) -> AsyncIterator[PvHarness]:
    async with PV_HARNESSES[request.param]() as harness:
        yield harness


async def test_pv_implements_the_pv_protocols(pv: PvHarness) -> None:
    assert isinstance(pv.adapter, PvState) and isinstance(pv.adapter, PvLimit)
    measured = await pv.adapter.generation_w()
    assert measured.at == pv.clock.now()
    assert measured.value == pytest.approx(pv.rated_w * 0.85, abs=1)  # clear-sky noon


async def test_pv_limits_cap_generation_and_lift(pv: PvHarness) -> None:
    adapter = pv.adapter
    await pv.settle(adapter.limit_pct(40))
    assert (await adapter.generation_w()).value == pytest.approx(pv.rated_w * 0.4, abs=1)
    await pv.settle(adapter.limit_pct(None))
    await pv.settle(adapter.limit_w(1000))
    assert (await adapter.generation_w()).value == pytest.approx(1000, abs=1)
    start = (await adapter.generated_wh()).value
    pv.clock.advance(1800)
    end = (await adapter.generated_wh()).value
    assert start is not None and end is not None and end - start == pytest.approx(500, abs=2)
    await pv.settle(adapter.limit_w(None))
    await pv.settle(adapter.limit_pct(None))
    assert (await adapter.generation_w()).value > pv.rated_w * 0.8  # half an hour after noon


async def test_pv_bad_limits_are_refused(pv: PvHarness) -> None:
    for bad in (-1, 101):
        with pytest.raises(DeviceError):
            await pv.adapter.limit_pct(bad)
