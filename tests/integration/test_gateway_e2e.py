"""The whole gateway from a config file: meter emulator on a pty, ECHONET node on loopback,
real mosquitto, a backend that stores and acks. Slot records from history and live boundaries
reach the backend, match the schema, and export into a chain that `chisan verify` accepts."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.clock import JST, AcceleratedClock
from tests.support.home import simulated_home
from tests.support.mosquitto import Mosquitto

NODE = "127.0.0.61"


async def test_gateway_settles_history_and_live_boundaries(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    start = datetime(2026, 11, 27, 11, 59, 0, tzinfo=JST)
    clock = AcceleratedClock(30, start)
    async with simulated_home(
        tmp_path, mosquitto.port, clock, NODE, ("pv", "battery"), soc_pct=55
    ) as home:
        backend, app, cfg_path = home.backend, home.app, home.cfg_path
        # 24 slots of today from history, then 11:30-12:00 closes at the live boundary.
        await backend.wait_for(
            lambda: any(
                r["slot_start"] == "2026-11-27T11:30:00+09:00" for r in backend.records.values()
            ),
            timeout=60,
        )
        await backend.wait_for(lambda: backend.of("telemetry"), timeout=30)
        await backend.wait_for(lambda: app.store.backlog_count() == 0, timeout=30)
    assert backend.invalid == []
    slots = sorted({r["slot_start"] for r in backend.records.values()})
    assert slots[0] == "2026-11-27T00:00:00+09:00"
    assert len(slots) == 24
    sources = {r["source"] for r in backend.records.values()}
    assert sources <= {"meter_history", "meter_boundary"}
    assert all(r["import_wh"] is not None for r in backend.records.values())
    telemetry = backend.of("telemetry")[-1]
    assert "meter.power_w" in telemetry and "battery.soc_pct" in telemetry
    # The exported chain verifies; a tampered copy fails at the altered record.
    runner = CliRunner()
    out = runner.invoke(
        main, ["export", "-c", str(cfg_path), "--from", "2026-11-27", "--to", "2026-11-27"]
    )
    assert out.exit_code == 0, out.output
    export = tmp_path / "export.json"
    export.write_text(out.output)
    ok = runner.invoke(main, ["verify", str(export)])
    assert ok.exit_code == 0 and "chain intact" in ok.output
    doc = json.loads(out.output)
    doc["records"][5]["import_wh"] += 100
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    broken = runner.invoke(main, ["verify", str(bad)])
    assert broken.exit_code == 1
    assert f"seq {doc['records'][5]['seq']}: hash mismatch" in broken.output
