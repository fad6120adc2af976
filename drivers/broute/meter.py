"""ECHONET Lite over the B-route: requests to the smart meter (0x028801) and exact scaling.

Two layers, like the rest of the driver:

* pure helpers: :class:`MeterScale` (raw counts → exact integer Wh via ``Fraction``, kWh floats
  for display, the wrap modulus), decoders that turn the meter's sentinels into ``None``, reply
  matching on (TID, source object, expected ESV), and conversion of EA/EB, E2/E4 and EC to
  :class:`~drivers.capabilities.Boundary` values;
* :class:`MeterSession`, the async request slot on top of a joined
  :class:`~drivers.broute.transport.ModuleLink`: one request at a time, ``min_interval_s``
  between them (the meter is single-threaded and slow), a timeout counted from the moment the
  module reports the datagram sent (EVENT 21 00) so that holds for EVENT 29 re-authentication or
  the EVENT 32 duty limit are not mistaken for a silent meter, retries with the same TID (a late
  reply to the first attempt still counts), and ``silent_after`` consecutive misses declaring the
  meter silent so the owner rebuilds the session.

The meter's own INF (0x73) and INFC (0x74) of EA/EB are decoded and handed to ``on_boundary``;
INFC is answered with INFC_Res (0x7A) at once, outside the request slot, or the meter repeats it.
Only frames the session classified as meter data (the meter's address, port 0E1A, secured)
arrive here at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from drivers.broute.errors import (
    BrouteError,
    LinkError,
    MeterSilent,
    RequestRefused,
    RequestTimeout,
    SendError,
)
from drivers.broute.parser import RxUdp
from drivers.broute.transport import ModuleLink, clock_wait
from drivers.capabilities import Boundary
from drivers.echonet.frame import (
    EOJ,
    ESV,
    DecodeError,
    Frame,
    decode,
    encode,
    get_request,
    infc_response,
    set_request,
)
from drivers.echonet.properties import (
    PropertyError,
    energy_kwh,
    parse_boundary,
    parse_day_history,
    parse_history2,
)
from drivers.echonet.properties.meter import PROPERTIES as METER_PROPERTIES
from gateway.clock import JST, Clock
from gateway.logs import get_logger

__all__ = [
    "EPC",
    "METER_EOJ",
    "Energy",
    "Instant",
    "MeterInfo",
    "MeterScale",
    "MeterSession",
    "boundaries_from_day",
    "boundaries_from_history2",
    "boundary_from",
    "decode_counter",
    "decode_currents",
    "decode_power",
    "from_meter_time",
    "is_reply",
    "scale_from",
    "to_meter_time",
]

METER_EOJ = EOJ(0x02, 0x88, 0x01)
SLOT = timedelta(minutes=30)
HISTORY2_MAX = 12
HISTORY1_MAX_DAYS = 99


class EPC:
    """The 0x0288 properties the driver uses."""

    ROUTE_B_ID = 0xC0
    COEFFICIENT = 0xD3
    DIGITS = 0xD7
    IMPORT = 0xE0
    UNIT = 0xE1
    HISTORY_IMPORT = 0xE2
    EXPORT = 0xE3
    HISTORY_EXPORT = 0xE4
    HISTORY_DAY = 0xE5
    POWER = 0xE7
    CURRENTS = 0xE8
    BOUNDARY_IMPORT = 0xEA
    BOUNDARY_EXPORT = 0xEB
    HISTORY2 = 0xEC
    HISTORY2_START = 0xED


# --- time ---------------------------------------------------------------------------------------


def to_meter_time(when: datetime) -> datetime:
    """The meter's clock is JST wall time without a zone (ECHONET carries none)."""
    return when.astimezone(JST).replace(tzinfo=None) if when.tzinfo else when


def from_meter_time(naive: datetime) -> datetime:
    return naive.replace(tzinfo=JST) if naive.tzinfo is None else naive.astimezone(JST)


# --- scaling ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterScale:
    """How raw counts become energy: ``raw × D3 coefficient × E1 unit``, wrapping at 10^D7.

    Wh are exact: with every unit from 0.001 kWh up a count is a whole number of Wh. Only the
    0.0001 kWh unit with a coefficient not divisible by 10 gives fractions of a Wh; those are
    floored (consistently, so slot differences stay within 1 Wh) rather than refused.
    """

    coefficient: int = 1
    unit_code: int = 0x01
    digits: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.digits <= 8:
            raise ValueError(f"effective digits (D7) must be 1..8, got {self.digits}")
        energy_kwh(1, unit_code=self.unit_code, coefficient=self.coefficient)  # validates

    @property
    def kwh_per_count(self) -> Fraction:
        return energy_kwh(1, unit_code=self.unit_code, coefficient=self.coefficient)

    @property
    def wh_per_count(self) -> Fraction:
        return self.kwh_per_count * 1000

    @property
    def modulus_count(self) -> int:
        return int(10**self.digits)

    @property
    def modulus_wh(self) -> int:
        """Where the counter wraps, in Wh (what ``Boundary.modulus_wh`` carries)."""
        return math.floor(self.modulus_count * self.wh_per_count)

    def wh(self, raw: int | None) -> int | None:
        if raw is None:
            return None
        return math.floor((raw % self.modulus_count) * self.wh_per_count)

    def kwh(self, raw: int | None) -> float | None:
        if raw is None:
            return None
        return float((raw % self.modulus_count) * self.kwh_per_count)

    def describe(self) -> str:
        unit = self.kwh_per_count / self.coefficient if self.coefficient else Fraction(0)
        return (
            f"coefficient {self.coefficient}, unit {float(unit):g} kWh, {self.digits} digits "
            f"(wraps at {self.modulus_wh} Wh)"
        )


def scale_from(props: Mapping[int, bytes]) -> tuple[MeterScale, list[str]]:
    """The scale from a Get of D3/D7/E1; missing ones get defaults, listed as warnings."""
    warnings: list[str] = []
    coefficient = 1
    if EPC.COEFFICIENT in props:
        value = METER_PROPERTIES[EPC.COEFFICIENT].decode(props[EPC.COEFFICIENT])
        if isinstance(value, int) and value > 0:
            coefficient = value
    digits = 8
    if EPC.DIGITS in props:
        value = METER_PROPERTIES[EPC.DIGITS].decode(props[EPC.DIGITS])
        if isinstance(value, int):
            digits = value
    else:
        warnings.append("meter did not report D7 (effective digits); assuming 8")
    unit_code = 0x00
    if EPC.UNIT in props and len(props[EPC.UNIT]) == 1:
        unit_code = props[EPC.UNIT][0]
        METER_PROPERTIES[EPC.UNIT].decode(props[EPC.UNIT])  # raises on an undefined code
    else:
        warnings.append("meter did not report E1 (energy unit); assuming 1 kWh")
    return MeterScale(coefficient, unit_code, digits), warnings


# --- decoding -----------------------------------------------------------------------------------


def decode_power(edt: bytes) -> int | None:
    """E7 in W (+ import, − export); 0x7FFFFFFE (no data) is None."""
    value = METER_PROPERTIES[EPC.POWER].decode(edt)
    return value if isinstance(value, int) else None


def decode_currents(edt: bytes) -> tuple[float | None, float | None]:
    """E8 as (R, T) in A; 0x7FFE is None (T on single-phase two-wire)."""
    value = METER_PROPERTIES[EPC.CURRENTS].decode(edt)
    assert isinstance(value, dict)
    r, t = value["r"], value["t"]
    return (
        float(r) if isinstance(r, int | float) else None,
        float(t) if isinstance(t, int | float) else None,
    )


def decode_counter(edt: bytes) -> int | None:
    """E0/E3 raw count; 0xFFFFFFFE is None."""
    value = METER_PROPERTIES[EPC.IMPORT].decode(edt)
    return value if isinstance(value, int) else None


def boundary_from(
    ea: bytes | None, eb: bytes | None, scale: MeterScale, *, default_at: datetime | None = None
) -> Boundary | None:
    """EA/EB → a Boundary; None when neither carries a date-time."""
    at: datetime | None = None
    imp = exp = None
    if ea:
        parsed = parse_boundary(ea)
        at, imp = parsed.at, parsed.raw
    if eb:
        parsed = parse_boundary(eb)
        at = at or parsed.at
        exp = parsed.raw
    if at is None:
        if default_at is None:
            return None
        at = to_meter_time(default_at)
    return Boundary(from_meter_time(at), scale.wh(imp), scale.wh(exp), scale.modulus_wh)


def boundaries_from_day(
    e2: bytes | None, e4: bytes | None, day_start: datetime, scale: MeterScale
) -> tuple[int | None, list[Boundary]]:
    """E2/E4 of one day → its 48 boundaries; entries with neither value are left out."""
    imports: list[int | None] = [None] * 48
    exports: list[int | None] = [None] * 48
    day: int | None = None
    if e2:
        parsed = parse_day_history(e2)
        day, imports = parsed.day, parsed.values
    if e4:
        parsed = parse_day_history(e4)
        day = parsed.day if day is None else day
        exports = parsed.values
    out = []
    for index, (imp, exp) in enumerate(zip(imports, exports, strict=True)):
        if imp is None and exp is None:
            continue
        out.append(
            Boundary(day_start + index * SLOT, scale.wh(imp), scale.wh(exp), scale.modulus_wh)
        )
    return day, out


def boundaries_from_history2(ec: bytes, scale: MeterScale) -> tuple[datetime, list[Boundary]]:
    """EC → (its start, boundaries oldest first); entries with neither value are left out."""
    parsed = parse_history2(ec)
    out = []
    for at, (imp, exp) in zip(parsed.times, parsed.values, strict=True):
        if imp is None and exp is None:
            continue
        out.append(Boundary(from_meter_time(at), scale.wh(imp), scale.wh(exp), scale.modulus_wh))
    out.reverse()
    return from_meter_time(parsed.start), out


def is_reply(request: Frame, reply: Frame) -> bool:
    """Whether ``reply`` answers ``request`` (the address was already checked by the session)."""
    return (
        reply.tid == request.tid
        and reply.seoj == request.deoj
        and reply.esv in request.esv.expected_responses
    )


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """What the driver learnt from the meter right after joining."""

    scale: MeterScale
    maker: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Energy:
    at: datetime
    import_raw: int | None
    export_raw: int | None
    import_kwh: float | None
    export_kwh: float | None
    import_wh: int | None
    export_wh: int | None


@dataclass(frozen=True, slots=True)
class Instant:
    """One poll: E7 and E8 (and E0/E3 when asked). ``None`` values are the meter's "no data"."""

    at: datetime
    power_w: int | None
    currents_a: tuple[float | None, float | None] | None
    energy: Energy | None = None


@dataclass
class MeterStats:
    requests: int = 0
    attempts: int = 0
    timeouts: int = 0
    send_failures: int = 0
    notifications: int = 0
    infc_responses: int = 0
    stray_frames: int = 0


class _NotSent(SendError):
    """The request never left the module's queue within the hold timeout."""


@dataclass(slots=True)
class _Pending:
    request: Frame
    future: asyncio.Future[Frame]


# --- the async request slot ---------------------------------------------------------------------


@dataclass
class MeterSession:
    """The one request slot to the meter over a joined link (see the module docstring).

    ``on_boundary(boundary, complete)`` receives the meter's INF/INFC of EA/EB; ``complete`` is
    False when the frame carried only one of the two (the owner may read the other).
    """

    link: ModuleLink
    clock: Clock
    min_interval_s: float = 2.0
    timeout_s: float = 10.0
    retries: int = 3
    silent_after: int = 3
    hold_timeout_s: float | None = None
    on_boundary: Callable[[Boundary, bool], None] | None = None
    log: Any = None
    scale: MeterScale | None = None
    stats: MeterStats = field(default_factory=MeterStats)

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = get_logger("chisan.broute.meter", device="meter")
        self._lock = asyncio.Lock()
        self._tid = 0
        self._pending: _Pending | None = None
        self._ready_at = 0.0
        self._misses = 0
        self.failure: BrouteError | None = None
        self.broken = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.link.on_frame = self._on_frame

    # --- requests -------------------------------------------------------------------------------

    def _next_tid(self) -> int:
        self._tid = self._tid % 0xFFFF + 1
        return self._tid

    async def request(self, build: Callable[[int], Frame]) -> Frame:
        """Send one request (built for a fresh TID) and return the meter's reply frame."""
        async with self._lock:
            return await self._request_locked(build(self._next_tid()))

    async def _request_locked(self, request: Frame) -> Frame:
        self._check_alive()
        self.stats.requests += 1
        payload = encode(request)
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            self._check_alive()
            wait = self._ready_at - self.clock.monotonic()
            if wait > 0:
                await self.clock.sleep(wait)
            self.stats.attempts += 1
            loop = asyncio.get_running_loop()
            pending = _Pending(request, loop.create_future())
            self._pending = pending
            try:
                reply = await self._attempt(payload, pending)
            except RequestTimeout as exc:
                last = str(exc)
                self.stats.timeouts += 1
                self._miss(last)
                if attempt < self.retries:
                    self.log.info("no reply from the meter; retrying", attempt=attempt + 1)
                continue
            except _NotSent as exc:
                # Held (EVENT 29/32) past the hold timeout: the copy is still queued in the
                # session, so another attempt would only queue a duplicate. Not the meter's fault.
                raise RequestTimeout(str(exc)) from None
            except SendError as exc:
                if exc.session_ended:
                    raise self._break(LinkError(f"PANA session ended: {exc}")) from None
                last = f"module could not send: {exc}"
                self.stats.send_failures += 1
                self._miss(last)
                continue
            finally:
                self._pending = None
                self._ready_at = self.clock.monotonic() + self.min_interval_s
            self._misses = 0
            return reply
        raise RequestTimeout(
            f"meter did not answer ESV 0x{request.esv:02X} "
            f"{' '.join(f'{p.epc:02X}' for p in request.props)} after "
            f"{self.retries + 1} attempts ({last})"
        )

    async def _attempt(self, payload: bytes, pending: _Pending) -> Frame:
        hold = self.hold_timeout_s or max(60.0, 6 * self.timeout_s)
        try:
            sent = self.link.send(payload)
        except LinkError as exc:
            raise self._break(exc) from None
        try:
            await clock_wait(self.clock, sent, hold)
        except TimeoutError:
            session = self.link.session
            why = session.hold_reason if session is not None else None
            raise _NotSent(f"not sent within {hold:g} s ({why or 'no EVENT 21'})") from None
        ended: asyncio.Future[Any] = asyncio.ensure_future(self.link.ended.wait())
        waiters: set[asyncio.Future[Any]] = {pending.future, ended}
        try:
            await clock_wait(
                self.clock,
                asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED),
                self.timeout_s,
            )
        except TimeoutError:
            raise RequestTimeout(f"no reply within {self.timeout_s:g} s") from None
        finally:
            ended.cancel()
        if pending.future.done():
            return pending.future.result()
        raise SendError(self.link.end_reason or "link ended", session_ended=True)

    def _miss(self, why: str) -> None:
        self._misses += 1
        if self._misses >= self.silent_after:
            raise self._break(
                MeterSilent(f"{self._misses} requests in a row failed ({why}): meter silent")
            )

    def _check_alive(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self.link.ended.is_set():
            raise self._break(LinkError(self.link.end_reason or "link ended"))

    def _break(self, error: BrouteError) -> BrouteError:
        if self.failure is None:
            self.failure = error
            self.log.warning("meter session broken", error=str(error))
        self.broken.set()
        return self.failure

    async def get(self, epcs: Sequence[int]) -> dict[int, bytes]:
        """A multi-property Get; a Get_SNA still yields the properties the meter could read."""
        reply = await self.request(lambda tid: get_request(tid, METER_EOJ, epcs))
        readable = reply.readable()
        if not readable:
            raise RequestRefused(
                f"meter refused Get of {' '.join(f'{e:02X}' for e in epcs)} (ESV 0x{reply.esv:02X})"
            )
        return readable

    async def set(self, props: Mapping[int, bytes]) -> None:
        """SetC; SetC_SNA raises :class:`RequestRefused` naming the refused EPCs."""
        reply = await self.request(lambda tid: set_request(tid, METER_EOJ, dict(props)))
        if reply.esv is not ESV.SET_RES:
            refused = " ".join(f"{e:02X}" for e in reply.refused()) or "?"
            raise RequestRefused(f"meter refused Set of {refused} (ESV 0x{reply.esv:02X})")

    # --- typed reads ----------------------------------------------------------------------------

    async def start(self) -> MeterInfo:
        """Read D3/D7/E1 (and C0 where present) once per session."""
        props = await self.get([EPC.COEFFICIENT, EPC.DIGITS, EPC.UNIT, EPC.ROUTE_B_ID])
        scale, warnings = scale_from(props)
        self.scale = scale
        maker = None
        c0 = props.get(EPC.ROUTE_B_ID)
        if c0 and len(c0) >= 4:
            maker = c0[1:4].hex().upper()
        for warning in warnings:
            self.log.warning(warning)
        self.log.info("meter scale", scale=scale.describe(), maker=maker)
        return MeterInfo(scale, maker, tuple(warnings))

    def _scale(self) -> MeterScale:
        if self.scale is None:
            raise RuntimeError("MeterSession.start() must run before energy reads")
        return self.scale

    async def read_instant(self, *, energy: bool = False) -> Instant:
        """E7 and E8 in one Get, plus E0 and E3 when ``energy``."""
        epcs = [EPC.POWER, EPC.CURRENTS]
        if energy:
            epcs += [EPC.IMPORT, EPC.EXPORT]
        props = await self.get(epcs)
        return self._instant(props, energy=energy)

    def _instant(self, props: Mapping[int, bytes], *, energy: bool) -> Instant:
        at = self.clock.now()
        power = decode_power(props[EPC.POWER]) if EPC.POWER in props else None
        currents = decode_currents(props[EPC.CURRENTS]) if EPC.CURRENTS in props else None
        counters = None
        if energy:
            scale = self._scale()
            imp = decode_counter(props[EPC.IMPORT]) if EPC.IMPORT in props else None
            exp = decode_counter(props[EPC.EXPORT]) if EPC.EXPORT in props else None
            counters = Energy(
                at, imp, exp, scale.kwh(imp), scale.kwh(exp), scale.wh(imp), scale.wh(exp)
            )
        return Instant(at, power, currents, counters)

    async def read_boundary(self) -> Boundary | None:
        """EA and EB in one Get (EB may be refused by meters that do not measure export)."""
        props = await self.get([EPC.BOUNDARY_IMPORT, EPC.BOUNDARY_EXPORT])
        return boundary_from(
            props.get(EPC.BOUNDARY_IMPORT), props.get(EPC.BOUNDARY_EXPORT), self._scale()
        )

    async def read_all(self) -> tuple[Instant, Boundary | None]:
        """E7, E8, E0, E3, EA and EB in one Get: a complete reading in one round trip."""
        props = await self.get(
            [
                EPC.POWER,
                EPC.CURRENTS,
                EPC.IMPORT,
                EPC.EXPORT,
                EPC.BOUNDARY_IMPORT,
                EPC.BOUNDARY_EXPORT,
            ]
        )
        instant = self._instant(props, energy=True)
        boundary = boundary_from(
            props.get(EPC.BOUNDARY_IMPORT), props.get(EPC.BOUNDARY_EXPORT), self._scale()
        )
        return instant, boundary

    async def read_history_day(self, days_ago: int, day_start: datetime) -> list[Boundary]:
        """E5 := days_ago, then E2 and E4 in one Get: the 48 boundaries of that day."""
        if not 0 <= days_ago <= HISTORY1_MAX_DAYS:
            raise ValueError(f"the meter keeps {HISTORY1_MAX_DAYS} days of history, not {days_ago}")
        async with self._lock:
            await self._set_locked({EPC.HISTORY_DAY: bytes([days_ago])})
            props = await self._get_locked([EPC.HISTORY_IMPORT, EPC.HISTORY_EXPORT])
        day, out = boundaries_from_day(
            props.get(EPC.HISTORY_IMPORT), props.get(EPC.HISTORY_EXPORT), day_start, self._scale()
        )
        if day is not None and day != days_ago:
            raise RequestRefused(f"meter answered history of day {day}, not {days_ago}")
        return out

    async def read_history_recent(self, end: datetime, count: int) -> list[Boundary]:
        """ED := (end, count ≤ 12), then EC: boundaries from ``end`` back, oldest first."""
        if not 1 <= count <= HISTORY2_MAX:
            raise ValueError(f"history 2 returns 1-{HISTORY2_MAX} boundaries, not {count}")
        start = to_meter_time(end)
        edt = METER_PROPERTIES[EPC.HISTORY2_START].encode({"start": start, "count": count})
        async with self._lock:
            await self._set_locked({EPC.HISTORY2_START: edt})
            props = await self._get_locked([EPC.HISTORY2])
        got_start, out = boundaries_from_history2(props[EPC.HISTORY2], self._scale())
        if to_meter_time(got_start) != start:
            raise RequestRefused(f"meter answered history 2 from {got_start}, not {end}")
        return out

    async def _get_locked(self, epcs: Sequence[int]) -> dict[int, bytes]:
        reply = await self._request_locked(get_request(self._next_tid(), METER_EOJ, epcs))
        readable = reply.readable()
        if not readable:
            raise RequestRefused(f"meter refused Get of {' '.join(f'{e:02X}' for e in epcs)}")
        return readable

    async def _set_locked(self, props: Mapping[int, bytes]) -> None:
        reply = await self._request_locked(set_request(self._next_tid(), METER_EOJ, dict(props)))
        if reply.esv is not ESV.SET_RES:
            refused = " ".join(f"{e:02X}" for e in reply.refused()) or "?"
            raise RequestRefused(f"meter refused Set of {refused} (ESV 0x{reply.esv:02X})")

    # --- receiving ------------------------------------------------------------------------------

    def _on_frame(self, payload: bytes, rx: RxUdp) -> None:
        try:
            frame = decode(payload)
        except DecodeError as exc:
            self.log.info("undecodable frame from the meter dropped", error=str(exc))
            return
        pending = self._pending
        if pending is not None and is_reply(pending.request, frame):
            if not pending.future.done():
                pending.future.set_result(frame)
            return
        if frame.esv in (ESV.INF, ESV.INFC):
            self._on_notification(frame)
            return
        self.stats.stray_frames += 1
        self.log.debug("unmatched frame from the meter", tid=frame.tid, esv=f"{frame.esv:02X}")

    def _on_notification(self, frame: Frame) -> None:
        self.stats.notifications += 1
        if frame.esv is ESV.INFC:
            self._answer_infc(frame)
        if frame.seoj != METER_EOJ:
            self.log.debug("notification", seoj=str(frame.seoj), esv=f"{frame.esv:02X}")
            return
        values = {p.epc: p.edt for p in frame.props if p.edt}
        ea = values.get(EPC.BOUNDARY_IMPORT)
        eb = values.get(EPC.BOUNDARY_EXPORT)
        if (ea is None and eb is None) or self.scale is None or self.on_boundary is None:
            return
        try:
            boundary = boundary_from(ea, eb, self.scale)
        except PropertyError as exc:
            self.log.info("unreadable EA/EB notification", error=str(exc))
            return
        if boundary is not None:
            self.on_boundary(boundary, ea is not None and eb is not None)

    def _answer_infc(self, frame: Frame) -> None:
        try:
            sent = self.link.send(encode(infc_response(frame)))
        except (LinkError, ValueError) as exc:
            self.log.info("could not answer INFC", error=str(exc))
            return
        self.stats.infc_responses += 1

        def done(future: asyncio.Future[Any]) -> None:
            with contextlib.suppress(asyncio.CancelledError):
                if future.exception() is not None:
                    self.log.info("INFC_Res not sent", error=str(future.exception()))

        sent.add_done_callback(done)
