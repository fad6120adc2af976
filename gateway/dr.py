"""DR performance reports: baseline ("High 4 of 5"), actual and delivered energy per event.

After a command has ended and its slots are settled, the report is computed from the store's own
slot history (the meter's settlement values, never device estimates) and published on
``<p>/dr/report``; ``chisan dr report ID`` prints the same document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from gateway.baseline import BaselineConfig, Direction, Event, compute
from gateway.clock import JST, Clock
from gateway.logs import get_logger
from gateway.slots import SLOT, iso

#: Command kinds and the direction their delivered energy is counted in.
DIRECTIONS = {
    "battery_discharge": Direction.DOWN,
    "battery_standby": Direction.DOWN,
    "aircon_saving": Direction.DOWN,
    "battery_charge": Direction.UP,
    "water_heater_heat": Direction.UP,
}
#: Wait this long after an event's end so its last slot is settled (boundary + read delay).
REPORT_DELAY = timedelta(minutes=20)
REPORTED_KEY = "dr.reported.{id}.{rev}"


def history(store: Any, first: date, last: date) -> dict[datetime, int | None]:
    """Import Wh per slot from the newest revision of each settled record."""
    out: dict[datetime, int | None] = {}
    for rec in store.slot_records(first, last):  # ordered by seq: later revisions win
        value = rec.get("import_wh")
        out[datetime.fromisoformat(str(rec["slot_start"]))] = value
    return out


def event_days(store: Any) -> set[date]:
    """Days with any DR event that acted (started or completed), for the baseline exclusion."""
    days: set[date] = set()
    for cmd in store.commands(states=["started", "completed"]):
        doc = cmd.command
        if doc.get("test") or doc.get("kind") not in DIRECTIONS:
            continue
        start = datetime.fromisoformat(str(doc["start"])).astimezone(JST)
        end = datetime.fromisoformat(str(doc["end"])).astimezone(JST)
        day = start.date()
        while day <= (end - timedelta(seconds=1)).date():
            days.add(day)
            day += timedelta(days=1)
    return days


def report(store: Any, cmd_id: str, config: BaselineConfig | None = None) -> dict[str, Any]:
    """The performance report of command ``cmd_id`` (its newest stored revision)."""
    stored = store.get_command(cmd_id)
    if stored is None:
        raise KeyError(f"no command {cmd_id!r} in the store")
    doc = stored.command
    kind = str(doc.get("kind"))
    direction = DIRECTIONS.get(kind)
    if direction is None:
        raise ValueError(f"command kind {kind!r} has no DR performance (curtailment or cancel)")
    start = datetime.fromisoformat(str(doc["start"]))
    end = datetime.fromisoformat(str(doc["end"]))
    cfg = config or BaselineConfig()
    first = start.astimezone(JST).date() - timedelta(days=cfg.lookback_days + 1)
    hist = history(store, first, end.astimezone(JST).date())
    result = compute(hist, event_days(store), Event(start, end, direction), cfg)
    return {
        "id": stored.id,
        "rev": stored.rev,
        "kind": kind,
        "direction": direction.value,
        "start": iso(start),
        "end": iso(end),
        "method": result.method,
        "ok": result.ok,
        "reason": result.reason,
        "baseline_days": [d.isoformat() for d in result.used_days],
        "adjustment_wh": _round(result.adjustment_wh),
        "baseline_wh": _round(result.adjusted_total_wh),
        "actual_wh": result.actual_total_wh,
        "delivered_wh": _round(result.delivered_total_wh),
        "slots": [
            {
                "slot_start": iso(s.start),
                "baseline_wh": _round(s.adjusted_wh),
                "actual_wh": s.actual_wh,
                "delivered_wh": _round(s.delivered_wh),
            }
            for s in result.slots
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class DrReporter:
    """Publishes each finished event's report once, when its slots are settled."""

    store: Any
    clock: Clock
    publish: Callable[[dict[str, Any]], Awaitable[bool]]
    name: str = "dr-report"

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.dr")

    async def run(self) -> None:
        while True:
            await self.once()
            await self.clock.sleep(60)

    async def once(self) -> int:
        now = self.clock.now()
        sent = 0
        for cmd in self.store.commands(states=["completed"]):
            doc = cmd.command
            if doc.get("test") or doc.get("kind") not in DIRECTIONS:
                continue
            key = REPORTED_KEY.format(id=cmd.id, rev=cmd.rev)
            end = datetime.fromisoformat(str(doc["end"]))
            if now < end + REPORT_DELAY or self.store.get_json(key):
                continue
            try:
                body = await asyncio.to_thread(report, self.store, cmd.id)
            except (KeyError, ValueError) as exc:
                self.log.warning("no DR report", id=cmd.id, reason=str(exc))
                self.store.put_json(key, {"skipped": str(exc)})
                continue
            if await self.publish(body):
                self.store.put_json(key, {"published_at": iso(now)})
                sent += 1
                self.log.info("DR report published", id=cmd.id, delivered_wh=body["delivered_wh"])
        return sent


__all__ = ["SLOT", "DrReporter", "event_days", "history", "report"]
