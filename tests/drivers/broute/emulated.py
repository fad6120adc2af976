"""Helpers for the tests that run the driver against the module emulator on a real pty.

Time: the driver and the emulator share one :class:`AcceleratedClock`, so the driver's timeouts
(clock seconds) shrink while the emulator's radio frames (real seconds) stay what they are. The
factor is moderate (20) so that a loaded CI machine does not turn scheduling hiccups into
timeouts; the configured timeouts are also short in clock seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from drivers.broute.adapter import BrouteMeter, BrouteSettings
from drivers.broute.dialect import Dialect
from drivers.broute.join import CachedPan, JoinConfig
from drivers.broute.meter import MeterSession
from drivers.broute.sim import (
    DEFAULT_PASSWORD,
    DEFAULT_RBID,
    MeterModelConfig,
    ModuleConfig,
    PtyEmulator,
)
from drivers.broute.transport import ModuleLink, SessionParams
from drivers.capabilities import Boundary
from gateway.clock import JST, AcceleratedClock

START = datetime(2026, 11, 27, 10, 17, 0, tzinfo=JST)
FACTOR = 20.0


def clock(start: datetime = START, factor: float = FACTOR) -> AcceleratedClock:
    return AcceleratedClock(factor, start)


def module(**overrides: Any) -> ModuleConfig:
    """A fast module: 2 ms radio frames, scans shrunk to a few ms."""
    base = ModuleConfig(
        link_delay=0.002,
        link_jitter=0.0,
        scan_scale=0.01,
        join_frames=3,
        reauth_frames=3,
        inf_delay_s=2.0,
    )
    return replace(base, **overrides)


def meter(**overrides: Any) -> MeterModelConfig:
    return replace(MeterModelConfig(), **overrides)


def join_config(**overrides: Any) -> JoinConfig:
    base = JoinConfig(DEFAULT_RBID, DEFAULT_PASSWORD, command_timeout=5.0, join_timeout=20.0)
    return replace(base, **overrides)


def session_params() -> SessionParams:
    return SessionParams(retry_delay=1.0, send_timeout=5.0)


def settings(port: str, **overrides: Any) -> BrouteSettings:
    base = BrouteSettings(
        port=port,
        rbid=DEFAULT_RBID,
        dialect=Dialect.AUTO,
        poll_s=5.0,
        energy_poll_s=10.0,
        timeout_s=3.0,
        retries=2,
        min_interval_s=0.5,
        silent_after=3,
        boundary_delay_s=5.0,
        boundary_retry_s=10.0,
        backoff_initial_s=2.0,
        backoff_cap_s=10.0,
        rejected_retry_s=3600.0,
        send_retry_s=1.0,
    )
    return replace(base, **overrides)


class RecordingLog:
    """A stand-in for the structlog logger: keeps every call, renders nothing."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, event: str, **kw: Any) -> None:
        self.records.append((level, event, kw))

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)

    def text(self) -> str:
        return "\n".join(f"{lvl} {ev} {kw!r}" for lvl, ev, kw in self.records)


async def eventually(
    predicate: Callable[[], bool], within: float = 10.0, what: str = "condition"
) -> None:
    """Wait (real seconds) until ``predicate()`` holds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def joined_meter(
    emu: PtyEmulator,
    clk: AcceleratedClock,
    *,
    log: Any = None,
    on_boundary: Callable[[Boundary, bool], None] | None = None,
    **config: Any,
) -> tuple[ModuleLink, MeterSession]:
    """Open the emulator's port, join, and start a meter session."""
    link = await ModuleLink.open(emu.path, clock=clk, log=log)
    await link.join(join_config(**config), session_params())
    session = MeterSession(
        link,
        clk,
        min_interval_s=0.5,
        timeout_s=3.0,
        retries=2,
        silent_after=3,
        on_boundary=on_boundary,
        log=log,
    )
    await session.start()
    return link, session


@dataclass
class PanStore:
    """The daemon's cached-PAN store, in memory."""

    pan: CachedPan | None = None
    saves: list[CachedPan] = field(default_factory=list)

    def load(self) -> CachedPan | None:
        return self.pan

    def save(self, pan: CachedPan) -> None:
        self.pan = pan
        self.saves.append(pan)


@dataclass
class Readings:
    items: list[tuple[str, Any, datetime]] = field(default_factory=list)

    def __call__(self, key: str, value: Any, at: datetime) -> None:
        self.items.append((key, value, at))

    def keys(self) -> set[str]:
        return {k for k, _, _ in self.items}

    def last(self, key: str) -> Any:
        return next(v for k, v, _ in reversed(self.items) if k == key)


def adapter(
    emu: PtyEmulator,
    clk: AcceleratedClock,
    *,
    store: PanStore | None = None,
    readings: Readings | None = None,
    on_boundary: Any = None,
    password: str = DEFAULT_PASSWORD,
    log: Any = None,
    **overrides: Any,
) -> BrouteMeter:
    store = store or PanStore()
    return BrouteMeter(
        settings(emu.path, **overrides),
        password,
        clk,
        load_pan=store.load,
        save_pan=store.save,
        on_reading=readings,
        on_boundary=on_boundary,
        log=log or RecordingLog(),
    )


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_RBID",
    "START",
    "PanStore",
    "Readings",
    "RecordingLog",
    "adapter",
    "clock",
    "eventually",
    "join_config",
    "joined_meter",
    "meter",
    "module",
    "session_params",
    "settings",
    "stop",
]
