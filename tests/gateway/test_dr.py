"""DR reports from the store's own settlement history, checked against a hand computation."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.clock import JST, ManualClock
from gateway.dr import DrReporter, report
from gateway.provenance import init_key, load_private
from gateway.slots import SLOT, iso
from gateway.store import Store
from tests.conftest import BASE_CONFIG
from tests.support.backend import schema

SITE = "sg-0001"
EVENT_START = datetime(2026, 11, 26, 17, 0, tzinfo=JST)  # Thursday
# 17:00 and 17:30 import on the five candidate weekdays (11-23 is a national holiday, Labour
# Thanksgiving Day; 11-21/22 are a weekend). High 4 of 5 drops 11-20 (600 Wh, the lowest).
WINDOW = {
    date(2026, 11, 25): (500, 500),
    date(2026, 11, 24): (600, 600),
    date(2026, 11, 20): (300, 300),
    date(2026, 11, 19): (700, 700),
    date(2026, 11, 18): (400, 400),
    date(2026, 11, 26): (250, 150),  # the event day: actual
}


def fill(store: Store) -> None:
    day = date(2026, 11, 10)
    while day <= date(2026, 11, 26):
        for i in range(48):
            at = datetime(day.year, day.month, day.day, tzinfo=JST) + i * SLOT
            value = 200
            if day in WINDOW and at.hour == 17:
                value = WINDOW[day][0 if at.minute == 0 else 1]
            store.append_slot(
                {
                    "site": SITE,
                    "slot_start": iso(at),
                    "import_wh": value,
                    "export_wh": 0,
                    "source": "meter_boundary",
                    "rev": 1,
                }
            )
        day += timedelta(days=1)


def command(**over: Any) -> dict[str, Any]:
    doc = {
        "id": "ev-1",
        "rev": 1,
        "kind": "battery_discharge",
        "start": iso(EVENT_START),
        "end": iso(EVENT_START + 2 * SLOT),
        "power_w": 1500,
        "test": False,
    }
    doc.update(over)
    return doc


@pytest.fixture
def store(tmp_path: Path) -> Store:
    init_key(tmp_path / "site-ed25519.pem")
    s = Store(tmp_path / "chisan.db", SITE, load_private(tmp_path / "site-ed25519.pem"))
    fill(s)
    s.put_command("ev-1", 1, command(), "completed", EVENT_START + 2 * SLOT)
    return s


def test_report_matches_hand_computation(store: Store) -> None:
    doc = report(store, "ev-1")
    assert doc["ok"] and doc["direction"] == "down"
    assert doc["baseline_days"] == ["2026-11-25", "2026-11-24", "2026-11-19", "2026-11-18"]
    assert [s["baseline_wh"] for s in doc["slots"]] == [550.0, 550.0]
    assert doc["adjustment_wh"] == 0.0  # the morning matched the baseline days exactly
    assert doc["actual_wh"] == 400
    assert doc["delivered_wh"] == 700.0  # (550 − 250) + (550 − 150)
    jsonschema.validate(doc, schema("dr-report"))


def test_up_dr_counts_the_other_way(store: Store) -> None:
    store.put_command(
        "ev-2", 1, command(id="ev-2", kind="battery_charge"), "completed", EVENT_START
    )
    doc = report(store, "ev-2")
    assert doc["direction"] == "up"
    assert doc["delivered_wh"] == -700.0  # actual − baseline: this home used less, not more


def test_curtailment_has_no_report(store: Store) -> None:
    store.put_command("pv-1", 1, command(id="pv-1", kind="pv_limit"), "completed", EVENT_START)
    with pytest.raises(ValueError, match="no DR performance"):
        report(store, "pv-1")
    with pytest.raises(KeyError):
        report(store, "nope")


async def test_reporter_publishes_once_after_settlement(store: Store) -> None:
    clock = ManualClock(EVENT_START + 2 * SLOT + timedelta(minutes=5))
    sent: list[dict[str, Any]] = []

    async def publish(body: dict[str, Any]) -> bool:
        sent.append(body)
        return True

    reporter = DrReporter(store, clock, publish)
    assert await reporter.once() == 0  # too early: the last slot may not be settled yet
    clock.advance(20 * 60)
    assert await reporter.once() == 1
    assert await reporter.once() == 0
    assert sent[0]["delivered_wh"] == 700.0


def test_cli_dr_report(store: Store, write_config: Any, config_dir: Path) -> None:
    store.close()
    cfg = write_config(BASE_CONFIG)
    for name in ("chisan.db", "chisan.db-wal", "chisan.db-shm", "site-ed25519.pem"):
        src = store.path.parent / name
        if src.exists() and src.parent != config_dir:
            (config_dir / name).write_bytes(src.read_bytes())
    out = CliRunner().invoke(main, ["dr", "report", "ev-1", "-c", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    assert '"delivered_wh": 700.0' in out.output
    missing = CliRunner().invoke(main, ["dr", "report", "nope", "-c", str(cfg)])
    assert missing.exit_code == 1 and "no command" in missing.output
