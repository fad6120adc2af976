"""The demo's simulated home: its SunSpec PV array sees the rooftop's sky at its own rating, and
the meter sees it (generation is negative load behind the meter)."""

from __future__ import annotations

from datetime import datetime

import pytest

from drivers.modbus.adapters import build_modbus
from drivers.readings import PV_POWER_W
from gateway.clock import JST
from gateway.config import DeviceConfig
from gateway.demo.clock import DemoClock
from gateway.demo.home import ROOFTOP_PV_W, SUNSPEC_PV_W, BatteryChoice, simulated_home

NODE = "127.0.10.5"


async def test_the_sunspec_array_follows_the_sky_and_shows_at_the_meter() -> None:
    clock = DemoClock(1, datetime(2026, 11, 27, 12, 0, tzinfo=JST))
    async with simulated_home(clock, NODE, BatteryChoice.ECHONET) as home:
        assert home.sunspec_pv is not None and home.pv_port is not None
        minute = int(clock.now().timestamp() // 60)
        sky = home.emu.meter.pv_at_minute(minute)
        assert sky > 1000  # noon
        assert home.sunspec_pv.generation_w() == pytest.approx(
            sky * SUNSPEC_PV_W / ROOFTOP_PV_W, rel=1e-6
        )
        load = home.emu.meter.extra_load
        assert load is not None
        expected = home.battery.power_w() + home.water_heater_w() - home.sunspec_pv_w()
        assert load() == pytest.approx(expected)
        assert home.sunspec_pv_w() > 0

        # The gateway's SunSpec adapter reads the same power over Modbus TCP.
        dev = DeviceConfig(
            name="pv_flex",
            kind="pv",
            protocol="modbus",
            host="127.0.0.1",
            port=home.pv_port,
            sunspec=True,
        )
        setup = build_modbus([dev], clock, lambda k, v, at: None)
        adapter = setup.adapters["pv_flex"]
        try:
            polled = await adapter.poll()
        finally:
            await adapter.transport.close()
        assert polled[PV_POWER_W].value == pytest.approx(home.sunspec_pv_w(), abs=2)


async def test_a_home_without_the_sunspec_array() -> None:
    clock = DemoClock(1, datetime(2026, 11, 27, 12, 0, tzinfo=JST))
    async with simulated_home(clock, NODE, BatteryChoice.ECHONET, sunspec_pv=False) as home:
        assert home.sunspec_pv is None and home.pv_port is None and home.sunspec_pv_w() == 0.0
