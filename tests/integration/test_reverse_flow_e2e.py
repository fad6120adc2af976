"""The installer's ``reverse_flow`` on a battery, through control and the interlock.

A SunSpec storage inverter (a real pymodbus server) has no point saying whether its connection
allows reverse flow: without a declaration the interlock refuses any discharge into export;
with ``reverse_flow = true`` it allows one up to the export limit. An ECHONET battery says so
itself (0xDB), and its word beats the config's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from drivers.modbus.adapters import build_modbus
from drivers.modbus.sim import SunSpecSim
from gateway.clock import JST, AcceleratedClock, Clock
from gateway.config import DeviceConfig, LimitsConfig
from gateway.control import Control
from gateway.interlock import (
    NORMAL,
    Context,
    Decision,
    Limits,
    Rule,
    Setpoint,
    SetpointKind,
    evaluate,
)
from gateway.readings import (
    BATTERY_POWER_W,
    BATTERY_SOC_PCT,
    METER_CURRENTS_A,
    METER_POWER_W,
    ReadingsHub,
)
from tests.support.home import simulated_home, until
from tests.support.mosquitto import Mosquitto

NODE = "127.0.10.3"
LIMITS = LimitsConfig(export_limit_w=1500, min_dwell_s=0)


async def _decide(clock: Clock, port: int, declared: bool | None) -> tuple[Control, Decision]:
    hub = ReadingsHub()
    dev = DeviceConfig(
        name="battery",
        kind="battery",
        protocol="modbus",
        host="127.0.0.1",
        port=port,
        sunspec=True,
        reverse_flow=declared,
    )
    setup = build_modbus([dev], clock, lambda k, v, at: hub.update(k, v, at, "device"))
    for poller in setup.pollers:
        await poller.poll_once()
    now = clock.now()
    hub.update(METER_POWER_W, 300.0, now, "meter")  # the house imports 300 W
    hub.update(METER_CURRENTS_A, (5.0, 3.0), now, "meter")
    hub.update(BATTERY_POWER_W, 0.0, now, "device")
    hub.update(BATTERY_SOC_PCT, 70.0, now, "device")
    limits = Limits.from_config(LIMITS, fit=False)
    control = Control(limits, clock, hub, dict(setup.adapters), declared_reverse_flow=declared)
    await control._refresh_info()
    request = Setpoint(
        SetpointKind.BATTERY_DISCHARGE,
        power_w=2000,
        allow_export=True,
        start=now - timedelta(minutes=1),
        end=now + timedelta(minutes=29),
    )
    # Fresh meter data for long enough: out of the start-up fail-safe.
    decision = evaluate(request, control.measurements(), limits, now, Context(failsafe=NORMAL))
    for adapter in setup.adapters.values():
        await adapter.transport.close()
    return control, decision


@pytest.mark.parametrize(
    ("declared", "exports"),
    [(None, False), (False, False), (True, True)],
)
async def test_sunspec_battery_exports_only_when_the_installer_declares_reverse_flow(
    declared: bool | None, exports: bool
) -> None:
    clock = AcceleratedClock(1, datetime(2026, 11, 27, 18, 5, tzinfo=JST))
    async with SunSpecSim(clock, soc_pct=70) as sim:
        control, decision = await _decide(clock, sim.port, declared)
    assert control.measurements().reverse_flow_ok is declared
    allowed, rules = decision.allowed, decision.rules
    if exports:
        # 300 W of house plus the 1500 W export limit, less the 100 W margin.
        assert allowed.power_w == pytest.approx(1700)
        assert Rule.REVERSE_FLOW_NOT_ACCEPTABLE not in rules
    else:
        assert allowed.power_w == pytest.approx(200)  # the house only, less the margin
        assert Rule.REVERSE_FLOW_NOT_ACCEPTABLE in rules


async def test_echonet_battery_reverse_flow_beats_the_config(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The battery reports a connection without reverse flow; ``reverse_flow = true`` in the
    config must not let it export."""
    clock = AcceleratedClock(10, datetime(2026, 11, 27, 18, 5, tzinfo=JST))
    declared = 'eoj = "027D01"\nreverse_flow = true'
    async with simulated_home(
        tmp_path,
        mosquitto.port,
        clock,
        NODE,
        ("battery", "pv"),
        edit_config=lambda text: text.replace('eoj = "027D01"', declared, 1),
        reverse_flow=False,
    ) as home:
        assert home.cfg.devices[0].reverse_flow is True
        app = home.app
        await until(lambda: app.control is not None and app.control._ratings is not None, 30)
        assert app.control.declared_reverse_flow is True
        assert app.control.measurements().reverse_flow_ok is False
