"""Pure scan-only machine: list the PANs (meters) in range without joining any.

An installer's first question at a new site is "does the module hear the meter, and how well?",
asked before the B-route credentials are at hand. The join machine answers it only as a side
effect of joining, so this small machine does the scan alone: SKVER → SKINFO (dialect detection)
→ ``SKSREG SFE 0`` → SKSCAN for each duration until a PAN answers. It drives the same shell as the
join machine (:class:`~drivers.broute.actions.Write`, :class:`~drivers.broute.actions.StartTimer`,
:class:`~drivers.broute.actions.Notice`) and needs no credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from drivers.broute.actions import Notice, StartTimer, TimerExpired, Write
from drivers.broute.dialect import Dialect, scan_seconds, skscan_command, wrong_dialect_hint
from drivers.broute.parser import Event, Fail, Ok, PanDescriptor
from drivers.broute.probe import (
    ModuleProbe,
    command_actions,
    meter_pan,
    no_answer_message,
    scan_done,
)

__all__ = ["ScanAction", "ScanConfig", "ScanDone", "ScanFailed", "ScanMachine", "ScanStarted"]


@dataclass(frozen=True, slots=True)
class ScanConfig:
    dialect: Dialect = Dialect.AUTO
    durations: tuple[int, ...] = (6, 7, 8)
    command_timeout: float = 10.0
    scan_margin: float = 10.0

    def __post_init__(self) -> None:
        if not self.durations or any(not 1 <= d <= 14 for d in self.durations):
            raise ValueError("scan durations must be a non-empty sequence of 1-14")


@dataclass(frozen=True, slots=True)
class ScanStarted:
    """An SKSCAN went out; it should end after about ``seconds`` (for a progress display)."""

    duration: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ScanDone:
    """The scan finished; ``pans`` is empty when no meter answered any duration."""

    pans: tuple[PanDescriptor, ...]
    dialect: Dialect
    dialect_message: str
    durations: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ScanFailed:
    message: str
    wrong_dialect: bool = False


ScanAction: TypeAlias = Write | StartTimer | Notice | ScanStarted | ScanDone | ScanFailed


class _Step(Enum):
    VERSION = "SKVER"
    INFO = "SKINFO"
    ECHO_OFF = "SKSREG SFE 0"
    SCAN = "SKSCAN"
    DONE = "done"


class ScanMachine(ModuleProbe):
    """One scan session; like the join machine, fed parser events and timer expiries."""

    def __init__(self, config: ScanConfig) -> None:
        super().__init__(config.dialect, "the command line")
        self.config = config
        self._step: _Step | None = None
        self._command = ""
        self._index = 0
        self._pans: dict[tuple[int, int, str], PanDescriptor] = {}
        self._tried: list[int] = []

    @property
    def done(self) -> bool:
        return self._step is _Step.DONE

    def start(self) -> list[ScanAction]:
        if self._step is not None:
            raise RuntimeError("ScanMachine.start() called twice")
        return self._send(_Step.VERSION, "SKVER")

    def handle(self, event: Event | TimerExpired) -> list[ScanAction]:
        if isinstance(event, TimerExpired):
            return self.timeout()
        step = self._step
        if step is None or step is _Step.DONE:
            return []
        if isinstance(event, Fail):
            return self._on_fail(step, event)
        if step is _Step.VERSION:
            return self._send(_Step.INFO, "SKINFO") if self._version_answered(event) else []
        if step is _Step.INFO:
            return self._on_info() if self._info_answered(event) else []
        if step is _Step.ECHO_OFF:
            return self._send_scan() if isinstance(event, Ok) else []
        pan = meter_pan(event)
        if pan is not None:
            self._pans[(pan.channel, pan.pan_id, pan.mac)] = pan
        elif scan_done(event):
            return self._scan_finished(timed_out=False)
        return []

    def timeout(self) -> list[ScanAction]:
        if self._step is _Step.SCAN:
            return self._scan_finished(timed_out=True)
        if self._step in (None, _Step.DONE):
            return []
        return self._fail(no_answer_message(self._command, self.config.command_timeout))

    def _on_info(self) -> list[ScanAction]:
        _, notices = self._detect()
        return [*notices, *self._send(_Step.ECHO_OFF, "SKSREG SFE 0")]

    def _send_scan(self) -> list[ScanAction]:
        duration = self.config.durations[self._index]
        self._tried.append(duration)
        seconds = scan_seconds(duration)
        command = skscan_command(self.dialect, duration)
        return [
            *self._send(_Step.SCAN, command, seconds + self.config.scan_margin),
            ScanStarted(duration, seconds),
        ]

    def _scan_finished(self, *, timed_out: bool) -> list[ScanAction]:
        durations = self.config.durations
        if not self._pans and self._index + 1 < len(durations):
            why = "scan did not finish in time" if timed_out else "no PAN answered"
            note = Notice(f"{why} with duration {durations[self._index]}; trying a longer scan")
            self._index += 1
            return [note, *self._send_scan()]
        self._step = _Step.DONE
        pans = tuple(sorted(self._pans.values(), key=lambda p: -p.lqi))
        return [ScanDone(pans, self.dialect, self.dialect_message, tuple(self._tried))]

    def _on_fail(self, step: _Step, event: Fail) -> list[ScanAction]:
        hint = wrong_dialect_hint(self._command, event.code)
        if step is _Step.SCAN and hint is not None:
            switched = self._switch_dialect(hint)
            if switched is not None:
                self._tried.pop()
                return [switched, *self._send_scan()]
            self._step = _Step.DONE
            return [ScanFailed(hint, wrong_dialect=True)]
        return self._fail(f"{self._command} failed with FAIL {event.code}")

    def _send(self, step: _Step, command: str, wait: float | None = None) -> list[ScanAction]:
        self._step = step
        self._command = command
        seconds = self.config.command_timeout if wait is None else wait
        return list(command_actions(command, command, seconds))

    def _fail(self, message: str) -> list[ScanAction]:
        self._step = _Step.DONE
        return [ScanFailed(message)]
