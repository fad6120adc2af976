"""Health alarms the backend needs to trust this gateway's data: meter lost, disk nearly full,
clock not synchronised. Each raises once when it starts and clears once when it ends."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.clock import Clock
from gateway.logs import get_logger, shed_logs
from gateway.slots import iso

#: adjtimex(2) returns TIME_ERROR (5) while the kernel clock is not synchronised (no NTP).
TIME_ERROR = 5
#: struct timex is 208 bytes on 64-bit Linux; with modes = 0 adjtimex only reads.
TIMEX_SIZE = 256


def clock_synchronised() -> bool | None:
    """Whether the kernel says the clock is NTP-synchronised; None where it cannot tell."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(TIMEX_SIZE)  # zeroed: modes = 0
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != TIME_ERROR)


def disk_free_fraction(path: Path) -> float | None:
    probe = path if path.exists() else path.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return None
    return usage.free / usage.total if usage.total else None


@dataclass
class HealthMonitor:
    clock: Clock
    queue_alarm: Callable[[dict[str, Any]], None]
    store_path: Path
    meter_up: Callable[[], bool] | None = None
    meter_lost_after_s: float = 300.0
    disk_min_free: float = 0.05
    check_clock: Callable[[], bool | None] = clock_synchronised
    #: The store's space reserve: True when it holds it (tries to take it back when it does not).
    store_reserve: Callable[[], bool] | None = None
    period_s: float = 60.0
    name: str = "health"
    active: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.health")
        self._meter_down_since: float | None = None

    async def run(self) -> None:
        while True:
            self.check()
            await self.clock.sleep(self.period_s)

    def check(self) -> None:
        free = disk_free_fraction(self.store_path)
        reserve_ok = self.store_reserve() if self.store_reserve is not None else True
        full = (free is not None and free < self.disk_min_free) or not reserve_ok
        # Logs share the disk (journald): only warnings and errors while it is full.
        shed_logs(full)
        self._set(
            "disk_full",
            full,
            f"disk nearly full: {(free or 0) * 100:.1f} % free at {self.store_path}"
            + ("" if reserve_ok else "; low-priority data and info logs shed"),
            "disk space back above the limit",
        )
        synced = self.check_clock()
        if synced is not None:  # cannot tell: keep what was last said
            self._set(
                "clock_unsynchronised",
                not synced,
                "system clock is not synchronised (NTP): slot times may be wrong",
                "system clock synchronised again",
            )
        if self.meter_up is not None:
            now = self.clock.monotonic()
            if self.meter_up():
                self._meter_down_since = None
            elif self._meter_down_since is None:
                self._meter_down_since = now
            lost = (
                self._meter_down_since is not None
                and now - self._meter_down_since >= self.meter_lost_after_s
            )
            self._set(
                "meter_lost",
                lost,
                f"smart meter unreachable for more than {self.meter_lost_after_s:g} s",
                "smart meter reachable again",
            )

    def _set(self, kind: str, bad: bool, raised: str, cleared: str) -> None:
        if bad == self.active.get(kind, False):
            return
        self.active[kind] = bad
        message = raised if bad else cleared
        (self.log.warning if bad else self.log.info)("health alarm", kind=kind, message=message)
        self.queue_alarm(
            {"kind": kind, "active": bad, "at": iso(self.clock.now()), "message": message}
        )
