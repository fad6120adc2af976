"""System clock steps while settlement runs: ±1 h, and a board booted at 1970 then synchronised.

The meter keeps the true time (its fixed-time readings carry it); only the gateway's wall clock
jumps, monotonic time runs on (as with an NTP step). Pass criterion: every slot from the epoch up
to the last boundary the meter has reached is stored exactly once (rev 1), measured (never
``missing``), with the meter's timestamps and values; no record lies in 1970 or in the future.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from pathlib import Path

from drivers.capabilities import Boundary
from gateway.clock import JST, ManualClock
from gateway.provenance import init_key, load_private
from gateway.settlement import Settlement
from gateway.slots import SLOT, iso, slot_start
from gateway.store import Store
from tests.gateway.test_settlement import MOD, SITE, ScriptedMeter
from tests.support.faults import seeded_rng, size

TRUE_START = datetime(2026, 11, 27, 0, 10, tzinfo=JST)


class HonestMeter(ScriptedMeter):
    """The scripted meter, but its history never reaches past its own clock."""

    async def history_recent(self, end: datetime, count: int) -> list[Boundary]:
        out = await super().history_recent(end, count)
        return [b if b.at <= self.clock.now() else Boundary(b.at, None, None, MOD) for b in out]

    async def history_day(self, day: date) -> list[Boundary]:
        return await super().history_day(day)


def open_store(tmp: Path) -> Store:
    init_key(tmp / "k.pem")
    return Store(tmp / "chisan.db", SITE, load_private(tmp / "k.pem"))


async def run_for(
    true: ManualClock, gw: ManualClock, minutes: int, jumps: dict[int, timedelta | datetime]
) -> None:
    """Move both clocks a minute at a time; at minute m apply ``jumps[m]`` to the gateway's wall."""
    for m in range(minutes):
        jump = jumps.get(m)
        if isinstance(jump, timedelta):
            gw.step_wall(gw.now() + jump)
        elif isinstance(jump, datetime):
            gw.step_wall(jump)
        true.advance(60)
        await gw.advance_async(60)


def check(
    store: Store, true_now: datetime, first: datetime, lag: int = 0
) -> list[dict[str, object]]:
    """Every slot from ``first`` to the meter's newest boundary, except at most ``lag`` last."""
    recs = store.records_by_seq(1, store.max_seq())
    starts = [str(r["slot_start"]) for r in recs]
    last_end = slot_start(true_now)  # the newest boundary the meter has reached
    expected = [iso(first + i * SLOT) for i in range(int((last_end - first) / SLOT))]
    assert len(starts) == len(set(starts)), "a slot was stored twice"
    assert sorted(starts) == expected[: len(starts)], "a slot was skipped or is in the future"
    assert len(starts) >= len(expected) - lag, "slots not settled"
    assert all(r["rev"] == 1 and r["source"] != "missing" for r in recs)
    assert all((r["import_wh"], r["export_wh"]) == (400, 150) for r in recs)
    assert store.verify().ok
    return recs


async def test_clock_stepped_forward_and_back_an_hour(tmp_path: Path) -> None:
    true = ManualClock(TRUE_START)
    gw = ManualClock(TRUE_START, monotonic_start=5000.0)
    store = open_store(tmp_path)
    settlement = Settlement(SITE, HonestMeter(true), store, gw, backfill_days=2)
    task = asyncio.create_task(settlement.run())
    try:
        hour = timedelta(hours=1)
        # +1 h at 03:00, then -2 h at 06:00 (an hour behind), back to the true time at 09:00.
        await run_for(true, gw, 12 * 60, {170: hour, 350: -2 * hour, 530: hour})
        assert gw.now() == true.now()
    finally:
        task.cancel()
    check(store, true.now(), datetime(2026, 11, 27, tzinfo=JST))


async def test_boot_at_1970_then_ntp_sync(tmp_path: Path) -> None:
    true = ManualClock(TRUE_START + timedelta(hours=10))
    gw = ManualClock(datetime(1970, 1, 1, 9, 0, 7, tzinfo=JST), monotonic_start=12.0)
    store = open_store(tmp_path)
    settlement = Settlement(SITE, HonestMeter(true), store, gw, backfill_days=2)
    task = asyncio.create_task(settlement.run())
    try:
        await run_for(true, gw, 150, {})  # 2.5 h before NTP
        assert gw.now().year == 1970
        # Settled by the meter's time even before the sync; without a trusted clock the read
        # phase is only known to within a slot, so the newest slot may still be waiting.
        check(store, true.now(), datetime(2026, 11, 27, tzinfo=JST), lag=1)
        await run_for(true, gw, 120, {0: true.now()})  # NTP steps the clock 56 years ahead
    finally:
        task.cancel()
    recs = check(store, true.now(), datetime(2026, 11, 27, tzinfo=JST))
    assert all(not str(r["created_at"]).startswith("1970") for r in recs)
    assert store.get_json("settlement.epoch") == "2026-11-27T00:00:00+09:00"


async def test_random_clock_steps(tmp_path: Path) -> None:
    """Steps of up to an hour either way at random moments: one day in CI, a week long."""
    rng = seeded_rng("clock steps")
    days = size(1, 7)
    true = ManualClock(TRUE_START)
    gw = ManualClock(TRUE_START, monotonic_start=777.0)
    store = open_store(tmp_path)
    settlement = Settlement(SITE, HonestMeter(true), store, gw, backfill_days=2)
    minutes = days * 24 * 60
    jumps: dict[int, timedelta | datetime] = {
        rng.randrange(1, minutes): timedelta(minutes=rng.choice((-60, -45, -30, -1, 1, 30, 60)))
        for _ in range(size(6, 40))
    }
    task = asyncio.create_task(settlement.run())
    try:
        await run_for(true, gw, minutes, jumps)
        await run_for(true, gw, 60, {0: true.now()})  # NTP puts it right; one more hour
    finally:
        task.cancel()
    check(store, true.now(), datetime(2026, 11, 27, tzinfo=JST))
