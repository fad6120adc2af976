"""Every command kind, end to end: a signed command over mosquitto actuates the matching
simulated ECHONET device, and the backend hears received → scheduled → started."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.clock import JST, AcceleratedClock
from tests.support.backend import Signer, acks
from tests.support.home import simulated_home, until
from tests.support.mosquitto import Mosquitto

SITE = "demo-0001"
NODE = "127.0.0.81"
AIRCON = '\n[[device]]\nname = "aircon"\nkind = "aircon"\nprotocol = "echonet"\n'


async def test_each_command_kind_actuates_its_device(tmp_path: Path, mosquitto: Mosquitto) -> None:
    # Evening: the home imports, so discharging for the house is allowed without export.
    clock = AcceleratedClock(20, datetime(2026, 11, 27, 18, 1, 0, tzinfo=JST))
    signer = Signer(tmp_path)
    config = AIRCON + f'host = "{NODE}"\neoj = "013001"\n'
    config += "\n[limits]\nmin_dwell_s = 0\nfailsafe_hysteresis_s = 20\nbreaker_a = 120\n"
    async with simulated_home(
        tmp_path,
        mosquitto.port,
        clock,
        NODE,
        ("battery", "pv", "water_heater", "aircon"),
        edit_config=lambda text: text + config,
        soc_pct=60,
        mode_delay_s=0.2,
    ) as home:
        app, node, backend = home.app, home.node, home.backend
        await until(lambda: app.uplink.connected and not app.control.failsafe, 60)
        cases: list[tuple[dict[str, Any], Callable[[], bool]]] = [
            (
                {"kind": "battery_charge", "power_w": 1000, "allow_export": None},
                lambda: node.battery.actual == 0x42,
            ),
            (
                {"kind": "battery_discharge", "power_w": 500},
                lambda: node.battery.actual == 0x43,
            ),
            (
                {"kind": "battery_standby", "power_w": None, "allow_export": None},
                lambda: node.battery.actual == 0x44,
            ),
            (
                {"kind": "battery_auto", "power_w": None, "allow_export": None},
                lambda: node.battery.actual == 0x46,
            ),
            (
                {
                    "kind": "pv_limit",
                    "power_w": None,
                    "allow_export": None,
                    "limit_pct": 50,
                },
                lambda: node.pv.limit_pct == 50,
            ),
            (
                {"kind": "water_heater_heat", "power_w": None, "allow_export": None},
                lambda: node.water_heater.automatic == 0x42,
            ),
            (
                {"kind": "aircon_saving", "power_w": None, "allow_export": None},
                lambda: node.aircon.saving == 0x41,
            ),
        ]
        for priority, (fields, done) in enumerate(cases, start=10):
            await backend.send(SITE, "cmd", signer.command(clock, priority=priority, **fields))
            cmd_id = f"dr-{signer.n}"
            await until(lambda: "started" in acks(backend, cmd_id), 20)  # noqa: B023
            assert acks(backend, cmd_id)[:3] == ["received", "scheduled", "started"]
            await until(done, 20)
    assert backend.invalid == [], backend.invalid


async def test_fit_home_never_exports_from_the_battery(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Under FIT a discharge asking for export is clamped to the house load (fit_no_export)."""
    clock = AcceleratedClock(20, datetime(2026, 11, 27, 18, 1, 0, tzinfo=JST))
    signer = Signer(tmp_path)
    async with simulated_home(
        tmp_path,
        mosquitto.port,
        clock,
        NODE,
        ("battery", "pv"),
        edit_config=lambda text: (
            text.replace("fit = false", "fit = true")
            + "\n[limits]\nmin_dwell_s = 0\nfailsafe_hysteresis_s = 20\n"
        ),
        meter_sees_battery=True,
        soc_pct=80,
        fit=True,
    ) as home:
        app, emu, node, backend = home.app, home.emu, home.node, home.backend
        await until(lambda: app.uplink.connected and not app.control.failsafe, 60)
        await backend.send(SITE, "cmd", signer.command(clock, power_w=3000))
        cmd_id = f"dr-{signer.n}"
        await until(lambda: "clamped" in acks(backend, cmd_id), 20)
        clamp = next(a for a in backend.of("cmd/ack") if a["status"] == "clamped")
        assert clamp["clamped_by"] == "fit_no_export"
        assert 0 < clamp["allowed_w"] < 3000
        await until(lambda: node.battery.actual == 0x43, 20)
        # The meter sees house load plus the battery: under FIT the battery covers the
        # house at most, so the meter never exports by more than the load's own
        # minute-to-minute swings allow between two polls.
        for _ in range(50):
            node.update()
            net = emu.meter.power_w(clock.now())
            assert net > -400, (net, node.battery.power_w)
            await asyncio.sleep(0.02)
    assert backend.invalid == [], backend.invalid
