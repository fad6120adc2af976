"""Pure connected-session logic: sending datagrams to the meter and sorting what comes back.

After the join, the shell routes every parser event through :meth:`Session.handle` and every
payload to send through :meth:`Session.send`; it calls :meth:`Session.poll` when
:meth:`Session.next_deadline` passes. Time is always passed in (monotonic seconds).

Why sends are held rather than written at once:

* EVENT 29: the PANA session lifetime expired and the module is re-authenticating by itself;
  a send now fails. Sends wait until EVENT 25 (back) or EVENT 24 (session lost).
* EVENT 32: the ARIB STD-T108 transmit-time budget is used up; sends wait for EVENT 33.
* One SKSENDTO at a time: the answer (``EVENT 21 … 00/01``, or ``FAIL``) is only attributable
  while a single send is in flight. ``EVENT 21 … 01`` is retried after ``retry_delay`` seconds.

Only datagrams from the meter's address, on port 0E1A, with secured = 1, on the B-route side are
meter data; anything else (PANA on 02CC, other nodes, plaintext) is dropped with the reason.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TypeAlias

from drivers.broute.actions import Notice, Write
from drivers.broute.dialect import (
    ECHONET_PORT,
    PANA_PORT,
    Dialect,
    same_address,
    sksendto_header,
    wrong_dialect_hint,
)
from drivers.broute.errors import PayloadError
from drivers.broute.parser import Event, EventCode, Fail, RxUdp, SkEvent

__all__ = [
    "MAX_PAYLOAD",
    "Dropped",
    "MeterData",
    "SendFailed",
    "Sent",
    "Session",
    "SessionEnded",
    "SessionOutput",
    "build_sendto",
    "classify",
]

MAX_PAYLOAD = 1232
"""The largest UDP payload SKSENDTO carries (IPv6 minimum MTU 1280 − 48 bytes of headers)."""


def build_sendto(
    dialect: Dialect,
    ipv6: str,
    payload: bytes,
    *,
    handle: int = 1,
    port: int = ECHONET_PORT,
    secured: bool = True,
    side: int = 0,
) -> bytes:
    """The complete SKSENDTO write: header text, one space, the raw payload, no line end."""
    if not payload:
        raise PayloadError("SKSENDTO needs at least one byte of data")
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    header = sksendto_header(
        dialect, ipv6, len(payload), handle=handle, port=port, secured=secured, side=side
    )
    return header.encode("ascii") + b" " + bytes(payload)


def classify(rx: RxUdp, meter_ipv6: str, *, side: int = 0) -> str | None:
    """Why this datagram is not meter data, or None if it is."""
    if PANA_PORT in (rx.rport, rx.lport):
        return "PANA traffic (port 02CC)"
    if rx.rport != ECHONET_PORT or rx.lport != ECHONET_PORT:
        return f"ports {rx.rport:04X}->{rx.lport:04X}, not ECHONET Lite (0E1A)"
    if not same_address(rx.sender, meter_ipv6):
        return f"from {rx.sender}, not the meter"
    if rx.secured != 1:
        return "not secured (secured flag 0): not from the authenticated PANA session"
    if rx.side is not None and rx.side != side:
        return f"received on side {rx.side} (HAN), not the B-route side {side}"
    return None


@dataclass(frozen=True, slots=True)
class MeterData:
    """An ECHONET Lite frame (still encoded) from the meter."""

    payload: bytes
    rx: RxUdp


@dataclass(frozen=True, slots=True)
class Dropped:
    rx: RxUdp
    reason: str


@dataclass(frozen=True, slots=True)
class Sent:
    """The module reported the datagram transmitted (EVENT 21 param 00)."""

    payload: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class SendFailed:
    """The datagram was given up; the ECHONET layer decides whether to resend the request."""

    payload: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The PANA session is gone; a new join is needed."""

    reason: str


SessionOutput: TypeAlias = Write | Notice | MeterData | Dropped | Sent | SendFailed | SessionEnded


@dataclass(slots=True)
class _Pending:
    payload: bytes
    attempts: int = 0


@dataclass(slots=True)
class _Flight:
    item: _Pending
    deadline: float


class Session:
    """State of one PANA session with the meter."""

    def __init__(
        self,
        dialect: Dialect,
        meter_ipv6: str,
        *,
        side: int = 0,
        retry_delay: float = 5.0,
        max_attempts: int = 3,
        send_timeout: float = 10.0,
        max_queue: int = 8,
    ) -> None:
        if dialect is Dialect.AUTO:
            raise ValueError("a session needs the detected dialect, not AUTO")
        if max_attempts < 1 or max_queue < 1:
            raise ValueError("max_attempts and max_queue must be at least 1")
        self.dialect = dialect
        self.meter_ipv6 = meter_ipv6
        self.side = side
        self.retry_delay = retry_delay
        self.max_attempts = max_attempts
        self.send_timeout = send_timeout
        self.max_queue = max_queue
        self.reauthenticating = False
        self.duty_limited = False
        self.ending = False
        self.ended: str | None = None
        self._queue: deque[_Pending] = deque()
        self._flight: _Flight | None = None
        self._retry_at: float | None = None

    # --- state ----------------------------------------------------------------------------------

    @property
    def hold_reason(self) -> str | None:
        """Why sends are held right now, or None when a send could go out."""
        if self.ended is not None:
            return f"session ended: {self.ended}"
        if self.reauthenticating:
            return "PANA re-authentication in progress (EVENT 29)"
        if self.duty_limited:
            return "transmit-time limit reached (EVENT 32)"
        if self.ending:
            return "the meter asked to end the session (EVENT 26)"
        if self._flight is not None:
            return "a send is in flight"
        return None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must be called next (monotonic seconds), if ever."""
        times = []
        if self._flight is not None:
            times.append(self._flight.deadline)
        if self._retry_at is not None and self._queue:
            times.append(self._retry_at)
        return min(times) if times else None

    # --- inputs ---------------------------------------------------------------------------------

    def send(self, payload: bytes, now: float) -> list[SessionOutput]:
        """Queue a datagram for the meter; returns the write if it can go out now."""
        build_sendto(self.dialect, self.meter_ipv6, payload)  # validate early, raise to caller
        if self.ended is not None:
            return [SendFailed(bytes(payload), f"session ended: {self.ended}")]
        if len(self._queue) >= self.max_queue:
            return [SendFailed(bytes(payload), f"send queue full ({self.max_queue})")]
        self._queue.append(_Pending(bytes(payload)))
        return self._pump(now)

    def poll(self, now: float) -> list[SessionOutput]:
        out: list[SessionOutput] = []
        flight = self._flight
        if flight is not None and now >= flight.deadline:
            self._flight = None
            out += self._failed_attempt(
                flight.item, f"no EVENT 21 within {self.send_timeout:g} s", now
            )
        return out + self._pump(now)

    def handle(self, event: Event, now: float) -> list[SessionOutput]:
        if isinstance(event, RxUdp):
            reason = classify(event, self.meter_ipv6, side=self.side)
            if reason is None:
                return [MeterData(event.data, event)]
            return [Dropped(event, reason)]
        if isinstance(event, Fail):
            return self._on_fail(event, now)
        if isinstance(event, SkEvent):
            return self._on_event(event, now)
        return []

    # --- internals ------------------------------------------------------------------------------

    def _on_event(self, event: SkEvent, now: float) -> list[SessionOutput]:
        code = event.code
        out: list[SessionOutput] = []
        if code == EventCode.UDP_SENT:
            flight = self._flight
            if flight is None or event.param not in (0, 1):
                return []  # 02 = neighbour solicitation sent; the final result follows
            self._flight = None
            if event.param == 0:
                out.append(Sent(flight.item.payload, flight.item.attempts))
            else:
                out += self._failed_attempt(flight.item, "transmission failed (EVENT 21 01)", now)
        elif code == EventCode.SESSION_EXPIRED:
            self.reauthenticating = True
            out.append(Notice("PANA session lifetime expired; holding sends while it renews"))
        elif code == EventCode.PANA_CONNECTED:
            if self.reauthenticating:
                self.reauthenticating = False
                out.append(Notice("PANA session renewed (EVENT 25); sending again"))
        elif code == EventCode.PANA_FAILED:
            why = "re-authentication failed" if self.reauthenticating else "PANA failed"
            return self._end(f"{why} (EVENT 24)")
        elif code == EventCode.END_REQUESTED:
            self.ending = True
            out.append(Notice("the meter asked to end the PANA session (EVENT 26)", True))
        elif code == EventCode.SESSION_ENDED:
            return self._end("session ended (EVENT 27)")
        elif code == EventCode.END_TIMED_OUT:
            return self._end("session end timed out (EVENT 28)")
        elif code == EventCode.DUTY_LIMITED:
            self.duty_limited = True
            out.append(Notice("transmit-time limit reached (EVENT 32); holding sends", True))
        elif code == EventCode.DUTY_RELEASED and self.duty_limited:
            self.duty_limited = False
            out.append(Notice("transmit-time limit released (EVENT 33)"))
        return out + self._pump(now)

    def _on_fail(self, event: Fail, now: float) -> list[SessionOutput]:
        flight = self._flight
        if flight is None:
            return []
        self._flight = None
        command = sksendto_header(self.dialect, self.meter_ipv6, len(flight.item.payload))
        hint = wrong_dialect_hint(command, event.code)
        if hint is not None or event.code == "ER06":
            why = hint or f"SKSENDTO rejected (FAIL {event.code})"
            return [SendFailed(flight.item.payload, why), *self._pump(now)]
        out = self._failed_attempt(flight.item, f"SKSENDTO failed (FAIL {event.code})", now)
        return out + self._pump(now)

    def _failed_attempt(self, item: _Pending, why: str, now: float) -> list[SessionOutput]:
        if item.attempts >= self.max_attempts:
            return [SendFailed(item.payload, f"{why}; gave up after {item.attempts} attempts")]
        self._queue.appendleft(item)
        self._retry_at = now + self.retry_delay
        return [Notice(f"{why}; retrying in {self.retry_delay:g} s")]

    def _pump(self, now: float) -> list[SessionOutput]:
        if self.hold_reason is not None or not self._queue:
            return []
        if self._retry_at is not None:
            if now < self._retry_at:
                return []
            self._retry_at = None
        item = self._queue.popleft()
        item.attempts += 1
        self._flight = _Flight(item, now + self.send_timeout)
        data = build_sendto(self.dialect, self.meter_ipv6, item.payload, side=self.side)
        header = sksendto_header(self.dialect, self.meter_ipv6, len(item.payload), side=self.side)
        return [Write(data, f"{header} <{len(item.payload)} bytes>")]

    def _end(self, reason: str) -> list[SessionOutput]:
        self.ended = reason
        out: list[SessionOutput] = [SessionEnded(reason)]
        if self._flight is not None:
            out.append(SendFailed(self._flight.item.payload, reason))
            self._flight = None
        while self._queue:
            out.append(SendFailed(self._queue.popleft().payload, reason))
        self._retry_at = None
        return out
