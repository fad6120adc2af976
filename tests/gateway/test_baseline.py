"""DR baselines on synthetic histories, every answer worked out by hand.

The main scene: a 下げDR event on Friday 2026-11-27, 13:00–15:00 (4 slots). Looking back, Monday
11-23 is Labor Thanksgiving Day and 11-21/22 a weekend, so the weekday candidates are 11-26, 25,
24, 20 and 19. Each candidate imports a flat amount per slot all day, so sums and means are easy:

    11-26: 300   11-25: 500   11-24: 400   11-20: 200   11-19: 600   (Wh per slot)

High 4 of 5 drops 11-20 (the lowest demand): baseline = (600 + 500 + 400 + 300) / 4 = 450 Wh.
The default same-day window is 08:00–11:00 (3 h ending 2 h before the start).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from gateway.baseline import (
    BaselineConfig,
    BaselineResult,
    DayClass,
    Direction,
    Event,
    compute,
    day_class,
    holiday_name,
)
from gateway.clock import JST
from gateway.slots import SLOT

EVENT_DAY = date(2026, 11, 27)
FLAT = {
    date(2026, 11, 26): 300,
    date(2026, 11, 25): 500,
    date(2026, 11, 24): 400,
    date(2026, 11, 20): 200,
    date(2026, 11, 19): 600,
    date(2026, 11, 18): 100,
}
OTHER = 999  # every other day: weekends, holidays, older weekdays


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), JST)


def event(day: date = EVENT_DAY, direction: Direction = Direction.DOWN) -> Event:
    return Event(at(day, 13), at(day, 15), direction)


def history(
    flat: dict[date, int] | None = None,
    first: date = date(2026, 10, 1),
    last: date = EVENT_DAY,
    event_slot: int = 250,
    window_slot: int = 500,
) -> dict[datetime, int | None]:
    """Flat days from ``first`` to ``last``; on the event day 250 Wh during the event, 500 in
    the same-day window and 999 elsewhere."""
    flat = FLAT if flat is None else flat
    out: dict[datetime, int | None] = {}
    day = first
    while day <= last:
        for i in range(48):
            start = at(day, 0) + SLOT * i
            out[start] = flat.get(day, OTHER)
        day += timedelta(days=1)
    for start in slots(at(EVENT_DAY, 13), 4):
        out[start] = event_slot
    for start in slots(at(EVENT_DAY, 8), 6):
        out[start] = window_slot
    return out


def slots(first: datetime, n: int) -> list[datetime]:
    return [first + SLOT * i for i in range(n)]


NO_ADJUST = BaselineConfig(adjust=False)


def test_weekday_high_4_of_5_skips_the_holiday() -> None:
    r = compute(history(), [], event(), NO_ADJUST)
    assert r.ok and r.reason is None
    assert r.day_class is DayClass.WEEKDAY and r.method == "high_4_of_5"
    assert r.candidates == (
        date(2026, 11, 26),
        date(2026, 11, 25),
        date(2026, 11, 24),
        date(2026, 11, 20),
        date(2026, 11, 19),
    )
    assert r.used_days == (
        date(2026, 11, 26),
        date(2026, 11, 25),
        date(2026, 11, 24),
        date(2026, 11, 19),
    )
    skipped = {s.day: s.reason for s in r.skipped}
    assert skipped[date(2026, 11, 23)] == "holiday (Labor Thanksgiving Day)"
    assert skipped[date(2026, 11, 22)] == skipped[date(2026, 11, 21)] == "weekend"
    assert [s.baseline_wh for s in r.slots] == [450.0] * 4
    assert [s.start for s in r.slots] == slots(at(EVENT_DAY, 13), 4)
    # 下げDR: baseline − actual = 450 − 250 per slot.
    assert [s.delivered_wh for s in r.slots] == [200.0] * 4
    assert (r.baseline_total_wh, r.actual_total_wh, r.delivered_total_wh) == (1800, 1000, 800)
    assert r.adjustment_wh is None and r.adjusted_total_wh == 1800


def test_same_day_adjustment() -> None:
    # Window 08:00–11:00: actual 500 vs baseline 450 → +50 Wh per slot.
    r = compute(history(), [], event())
    assert r.adjustment_raw_wh == r.adjustment_wh == 50.0
    assert [s.adjusted_wh for s in r.slots] == [500.0] * 4
    assert r.delivered_total_wh == (500 - 250) * 4 == 1000


def test_same_day_adjustment_window_is_configurable() -> None:
    # 2 slots ending 1 h before the start: 11:00 and 11:30, where the event day imports 999.
    cfg = BaselineConfig(adjustment_slots=2, adjustment_gap_slots=2)
    r = compute(history(), [], event(), cfg)
    assert r.adjustment_wh == 999 - 450
    assert r.slots[0].adjusted_wh == 999.0


def test_same_day_adjustment_cap() -> None:
    # ±10 % of the mean baseline 450 = 45 < 50.
    r = compute(history(), [], event(), BaselineConfig(adjustment_cap=0.1))
    assert (r.adjustment_raw_wh, r.adjustment_wh) == (50.0, 45.0)
    assert r.delivered_total_wh == (495 - 250) * 4
    assert any("capped" in n for n in r.notes)


def test_adjusted_baseline_never_below_zero() -> None:
    r = compute(history(window_slot=0), [], event())
    assert r.adjustment_wh == -450.0
    assert [s.adjusted_wh for s in r.slots] == [0.0] * 4
    assert r.delivered_total_wh == -250 * 4  # more import than a zero baseline


def test_up_dr_counts_the_other_way() -> None:
    r = compute(history(event_slot=700), [], event(direction=Direction.UP))
    # 上げDR: actual − adjusted = 700 − 500.
    assert [s.delivered_wh for s in r.slots] == [200.0] * 4
    assert r.delivered_total_wh == 800


def test_event_days_are_not_candidates() -> None:
    # 11-25 had an event: the pool reaches back to 11-18; keep 600, 400, 300, 200.
    r = compute(history(), [date(2026, 11, 25), EVENT_DAY], event(), NO_ADJUST)
    assert date(2026, 11, 25) not in r.candidates
    assert r.candidates[-1] == date(2026, 11, 18)
    assert r.used_days == (
        date(2026, 11, 26),
        date(2026, 11, 24),
        date(2026, 11, 20),
        date(2026, 11, 19),
    )
    assert r.slots[0].baseline_wh == (600 + 400 + 300 + 200) / 4
    assert skip_reason(r, date(2026, 11, 25)) == "event day"


def skip_reason(r: BaselineResult, day: date) -> str | None:
    return next((s.reason for s in r.skipped if s.day == day), None)


def test_candidate_with_a_missing_event_slot_is_skipped() -> None:
    h = history()
    h[at(date(2026, 11, 24), 13, 30)] = None
    r = compute(h, [], event(), NO_ADJUST)
    assert date(2026, 11, 24) not in r.candidates and r.candidates[-1] == date(2026, 11, 18)
    assert skip_reason(r, date(2026, 11, 24)) == "missing 1 slot(s): 11-24 13:30"
    # 600, 500, 300, 200 (11-18's 100 is dropped).
    assert r.slots[0].baseline_wh == (600 + 500 + 300 + 200) / 4


def test_candidate_missing_a_window_slot_is_skipped_only_when_adjusting() -> None:
    h = history()
    del h[at(date(2026, 11, 26), 9)]
    assert date(2026, 11, 26) in compute(h, [], event(), NO_ADJUST).candidates
    r = compute(h, [], event())
    assert skip_reason(r, date(2026, 11, 26)) == "missing 1 slot(s): 11-26 09:00"


def test_missing_actual_in_the_event_gives_no_totals() -> None:
    h = history()
    h[at(EVENT_DAY, 14)] = None
    r = compute(h, [], event())
    assert r.ok
    assert [s.delivered_wh for s in r.slots] == [250.0, 250.0, None, 250.0]
    assert r.actual_total_wh is None and r.delivered_total_wh is None
    assert r.baseline_total_wh == 1800
    assert any("11-27 14:00" in n for n in r.notes)


def test_missing_actual_in_the_window_skips_the_adjustment() -> None:
    h = history()
    h[at(EVENT_DAY, 10, 30)] = None
    r = compute(h, [], event())
    assert r.adjustment_wh is None and r.adjustment_raw_wh is None
    assert r.delivered_total_wh == 800  # the unadjusted 450 − 250
    assert any("adjustment skipped" in n and "11-27 10:30" in n for n in r.notes)


def test_not_enough_days() -> None:
    r = compute(history(first=date(2026, 11, 20)), [], event())
    assert not r.ok and r.used_days == () and r.delivered_total_wh is None
    assert r.reason == (
        "only 4 of the 5 weekday days needed were found in the 30 days before 2026-11-27"
    )
    assert [s.actual_wh for s in r.slots] == [250] * 4
    assert all(s.baseline_wh is None for s in r.slots)


def test_lookback_is_at_most_30_days() -> None:
    # Events on every day from 11-02 to 11-26: 30 days back reach 10-28, leaving 10-28, 29, 30.
    busy = [date(2026, 11, 2) + timedelta(days=i) for i in range(25)]
    r = compute(history(), busy, event())
    assert not r.ok and r.reason is not None and "only 3 of the 5" in r.reason
    assert r.candidates == (date(2026, 10, 30), date(2026, 10, 29), date(2026, 10, 28))
    looked_at = [*r.candidates, *(s.day for s in r.skipped)]
    assert min(looked_at) == EVENT_DAY - timedelta(days=30) and len(looked_at) == 30
    cfg = BaselineConfig(lookback_days=40, adjust=False)
    r = compute(history(), busy, event(), cfg)
    # 10-30, 29, 28, 27, 26 (10-31/11-01 a weekend): all at 999.
    assert r.ok and r.candidates[0] == date(2026, 10, 30) and r.slots[0].baseline_wh == 999


def test_ties_keep_the_more_recent_day() -> None:
    flat = {d: 400 for d in FLAT}
    h = history(flat)
    # 11-19: 700 + 300 + 300 + 300 = 1600, the same demand as the others: the oldest is dropped.
    h[at(date(2026, 11, 19), 13)] = 700
    for start in slots(at(date(2026, 11, 19), 13, 30), 3):
        h[start] = 300
    r = compute(h, [], event(), NO_ADJUST)
    assert date(2026, 11, 19) not in r.used_days
    assert r.slots[0].baseline_wh == 400


def test_holiday_event_high_2_of_3() -> None:
    # Monday 11-23 is a holiday: candidates 11-22 (Sun), 11-21 (Sat), 11-15 (Sun).
    day = date(2026, 11, 23)
    flat = {date(2026, 11, 22): 700, date(2026, 11, 21): 300, date(2026, 11, 15): 500}
    r = compute(history(flat, last=day), [], event(day), NO_ADJUST)
    assert r.day_class is DayClass.HOLIDAY and r.method == "high_2_of_3"
    assert r.candidates == (date(2026, 11, 22), date(2026, 11, 21), date(2026, 11, 15))
    assert r.used_days == (date(2026, 11, 22), date(2026, 11, 15))
    assert r.slots[0].baseline_wh == 600
    assert skip_reason(r, date(2026, 11, 20)) == "weekday"


def test_weekend_event_counts_holidays_as_candidates() -> None:
    day = date(2026, 11, 28)  # Saturday
    r = compute(history(last=day), [], event(day), NO_ADJUST)
    assert r.candidates == (date(2026, 11, 23), date(2026, 11, 22), date(2026, 11, 21))


def test_new_year_break_is_a_holiday_by_default() -> None:
    day = date(2027, 1, 4)  # Monday
    h = history(first=date(2026, 12, 1), last=day)
    r = compute(h, [], event(day), NO_ADJUST)
    assert r.candidates == (
        date(2026, 12, 30),
        date(2026, 12, 29),
        date(2026, 12, 28),
        date(2026, 12, 25),
        date(2026, 12, 24),
    )
    assert skip_reason(r, date(2026, 12, 31)) == "holiday (New Year holidays)"
    assert skip_reason(r, date(2027, 1, 1)) == "holiday (New Year's Day)"
    r = compute(h, [], event(day), BaselineConfig(adjust=False, new_year_holidays=False))
    assert r.candidates[0] == date(2026, 12, 31)


def test_calendar() -> None:
    assert holiday_name(date(2026, 5, 6)) == "Substitute Holiday"
    assert holiday_name(date(2026, 9, 22)) == "National Holiday"
    assert holiday_name(date(2027, 1, 2)) == "New Year holidays"
    assert holiday_name(date(2027, 1, 2), new_year=False) is None
    assert day_class(date(2026, 11, 27)) is DayClass.WEEKDAY
    assert day_class(date(2026, 11, 28)) is DayClass.HOLIDAY
    assert day_class(date(2026, 11, 23)) is DayClass.HOLIDAY


def test_history_keys_in_another_time_zone() -> None:
    h = {k.astimezone(UTC): v for k, v in history().items()}
    assert compute(h, [], event()).delivered_total_wh == 1000


def test_event_spanning_midnight_takes_each_candidates_next_morning() -> None:
    # 23:00–01:00 from 11-27: each candidate d contributes 23:00/23:30 of d and 00:00/00:30 of
    # d + 1. Demand: 11-26 2×300 + 2×999 (11-27 night) = 2598, 11-25 2×500 + 2×300 = 1600,
    # 11-24 2×400 + 2×500 = 1800, 11-20 2×200 + 2×999 = 2398, 11-19 2×600 + 2×200 = 1600:
    # keep 11-26, 11-20, 11-24 and, of the tied 11-25 and 11-19, the more recent 11-25.
    ev = Event(at(EVENT_DAY, 23), at(EVENT_DAY, 23) + timedelta(hours=2), Direction.DOWN)
    r = compute(history(last=EVENT_DAY + timedelta(days=1)), [], ev, NO_ADJUST)
    assert [s.start for s in r.slots] == slots(at(EVENT_DAY, 23), 4)
    assert r.used_days == (
        date(2026, 11, 26),
        date(2026, 11, 25),
        date(2026, 11, 24),
        date(2026, 11, 20),
    )
    assert [s.baseline_wh for s in r.slots] == [350.0, 350.0, 699.5, 699.5]
    assert r.actual_total_wh == 999 * 4


SIDEWAYS: Any = "sideways"  # as a payload might say


def test_bad_events() -> None:
    h = history()
    cases = {
        "not on a 30-minute slot boundary": Event(
            at(EVENT_DAY, 13, 10), at(EVENT_DAY, 15), Direction.DOWN
        ),
        "not an aware datetime": Event(
            datetime(2026, 11, 27, 13), at(EVENT_DAY, 15), Direction.DOWN
        ),
        "unknown event direction": Event(at(EVENT_DAY, 13), at(EVENT_DAY, 15), SIDEWAYS),
        "ends before it starts": Event(at(EVENT_DAY, 15), at(EVENT_DAY, 13), Direction.DOWN),
        "longer than a day": Event(
            at(EVENT_DAY, 13), at(EVENT_DAY, 13) + timedelta(days=2), Direction.DOWN
        ),
    }
    for text, ev in cases.items():
        r = compute(h, [], ev)
        assert not r.ok and r.reason is not None and text in r.reason, r.reason
        assert r.slots == ()


def test_bad_config() -> None:
    cfg = BaselineConfig(weekday_keep=6, adjustment_gap_slots=-1)
    r = compute(history(), [], event(), cfg)
    assert not r.ok
    assert r.reason == "invalid baseline config: weekday_pool/weekday_keep, adjustment_gap_slots"
