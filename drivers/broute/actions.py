"""Outputs shared by the join machine and the session: what the async shell must do for them.

The pure cores never touch the port or the clock; they hand back these values and the shell
performs them in order. Keeping them in one place means one ``match`` in the shell serves both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Write:
    """Bytes to write to the serial port, exactly as given.

    Before writing, the shell passes ``data`` to ``LineParser.command_sent`` so that the module's
    echo of it (while echo is still on) is recognised rather than mistaken for output.
    ``display`` is the same command with the B-route ID and password masked, safe to log.
    """

    data: bytes
    display: str


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm the single timer of the machine for ``seconds``, replacing any timer already armed.

    When it fires the shell feeds :class:`TimerExpired` (or calls ``timeout()``); one slot is
    enough because the
    machine waits for one thing at a time, and replacing makes a stale timer impossible.
    """

    seconds: float
    purpose: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a person running the gateway should be told (logged by the shell)."""

    message: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class TimerExpired:
    """Fed back to a machine when the timer of its last :class:`StartTimer` ran out."""
