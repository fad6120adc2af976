"""What the join machine and the scan-only machine share: knowing the module and its scan answers.

Both start with SKVER → SKINFO to tell the dialect, both read SKSCAN's EPANDESC and EVENT 22 the
same way, and both switch dialect once when a detected dialect's SKSCAN is refused with FAIL
ER05. :class:`ModuleProbe` holds that state and logic; each machine keeps its own steps, its own
actions and its own way of failing.
"""

from __future__ import annotations

from drivers.broute.actions import Notice, StartTimer, Write
from drivers.broute.dialect import Detection, Dialect, detect_with_reason, other_family
from drivers.broute.parser import (
    Einfo,
    Event,
    EventCode,
    Ever,
    Ok,
    PanDescriptor,
    SkEvent,
    Unrecognised,
)

__all__ = ["ModuleProbe", "command_actions", "meter_pan", "no_answer_message", "scan_done"]


class ModuleProbe:
    """The dialect in use and the module's answers to SKVER and SKINFO.

    ``dialect`` is the dialect in use (detected when configured AUTO, and switched once if a
    detected dialect's SKSCAN is rejected with FAIL ER05); ``dialect_message`` says why.
    """

    def __init__(self, dialect: Dialect, source: str) -> None:
        self.dialect = dialect
        self.dialect_message = f"dialect {dialect.value} from {source}"
        self._configured = dialect
        self._may_switch = dialect is Dialect.AUTO
        self._ever: str | None = None
        self._einfo: list[str] | None = None

    def _version_answered(self, event: Event) -> bool:
        """Keep the EVER line; True at the OK that ends the answer to SKVER."""
        if isinstance(event, Ever):
            self._ever = event.version
            return False
        return isinstance(event, Ok) and self._ever is not None  # an OK before EVER is older

    def _info_answered(self, event: Event) -> bool:
        """Keep the EINFO fields; True at the OK that ends the answer to SKINFO."""
        if isinstance(event, Einfo):
            self._einfo = list(event.fields)
            return False
        if isinstance(event, Unrecognised) and event.raw.startswith(b"EINFO"):
            # Unreadable, but it is the answer: detection will say it could not tell.
            self._einfo = event.raw.decode("latin-1").split()[1:]
            return False
        return isinstance(event, Ok) and self._einfo is not None

    def _detect(self) -> tuple[Detection, list[Notice]]:
        """Tell the dialect from the answers; adopt it (and say so) when configured AUTO.

        When the answers do not settle it, the C-series forms are tried first.
        """
        detection = detect_with_reason(self._ever or "", self._einfo or [])
        if self._configured is not Dialect.AUTO:
            return detection, []
        self.dialect = detection.dialect
        self.dialect_message = detection.message
        if self.dialect is Dialect.AUTO:
            self.dialect = Dialect.BP35C0
        return detection, [Notice(detection.message, warning=detection.dialect is Dialect.AUTO)]

    def _switch_dialect(self, hint: str) -> Notice | None:
        """After SKSCAN's FAIL ER05: switch to the other family once, if it was detected.

        None when the dialect was configured, or has already been switched: then it is wrong.
        """
        if not self._may_switch:
            return None
        self._may_switch = False
        old, self.dialect = self.dialect, other_family(self.dialect)
        self.dialect_message = f"{hint}; switched from {old.value} to {self.dialect.value}"
        return Notice(self.dialect_message, warning=True)


def meter_pan(event: Event) -> PanDescriptor | None:
    """The PAN of an EPANDESC that can be the meter (side 1 is a HAN, never the meter)."""
    if isinstance(event, PanDescriptor) and event.side in (None, 0):
        return event
    return None


def scan_done(event: Event) -> bool:
    """EVENT 22: the module finished the scan."""
    return isinstance(event, SkEvent) and event.code == EventCode.SCAN_DONE


def command_actions(command: str, display: str, seconds: float) -> tuple[Write, StartTimer]:
    """Write ``command`` (shown as ``display`` in logs) and wait ``seconds`` for its answer."""
    write = Write(command.encode("ascii") + b"\r\n", display)
    return write, StartTimer(seconds, f"answer to {display}")


def no_answer_message(display: str, timeout: float) -> str:
    """Why a machine gives up when the module is silent (``display``: the command, masked)."""
    return (
        f"module did not answer {display} within {timeout:g} s "
        "(check the port, baud rate and module power)"
    )
