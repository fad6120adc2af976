"""Rule 4: fail-safe on stale meter data, left only after fresh data has lasted a while.

The meter is the only thing that sees what the whole house does to the grid; without it neither
the export limit nor the breaker limit can be enforced, so the interlock forces nothing. The
hysteresis keeps a meter that flickers between answering and not from toggling a battery between
automatic and forced modes. Pure functions: the caller keeps the state (``Decision.failsafe``) and
should call ``update_failsafe`` on every meter reading so the hysteresis clock starts promptly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from gateway.interlock.model import FailsafeState, Limits, Measurements


@dataclass(frozen=True)
class Freshness:
    fresh: bool
    detail: str


def finite(value: object) -> float | None:
    """A real number, or None for anything else (None, NaN, inf, bool, strings...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def aware(value: object) -> datetime | None:
    """An aware datetime, or None: a naive time cannot be compared with the clock safely."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        return None
    return value


def age_s(at: object, now: datetime) -> float | None:
    """Seconds since ``at``; None when ``at`` is unusable."""
    when = aware(at)
    if when is None:
        return None
    return (now - when).total_seconds()


def recent(at: object, now: datetime, max_age_s: float, future_s: float) -> bool:
    """Whether a reading taken at ``at`` is usable now (clock skew up to ``future_s`` tolerated)."""
    age = age_s(at, now)
    return age is not None and -future_s <= age <= max_age_s


def _positive(value: object) -> float | None:
    number = finite(value)
    return number if number is not None and number > 0 else None


def meter_freshness(m: Measurements, limits: Limits, now: datetime) -> Freshness:
    """Fresh = a finite meter power and a currents reading, both newer than ``meter_stale_s``.

    Current *values* may still be unknown (the breaker rule handles that); a currents reading
    that is old or absent means the meter has gone quiet.
    """
    clock = aware(now)
    stale_s = _positive(limits.meter_stale_s)
    future_s = finite(limits.future_tolerance_s)
    if clock is None:
        return Freshness(False, "clock is not an aware datetime")
    if stale_s is None or future_s is None or future_s < 0:
        return Freshness(False, "meter_stale_s / future_tolerance_s are not valid numbers")
    if finite(m.meter_power_w) is None:
        return Freshness(False, "meter power unknown")
    if not recent(m.meter_power_at, clock, stale_s, future_s):
        return Freshness(False, _age_text("meter power", m.meter_power_at, clock, stale_s))
    if not recent(m.currents_at, clock, stale_s, future_s):
        return Freshness(False, _age_text("meter currents", m.currents_at, clock, stale_s))
    return Freshness(True, "meter fresh")


def _age_text(what: str, at: object, now: datetime, stale_s: float) -> str:
    age = age_s(at, now)
    if age is None:
        return f"{what} has no usable timestamp"
    if age < 0:
        return f"{what} timestamp is {-age:.0f} s in the future"
    return f"{what} is {age:.0f} s old (limit {stale_s:g} s)"


def update_failsafe(
    state: FailsafeState, m: Measurements, limits: Limits, now: datetime
) -> FailsafeState:
    """The next fail-safe state: enter at once on stale data, leave after fresh data lasted.

    Leaving needs ``failsafe_hysteresis_s`` of continuously fresh observations, counted from the
    first call that saw fresh data again; a clock that steps backwards restarts that count.
    """
    given: object = state  # typed callers cannot pass anything else; others get the default
    if not isinstance(given, FailsafeState):
        state = FailsafeState()
    clock = aware(now)
    fresh = meter_freshness(m, limits, now).fresh
    if not fresh or clock is None:
        since = aware(state.since) if state.active else None
        return FailsafeState(active=True, since=since or clock, fresh_since=None)
    if not state.active:
        return state if state.fresh_since is None and state.since is None else FailsafeState(False)
    hysteresis = finite(limits.failsafe_hysteresis_s)
    fresh_since = aware(state.fresh_since)
    if fresh_since is None or fresh_since > clock:
        fresh_since = clock
    held_s = (clock - fresh_since).total_seconds()
    if hysteresis is not None and hysteresis >= 0 and held_s >= hysteresis:
        return FailsafeState(active=False)
    return FailsafeState(active=True, since=aware(state.since), fresh_since=fresh_since)
