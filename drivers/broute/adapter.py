"""``BrouteMeter``: the smart meter as a daemon component and as capabilities.

As a component (``name = "meter"``), :meth:`BrouteMeter.run` keeps a session alive forever:
open the port, join (the cached PAN first, so a rejoin skips the 20-70 s scan), read the scale,
then poll E7+E8 (and E0/E3 less often) and EA/EB after each 30-minute boundary, until something
breaks; then close, back off (capped, with jitter) and start again. Two failures need a person
rather than a retry: rejected credentials on the first join and the wrong dialect. For those the
message is logged once and kept as the reason capability calls fail, and the join is tried again
only after ``rejected_retry_s`` (an hour by default): often enough to notice that the grid
operator has activated the B-route service since, rarely enough not to hammer the meter's PANA.

As capabilities (PowerMeter, PhaseCurrents, EnergyCounters, IntervalMeter) it answers the rest of
the gateway from the last poll when that is fresh, otherwise by asking the meter through the same
single request slot. While the link is down every call raises ``DeviceError`` at once: the
interlock must learn that the meter is gone now, not after a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from drivers.broute.dialect import Dialect
from drivers.broute.errors import BrouteError, JoinError, LinkError
from drivers.broute.join import CachedPan, JoinConfig, JoinResult, credentials_proof
from drivers.broute.meter import (
    HISTORY1_MAX_DAYS,
    HISTORY2_MAX,
    Instant,
    MeterInfo,
    MeterSession,
)
from drivers.broute.transport import BAUDRATE, ModuleLink, SessionParams
from drivers.capabilities import Boundary, DeviceError, Measured
from drivers.echonet.properties import PropertyError
from drivers.readings import (
    METER_CURRENTS_A,
    METER_EXPORT_KWH,
    METER_IMPORT_KWH,
    METER_POWER_W,
)
from gateway.clock import JST, Clock
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.config import BrouteConfig

__all__ = [
    "READING_CURRENTS",
    "READING_EXPORT",
    "READING_IMPORT",
    "READING_POWER",
    "BoundaryCallback",
    "BrouteMeter",
    "BrouteSettings",
    "LinkState",
    "PanLoader",
    "PanSaver",
    "ReadingCallback",
    "pan_from_json",
    "pan_to_json",
]

READING_POWER = METER_POWER_W
READING_CURRENTS = METER_CURRENTS_A
READING_IMPORT = METER_IMPORT_KWH
READING_EXPORT = METER_EXPORT_KWH

SLOT = timedelta(minutes=30)

PanLoader = Callable[[], CachedPan | None]
PanSaver = Callable[[CachedPan], None]
ReadingCallback = Callable[[str, Any, datetime], None]
BoundaryCallback = Callable[[Boundary], Awaitable[None] | None]

T = TypeVar("T")


class LinkState(StrEnum):
    DOWN = "down"
    JOINING = "joining"
    UP = "up"
    NEEDS_ATTENTION = "needs attention"


@dataclass(frozen=True, slots=True)
class BrouteSettings:
    """Everything the adapter needs besides the password; built from ``BrouteConfig`` or by hand.

    Times are clock seconds. ``energy_poll_s`` spaces the E0/E3 reads (they ride along in the
    E7/E8 Get); ``boundary_delay_s`` is how long after :00/:30 EA/EB are read, since meters update
    them shortly after the boundary.
    """

    port: str
    rbid: str
    dialect: Dialect = Dialect.AUTO
    poll_s: float = 10.0
    energy_poll_s: float = 60.0
    baudrate: int = BAUDRATE
    timeout_s: float = 10.0
    retries: int = 3
    min_interval_s: float = 2.0
    scan_durations: tuple[int, ...] = (6, 7, 8)
    silent_after: int = 3
    boundary_delay_s: float = 20.0
    boundary_retry_s: float = 60.0
    backoff_initial_s: float = 5.0
    backoff_cap_s: float = 300.0
    rejected_retry_s: float = 3600.0
    send_retry_s: float = 5.0
    reset_module: bool = True
    write_wopt: bool = True

    @classmethod
    def from_config(cls, cfg: BrouteConfig, **overrides: Any) -> BrouteSettings:
        values: dict[str, Any] = {
            "port": cfg.port,
            "rbid": cfg.id,
            "dialect": Dialect(cfg.dialect),
            "poll_s": cfg.poll_s,
            "baudrate": cfg.baudrate,
            "timeout_s": cfg.timeout_s,
            "retries": cfg.retries,
            "min_interval_s": cfg.min_interval_s,
            "scan_durations": tuple(cfg.scan_durations),
        }
        values.update(overrides)
        return cls(**values)


def pan_to_json(pan: CachedPan) -> dict[str, Any]:
    """The cached PAN as the daemon's store keeps it (``store.put_json("broute.pan", ...)``)."""
    return {"channel": pan.channel, "pan_id": pan.pan_id, "mac": pan.mac, "proof": pan.proof}


def pan_from_json(value: Any) -> CachedPan | None:
    """Back from the store; anything unreadable is treated as no cache (a scan then runs)."""
    if not isinstance(value, dict):
        return None
    try:
        proof = value.get("proof")
        return CachedPan(
            int(value["channel"]),
            int(value["pan_id"]),
            str(value["mac"]),
            proof if isinstance(proof, str) else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _slot_start(when: datetime) -> datetime:
    local = when.astimezone(JST)
    return local.replace(minute=0 if local.minute < 30 else 30, second=0, microsecond=0)


@dataclass(slots=True)
class _Cached:
    value: Any
    at: datetime
    mono: float


class BrouteMeter:
    """The meter over the B-route; see the module docstring.

    Constructor: ``BrouteMeter(config, password, clock, load_pan=..., save_pan=...,
    on_reading=..., on_boundary=...)`` where ``config`` is a ``BrouteConfig`` or
    :class:`BrouteSettings`, ``password`` a string (or a ``Secret``), ``load_pan``/``save_pan``
    the daemon's store of the last PAN, ``on_reading(key, value, at)`` the readings hub and
    ``on_boundary(boundary)`` (may be async) the settlement's handler for the meter's INF.
    """

    name = "meter"

    def __init__(
        self,
        config: BrouteConfig | BrouteSettings,
        password: Any,
        clock: Clock,
        *,
        load_pan: PanLoader | None = None,
        save_pan: PanSaver | None = None,
        on_reading: ReadingCallback | None = None,
        on_boundary: BoundaryCallback | None = None,
        log: Any | None = None,
    ) -> None:
        self.settings = (
            config if isinstance(config, BrouteSettings) else BrouteSettings.from_config(config)
        )
        reveal = getattr(password, "reveal", None)
        self._password: str = reveal() if callable(reveal) else str(password)
        self.clock = clock
        self._load_pan = load_pan
        self._save_pan = save_pan
        self._on_reading = on_reading
        self._on_boundary = on_boundary
        self.log = log or get_logger("chisan.broute", device="meter", port=self.settings.port)
        JoinConfig(self.settings.rbid, self._password)  # validate the credentials' form now
        self._proof = credentials_proof(self.settings.rbid, self._password)
        self.state = LinkState.DOWN
        self.down_reason: str | None = "not started"
        self.joins = 0
        self.last_join: JoinResult | None = None
        self.info: MeterInfo | None = None
        self._proven = False
        self._wopt_written = False
        self._link: ModuleLink | None = None
        self._meter: MeterSession | None = None
        self._power: _Cached | None = None
        self._currents: _Cached | None = None
        self._energy: _Cached | None = None
        self._boundary: Boundary | None = None
        self._boundary_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"BrouteMeter(port={self.settings.port!r}, state={self.state.value!r})"

    # --- the component --------------------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        while True:
            joins_before = self.joins
            try:
                await self._session_once()
            except asyncio.CancelledError:
                raise
            except JoinError as exc:
                if not exc.retryable:
                    self._set_down(str(exc), attention=True)
                    self.log.error("B-route join needs attention", error=str(exc))
                    await self.clock.sleep(self.settings.rejected_retry_s)
                    failures = 0
                    continue
                failures = self._after_failure(exc, failures, joins_before)
            except (BrouteError, DeviceError, PropertyError, OSError) as exc:
                failures = self._after_failure(exc, failures, joins_before)
            else:  # pragma: no cover - _session_once only returns by raising
                failures = 0
            await self.clock.sleep(self._backoff(failures))

    def _after_failure(self, exc: Exception, failures: int, joins_before: int) -> int:
        if self.joins > joins_before:
            failures = 0  # the session was up: the first retry comes quickly
        failures += 1
        self._set_down(str(exc))
        self.log.warning(
            "B-route link down; will retry",
            error=str(exc),
            retry_in_s=round(self._backoff(failures), 1),
        )
        return failures

    def _backoff(self, failures: int) -> float:
        s = self.settings
        base = min(s.backoff_cap_s, s.backoff_initial_s * 2.0 ** max(0, failures - 1))
        return base * random.uniform(0.9, 1.1)

    def _set_down(self, reason: str, *, attention: bool = False) -> None:
        self.state = LinkState.NEEDS_ATTENTION if attention else LinkState.DOWN
        self.down_reason = reason

    async def _session_once(self) -> None:
        s = self.settings
        self.state = LinkState.JOINING
        link = await ModuleLink.open(s.port, clock=self.clock, baudrate=s.baudrate, log=self.log)
        self._link = link
        try:
            cached = self._cached_pan()
            config = JoinConfig(
                s.rbid,
                self._password,
                dialect=s.dialect,
                cached_pan=cached,
                credentials_proven=self._proven
                or (cached is not None and cached.proof == self._proof),
                wopt_allowed=s.write_wopt and not self._wopt_written,
                scan_durations=s.scan_durations,
                reset=s.reset_module,
                command_timeout=s.timeout_s,
            )
            params = SessionParams(retry_delay=s.send_retry_s, send_timeout=s.timeout_s)
            result = await link.join(config, params)
            self._proven = True
            self._wopt_written = self._wopt_written or result.wopt_written
            self.last_join = result
            self._store_pan(replace(result.cached_pan, proof=self._proof), cached)
            meter = MeterSession(
                link,
                self.clock,
                min_interval_s=s.min_interval_s,
                timeout_s=s.timeout_s,
                retries=s.retries,
                silent_after=s.silent_after,
                on_boundary=self._on_inf,
                log=self.log,
            )
            self.info = await meter.start()
            self._meter = meter
            self.state = LinkState.UP
            self.down_reason = None
            self.joins += 1
            await self._poll(meter)
        except JoinError as exc:
            self._set_down(str(exc), attention=not exc.retryable)
            raise
        except Exception as exc:
            self._set_down(str(exc))  # before the slow close: callers see why at once
            raise
        finally:
            self._meter = None
            self._link = None
            if self.state in (LinkState.UP, LinkState.JOINING):
                self._set_down("stopped")
            await self._close_link(link)

    async def _close_link(self, link: ModuleLink) -> None:
        # Ending the PANA session politely frees the meter's slot for the next join; on
        # cancellation (daemon shutdown) it is bounded so a stop never hangs on the radio.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(link.terminate(2.0)), 3.0)
        await link.close()

    def _cached_pan(self) -> CachedPan | None:
        if self._load_pan is None:
            return None
        try:
            return self._load_pan()
        except Exception as exc:  # a broken store must not stop the meter
            self.log.warning("could not load the cached PAN", error=str(exc))
            return None

    def _store_pan(self, pan: CachedPan, old: CachedPan | None) -> None:
        if self._save_pan is None or pan == old:
            return
        try:
            self._save_pan(pan)
        except Exception as exc:
            self.log.warning("could not save the PAN", error=str(exc))

    async def _poll(self, meter: MeterSession) -> None:
        s = self.settings
        clock = self.clock
        next_poll = clock.monotonic()
        next_energy = next_poll
        expected = _slot_start(clock.now())
        next_boundary = clock.now()  # read once at once: the cache serves boundary()
        while True:
            if meter.failure is not None:
                raise meter.failure
            now = clock.monotonic()
            if now >= next_poll:
                energy = now >= next_energy
                try:
                    await self._read_instant(meter, energy=energy)
                except (BrouteError, PropertyError) as exc:
                    if meter.failure is not None:
                        raise meter.failure from exc
                    self.log.warning("meter poll failed", error=str(exc))
                if energy:
                    next_energy = now + s.energy_poll_s
                next_poll = max(next_poll + s.poll_s, clock.monotonic())
            if clock.now() >= next_boundary:
                try:
                    got = await self._refresh_boundary(meter)
                except (BrouteError, PropertyError) as exc:
                    if meter.failure is not None:
                        raise meter.failure from exc
                    self.log.warning("boundary read failed", error=str(exc))
                    got = None
                if got is not None and got.at >= expected:
                    expected = _slot_start(clock.now()) + SLOT
                    next_boundary = expected + timedelta(seconds=s.boundary_delay_s)
                else:
                    next_boundary = clock.now() + timedelta(seconds=s.boundary_retry_s)
            wait = min(
                next_poll - clock.monotonic(),
                (next_boundary - clock.now()).total_seconds(),
            )
            if wait > 0:
                await self._sleep_unless_broken(meter, wait)

    async def _sleep_unless_broken(self, meter: MeterSession, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        broken = asyncio.ensure_future(meter.broken.wait())
        ended = asyncio.ensure_future(meter.link.ended.wait())
        try:
            await asyncio.wait({sleeper, broken, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, broken, ended):
                task.cancel()
        if meter.link.ended.is_set() and meter.failure is None:
            raise LinkError(meter.link.end_reason or "link ended")

    # --- readings -------------------------------------------------------------------------------

    async def _read_instant(self, meter: MeterSession, *, energy: bool) -> Instant:
        instant = await meter.read_instant(energy=energy)
        mono = self.clock.monotonic()
        power = None if instant.power_w is None else float(instant.power_w)
        self._power = _Cached(power, instant.at, mono)
        self._emit(READING_POWER, power, instant.at)
        if instant.currents_a is not None:
            self._currents = _Cached(instant.currents_a, instant.at, mono)
            self._emit(READING_CURRENTS, instant.currents_a, instant.at)
        if instant.energy is not None:
            self._energy = _Cached(instant.energy, instant.at, mono)
            self._emit(READING_IMPORT, instant.energy.import_kwh, instant.at)
            self._emit(READING_EXPORT, instant.energy.export_kwh, instant.at)
        return instant

    def _emit(self, key: str, value: Any, at: datetime) -> None:
        if self._on_reading is None:
            return
        try:
            self._on_reading(key, value, at)
        except Exception as exc:
            self.log.warning("reading callback failed", key=key, error=str(exc))

    async def _refresh_boundary(self, meter: MeterSession) -> Boundary | None:
        async with self._boundary_lock:
            latest = self._boundary
            if latest is not None and latest.at >= _slot_start(self.clock.now()):
                return latest
            got = await meter.read_boundary()
            self._keep_boundary(got)
            return got

    def _keep_boundary(self, boundary: Boundary | None) -> None:
        if boundary is not None and (self._boundary is None or boundary.at >= self._boundary.at):
            self._boundary = boundary

    def _on_inf(self, boundary: Boundary, complete: bool) -> None:
        if complete:
            self._keep_boundary(boundary)
            self._deliver(boundary)
            return
        self._spawn(self._complete_inf(boundary))

    async def _complete_inf(self, partial: Boundary) -> None:
        """The INF carried EA or EB alone: read both, so the callback gets a whole boundary."""
        meter = self._meter
        whole = partial
        if meter is not None:
            try:
                got = await meter.read_boundary()
            except (BrouteError, PropertyError) as exc:
                self.log.info("could not complete a boundary notification", error=str(exc))
            else:
                if got is not None and got.at == partial.at:
                    whole = got
        self._keep_boundary(whole)
        self._deliver(whole)

    def _deliver(self, boundary: Boundary) -> None:
        callback = self._on_boundary
        if callback is None:
            return
        try:
            result = callback(boundary)
        except Exception as exc:
            self.log.warning("boundary callback failed", error=str(exc))
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await awaitable
            except Exception as exc:
                self.log.warning("background task failed", error=str(exc))

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- capabilities ---------------------------------------------------------------------------

    def _require(self) -> MeterSession:
        meter = self._meter
        if meter is None or meter.failure is not None or meter.link.ended.is_set():
            reason = self.down_reason
            if meter is not None:
                reason = str(meter.failure or meter.link.end_reason or reason)
            raise DeviceError(self.name, f"B-route link down: {reason or 'not joined yet'}")
        return meter

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (BrouteError, PropertyError) as exc:
            raise DeviceError(self.name, str(exc)) from exc

    def _fresh(self, cached: _Cached | None) -> bool:
        return cached is not None and self.clock.monotonic() - cached.mono <= self.settings.poll_s

    async def power_w(self) -> Measured[float | None]:
        meter = self._require()
        if not self._fresh(self._power):
            await self._call(self._read_instant(meter, energy=False))
        assert self._power is not None
        return Measured(self._power.value, self._power.at)

    async def currents_a(self) -> Measured[tuple[float | None, float | None]]:
        meter = self._require()
        if not self._fresh(self._currents):
            await self._call(self._read_instant(meter, energy=False))
        if self._currents is None:
            raise DeviceError(self.name, "meter does not report phase currents (E8)")
        return Measured(self._currents.value, self._currents.at)

    async def _energy_now(self) -> _Cached:
        meter = self._require()
        if not self._fresh(self._energy):
            await self._call(self._read_instant(meter, energy=True))
        assert self._energy is not None
        return self._energy

    async def import_kwh(self) -> Measured[float | None]:
        cached = await self._energy_now()
        return Measured(cached.value.import_kwh, cached.at)

    async def export_kwh(self) -> Measured[float | None]:
        cached = await self._energy_now()
        return Measured(cached.value.export_kwh, cached.at)

    async def boundary(self) -> Boundary | None:
        """EA/EB at the latest boundary: from the cache when it is current, else read now."""
        meter = self._require()
        return await self._call(self._refresh_boundary(meter))

    async def history_day(self, day: date) -> list[Boundary]:
        """The 48 boundaries of ``day`` from E5 + E2/E4 (up to 99 days back)."""
        meter = self._require()
        days_ago = (self.clock.now().astimezone(JST).date() - day).days
        if days_ago < 0:
            return []
        if days_ago > HISTORY1_MAX_DAYS:
            raise DeviceError(self.name, f"the meter keeps {HISTORY1_MAX_DAYS} days of history")
        start = datetime.combine(day, time(0, 0), JST)
        return await self._call(meter.read_history_day(days_ago, start))

    async def history_recent(self, end: datetime, count: int) -> list[Boundary]:
        """``count`` boundaries ending at ``end`` from ED + EC, in reads of up to 12."""
        meter = self._require()
        out: list[Boundary] = []
        cursor = _slot_start(end)
        remaining = count
        while remaining > 0:
            n = min(HISTORY2_MAX, remaining)
            chunk = await self._call(meter.read_history_recent(cursor, n))
            out = chunk + out
            cursor -= n * SLOT
            remaining -= n
        return out
