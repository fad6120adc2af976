"""Settlement against a scripted meter: boundaries, history gaps, wrap, missing slots, revisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drivers.capabilities import Boundary, DeviceError
from gateway.clock import JST, ManualClock
from gateway.provenance import init_key, load_private
from gateway.settlement import Settlement
from gateway.slots import SLOT, iso, slot_start
from gateway.store import Store

SITE = "sg-0001"
MOD = 10**6 * 100  # 6 digits at 0.1 kWh


@dataclass
class ScriptedMeter:
    """Counters that grow 400 Wh import and 150 Wh export every slot, from a start value."""

    clock: ManualClock
    import0: int = 1_000_000
    export0: int = 50_000
    origin: datetime = datetime(2026, 11, 20, tzinfo=JST)
    offline: bool = False
    history_offline: bool = False
    no_history: set[datetime] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def at(self, when: datetime) -> Boundary:
        n = int((when - self.origin) / SLOT)
        return Boundary(when, (self.import0 + 400 * n) % MOD, (self.export0 + 150 * n) % MOD, MOD)

    async def boundary(self) -> Boundary | None:
        self.calls.append("boundary")
        if self.offline:
            raise DeviceError("meter", "silent")
        return self.at(slot_start(self.clock.now()))

    async def history_day(self, day: date) -> list[Boundary]:
        self.calls.append(f"day {day}")
        if self.offline or self.history_offline:
            raise DeviceError("meter", "silent")
        first = datetime(day.year, day.month, day.day, tzinfo=JST)
        out = []
        for i in range(48):
            t = first + i * SLOT
            if t <= self.clock.now() and t not in self.no_history:
                out.append(self.at(t))
            else:
                out.append(Boundary(t, None, None, MOD))
        return out

    async def history_recent(self, end: datetime, count: int) -> list[Boundary]:
        self.calls.append(f"recent {iso(end)} {count}")
        if self.offline or self.history_offline:
            raise DeviceError("meter", "silent")
        return [
            self.at(end - i * SLOT)
            if end - i * SLOT not in self.no_history
            else Boundary(end - i * SLOT, None, None, MOD)
            for i in range(min(count, 12))
        ]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    init_key(tmp_path / "k.pem")
    return Store(tmp_path / "chisan.db", SITE, load_private(tmp_path / "k.pem"))


def make(store: Store, clock: ManualClock, meter: ScriptedMeter, days: int = 7) -> Settlement:
    return Settlement(SITE, meter, store, clock, backfill_days=days)


def records(store: Store) -> list[dict[str, object]]:
    return store.records_by_seq(1, store.max_seq())


async def test_first_start_backfills_today_from_history(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 10, 5, tzinfo=JST))
    meter = ScriptedMeter(clock)
    await make(store, clock, meter).settle()
    recs = records(store)
    assert [r["slot_start"] for r in recs] == [
        iso(datetime(2026, 11, 27, tzinfo=JST) + i * SLOT) for i in range(20)
    ]
    assert all(r["source"] == "meter_history" and r["rev"] == 1 for r in recs)
    assert all(r["import_wh"] == 400 and r["export_wh"] == 150 for r in recs)
    assert store.verify().ok


async def test_live_boundaries_give_meter_boundary_records(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 0, 0, 30, tzinfo=JST))
    meter = ScriptedMeter(clock)
    s = make(store, clock, meter)
    await s.settle()
    assert records(store) == []
    assert await s.read_boundary(datetime(2026, 11, 27, 0, 0, tzinfo=JST))
    clock.advance(1800)
    assert await s.read_boundary(datetime(2026, 11, 27, 0, 30, tzinfo=JST))
    out = await s.settle()
    assert len(out) == 1
    assert out[0]["source"] == "meter_boundary"
    assert (out[0]["import_wh"], out[0]["export_wh"]) == (400, 150)
    assert out[0]["slot_start"] == "2026-11-27T00:00:00+09:00"


async def test_wrap_is_settled_correctly(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 0, 0, 30, tzinfo=JST))
    origin = datetime(2026, 11, 27, tzinfo=JST)
    meter = ScriptedMeter(clock, import0=MOD - 100, export0=MOD - 10, origin=origin)
    s = make(store, clock, meter)
    await s.read_boundary(origin)
    clock.advance(1800)
    await s.read_boundary(origin + SLOT)
    rec = (await s.settle())[0]
    assert (rec["import_wh"], rec["export_wh"]) == (400, 150)  # not negative across the wrap


async def test_gap_while_meter_unreachable_is_missing_then_revised(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 0, 0, 30, tzinfo=JST))
    meter = ScriptedMeter(clock)
    s = make(store, clock, meter)
    await s.read_boundary(datetime(2026, 11, 27, 0, 0, tzinfo=JST))
    meter.offline = True
    clock.advance(3600)  # 01:00:30 — the 00:30 and 01:00 boundaries cannot be read
    assert not await s.read_boundary(datetime(2026, 11, 27, 1, 0, tzinfo=JST), attempts=1)
    await s.settle()
    # 00:00-00:30 ended 30 min ago: missing; 00:30-01:00 is still within its grace period.
    assert [r["slot_start"] for r in records(store)] == ["2026-11-27T00:00:00+09:00"]
    clock.advance(15 * 60)
    await s.settle()
    missing = records(store)
    assert [(r["slot_start"], r["source"], r["rev"]) for r in missing] == [
        ("2026-11-27T00:00:00+09:00", "missing", 1),
        ("2026-11-27T00:30:00+09:00", "missing", 1),
    ]
    assert missing[0]["import_wh"] is None and missing[0]["export_wh"] is None
    # The meter returns: history fills the gap, and each slot gets a better revision.
    meter.offline = False
    clock.advance(1200)  # 01:35:30
    await s.settle()
    revised = records(store)[2:]
    assert [(r["slot_start"], r["source"], r["rev"]) for r in revised] == [
        ("2026-11-27T00:00:00+09:00", "meter_history", 2),
        ("2026-11-27T00:30:00+09:00", "meter_history", 2),
        ("2026-11-27T01:00:00+09:00", "meter_history", 1),
    ]
    assert all(r["import_wh"] == 400 for r in revised)
    assert store.verify().ok


async def test_gateway_off_for_days_fills_from_day_history(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 24, 23, 40, tzinfo=JST))
    meter = ScriptedMeter(clock)
    s = make(store, clock, meter, days=7)
    await s.settle()
    before = store.max_seq()
    clock.set(datetime(2026, 11, 27, 1, 10, tzinfo=JST))  # off for two days
    await s.settle()
    recs = store.records_by_seq(before + 1, store.max_seq())
    starts = [r["slot_start"] for r in recs]
    assert starts[0] == "2026-11-24T23:30:00+09:00"
    assert starts[-1] == "2026-11-27T00:30:00+09:00"
    assert len(starts) == len(set(starts)) == 1 + 2 * 48 + 2
    assert all(r["source"] == "meter_history" and r["import_wh"] == 400 for r in recs)
    assert any(c.startswith("day 2026-11-25") for c in meter.calls)
    assert any(c.startswith("recent") for c in meter.calls)


async def test_slot_beyond_history_stays_missing(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 3, 5, tzinfo=JST))
    meter = ScriptedMeter(clock)
    meter.no_history = {datetime(2026, 11, 27, 1, 0, tzinfo=JST)}
    await make(store, clock, meter).settle()
    by_slot = {r["slot_start"]: r for r in records(store)}
    assert by_slot["2026-11-27T00:30:00+09:00"]["source"] == "missing"
    assert by_slot["2026-11-27T01:00:00+09:00"]["source"] == "missing"
    assert by_slot["2026-11-27T01:30:00+09:00"]["source"] == "meter_history"
    # Settling again never re-publishes what did not change.
    n = store.max_seq()
    await make(store, clock, meter).settle()
    assert store.max_seq() == n


async def test_meter_inf_boundary_is_settled(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 0, 0, 10, tzinfo=JST))
    meter = ScriptedMeter(clock)
    s = make(store, clock, meter)
    await s.on_meter_boundary(meter.at(datetime(2026, 11, 27, 0, 0, tzinfo=JST)))
    clock.advance(1800)
    await s.on_meter_boundary(meter.at(datetime(2026, 11, 27, 0, 30, tzinfo=JST)))
    assert [r["source"] for r in records(store)] == ["meter_boundary"]


async def test_device_energy_from_counters(store: Store) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 0, 0, 10, tzinfo=JST))
    meter = ScriptedMeter(clock)
    counters = {"pv_wh": 10_000, "battery_charge_wh": 500, "battery_discharge_wh": 900}

    async def read() -> dict[str, int | None]:
        return dict(counters)

    s = Settlement(SITE, meter, store, clock, device_counters=read)
    await s.on_meter_boundary(meter.at(datetime(2026, 11, 27, 0, 0, tzinfo=JST)))
    counters.update(pv_wh=10_640, battery_charge_wh=800)
    clock.advance(1800)
    await s.on_meter_boundary(meter.at(datetime(2026, 11, 27, 0, 30, tzinfo=JST)))
    rec = records(store)[0]
    assert (rec["pv_wh"], rec["battery_charge_wh"], rec["battery_discharge_wh"]) == (640, 300, 0)


async def test_pv_energy_of_several_inverters_only_over_the_same_inverters(store: Store) -> None:
    """A sum over two inverters is never subtracted from a sum over one (a config change)."""
    clock = ManualClock(datetime(2026, 11, 27, 0, 0, 10, tzinfo=JST))
    meter = ScriptedMeter(clock)
    counters: dict[str, Any] = {"pv_wh": 10_000, "pv_by_device": {"pv": 10_000}}

    async def read() -> dict[str, Any]:
        return dict(counters)

    s = Settlement(SITE, meter, store, clock, device_counters=read)
    slot = datetime(2026, 11, 27, 0, 0, tzinfo=JST)
    await s.on_meter_boundary(meter.at(slot))
    counters.update(pv_wh=12_500, pv_by_device={"pv": 10_300, "pv_flex": 2_200})
    clock.advance(1800)
    await s.on_meter_boundary(meter.at(slot + timedelta(minutes=30)))
    counters.update(pv_wh=13_000, pv_by_device={"pv": 10_700, "pv_flex": 2_300})
    clock.advance(1800)
    await s.on_meter_boundary(meter.at(slot + timedelta(minutes=60)))
    first, second = records(store)
    assert "pv_wh" not in first  # one inverter, then two: not comparable
    assert second["pv_wh"] == 500
