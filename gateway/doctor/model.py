"""The doctor's vocabulary: verdicts, one row of the report, and the base of each check group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.config import Config


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass
class CheckResult:
    """One row of the report. ``name`` is stable (scripts match on it); ``detail`` says what was
    found; ``next_step`` what to do about a FAIL or WARN."""

    name: str
    verdict: Verdict
    detail: str
    next_step: str | None = None
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.verdict.value,
            "detail": self.detail,
            "next_step": self.next_step,
            "seconds": round(self.seconds, 3),
            "data": self.data,
        }


class Failed(Exception):
    """A check found a problem: FAIL with this detail and next step."""

    def __init__(self, detail: str, next_step: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.next_step = next_step
        self.data = data or {}


@dataclass
class Outcome:
    """What a check function returns when it did not fail."""

    detail: str
    verdict: Verdict = Verdict.PASS
    next_step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DoctorOptions:
    check_timeout_s: float = 20.0
    join_timeout_s: float = 180.0
    publish_wait_s: float = 3.0
    disk_fail_below: float = 0.05
    disk_warn_below: float = 0.15
    #: Whether the system clock is synchronised (None: cannot tell); the kernel's answer.
    check_clock: Callable[[], bool | None] | None = None


class Checks:
    """A group of checks over one loaded config. ``daemon`` is the running daemon's status
    answer, None when no daemon runs (then the hardware is probed directly)."""

    def __init__(
        self, cfg: Config, options: DoctorOptions, daemon: dict[str, Any] | None = None
    ) -> None:
        self.cfg = cfg
        self.options = options
        self.daemon = daemon
