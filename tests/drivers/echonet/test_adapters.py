"""Adapters against the simulator: the battery's AIF sequence, PV limits, water heater, aircon."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from drivers.capabilities import (
    AirconSaving,
    BatteryControl,
    BatteryCounters,
    BatteryInfo,
    BatteryMode,
    BatteryState,
    PvLimit,
    PvState,
    WaterHeaterControl,
)
from drivers.echonet.adapters import (
    EchonetAircon,
    EchonetBattery,
    EchonetEvCharger,
    EchonetNotFollowing,
    EchonetPv,
    EchonetSetpointError,
    EchonetV2h,
    EchonetWaterHeater,
    adapter_for,
    build_echonet,
)
from drivers.echonet.frame import EOJ
from drivers.echonet.sim import SimNode
from drivers.echonet.transport import EchonetRefused, EchonetTimeout, EchonetTransport
from gateway.clock import ManualClock
from gateway.config import DeviceConfig
from tests.support.clock import drive

from .conftest import SimFactory
from .netsim import next_address


def battery_of(sim: SimNode, gateway: EchonetTransport, clock: ManualClock) -> EchonetBattery:
    return EchonetBattery("battery", sim.bind, "027D01", gateway, clock, confirm_timeout_s=20)


async def test_battery_state_info_and_counters(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",), soc_pct=57, reverse_flow=False)
    battery = battery_of(sim, gateway, clock)
    for protocol in (BatteryState, BatteryInfo, BatteryControl, BatteryCounters):
        assert isinstance(battery, protocol)
    soc = await battery.soc_pct()
    assert soc.value == 57 and soc.at == clock.now()
    assert (await battery.power_w()).value == 0
    assert (await battery.mode()).value is BatteryMode.AUTO
    assert (await battery.remaining_wh()).value == round(9800 * 0.57)
    ratings = await battery.ratings()
    assert ratings.max_charge_w == 3000 and ratings.min_discharge_w == 100
    assert ratings.capacity_wh == 9800
    assert ratings.reverse_flow_ok is False
    assert (await battery.charged_wh()).value == 0
    assert (await battery.discharged_wh()).value == 0


async def test_charge_follows_the_aif_sequence_and_confirms_on_cf(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",), soc_pct=40, mode_delay_s=4)
    battery = battery_of(sim, gateway, clock)
    started = clock.monotonic()
    await drive(clock, battery.charge(1500))
    assert clock.monotonic() - started >= 4  # waited for CF, not DA
    sets = [(r.epc, r.edt) for r in sim.set_log]
    assert sets == [
        # chargeable now (A4) less a minute at 1500 W (25 Wh): the battery moves meanwhile
        (0xAA, (9800 - 3920 - 25).to_bytes(4, "big")),
        (0xC1, b"\x03"),
        (0xEB, (1500).to_bytes(4, "big")),
        (0xDA, b"\x42"),
    ]
    assert (await battery.mode()).value is BatteryMode.CHARGE
    assert (await battery.power_w()).value == 1500
    before = (await battery.soc_pct()).value
    clock.advance(3600)
    assert (await battery.soc_pct()).value == pytest.approx(before + 1500 / 98, abs=1)
    assert (await battery.charged_wh()).value == pytest.approx(1500, abs=30)


async def test_discharge_standby_auto(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",), soc_pct=80)
    battery = battery_of(sim, gateway, clock)
    await drive(clock, battery.discharge(2000))
    assert (await battery.power_w()).value == -2000
    assert [r.epc for r in sim.set_log] == [0xAB, 0xC2, 0xEC, 0xDA]
    # dischargeable now (A5) less a minute at 2000 W (34 Wh)
    assert sim.sets(0xAB)[0].edt == (round(9800 * 0.8) - 34).to_bytes(4, "big")
    await drive(clock, battery.standby())
    assert (await battery.mode()).value is BatteryMode.STANDBY
    assert (await battery.power_w()).value == 0
    await drive(clock, battery.auto())
    assert (await battery.mode()).value is BatteryMode.AUTO
    assert [r.edt for r in sim.sets(0xDA)] == [b"\x43", b"\x44", b"\x46"]


async def test_a_battery_that_does_not_follow_is_reported(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",), mode_delay_s=10_000)
    battery = battery_of(sim, gateway, clock)
    with pytest.raises(EchonetNotFollowing, match=r"charge \(DA=0x42\): not done after 20 s"):
        await drive(clock, battery.charge(1000))


async def test_setpoints_outside_the_ratings_are_refused_before_sending(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",), soc_pct=100)
    battery = battery_of(sim, gateway, clock)
    with pytest.raises(EchonetSetpointError, match="above the device's maximum 3000 W"):
        await battery.discharge(5000)
    with pytest.raises(EchonetSetpointError, match="below the device's minimum 100 W"):
        await battery.discharge(50)
    with pytest.raises(EchonetSetpointError, match="battery is full"):
        await battery.charge(1000)
    with pytest.raises(EchonetSetpointError, match="needs watts > 0"):
        await battery.charge(0)
    assert sim.set_log == []


async def test_a_refused_set_is_a_clear_error(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",))
    sim.faults.sna_epcs = {0xEB}
    battery = battery_of(sim, gateway, clock)
    with pytest.raises(EchonetRefused, match="refused to set 0xEB") as caught:
        await battery.charge(1000)
    assert caught.value.epcs == (0xEB,)
    assert caught.value.device == "battery"
    assert sim.sets(0xDA) == []  # no mode change after a failed power setting


async def test_soc_from_remaining_energy_when_e4_is_missing(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",), soc_pct=25)
    del sim.battery._getters[0xE4]
    battery = battery_of(sim, gateway, clock)
    assert (await battery.soc_pct()).value == 25.0
    assert (await battery.poll())["battery.soc_pct"].value == 25.0


async def test_pv_state_and_limits(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    clock.set(clock.now().replace(hour=12))
    sim = await make_sim(devices=("pv",), fit=True)
    pv = EchonetPv("pv", sim.bind, EOJ.parse("027901"), gateway, clock)
    assert isinstance(pv, PvState) and isinstance(pv, PvLimit)
    assert (await pv.generation_w()).value == round(4500 * 0.85)
    assert (await pv.fit_contract()).value == "fit"
    assert await pv.rated_w() == 4500.0  # E8: how a W limit is shared between inverters
    await drive(clock, pv.limit_pct(40))
    assert (await pv.generation_w()).value == 1800
    await drive(clock, pv.limit_w(1000))
    assert (await pv.limits()).value == (40, 1000)
    assert (await pv.generation_w()).value == 1000
    start = (await pv.generated_wh()).value
    clock.advance(1800)
    assert (await pv.generated_wh()).value == pytest.approx((start or 0) + 500, abs=1)
    assert (await pv.sold_wh()).value == pytest.approx(300, abs=1)
    await drive(clock, pv.limit_pct(None))
    await drive(clock, pv.limit_w(None))
    assert (await pv.limits()).value == (100, 4500)
    assert [r.epc for r in sim.set_log] == [0xA0, 0xA1, 0xA0, 0xA1]
    with pytest.raises(EchonetSetpointError):
        await pv.limit_pct(120)


async def test_water_heater(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("water_heater",))
    heater = EchonetWaterHeater("eco", sim.bind, "026B01", gateway, clock)
    assert isinstance(heater, WaterHeaterControl)
    assert (await heater.heating()).value is False
    await drive(clock, heater.start_heating())
    assert (await heater.heating()).value is True
    await drive(clock, heater.stop_heating())
    assert (await heater.heating()).value is False
    await heater.daytime_reheating(True)
    await drive(clock, heater.auto())
    assert [(r.epc, r.edt) for r in sim.set_log] == [
        (0xB0, b"\x42"),
        (0xB0, b"\x43"),
        (0xC0, b"\x41"),
        (0xB0, b"\x41"),
    ]


async def test_aircon(gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock) -> None:
    sim = await make_sim(devices=("aircon",))
    aircon = EchonetAircon("living", sim.bind, "013001", gateway, clock)
    assert isinstance(aircon, AirconSaving)
    normal = (await aircon.power_w()).value
    await drive(clock, aircon.power_saving(True))
    assert (await aircon.saving()).value is True
    assert (await aircon.power_w()).value == pytest.approx((normal or 0) * 0.7, abs=1)
    await aircon.set_temperature(28)
    assert sim.aircon.target_c == 28
    await drive(clock, aircon.power_saving(False))
    assert (await aircon.poll())["aircon.power_saving"].value is False


async def test_poller_reports_readings_and_wakes_on_inf(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("pv", "battery"), soc_pct=60)
    seen: list[tuple[str, Any, datetime]] = []
    setup = build_echonet(
        [
            DeviceConfig("home-battery", "battery", "echonet", sim.bind, "027D01", poll_s=60),
            DeviceConfig("roof", "pv", "echonet", sim.bind, "027901", poll_s=60),
            DeviceConfig("old", "pv", "modbus", "127.0.0.9", None, port=502),
        ],
        gateway,
        clock,
        lambda key, value, at: seen.append((key, value, at)),
    )
    assert [p.name for p in setup.pollers] == ["home-battery", "roof"]
    assert setup.components[0] is gateway
    poller = setup.pollers[0]
    task = asyncio.create_task(poller.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if poller.polls:
                break
        readings = {key: value for key, value, _ in seen}
        assert readings["battery.soc_pct"] == 60
        assert readings["battery.power_w"] == 0
        assert readings["battery.mode"] == "auto"
        assert readings["battery.remaining_wh"] == 5880
        assert readings["battery.charged_wh"] == 0
        assert all(at == clock.now() for _, _, at in seen)
        # A mode change announced by INF triggers a poll before poll_s has passed.
        await gateway.set(sim.bind, EOJ.parse("027D01"), {0xDA: b"\x44"})
        for _ in range(100):
            await asyncio.sleep(0.01)
            if poller.polls >= 2:
                break
        assert poller.polls >= 2
        # An unreachable device is logged and retried, never fatal.
        sim.faults.drop_pct = 100
        clock.advance(60)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if poller.failures:
                break
        assert poller.failures == 1 and not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_adapter_for_picks_the_class(clock: ManualClock) -> None:
    transport = EchonetTransport.__new__(EchonetTransport)
    cases = {
        "027D01": EchonetBattery,
        "027901": EchonetPv,
        "026B01": EchonetWaterHeater,
        "013001": EchonetAircon,
        "027E01": EchonetV2h,
        "02A101": EchonetEvCharger,
    }
    for eoj, cls in cases.items():
        device = DeviceConfig("d", "x", "echonet", "127.0.0.5", eoj)
        assert type(adapter_for(device, transport, clock)) is cls
    with pytest.raises(ValueError, match="no adapter for ECHONET class 0288"):
        adapter_for(DeviceConfig("m", "x", "echonet", "127.0.0.5", "028801"), transport, clock)
    with pytest.raises(ValueError, match="needs host and eoj"):
        adapter_for(DeviceConfig("m", "x", "echonet", None, "027D01"), transport, clock)
    with pytest.raises(ValueError, match="a battery has class 027D"):
        EchonetBattery("b", "127.0.0.5", "027901", transport, clock)


async def test_device_errors_name_the_device(gateway: EchonetTransport, clock: ManualClock) -> None:
    battery = EchonetBattery("garage-battery", next_address(), "027D01", gateway, clock)
    with pytest.raises(EchonetTimeout, match=r"^garage-battery: no answer"):
        await battery.soc_pct()


async def test_v2h_charges_and_discharges_like_a_battery(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("ev",))
    ev = EchonetV2h("car", sim.bind, "027E01", gateway, clock, confirm_timeout_s=20)
    assert isinstance(ev, BatteryState) and isinstance(ev, BatteryControl)
    assert (await ev.vehicle()).value == "chargeable_dischargeable"
    assert (await ev.soc_pct()).value == 50
    assert (await ev.mode()).value is BatteryMode.STANDBY
    await drive(clock, ev.charge(3000))
    assert (await ev.mode()).value is BatteryMode.CHARGE
    assert (await ev.power_w()).value == 3000
    await drive(clock, ev.discharge(2000))
    assert (await ev.power_w()).value == -2000
    await drive(clock, ev.auto())  # confirmed on DA: in auto, E1 is whatever the unit decides
    clock.advance(3)
    assert (await ev.power_w()).value == 0
    assert [(r.epc, r.edt) for r in sim.set_log] == [
        (0xEB, (3000).to_bytes(4, "big")),
        (0xDA, b"\x42"),
        (0xEC, (2000).to_bytes(4, "big")),
        (0xDA, b"\x43"),
        (0xDA, b"\x49"),
    ]
    readings = await ev.poll()
    assert readings["ev.mode"].value == "standby" and readings["ev.soc_pct"].at == clock.now()
