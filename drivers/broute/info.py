"""What a Wi-SUN module is and how it prints data, and the one-time switch to hex data output.

Installers ask two questions of a module before the B-route credentials are at hand: which
firmware and dialect is this stick, and does it print ERXUDP data in hex (``ROPT`` 01) or raw
binary (00)? :class:`InfoMachine` answers both with read-only commands (SKVER, SKAPPVER, SKINFO,
ROPT). :class:`HexModeMachine` writes ``WOPT 01``, which goes to the module's flash (a finite
number of writes), so it reads ``ROPT`` first and does nothing when the module is already in hex
mode, then reads ``ROPT`` again to prove the write took.

Both are pure cores like the join and scan machines (fed parser events and timer expiries,
returning :class:`~drivers.broute.actions.Write` / :class:`~drivers.broute.actions.StartTimer`
actions and one outcome); :func:`run_on_port` is their small asyncio shell. Modules without
``SKAPPVER`` or ``ROPT`` answer ``FAIL ER04`` (unknown command): that is reported, not fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeAlias

from drivers.broute.actions import Notice, StartTimer, TimerExpired, Write
from drivers.broute.dialect import Dialect
from drivers.broute.errors import PortError
from drivers.broute.parser import DataMode, EappVer, Einfo, Event, Fail, LineParser, Ok
from drivers.broute.probe import ModuleProbe, command_actions, no_answer_message
from gateway.clock import Clock

__all__ = [
    "HexModeDone",
    "HexModeMachine",
    "InfoFailed",
    "InfoMachine",
    "ModuleInfo",
    "data_mode_of",
    "run_on_port",
]


def data_mode_of(value: str | None) -> DataMode | None:
    """The data mode an ``OK xx`` answer to ROPT names (bit 0: hex), None when unreadable."""
    if value is None:
        return None
    try:
        return DataMode.HEX if int(value, 16) & 0x01 else DataMode.BINARY
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """The module's answers. ``app_version``/``data_mode`` are None when it has no such command.

    ``ropt`` is ROPT's raw value (``01``), or why there is none (``FAIL ER04``, ``no answer``).
    """

    version: str
    app_version: str | None
    ipv6: str
    mac: str
    channel: int
    pan_id: int
    dialect: Dialect
    dialect_message: str
    data_mode: DataMode | None
    ropt: str


@dataclass(frozen=True, slots=True)
class InfoFailed:
    message: str


@dataclass(frozen=True, slots=True)
class HexModeDone:
    """``written`` False: the module was already in hex mode and flash was not touched."""

    written: bool
    before: DataMode
    after: DataMode


InfoAction: TypeAlias = Write | StartTimer | Notice | ModuleInfo | HexModeDone | InfoFailed


class _Step(Enum):
    VERSION = "SKVER"
    APP_VERSION = "SKAPPVER"
    INFO = "SKINFO"
    ROPT = "ROPT"
    WOPT = "WOPT 01"
    CHECK = "ROPT again"
    DONE = "done"


class InfoMachine(ModuleProbe):
    """SKVER → SKAPPVER → SKINFO (dialect detection) → ROPT; changes nothing on the module."""

    def __init__(self, dialect: Dialect = Dialect.AUTO, command_timeout: float = 5.0) -> None:
        super().__init__(dialect, "the command line")
        self.command_timeout = command_timeout
        self._step: _Step | None = None
        self._command = ""
        self._app_version: str | None = None
        self._einfo_event: Einfo | None = None

    @property
    def done(self) -> bool:
        return self._step is _Step.DONE

    def start(self) -> list[InfoAction]:
        if self._step is not None:
            raise RuntimeError("start() called twice")
        return self._send(_Step.VERSION, "SKVER")

    def handle(self, event: Event | TimerExpired) -> list[InfoAction]:
        step = self._step
        if step is None or step is _Step.DONE:
            return []
        if isinstance(event, TimerExpired):
            return self._timeout(step)
        if isinstance(event, Fail):
            return self._on_fail(step, event)
        if step is _Step.VERSION:
            answered = self._version_answered(event)
            return self._send(_Step.APP_VERSION, "SKAPPVER") if answered else []
        if step is _Step.APP_VERSION:
            if isinstance(event, EappVer):
                self._app_version = event.version
            return self._send(_Step.INFO, "SKINFO") if isinstance(event, Ok) else []
        if step is _Step.INFO:
            if isinstance(event, Einfo):
                self._einfo_event = event
            if self._info_answered(event):
                _, notices = self._detect()
                return [*notices, *self._send(_Step.ROPT, "ROPT")]
            return []
        if step is _Step.ROPT and isinstance(event, Ok) and event.value is not None:
            return self._finish(data_mode_of(event.value), event.value)
        return self._more(step, event)

    def _more(self, step: _Step, event: Event) -> list[InfoAction]:
        """Steps a subclass adds after ROPT; none here."""
        return []

    def _timeout(self, step: _Step) -> list[InfoAction]:
        if step is _Step.APP_VERSION:  # some firmware prints nothing at all for it
            return self._send(_Step.INFO, "SKINFO")
        if step is _Step.ROPT:
            return self._finish(None, "no answer")
        return self._fail(no_answer_message(self._command, self.command_timeout))

    def _on_fail(self, step: _Step, event: Fail) -> list[InfoAction]:
        if step is _Step.APP_VERSION:
            return self._send(_Step.INFO, "SKINFO")
        if step is _Step.ROPT:
            return self._finish(None, f"FAIL {event.code}")
        return self._fail(f"{self._command} failed with FAIL {event.code}")

    def info(self, data_mode: DataMode | None, ropt: str) -> ModuleInfo | None:
        einfo = self._einfo_event
        if self._ever is None or einfo is None:
            return None
        return ModuleInfo(
            version=self._ever,
            app_version=self._app_version,
            ipv6=einfo.ipv6,
            mac=einfo.mac,
            channel=einfo.channel,
            pan_id=einfo.pan_id,
            dialect=self.dialect,
            dialect_message=self.dialect_message,
            data_mode=data_mode,
            ropt=ropt,
        )

    def _finish(self, data_mode: DataMode | None, ropt: str) -> list[InfoAction]:
        info = self.info(data_mode, ropt)
        if info is None:
            return self._fail(f"SKINFO gave no readable EINFO line ({self.dialect_message})")
        self._step = _Step.DONE
        return [info]

    def _send(self, step: _Step, command: str) -> list[InfoAction]:
        self._step = step
        self._command = command
        return list(command_actions(command, command, self.command_timeout))

    def _fail(self, message: str) -> list[InfoAction]:
        self._step = _Step.DONE
        return [InfoFailed(message)]


class HexModeMachine(InfoMachine):
    """Everything :class:`InfoMachine` reads, then WOPT 01 only if ROPT said binary.

    The outcome is a :class:`HexModeDone` (after a second ROPT confirmed hex) or an
    :class:`InfoFailed` saying why nothing, or nothing useful, was written.
    """

    def __init__(self, dialect: Dialect = Dialect.AUTO, command_timeout: float = 5.0) -> None:
        super().__init__(dialect, command_timeout)
        self.module: ModuleInfo | None = None

    def _finish(self, data_mode: DataMode | None, ropt: str) -> list[InfoAction]:
        info = self.info(data_mode, ropt)
        if info is None:
            return self._fail(f"SKINFO gave no readable EINFO line ({self.dialect_message})")
        self.module = info
        if data_mode is None:
            return self._fail(
                f"ROPT is not answered ({ropt}): this module has no switchable data mode, "
                "nothing written"
            )
        if data_mode is DataMode.HEX:
            self._step = _Step.DONE
            return [HexModeDone(written=False, before=DataMode.HEX, after=DataMode.HEX)]
        return self._send(_Step.WOPT, "WOPT 01")

    def _more(self, step: _Step, event: Event) -> list[InfoAction]:
        if step is _Step.WOPT and isinstance(event, Ok):
            return self._send(_Step.CHECK, "ROPT")
        if step is _Step.CHECK and isinstance(event, Ok) and event.value is not None:
            return self._checked(data_mode_of(event.value), event.value)
        return []

    def _checked(self, data_mode: DataMode | None, ropt: str) -> list[InfoAction]:
        if data_mode is not DataMode.HEX:
            return self._fail(f"WOPT 01 was accepted but ROPT now answers {ropt}: not in hex mode")
        self._step = _Step.DONE
        return [HexModeDone(written=True, before=DataMode.BINARY, after=DataMode.HEX)]

    def _timeout(self, step: _Step) -> list[InfoAction]:
        if step in (_Step.WOPT, _Step.CHECK):
            return self._fail(no_answer_message(self._command, self.command_timeout))
        return super()._timeout(step)

    def _on_fail(self, step: _Step, event: Fail) -> list[InfoAction]:
        if step is _Step.WOPT:
            return self._fail(f"WOPT 01 refused with FAIL {event.code}; the module is unchanged")
        if step is _Step.CHECK:
            return self._fail(f"ROPT after WOPT failed with FAIL {event.code}")
        return super()._on_fail(step, event)


# --- the asyncio shell --------------------------------------------------------------------------


class _Machine(Protocol):
    @property
    def done(self) -> bool: ...

    def start(self) -> list[InfoAction]: ...

    def handle(self, event: Event | TimerExpired) -> list[InfoAction]: ...


Outcome: TypeAlias = ModuleInfo | HexModeDone | InfoFailed


async def run_on_port(
    port: str,
    machine: _Machine,
    clock: Clock,
    *,
    baudrate: int = 115200,
    on_notice: Callable[[Notice], None] | None = None,
) -> Outcome:
    """Open ``port``, run ``machine`` to its outcome, close. Raises :class:`PortError`."""
    from drivers.broute.transport import open_serial

    reader, writer = await open_serial(port, baudrate)
    parser = LineParser()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Outcome] = loop.create_future()
    timer: asyncio.Task[None] | None = None

    async def fire(seconds: float) -> None:
        await clock.sleep(seconds)
        perform(machine.handle(TimerExpired()))

    def perform(actions: list[InfoAction]) -> None:
        nonlocal timer
        for action in actions:
            if isinstance(action, Write):
                parser.command_sent(action.data)
                writer.write(action.data)
            elif isinstance(action, StartTimer):
                if timer is not None and timer is not asyncio.current_task():
                    timer.cancel()
                timer = asyncio.create_task(fire(action.seconds))
            elif isinstance(action, Notice):
                if on_notice is not None:
                    on_notice(action)
            elif not done.done():
                done.set_result(action)

    async def read() -> None:
        while not done.done():
            try:
                data = await reader.read(4096)
            except OSError as exc:
                done.set_exception(PortError(port, f"serial port error: {exc}"))
                return
            if not data:
                done.set_exception(PortError(port, f"{port} closed (module unplugged?)"))
                return
            perform([a for e in parser.feed(data) for a in machine.handle(e)])

    reading = asyncio.create_task(read())
    try:
        perform(machine.start())
        return await done
    finally:
        for task in (reading, timer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2.0)
