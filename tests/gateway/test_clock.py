"""The injectable clock: JST wall time, jumps for tests, acceleration for the demo."""

from __future__ import annotations

import asyncio
from datetime import datetime

from gateway.clock import JST, AcceleratedClock, ManualClock, SystemClock


def test_system_clock_is_jst() -> None:
    now = SystemClock().now()
    assert now.utcoffset() is not None and now.utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]


async def test_manual_clock_sleep_wakes_on_advance() -> None:
    clock = ManualClock(datetime(2026, 11, 27, 10, 29, 50, tzinfo=JST))
    woke: list[datetime] = []

    async def sleeper() -> None:
        await clock.sleep(15)
        woke.append(clock.now())

    task = asyncio.create_task(sleeper())
    await clock.advance_async(10)
    assert not woke
    await clock.advance_async(5)
    await asyncio.wait_for(task, 1)
    assert woke == [datetime(2026, 11, 27, 10, 30, 5, tzinfo=JST)]


def test_manual_clock_set_backwards_keeps_monotonic() -> None:
    clock = ManualClock()
    mono = clock.monotonic()
    clock.set(datetime(2020, 1, 1, tzinfo=JST))
    assert clock.monotonic() == mono
    assert clock.now().year == 2020


async def test_accelerated_clock_runs_faster() -> None:
    clock = AcceleratedClock(600)
    start = clock.now()
    await clock.sleep(60)  # one minute of clock time takes 0.1 s
    elapsed = (clock.now() - start).total_seconds()
    assert 55 <= elapsed <= 200
