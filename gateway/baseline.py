"""DR baselines (ERAB guideline "High 4 of 5") and the energy a DR event delivered against them.

Incentives are paid per delivered kWh, so the baseline must be reproducible by anyone holding the
same meter slots: a pure function of the per-slot import history, the list of event days and the
event. Nothing is guessed: a candidate day with a missing slot is skipped (and named), and a
baseline that cannot be built says why instead of returning a number.

Weekday events use the 5 most recent non-event, non-holiday weekdays within the look-back and keep
the 4 with the highest import over the event window; weekend/holiday events use High 2 of 3 over
weekend/holiday days. The same-day adjustment shifts the baseline by the mean (actual − baseline)
over a window shortly before the event. The window's position is configurable (``BaselineConfig``)
because it is the part of the guideline programmes tune most.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from gateway.clock import JST
from gateway.slots import SLOT, day_start


class Direction(StrEnum):
    DOWN = "down"  # 下げDR: less import than the baseline is delivered energy
    UP = "up"  # 上げDR: more import than the baseline is delivered energy


class DayClass(StrEnum):
    WEEKDAY = "weekday"
    HOLIDAY = "holiday"  # Saturday, Sunday, national holiday (and New Year, by default)


@dataclass(frozen=True)
class Event:
    """A DR event: slot-aligned aware start and end (JST days decide the day class)."""

    start: datetime
    end: datetime
    direction: Direction


@dataclass(frozen=True)
class BaselineConfig:
    """Every choice the guideline leaves open.

    The adjustment window is ``adjustment_slots`` slots ending ``adjustment_gap_slots`` slots
    before the event start: by default 3 h ending 2 h before (start − 5 h … start − 2 h), which
    leaves time for the event to be announced without the announcement moving the window.
    ``adjustment_cap`` limits the shift to that fraction of the mean unadjusted baseline over the
    event (0.2 = ±20 %); None = no cap. ``new_year_holidays`` treats Dec 31–Jan 3 (not national
    holidays, apart from Jan 1) as holidays, as most offices and many homes do.
    """

    lookback_days: int = 30
    weekday_pool: int = 5
    weekday_keep: int = 4
    holiday_pool: int = 3
    holiday_keep: int = 2
    adjust: bool = True
    adjustment_slots: int = 6
    adjustment_gap_slots: int = 4
    adjustment_cap: float | None = None
    new_year_holidays: bool = True


@dataclass(frozen=True)
class SkippedDay:
    """A day inside the look-back that was not a candidate, and why."""

    day: date
    reason: str


@dataclass(frozen=True)
class SlotResult:
    """One event slot. Energies in Wh; ``delivered_wh`` is signed (negative = the opposite)."""

    start: datetime
    baseline_wh: float | None
    adjusted_wh: float | None
    actual_wh: int | None
    delivered_wh: float | None


@dataclass(frozen=True)
class BaselineResult:
    """The baseline, the adjustment and the performance of one event.

    ``ok`` False means no baseline could be built; ``reason`` says why and the slots carry only
    the actual values. Totals are None unless every event slot has its actual value (a later,
    better slot revision may fill the gap; a partial sum would be paid wrongly).
    """

    event: Event
    day_class: DayClass | None
    method: str
    candidates: tuple[date, ...]
    used_days: tuple[date, ...]
    skipped: tuple[SkippedDay, ...]
    adjustment_raw_wh: float | None
    adjustment_wh: float | None
    slots: tuple[SlotResult, ...]
    baseline_total_wh: float | None
    adjusted_total_wh: float | None
    actual_total_wh: int | None
    delivered_total_wh: float | None
    ok: bool
    reason: str | None
    notes: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Calendar


@lru_cache(maxsize=64)
def _national_holidays(year: int) -> dict[date, str]:
    # Imported here: the calendar tables cost the daemon ~4 MB of memory and are needed only
    # when a DR report is computed, not while the gateway idles.
    import holidays

    return dict(holidays.country_holidays("JP", years=year).items())


def holiday_name(day: date, *, new_year: bool = True) -> str | None:
    """The Japanese holiday on ``day`` (national, substitute, citizens'), or the New Year break."""
    name = _national_holidays(day.year).get(day)
    if name is not None:
        return name
    if new_year and ((day.month == 12 and day.day == 31) or (day.month == 1 and day.day <= 3)):
        return "New Year holidays"
    return None


def day_class(day: date, *, new_year: bool = True) -> DayClass:
    if day.weekday() >= 5 or holiday_name(day, new_year=new_year) is not None:
        return DayClass.HOLIDAY
    return DayClass.WEEKDAY


# --------------------------------------------------------------------------------------------
# The baseline


def compute(
    history: Mapping[datetime, int | None],
    event_days: Iterable[date],
    event: Event,
    config: BaselineConfig = BaselineConfig(),
) -> BaselineResult:
    """Baseline, same-day adjustment and delivered energy of ``event``.

    ``history`` maps slot starts (aware) to import Wh (None = missing); it must hold the
    look-back days and the event day. ``event_days`` are days with any DR event (the event's own
    day may be among them).
    """
    problem = _event_problem(event) or _config_problem(config)
    if problem is not None:
        return _failed(event, None, "", (), (), problem, history, [])
    local_start = event.start.astimezone(JST)
    event_day = local_start.date()
    origin = day_start(event_day)
    event_offsets = _offsets(local_start - origin, event.end - event.start)
    window_offsets: list[timedelta] = []
    if config.adjust and config.adjustment_slots > 0:
        first = (
            local_start - origin - SLOT * (config.adjustment_gap_slots + config.adjustment_slots)
        )
        window_offsets = _offsets(first, SLOT * config.adjustment_slots)

    cls = day_class(event_day, new_year=config.new_year_holidays)
    weekday = cls is DayClass.WEEKDAY
    pool = config.weekday_pool if weekday else config.holiday_pool
    keep = config.weekday_keep if weekday else config.holiday_keep
    method = f"high_{keep}_of_{pool}"
    excluded = set(event_days)
    needed = event_offsets + window_offsets

    candidates: list[date] = []
    skipped: list[SkippedDay] = []
    for back in range(1, config.lookback_days + 1):
        if len(candidates) == pool:
            break
        day = event_day - timedelta(days=back)
        why = _not_candidate(day, cls, excluded, history, needed, config)
        if why is None:
            candidates.append(day)
        else:
            skipped.append(SkippedDay(day, why))
    if len(candidates) < pool:
        reason = (
            f"only {len(candidates)} of the {pool} {cls.value} days needed were found in the "
            f"{config.lookback_days} days before {event_day.isoformat()}"
        )
        return _failed(event, cls, method, candidates, skipped, reason, history, event_offsets)

    def demand(day: date) -> int:
        return sum(_value(history, day_start(day) + off) for off in event_offsets)

    # Highest demand first; a tie goes to the more recent day (candidates are newest first).
    ranked = sorted(candidates, key=demand, reverse=True)
    used = ranked[:keep]

    def baseline_at(offset: timedelta) -> float:
        return sum(_value(history, day_start(day) + offset) for day in used) / len(used)

    baseline = [baseline_at(off) for off in event_offsets]
    notes: list[str] = []
    raw, shift = _adjustment(history, origin, window_offsets, baseline, baseline_at, config, notes)

    slots: list[SlotResult] = []
    for off, base in zip(event_offsets, baseline, strict=True):
        start = origin + off
        actual = history.get(start)
        adjusted = max(0.0, base + shift)
        delivered = None if actual is None else _delivered(event.direction, adjusted, actual)
        slots.append(SlotResult(start, base, adjusted, actual, delivered))
    missing = [s.start for s in slots if s.actual_wh is None]
    if missing:
        notes.append("no totals: actual import missing for " + _times(missing))
    actual_total = None if missing else sum(s.actual_wh or 0 for s in slots)
    delivered_total = None if missing else sum(s.delivered_wh or 0.0 for s in slots)
    return BaselineResult(
        event=event,
        day_class=cls,
        method=method,
        candidates=tuple(candidates),
        used_days=tuple(sorted(used, reverse=True)),
        skipped=tuple(skipped),
        adjustment_raw_wh=raw,
        adjustment_wh=shift if raw is not None else None,
        slots=tuple(slots),
        baseline_total_wh=sum(baseline),
        adjusted_total_wh=sum(s.adjusted_wh or 0.0 for s in slots),
        actual_total_wh=actual_total,
        delivered_total_wh=delivered_total,
        ok=True,
        reason=None,
        notes=tuple(notes),
    )


def _event_problem(event: Event) -> str | None:
    for name, when in (("start", event.start), ("end", event.end)):
        if when.tzinfo is None or when.utcoffset() is None:
            return f"event {name} is not an aware datetime"
        if when.second or when.microsecond or when.astimezone(JST).minute % 30:
            return f"event {name} {when.isoformat()} is not on a 30-minute slot boundary"
    direction: object = event.direction  # a plain string from a payload is still checked
    if direction not in (Direction.DOWN, Direction.UP):
        return f"unknown event direction {direction!r}"
    if event.end <= event.start:
        return "event ends before it starts"
    if event.end - event.start > timedelta(days=1):
        return "event is longer than a day"
    return None


def _config_problem(config: BaselineConfig) -> str | None:
    bad = [
        name
        for name, ok in (
            ("lookback_days", config.lookback_days >= 1),
            ("weekday_pool/weekday_keep", 1 <= config.weekday_keep <= config.weekday_pool),
            ("holiday_pool/holiday_keep", 1 <= config.holiday_keep <= config.holiday_pool),
            ("adjustment_slots", config.adjustment_slots >= 0),
            ("adjustment_gap_slots", config.adjustment_gap_slots >= 0),
            ("adjustment_cap", config.adjustment_cap is None or config.adjustment_cap >= 0),
        )
        if not ok
    ]
    return "invalid baseline config: " + ", ".join(bad) if bad else None


def _offsets(first: timedelta, length: timedelta) -> list[timedelta]:
    """Slot offsets from a day's midnight, from ``first`` for ``length``."""
    return [first + SLOT * i for i in range(int(length / SLOT))]


def _value(history: Mapping[datetime, int | None], at: datetime) -> int:
    value = history.get(at)
    assert value is not None  # only called for days checked complete
    return value


def _not_candidate(
    day: date,
    cls: DayClass,
    excluded: set[date],
    history: Mapping[datetime, int | None],
    needed: list[timedelta],
    config: BaselineConfig,
) -> str | None:
    """Why ``day`` cannot be a candidate, or None if it can."""
    if day in excluded:
        return "event day"
    name = holiday_name(day, new_year=config.new_year_holidays)
    if day_class(day, new_year=config.new_year_holidays) is not cls:
        if cls is DayClass.WEEKDAY:
            return f"holiday ({name})" if name else "weekend"
        return "weekday"
    origin = day_start(day)
    gaps = [origin + off for off in needed if history.get(origin + off) is None]
    if gaps:
        return f"missing {len(gaps)} slot(s): {_times(gaps)}"
    return None


def _adjustment(
    history: Mapping[datetime, int | None],
    origin: datetime,
    window: list[timedelta],
    baseline: list[float],
    baseline_at: Callable[[timedelta], float],
    config: BaselineConfig,
    notes: list[str],
) -> tuple[float | None, float]:
    """(raw shift, applied shift) in Wh per slot; (None, 0) when no adjustment is made."""
    if not window:
        return None, 0.0
    actual = [history.get(origin + off) for off in window]
    missing = [origin + off for off, a in zip(window, actual, strict=True) if a is None]
    if missing:
        notes.append("same-day adjustment skipped: actual import missing for " + _times(missing))
        return None, 0.0
    diffs = [float(a or 0) - baseline_at(off) for off, a in zip(window, actual, strict=True)]
    raw = sum(diffs) / len(diffs)
    shift = raw
    if config.adjustment_cap is not None:
        limit = config.adjustment_cap * sum(baseline) / len(baseline)
        shift = max(-limit, min(limit, raw))
        if shift != raw:
            notes.append(f"same-day adjustment {raw:+.1f} Wh capped to {shift:+.1f} Wh")
    return raw, shift


def _delivered(direction: Direction, adjusted: float, actual: int) -> float:
    return adjusted - actual if direction == Direction.DOWN else actual - adjusted


def _times(starts: list[datetime]) -> str:
    return ", ".join(s.astimezone(JST).strftime("%m-%d %H:%M") for s in starts)


def _failed(
    event: Event,
    cls: DayClass | None,
    method: str,
    candidates: Iterable[date],
    skipped: Iterable[SkippedDay],
    reason: str,
    history: Mapping[datetime, int | None],
    offsets: list[timedelta],
) -> BaselineResult:
    origin = day_start(event.start.astimezone(JST).date()) if offsets else None
    slots = tuple(
        SlotResult(origin + off, None, None, history.get(origin + off), None)
        for off in offsets
        if origin is not None
    )
    return BaselineResult(
        event=event,
        day_class=cls,
        method=method,
        candidates=tuple(candidates),
        used_days=(),
        skipped=tuple(skipped),
        adjustment_raw_wh=None,
        adjustment_wh=None,
        slots=slots,
        baseline_total_wh=None,
        adjusted_total_wh=None,
        actual_total_wh=None,
        delivered_total_wh=None,
        ok=False,
        reason=reason,
        notes=(),
    )
