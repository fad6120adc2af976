"""The reference backend's DR day: what a market would ask a PV + storage home to do.

Around noon the neighbourhood's PV floods the grid, so the market buys consumption (上げDR): the
battery charges harder than the surplus alone would push it and the EcoCute heats its tank by day
instead of at night. In the evening peak it buys supply (下げDR): the battery discharges beyond
the house's own load and exports the rest. Together the midday loads exceed the PV surplus, so
the 上げDR shows as import above the baseline. The plan is pure (times of day); :func:`due`
turns it into concrete windows as the simulated clock passes each command's issue time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from gateway.clock import JST
from gateway.slots import slot_start

#: Commands go out this long before their window, as a backend publishing its dispatch would.
LEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class Planned:
    key: str
    label: str
    kind: str
    start: time
    end: time
    power_w: int | None = None
    allow_export: bool = False


DAY_PLAN: tuple[Planned, ...] = (
    Planned("up-battery", "上げDR", "battery_charge", time(10, 30), time(13, 30), 3000),
    Planned("up-water", "上げDR", "water_heater_heat", time(11, 0), time(13, 0), 1300),
    Planned(
        "down-battery",
        "下げDR",
        "battery_discharge",
        time(17, 0),
        time(20, 0),
        4000,
        allow_export=True,
    ),
)


@dataclass(frozen=True)
class Dispatch:
    """One planned command made concrete for a day: slot-aligned, aware JST times."""

    plan: Planned
    day: date
    start: datetime
    end: datetime

    @property
    def id(self) -> str:
        return f"demo-{self.day:%Y%m%d}-{self.plan.key}"


def _at(day: date, t: time) -> datetime:
    return datetime.combine(day, t, JST)


def due(now: datetime, sent: set[str], plan: Iterable[Planned] = DAY_PLAN) -> list[Dispatch]:
    """The commands to publish at ``now`` that have not been (ids in ``sent``).

    A command whose window has already begun (the demo started late in the day) is sent for the
    rest of its window from the current slot; one whose window is over is never sent.
    """
    local = now.astimezone(JST)
    out: list[Dispatch] = []
    for day in (local.date() - timedelta(days=1), local.date()):
        for p in plan:
            start, end = _at(day, p.start), _at(day, p.end)
            if end <= start:
                end += timedelta(days=1)
            d = Dispatch(p, day, start, end)
            if d.id in sent or local < start - LEAD or local >= end:
                continue
            if local > start:
                d = Dispatch(p, day, max(start, slot_start(local)), end)
            out.append(d)
    return out
