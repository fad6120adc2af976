"""The demo's pure parts: its DR day, its variable-speed clock, its baseline look-back."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta

import pytest

from gateway.baseline import DayClass, day_class
from gateway.clock import JST
from gateway.demo.clock import DemoClock
from gateway.demo.run import baseline_days
from gateway.demo.schedule import DAY_PLAN, LEAD, due
from gateway.dr import DIRECTIONS

DAY = date(2026, 11, 27)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=JST)


def test_the_plan_uses_command_kinds_with_a_dr_direction() -> None:
    ways = {DIRECTIONS[p.kind].value for p in DAY_PLAN}
    assert ways == {"up", "down"}
    for p in DAY_PLAN:
        assert p.start.minute in (0, 30) and p.end.minute in (0, 30)
        assert p.end > p.start


def test_a_command_is_due_from_its_lead_time_and_sent_once() -> None:
    assert due(at(10, 24), set()) == []
    first = due(at(10, 30) - LEAD, set())
    assert [d.plan.key for d in first] == ["up-battery"]
    assert first[0].start == at(10, 30) and first[0].end == at(13, 30)
    assert due(at(10, 26), {first[0].id}) == []


def test_a_late_start_sends_the_rest_of_a_running_window_and_skips_ended_ones() -> None:
    late = {d.plan.key: d for d in due(at(12, 10), set())}
    assert set(late) == {"up-battery", "up-water"}
    assert late["up-battery"].start == at(12, 0)  # from the current slot
    assert late["up-water"].end == at(13, 0)
    assert [d.plan.key for d in due(at(21, 0), set())] == []


def test_the_next_day_gets_its_own_ids() -> None:
    today = due(at(16, 56), set())
    tomorrow = due(at(16, 56, DAY + timedelta(days=1)), {d.id for d in today})
    assert [d.plan.key for d in tomorrow] == ["down-battery"]
    assert tomorrow[0].id != today[0].id


@pytest.mark.parametrize("day", [date(2026, 11, 27), date(2026, 11, 28), date(2026, 5, 7)])
def test_baseline_days_reach_back_to_a_full_pool(day: date) -> None:
    back = baseline_days(day)
    cls = day_class(day)
    pool = 5 if cls is DayClass.WEEKDAY else 3
    found = [day - timedelta(days=k) for k in range(1, back + 1)]
    assert sum(1 for d in found if day_class(d) is cls) == pool
    assert day_class(found[-1]) is cls  # not a day further than needed


async def test_demo_clock_sleeps_end_at_the_right_simulated_time_across_a_speed_change() -> None:
    clock = DemoClock(10.0, at(5))
    t0 = clock.monotonic()
    sleeper = asyncio.create_task(clock.sleep(100.0))  # 10 s real at ×10
    await asyncio.sleep(0.05)
    clock.set_speed(1000.0)  # the remaining ~99.5 simulated seconds take ~0.1 s
    started = time.monotonic()
    await asyncio.wait_for(sleeper, 2.0)
    assert time.monotonic() - started < 1.0
    assert clock.monotonic() - t0 >= 100.0
    assert clock.now() >= at(5) + timedelta(seconds=100)


def test_demo_clock_refuses_a_non_positive_speed() -> None:
    with pytest.raises(ValueError):
        DemoClock(0, at(5))
    with pytest.raises(ValueError):
        DemoClock(1, at(5)).set_speed(-1)
