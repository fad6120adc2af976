"""Settlement slots (コマ): 48 half-hours a day in JST, measured by the meter's own boundaries.

Pure functions and a small planner; no I/O. A slot's energy is the difference of the meter's
cumulative readings at its start and end boundary (EA for import, EB for export), wrap-aware, in
exact integer Wh. A slot that cannot be measured is reported missing, never guessed; a better value
later becomes a new revision of the same slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from gateway.clock import JST

SLOT = timedelta(minutes=30)
#: History 2 (ED + EC) reaches 12 slots back; older gaps need History 1 (E5 + E2/E4) by day.
RECENT_SLOTS = 12


class Source(StrEnum):
    METER_BOUNDARY = "meter_boundary"
    METER_HISTORY = "meter_history"
    MISSING = "missing"


#: Which source wins when two values exist for one slot.
RANK = {Source.MISSING: 0, Source.METER_HISTORY: 1, Source.METER_BOUNDARY: 2}


def slot_start(when: datetime) -> datetime:
    """The start of the slot containing ``when`` (JST)."""
    local = when.astimezone(JST)
    return local.replace(minute=0 if local.minute < 30 else 30, second=0, microsecond=0)


def slots_between(first: datetime, end: datetime) -> list[datetime]:
    """Slot starts from ``first`` (inclusive) while the slot has ended by ``end``."""
    out = []
    cur = slot_start(first)
    while cur + SLOT <= end:
        out.append(cur)
        cur += SLOT
    return out


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), JST)


def iso(when: datetime) -> str:
    """ISO 8601 with the +09:00 offset the market expects."""
    return when.astimezone(JST).isoformat()


@dataclass(frozen=True)
class BoundaryPoint:
    """A meter boundary as the slot engine sees it (values in exact Wh, or None = no data)."""

    at: datetime
    import_wh: int | None
    export_wh: int | None
    modulus_wh: int
    from_history: bool = False


def counter_delta(start: int | None, end: int | None, modulus: int) -> int | None:
    """Energy between two cumulative readings; a counter that wrapped is not a negative slot."""
    if start is None or end is None:
        return None
    if modulus <= 0:
        raise ValueError("modulus must be positive")
    return (end - start) % modulus


@dataclass(frozen=True)
class SlotValue:
    slot_start: datetime
    import_wh: int | None
    export_wh: int | None
    source: Source

    @property
    def complete(self) -> bool:
        return self.import_wh is not None and self.export_wh is not None

    def fields(self) -> dict[str, object]:
        return {
            "slot_start": iso(self.slot_start),
            "import_wh": self.import_wh,
            "export_wh": self.export_wh,
            "source": self.source.value,
        }


def slot_value(start: BoundaryPoint, end: BoundaryPoint) -> SlotValue:
    """The slot between two consecutive boundaries.

    A meter without reverse-flow measurement reports no EB; such a slot has ``export_wh`` None.
    Import and export both missing means the slot is missing.
    """
    if end.at - start.at != SLOT:
        raise ValueError(f"boundaries {start.at} and {end.at} are not one slot apart")
    modulus = end.modulus_wh
    imp = counter_delta(start.import_wh, end.import_wh, modulus)
    exp = counter_delta(start.export_wh, end.export_wh, modulus)
    if imp is None and exp is None:
        source = Source.MISSING
    elif start.from_history or end.from_history:
        source = Source.METER_HISTORY
    else:
        source = Source.METER_BOUNDARY
    return SlotValue(start.at, imp, exp, source)


def missing(start: datetime) -> SlotValue:
    return SlotValue(start, None, None, Source.MISSING)


def improves(
    new: SlotValue, old_source: str, old_import: int | None, old_export: int | None
) -> bool:
    """Whether ``new`` deserves a new revision over what was published.

    A better source, or the same source with more data, wins; equal or worse never replaces.
    """
    old_rank = RANK[Source(old_source)]
    new_rank = RANK[new.source]
    if new.source is Source.MISSING:
        return False
    if new_rank > old_rank:
        return (new.import_wh, new.export_wh) != (old_import, old_export) or old_rank == 0
    if new_rank == old_rank:
        gained = (old_import is None and new.import_wh is not None) or (
            old_export is None and new.export_wh is not None
        )
        return gained
    return False


@dataclass(frozen=True)
class GapPlan:
    """Which history reads fill which missing boundaries."""

    recent_end: datetime | None  # ED value: newest boundary to ask EC for
    recent_count: int
    days: tuple[date, ...]  # E5 values (as dates) for E2/E4


def plan_history(needed: Iterable[datetime], now: datetime, backfill_days: int) -> GapPlan:
    """Boundaries still needed → the fewest meter history reads.

    Boundaries within the last 12 slots come from EC (one read returns up to 12 boundaries,
    newest first, both directions); older ones from E2/E4 by day, back to ``backfill_days``.
    """
    latest = slot_start(now)
    oldest_allowed = day_start(latest.date() - timedelta(days=backfill_days))
    recent: list[datetime] = []
    days: set[date] = set()
    for at in sorted(set(needed)):
        if at > latest or at < oldest_allowed:
            continue
        if latest - at < SLOT * RECENT_SLOTS:
            recent.append(at)
        else:
            days.add(at.date())
    if recent:
        end = max(recent)
        count = int((end - min(recent)) / SLOT) + 1
        return GapPlan(end, count, tuple(sorted(days, reverse=True)))
    return GapPlan(None, 0, tuple(sorted(days, reverse=True)))


def boundaries_needed(
    published: Mapping[datetime, str],
    known: Mapping[datetime, BoundaryPoint],
    first_slot: datetime,
    now: datetime,
) -> list[datetime]:
    """Boundary instants whose reading would complete or improve a slot not yet measured well."""
    need: set[datetime] = set()
    for start in slots_between(first_slot, now):
        source = published.get(start)
        if source in (Source.METER_BOUNDARY.value, Source.METER_HISTORY.value):
            continue
        for at in (start, start + SLOT):
            point = known.get(at)
            if point is None or point.import_wh is None:
                need.add(at)
    return sorted(need)
