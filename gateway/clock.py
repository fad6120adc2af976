"""One source of time for the whole daemon.

Settlement slots are defined in Japan Standard Time and the interlock judges the age of readings,
so every component asks a ``Clock`` instead of calling ``time``/``datetime`` directly. Tests swap
in a :class:`ManualClock` they can jump, the demo an :class:`AcceleratedClock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

JST = timezone(timedelta(hours=9), "JST")


class Clock(Protocol):
    """Wall time (aware, JST) plus a monotonic counter, and a sleep that follows the clock."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(JST)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock:
    """Runs ``factor`` times faster than real time, from ``start`` (default: now).

    The demo uses it to show a day of 30-minute slots in minutes; sleeps shrink by the same factor
    so components keep their relative timing.
    """

    def __init__(self, factor: float, start: datetime | None = None) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        self._start_wall = (start or datetime.now(JST)).astimezone(JST)
        self._start_mono = time.monotonic()

    def now(self) -> datetime:
        return self._start_wall + timedelta(seconds=self._elapsed())

    def monotonic(self) -> float:
        return self._start_mono + self._elapsed()

    def _elapsed(self) -> float:
        return (time.monotonic() - self._start_mono) * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)


class ManualClock:
    """A clock that moves only when told to: tests jump it across slot boundaries.

    ``sleep`` suspends until :meth:`advance` moves the clock past the wake-up time, so code under
    test behaves as if the time had really passed.
    """

    def __init__(self, start: datetime | None = None, monotonic_start: float = 1000.0) -> None:
        self._wall = (start or datetime(2026, 11, 27, 9, 0, tzinfo=JST)).astimezone(JST)
        self._mono = monotonic_start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def set(self, when: datetime) -> None:
        """Jump to ``when``; moving backwards changes wall time only (as an NTP step would)."""
        delta = (when - self._wall).total_seconds()
        self._wall = when.astimezone(JST)
        if delta > 0:
            self._mono += delta
            self._wake()

    def step_wall(self, when: datetime) -> None:
        """An NTP step (or an RTC-less boot): wall time jumps, monotonic time does not."""
        self._wall = when.astimezone(JST)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("use set() to step wall time backwards")
        self._wall += timedelta(seconds=seconds)
        self._mono += seconds
        self._wake()

    async def advance_async(self, seconds: float, step: float | None = None) -> None:
        """Advance in steps, yielding to the loop between them so woken tasks can run."""
        step = step or seconds
        remaining = seconds
        while remaining > 0:
            for _ in range(5):  # let tasks reach their sleep before time moves
                await asyncio.sleep(0)
            chunk = min(step, remaining)
            self.advance(chunk)
            remaining -= chunk
        for _ in range(5):
            await asyncio.sleep(0)

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._counter), fut))
        await fut
