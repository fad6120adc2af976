"""An accelerated clock whose speed can change while it runs.

The demo starts slowly while the gateway joins the meter and backfills its history (real-time
work: radio frames, fsync'ed store appends), then runs at the requested speed. Sleepers are
woken on every change and recompute their remaining time, so a sleep started at the slow speed
ends at the right simulated instant at the fast one.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from gateway.clock import JST


class DemoClock:
    """Satisfies :class:`gateway.clock.Clock`; ``factor`` simulated seconds per real second."""

    def __init__(self, factor: float, start: datetime) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        self._wall0 = start.astimezone(JST)
        self._real0 = time.monotonic()
        self._sim0 = 0.0  # simulated seconds elapsed at _real0
        self._mono0 = self._real0
        self._waiters: set[asyncio.Future[None]] = set()

    def _elapsed(self) -> float:
        return self._sim0 + (time.monotonic() - self._real0) * self.factor

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._elapsed())

    def monotonic(self) -> float:
        return self._mono0 + self._elapsed()

    def set_speed(self, factor: float) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self._sim0 = self._elapsed()
        self._real0 = time.monotonic()
        self.factor = factor
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        target = self.monotonic() + max(0.0, seconds)
        loop = asyncio.get_running_loop()
        while True:
            left = target - self.monotonic()
            if left <= 0:
                await asyncio.sleep(0)
                return
            fut: asyncio.Future[None] = loop.create_future()
            handle = loop.call_later(left / self.factor, _wake, fut)
            self._waiters.add(fut)
            try:
                await fut
            finally:
                handle.cancel()
                self._waiters.discard(fut)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
