"""The meter lost: its radio falls silent, or the Wi-SUN module is unplugged (its pty closes).

Pass criterion: fail-safe (alarm published, battery back to automatic) within ``meter_stale_s``
plus one poll; when fresh data flows again the fail-safe ends and the B-route session has been
rebuilt (a new join); after an unplug the port is reopened at the same path once the module is
back (the pty behind a udev-like symlink).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from gateway.clock import JST, AcceleratedClock
from tests.support.home import simulated_home, until
from tests.support.mosquitto import Mosquitto

NODE = "127.0.7.1"
AUTO = 0x46
LIMITS = (
    "\n[limits]\nsoc_reserve_pct = 30\nexport_limit_w = 4500\nmeter_stale_s = 30\n"
    "failsafe_hysteresis_s = 30\nmin_dwell_s = 0\n"
)


def behind_symlink(folder: Path):  # type: ignore[no-untyped-def]
    """Edit the config so the meter's port is a symlink to the pty, as /dev/serial/by-id is."""
    link = folder / "ttyWISUN"

    def edit(text: str) -> str:
        pts = re.search(r'^port = "(/dev/pts/\d+)"', text, re.M)
        assert pts is not None
        link.symlink_to(pts.group(1))
        text = text.replace(pts.group(0), f'port = "{link}"')
        # The gateway's own ECHONET socket in this suite's address block too.
        text = text.replace('bind = "127.0.0.1"', 'bind = "127.0.7.2"')
        return (
            text.replace('multicast_interface = "127.0.0.1"', 'multicast_interface = "127.0.7.2"')
            + LIMITS
        )

    return link, edit


async def test_meter_silent_then_unplugged_then_back(tmp_path: Path, mosquitto: Mosquitto) -> None:
    clock = AcceleratedClock(20, datetime(2026, 11, 27, 13, 1, 0, tzinfo=JST))
    link, edit = behind_symlink(tmp_path)
    async with simulated_home(
        tmp_path, mosquitto.port, clock, NODE, ("battery", "pv"), edit_config=edit, soc_pct=60
    ) as home:
        app, emu, node, backend, cfg = home.app, home.emu, home.node, home.backend, home.cfg
        stale = cfg.limits.meter_stale_s + cfg.broute.poll_s
        await until(lambda: app.uplink.connected and not app.control.failsafe, 60)
        assert str(app.meter.state) == "up"

        def failsafe_alarms(active: bool) -> int:
            return sum(
                1 for a in backend.of("alarm") if a["kind"] == "failsafe" and a["active"] is active
            )

        # 1. The meter's radio falls silent.
        joins = app.meter.joins
        emu.module.config.meter_silent = True
        silent_at = clock.now()
        await until(lambda: app.control.failsafe, 60)
        waited = (clock.now() - silent_at).total_seconds()
        print(f"silent meter: fail-safe after {waited:.0f} s (limit {stale:g} s)")
        assert waited <= stale + 5  # + the supervisor's one-second round, in clock time
        await until(lambda: node.battery.setting == AUTO, 20)
        await until(lambda: failsafe_alarms(True) >= 1, 20)
        # Silent long enough for the adapter to give the PANA session up.
        await until(lambda: str(app.meter.state) != "up", 60)
        print(
            f"silent meter: session dropped after {(clock.now() - silent_at).total_seconds():.0f} s"
        )
        emu.module.config.meter_silent = False
        await until(lambda: not app.control.failsafe, 120)
        await until(lambda: failsafe_alarms(False) >= 1, 20)
        assert app.meter.joins > joins, "the B-route session was not rebuilt"
        assert str(app.meter.state) == "up"

        # 2. The module is unplugged: its port disappears.
        joins = app.meter.joins
        await emu.stop()
        link.unlink()
        unplugged_at = clock.now()
        await until(lambda: app.control.failsafe, 60)
        waited = (clock.now() - unplugged_at).total_seconds()
        print(f"unplugged module: fail-safe after {waited:.0f} s (limit {stale:g} s)")
        assert waited <= stale + 5
        assert str(app.meter.state) != "up"
        assert "plugged" in (app.meter.down_reason or "") or "closed" in (
            app.meter.down_reason or ""
        ), app.meter.down_reason

        # ... and plugged back in: a new pty behind the same path.
        await emu.start()
        link.symlink_to(emu.path)
        await until(lambda: str(app.meter.state) == "up", 120)
        await until(lambda: not app.control.failsafe, 120)
        assert app.meter.joins > joins
        await until(lambda: failsafe_alarms(False) >= 2, 20)  # the clear travels via MQTT
    assert backend.invalid == [], backend.invalid
