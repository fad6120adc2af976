"""DR end to end: signed commands over a real mosquitto reach the simulated battery through the
interlock; dangerous ones are clamped or rejected and the device proves nothing unsafe happened;
a silent meter puts the gateway in fail-safe within meter_stale_s + one poll."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

from gateway.clock import JST, AcceleratedClock
from tests.support.backend import Signer, acks
from tests.support.home import simulated_home, until
from tests.support.mosquitto import Mosquitto

SITE = "demo-0001"
NODE = "127.0.0.71"
DISCHARGE, AUTO = 0x43, 0x46


async def test_dr_commands_end_to_end(tmp_path: Path, mosquitto: Mosquitto) -> None:
    clock = AcceleratedClock(20, datetime(2026, 11, 27, 16, 1, 0, tzinfo=JST))
    signer = Signer(tmp_path)
    limits = (
        "\n[limits]\nsoc_reserve_pct = 30\nexport_limit_w = 4500\nmeter_stale_s = 30\n"
        "failsafe_hysteresis_s = 30\nmin_dwell_s = 0\n"
    )
    async with simulated_home(
        tmp_path,
        mosquitto.port,
        clock,
        NODE,
        ("battery", "pv"),
        edit_config=lambda text: text + limits,
        soc_pct=60,
        mode_delay_s=0.5,
    ) as home:
        app, emu, node, backend, cfg = home.app, home.emu, home.node, home.backend, home.cfg
        await until(lambda: app.uplink.connected and not app.control.failsafe, 60)

        # 1. A plain discharge actuates the battery and is acknowledged in order.
        await backend.send(SITE, "cmd", signer.command(clock))
        await until(lambda: "started" in acks(backend, "dr-1"))
        assert acks(backend, "dr-1")[:3] == ["received", "scheduled", "started"]
        assert node.battery.setting == DISCHARGE
        await until(lambda: node.battery.actual == DISCHARGE)
        assert node.sets(epc=0xDA)[-1].edt == bytes([DISCHARGE])

        # 2. 10 kW discharge: clamped to what the battery and the export limit allow.
        await backend.send(SITE, "cmd", signer.command(clock, power_w=10000, priority=20))
        await until(lambda: "clamped" in acks(backend, "dr-2"))
        clamp = next(a for a in backend.of("cmd/ack") if a["status"] == "clamped")
        assert clamp["clamped_by"] in ("device_rating", "export_limit")
        assert clamp["allowed_w"] <= 3000
        assert "superseded" in acks(backend, "dr-1")
        for _ in range(20):
            node.update()
            assert node.battery.power_w >= -3000.5
            await asyncio.sleep(0.02)

        # 3. Bad input of every kind is rejected; nothing reaches the device.
        sets_before = len(node.set_log)
        await backend.send(SITE, "cmd", b"not json")
        await backend.send(SITE, "cmd", signer.command(clock, sign=False))
        forged = json.loads(signer.command(clock, power_w=1000))
        forged["power_w"] = 3000
        await backend.send(SITE, "cmd", json.dumps(forged))
        await backend.send(SITE, "cmd", signer.command(clock, power_w=-5))
        await backend.send(SITE, "cmd", b"{" + b" " * (2 << 20) + b"}")
        await until(lambda: sum(1 for a in backend.of("cmd/ack") if a["status"] == "rejected") >= 5)
        assert len(node.set_log) == sets_before

        # 4. A test command is acknowledged, never actuated.
        await backend.send(
            SITE,
            "cmd",
            signer.command(clock, kind="battery_charge", allow_export=None, test=True, priority=99),
        )
        test_id = f"dr-{signer.n}"
        await until(lambda: "scheduled" in acks(backend, test_id))
        await asyncio.sleep(0.3)
        assert node.battery.setting == DISCHARGE  # still the clamped dr-2
        assert backend.invalid == []

        # 5. The meter goes silent: fail-safe within meter_stale_s + one poll.
        emu.module.config.meter_silent = True
        silent_at = clock.now()
        await until(lambda: app.control.failsafe, 30)
        waited = (clock.now() - silent_at).total_seconds()
        assert waited <= cfg.limits.meter_stale_s + cfg.broute.poll_s + 15
        await until(lambda: node.battery.setting == AUTO, 20)
        await until(
            lambda: any(a["kind"] == "failsafe" and a["active"] for a in backend.of("alarm")),
            20,
        )
    assert backend.invalid == [], backend.invalid
