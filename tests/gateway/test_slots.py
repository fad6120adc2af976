"""Slot arithmetic: boundaries in JST, wrap-aware differences, sources, revisions, gap planning."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import JST
from gateway.slots import (
    SLOT,
    BoundaryPoint,
    SlotValue,
    Source,
    boundaries_needed,
    counter_delta,
    improves,
    iso,
    plan_history,
    slot_start,
    slot_value,
    slots_between,
)

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
MOD = 100_000_000 * 100  # 8 digits at 0.1 kWh = 100 Wh per count


def bp(at: datetime, imp: int | None, exp: int | None, hist: bool = False) -> BoundaryPoint:
    return BoundaryPoint(at, imp, exp, MOD, hist)


def test_slot_start_is_jst_half_hour() -> None:
    assert slot_start(datetime(2026, 11, 27, 1, 44, 59, tzinfo=JST)) == datetime(
        2026, 11, 27, 1, 30, tzinfo=JST
    )
    assert slot_start(datetime(2026, 11, 26, 15, 10, tzinfo=UTC)) == datetime(
        2026, 11, 27, 0, 0, tzinfo=JST
    )
    assert iso(T0) == "2026-11-27T10:00:00+09:00"


def test_48_slots_a_day() -> None:
    day = datetime(2026, 11, 27, tzinfo=JST)
    assert len(slots_between(day, day + timedelta(days=1))) == 48
    assert slots_between(day, day + timedelta(minutes=59)) == [day]


def test_boundary_difference() -> None:
    v = slot_value(bp(T0, 1_234_500, 7_000), bp(T0 + SLOT, 1_234_900, 8_300))
    assert (v.import_wh, v.export_wh, v.source) == (400, 1300, Source.METER_BOUNDARY)


def test_wrap_is_not_negative() -> None:
    v = slot_value(bp(T0, MOD - 200, 0), bp(T0 + SLOT, 300, 0))
    assert v.import_wh == 500


def test_history_source_and_missing() -> None:
    v = slot_value(bp(T0, 100, 0, hist=True), bp(T0 + SLOT, 200, 0))
    assert v.source is Source.METER_HISTORY
    m = slot_value(bp(T0, None, None), bp(T0 + SLOT, 200, 0))
    assert m.source is Source.MISSING and m.import_wh is None


def test_no_reverse_measurement_keeps_import() -> None:
    v = slot_value(bp(T0, 100, None), bp(T0 + SLOT, 200, None))
    assert (v.import_wh, v.export_wh, v.source) == (100, None, Source.METER_BOUNDARY)


def test_non_adjacent_boundaries_refused() -> None:
    with pytest.raises(ValueError):
        slot_value(bp(T0, 1, 1), bp(T0 + 2 * SLOT, 2, 2))


@given(st.integers(0, MOD - 1), st.integers(0, 12_000))
def test_delta_property(start: int, energy: int) -> None:
    assert counter_delta(start, (start + energy) % MOD, MOD) == energy


def test_improves() -> None:
    hist = SlotValue(T0, 100, 0, Source.METER_HISTORY)
    boundary = SlotValue(T0, 100, 0, Source.METER_BOUNDARY)
    assert improves(hist, "missing", None, None)
    assert not improves(hist, "meter_history", 100, 0)
    assert not improves(hist, "meter_boundary", 100, 0)
    assert not improves(boundary, "meter_history", 100, 0)  # same values: no new rev
    assert improves(boundary, "meter_history", 90, 0)
    assert not improves(SlotValue(T0, None, None, Source.MISSING), "missing", None, None)
    assert improves(SlotValue(T0, 100, 5, Source.METER_HISTORY), "meter_history", 100, None)


def test_plan_history_splits_recent_and_days() -> None:
    now = datetime(2026, 11, 27, 12, 10, tzinfo=JST)
    needed = [
        datetime(2026, 11, 27, 11, 0, tzinfo=JST),
        datetime(2026, 11, 27, 9, 0, tzinfo=JST),
        datetime(2026, 11, 27, 3, 0, tzinfo=JST),  # older than 6 h: by day
        datetime(2026, 11, 25, 3, 0, tzinfo=JST),
        datetime(2026, 11, 1, 3, 0, tzinfo=JST),  # beyond backfill_days
    ]
    plan = plan_history(needed, now, backfill_days=7)
    assert plan.recent_end == datetime(2026, 11, 27, 11, 0, tzinfo=JST)
    assert plan.recent_count == 5
    assert plan.days == (date(2026, 11, 27), date(2026, 11, 25))


def test_boundaries_needed() -> None:
    known = {T0: bp(T0, 1, 1), T0 + SLOT: bp(T0 + SLOT, 2, 2)}
    published = {T0: "meter_boundary"}
    now = T0 + 3 * SLOT + timedelta(minutes=1)
    need = boundaries_needed(published, known, T0, now)
    assert need == [T0 + 2 * SLOT, T0 + 3 * SLOT]
