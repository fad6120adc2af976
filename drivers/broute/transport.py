"""Asyncio shell around the pure SKSTACK cores: the serial port, the parser and one timer.

:class:`ModuleLink` owns the port. One reader task feeds every received byte to the
:class:`~drivers.broute.parser.LineParser` and routes the events to whichever core is active: a
:class:`~drivers.broute.join.JoinMachine` (or :class:`~drivers.broute.scan.ScanMachine`) until it
finishes, then the :class:`~drivers.broute.session.Session`. The cores' actions are performed here
and nowhere else, in order, synchronously inside the reader's callback, so no event can slip in
between a join finishing and its session starting. All waiting uses the injected clock, which is
what lets the tests and the demo run the same code on accelerated time.

Opening errors are turned into one :class:`~drivers.broute.errors.PortError` sentence an
installer can act on (module unplugged, user not in ``dialout``, port held by another program).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from drivers.broute.actions import Notice, StartTimer, TimerExpired, Write
from drivers.broute.dialect import mask_secrets
from drivers.broute.errors import (
    CredentialsRejected,
    JoinError,
    LinkError,
    NoPanFound,
    ParseError,
    PortError,
    SendError,
    WrongDialect,
)
from drivers.broute.join import (
    JoinConfig,
    Joined,
    JoinFailed,
    JoinFailure,
    JoinMachine,
    JoinResult,
    SetDataMode,
)
from drivers.broute.parser import Echo, Event, LineParser, RxUdp, Unrecognised
from drivers.broute.scan import ScanConfig, ScanDone, ScanFailed, ScanMachine, ScanStarted
from drivers.broute.session import (
    Dropped,
    MeterData,
    SendFailed,
    Sent,
    Session,
    SessionEnded,
    SessionOutput,
)
from gateway.clock import Clock
from gateway.logs import get_logger

__all__ = [
    "BAUDRATE",
    "ModuleLink",
    "SessionParams",
    "clock_wait",
    "open_serial",
    "port_error",
]

BAUDRATE = 115200
_READ_SIZE = 4096
_HISTORY = 200

T = TypeVar("T")


async def clock_wait(clock: Clock, awaitable: Awaitable[T], seconds: float) -> T:
    """``asyncio.wait_for`` on the injected clock: raises ``TimeoutError`` after ``seconds``.

    The awaitable is cancelled on timeout (a future the caller still holds sees the cancel).
    """
    task = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(max(0.0, seconds)))
    try:
        done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        timer.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise TimeoutError(f"no result within {seconds:g} s")


# --- opening the port ---------------------------------------------------------------------------

_MISSING = {errno.ENOENT, errno.ENODEV, errno.ENXIO}
_DENIED = {errno.EACCES, errno.EPERM}
_BUSY = {errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK}
_NOT_TTY = {errno.ENOTTY, errno.EINVAL, errno.EISDIR}


def _errno_of(exc: BaseException) -> int | None:
    number = getattr(exc, "errno", None)
    if isinstance(number, int):
        return number
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, int):
            return arg
        if isinstance(arg, BaseException):
            return _errno_of(arg)
    cause = exc.__cause__ or exc.__context__
    return _errno_of(cause) if cause is not None else None


def port_error(port: str, exc: BaseException) -> PortError:
    """One actionable sentence for a failure to open ``port``."""
    number = _errno_of(exc)
    text = str(exc)
    if number in _MISSING:
        message = f"no such port {port}: is the Wi-SUN module plugged in?"
    elif number in _DENIED:
        message = (
            f"permission denied on {port}: add the user to the dialout group "
            "(sudo usermod -aG dialout <user>, then log in again)"
        )
    elif number in _BUSY or "exclusively lock" in text:
        message = (
            f"port {port} is busy: another program (another chisan, momonga, ModemManager) "
            "has it open"
        )
    elif number in _NOT_TTY or "Inappropriate ioctl" in text:
        message = f"{port} is not a serial port"
    else:
        why = os.strerror(number) if number is not None else text
        message = f"cannot open {port}: {why}"
    return PortError(port, message, errno=number)


def _precheck(port: str) -> None:
    """Fail fast, and say why, before the executor-based open of pyserial."""
    if "://" in port:
        return
    try:
        st = os.stat(port)
    except OSError as exc:
        raise port_error(port, exc) from None
    if not stat.S_ISCHR(st.st_mode):
        raise PortError(port, f"{port} is not a serial port (not a character device)")


async def open_serial(
    port: str, baudrate: int = BAUDRATE
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the module's port: 8N1, no flow control, exclusive (a second opener is refused)."""
    import serial
    import serial_asyncio_fast

    _precheck(port)
    kwargs: dict[str, Any] = {
        "url": port,
        "baudrate": baudrate,
        "bytesize": serial.EIGHTBITS,
        "parity": serial.PARITY_NONE,
        "stopbits": serial.STOPBITS_ONE,
        "xonxoff": False,
        "rtscts": False,
        "dsrdtr": False,
    }
    if "://" not in port:
        kwargs["exclusive"] = True
    try:
        reader, writer = await serial_asyncio_fast.open_serial_connection(**kwargs)
    except (OSError, ValueError) as exc:  # SerialException is an OSError
        raise port_error(port, exc) from None
    return reader, writer


# --- the link -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionParams:
    """How the session retries SKSENDTO (see :class:`~drivers.broute.session.Session`)."""

    retry_delay: float = 5.0
    max_attempts: int = 3
    send_timeout: float = 10.0
    max_queue: int = 8


Machine = JoinMachine | ScanMachine


class ModuleLink:
    """One opened module port: runs a join (or a scan), then the session.

    ``on_frame(payload, rx)`` receives every datagram the session accepts as meter data;
    ``on_progress(ScanStarted)`` hears about each SKSCAN (for progress displays).
    ``ended`` is set when the PANA session or the port is gone (``end_reason`` says why); after
    that only :meth:`close` (or a new :meth:`join` on a port that is still open) makes sense.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        clock: Clock,
        port: str = "",
        log: Any | None = None,
    ) -> None:
        self.port = port
        self.clock = clock
        self.log = log if log is not None else get_logger("chisan.broute", device="meter")
        self.parser = LineParser()
        self.session: Session | None = None
        self.result: JoinResult | None = None
        self.on_frame: Callable[[bytes, RxUdp], None] | None = None
        self.on_progress: Callable[[ScanStarted], None] | None = None
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.lost: str | None = None
        self.commands: deque[str] = deque(maxlen=_HISTORY)
        self.unrecognised = 0
        self._reader = reader
        self._writer = writer
        self._timer: asyncio.Task[None] | None = None
        self._machine: Machine | None = None
        self._done: asyncio.Future[Any] | None = None
        self._session_params = SessionParams()
        self._sends: list[tuple[bytes, asyncio.Future[Sent]]] = []
        self._closed = False
        self._terminating = False
        self._read_task = asyncio.create_task(self._read_loop(), name=f"broute-read:{port}")

    @classmethod
    async def open(
        cls,
        port: str,
        *,
        clock: Clock,
        baudrate: int = BAUDRATE,
        log: Any | None = None,
    ) -> ModuleLink:
        reader, writer = await open_serial(port, baudrate)
        return cls(reader, writer, clock=clock, port=port, log=log)

    # --- public API -----------------------------------------------------------------------------

    @property
    def joined(self) -> bool:
        return self.session is not None and not self.ended.is_set()

    async def join(self, config: JoinConfig, session: SessionParams | None = None) -> JoinResult:
        """Run one join to completion; the session starts the instant the join succeeds.

        Raises :class:`CredentialsRejected`, :class:`WrongDialect`, :class:`NoPanFound`, another
        :class:`JoinError`, or :class:`PortError` if the port goes away meanwhile.
        """
        self._session_params = session or SessionParams()
        self.session = None
        self.result = None
        self.ended.clear()
        self.end_reason = None
        self._terminating = False
        outcome = await self._run_machine(JoinMachine(config))
        if isinstance(outcome, Joined):
            return outcome.result
        assert isinstance(outcome, JoinFailed)
        raise _join_error(outcome)

    async def scan(self, config: ScanConfig) -> ScanDone:
        """Scan without joining; raises :class:`WrongDialect` or :class:`JoinError`."""
        outcome = await self._run_machine(ScanMachine(config))
        if isinstance(outcome, ScanDone):
            return outcome
        assert isinstance(outcome, ScanFailed)
        if outcome.wrong_dialect:
            raise WrongDialect(outcome.message, reason="wrong dialect", retryable=False)
        raise JoinError(outcome.message, reason="scan failed", retryable=True)

    def send(self, payload: bytes) -> asyncio.Future[Sent]:
        """Queue a datagram to the meter; the future ends with EVENT 21 00 or a SendError."""
        session = self.session
        if session is None or self.ended.is_set():
            raise LinkError(f"no PANA session: {self.end_reason or 'not joined'}")
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        self._sends.append((bytes(payload), future))
        self._perform_session(session.send(payload, self.clock.monotonic()))
        return future

    async def terminate(self, wait_s: float = 3.0) -> None:
        """End the PANA session politely (SKTERM), so the meter frees its slot at once."""
        if not self.joined:
            return
        self._terminating = True
        self._write(Write(b"SKTERM\r\n", "SKTERM"))
        with contextlib.suppress(TimeoutError):
            await clock_wait(self.clock, self.ended.wait(), wait_s)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._read_task
        self._end("link closed")
        self._fail_machine(PortError(self.port, f"{self.port} closed"))
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)

    # --- reading --------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    self._lose("the serial port closed (module unplugged?)")
                    return
                self._feed(data)
        except asyncio.CancelledError:
            raise
        except OSError as exc:
            self._lose(f"serial port error: {exc}")
        except Exception as exc:  # a bug here must end the link loudly, not hang it
            self.log.error("broute reader crashed", exc_info=exc)
            self._lose(f"internal error: {exc!r}")

    def _feed(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data)
        except ParseError as exc:
            self.log.warning("parser fault; buffer dropped", error=str(exc))
            return
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Unrecognised):
            self.unrecognised += 1
            self.log.debug(
                "unrecognised module output",
                reason=event.reason,
                raw=mask_secrets(event.raw[:80].decode("latin-1")),
            )
        elif isinstance(event, Echo) and not event.expected:
            self.log.debug("unexpected echo", text=event.text)
        machine = self._machine
        if machine is not None:
            self._perform(machine.handle(event))
            return
        session = self.session
        if session is not None and not self.ended.is_set():
            self._perform_session(session.handle(event, self.clock.monotonic()))

    # --- performing actions ---------------------------------------------------------------------

    async def _run_machine(self, machine: Machine) -> Any:
        if self._machine is not None:
            raise RuntimeError("a join or scan is already running on this link")
        if self.lost is not None:
            raise PortError(self.port, self.lost)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._machine = machine
        self._done = done
        self._perform(machine.start())
        try:
            return await done
        finally:
            self._machine = None
            self._done = None
            if self.session is None:
                self._cancel_timer()

    def _perform(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Write):
                self._write(action)
            elif isinstance(action, StartTimer):
                self._arm(action.seconds, self._machine_timeout)
            elif isinstance(action, Notice):
                self._notice(action)
            elif isinstance(action, SetDataMode):
                self.parser.data_mode = action.mode
            elif isinstance(action, ScanStarted):
                if self.on_progress is not None:
                    self.on_progress(action)
            elif isinstance(action, Joined):
                self._cancel_timer()
                self._start_session(action.result)
                self._finish_machine(action)
            elif isinstance(action, JoinFailed | ScanDone | ScanFailed):
                self._cancel_timer()
                self._finish_machine(action)

    def _machine_timeout(self) -> None:
        machine = self._machine
        if machine is not None:
            self._perform(machine.handle(TimerExpired()))

    def _finish_machine(self, outcome: Any) -> None:
        self._machine = None
        done = self._done
        if done is not None and not done.done():
            done.set_result(outcome)

    def _fail_machine(self, exc: BaseException) -> None:
        self._machine = None
        done = self._done
        if done is not None and not done.done():
            done.set_exception(exc)

    def _start_session(self, result: JoinResult) -> None:
        params = self._session_params
        self.result = result
        self.session = Session(
            result.dialect,
            result.ipv6,
            retry_delay=params.retry_delay,
            max_attempts=params.max_attempts,
            send_timeout=params.send_timeout,
            max_queue=params.max_queue,
        )
        self.log.info(
            "joined the meter's PAN",
            channel=result.channel,
            pan_id=f"{result.pan_id:04X}",
            mac=result.mac,
            cached_pan=result.used_cached_pan,
            dialect=result.dialect.value,
            data_mode=result.data_mode.value,
        )

    def _perform_session(self, outputs: list[SessionOutput]) -> None:
        for out in outputs:
            if isinstance(out, Write):
                self._write(out)
            elif isinstance(out, Notice):
                self._notice(out)
            elif isinstance(out, MeterData):
                handler = self.on_frame
                if handler is not None:
                    try:
                        handler(out.payload, out.rx)
                    except Exception as exc:  # one bad frame handler must not kill the reader
                        self.log.error("meter frame handler failed", exc_info=exc)
            elif isinstance(out, Dropped):
                self.log.debug("datagram dropped", reason=out.reason, sender=out.rx.sender)
            elif isinstance(out, Sent):
                self._resolve(out.payload, out, None)
            elif isinstance(out, SendFailed):
                ended = self.session is None or self.session.ended is not None
                self._resolve(out.payload, None, SendError(out.reason, session_ended=ended))
            elif isinstance(out, SessionEnded):
                level = self.log.info if self._terminating else self.log.warning
                level("PANA session ended", reason=out.reason)
                self._end(out.reason)
        self._rearm_session()

    def _resolve(self, payload: bytes, sent: Sent | None, error: SendError | None) -> None:
        for index, (data, future) in enumerate(self._sends):
            if data == payload:
                del self._sends[index]
                if not future.done():
                    if error is not None:
                        future.set_exception(error)
                    else:
                        assert sent is not None
                        future.set_result(sent)
                return

    def _rearm_session(self) -> None:
        session = self.session
        if session is None or self._machine is not None:
            return
        deadline = session.next_deadline()
        if deadline is None or self.ended.is_set():
            self._cancel_timer()
            return
        self._arm(deadline - self.clock.monotonic(), self._session_timeout)

    def _session_timeout(self) -> None:
        session = self.session
        if session is not None and not self.ended.is_set():
            self._perform_session(session.poll(self.clock.monotonic()))

    def _write(self, action: Write) -> None:
        if self._closed or self.lost is not None:
            return
        self.parser.command_sent(action.data)
        display = mask_secrets(action.display)
        self.commands.append(display)
        self.log.debug("command sent", command=display)
        self._writer.write(action.data)

    def _notice(self, notice: Notice) -> None:
        if notice.warning:
            self.log.warning(notice.message)
        else:
            self.log.info(notice.message)

    # --- the one timer --------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = asyncio.create_task(self._fire(seconds, callback))

    async def _fire(self, seconds: float, callback: Callable[[], None]) -> None:
        await self.clock.sleep(max(0.0, seconds))
        self._timer = None
        try:
            callback()
        except Exception as exc:  # a bug in a core must end the link loudly, not hang it
            self.log.error("broute timer handler crashed", exc_info=exc)
            self._lose(f"internal error: {exc!r}")

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    # --- endings --------------------------------------------------------------------------------

    def _end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self.ended.set()
        sends, self._sends = self._sends, []
        for _, future in sends:
            if not future.done():
                future.set_exception(SendError(reason, session_ended=True))

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            self.log.warning("serial port lost", reason=reason, port=self.port)
        self._cancel_timer()
        self._fail_machine(PortError(self.port, f"{self.port}: {reason}"))
        self._end(reason)


def _join_error(failed: JoinFailed) -> JoinError:
    reason = failed.reason
    kind: type[JoinError]
    if reason is JoinFailure.CREDENTIALS_REJECTED:
        kind = CredentialsRejected
    elif reason is JoinFailure.WRONG_DIALECT:
        kind = WrongDialect
    elif reason is JoinFailure.NO_PAN:
        kind = NoPanFound
    else:
        kind = JoinError
    return kind(failed.message, reason=reason.value, retryable=failed.retryable)
