"""One polling loop for every device adapter, whatever protocol it speaks.

A failed poll is logged once per outage (and the recovery) and retried next period: the readings
simply go stale, which the interlock notices; restarting the component would not help a device
that is off. Protocols add what they have on top (ECHONET: poll at once on the device's INF;
Modbus: close the connection when the component stops).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar, Protocol

from drivers.capabilities import DeviceError, Measured
from drivers.readings import ReadingCallback
from gateway.clock import Clock


class PolledDevice(Protocol):
    name: str
    log: Any

    async def poll(self) -> dict[str, Measured[Any]]: ...


class DevicePoller:
    """Daemon component for one device: poll every ``poll_s`` (or at once on :meth:`wake`)."""

    #: Errors that mean "the device did not answer this time"; anything else is a bug.
    failures_of: ClassVar[tuple[type[Exception], ...]] = (DeviceError,)

    def __init__(
        self, device: PolledDevice, clock: Clock, on_reading: ReadingCallback, poll_s: float = 10.0
    ) -> None:
        self.device = device
        self.name = device.name
        self.clock = clock
        self.on_reading = on_reading
        self.poll_s = poll_s
        self.polls = 0
        self.failures = 0
        self.last: dict[str, Measured[Any]] = {}
        self._wake = asyncio.Event()
        self._failing = False

    def wake(self) -> None:
        """Poll now instead of at the end of the period."""
        self._wake.set()

    async def poll_once(self) -> dict[str, Measured[Any]]:
        readings = await self.device.poll()
        self.polls += 1
        self.last.update(readings)
        for key, measured in readings.items():
            self.on_reading(key, measured.value, measured.at)
        return readings

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.poll_once()
            except self.failures_of as exc:
                self.failures += 1
                if not self._failing:
                    self.device.log.warning("poll failed", error=str(exc))
                self._failing = True
            else:
                if self._failing:
                    self.device.log.info("device answers again")
                self._failing = False
            sleeper = asyncio.ensure_future(self.clock.sleep(self.poll_s))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
