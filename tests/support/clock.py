"""Driving a ManualClock while a coroutine waits on device time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from gateway.clock import ManualClock

T = TypeVar("T")


async def drive(
    clock: ManualClock, aw: Awaitable[T], *, step: float = 0.5, limit_s: float = 3600.0
) -> T:
    """Await ``aw`` while moving the manual clock ``step`` seconds every couple of milliseconds.

    The device and the adapter share the clock, so waits measured in device time (CF following
    DA, confirmation polls) pass in a few real milliseconds.
    """
    task = asyncio.ensure_future(aw)
    moved = 0.0
    while not task.done():
        await asyncio.sleep(0.002)
        if task.done():
            break
        if moved >= limit_s:
            task.cancel()
            raise AssertionError(f"still not done after {limit_s} s of clock time")
        clock.advance(step)
        moved += step
    return task.result()
