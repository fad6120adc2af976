"""The demo's closing figures, computed from what the reference backend stored and was told.

Energy comes from the settled slot records (newest revision per slot, the market's view). DR
performance is judged twice with the same baseline code (gateway/baseline.py, High 4 of 5): by the
gateway, per command, in its ``dr/report``; and by the market, per DR event (the union of one
direction's command windows, since commands that overlap act on the same meter and their
reports would count the same energy twice), from the records it stored. Clamps come from the
``clamped`` acknowledgements (one per command revision, by rule id).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.baseline import Direction, Event, compute
from gateway.demo.backend import ReferenceBackend, SentCommand
from gateway.dr import DIRECTIONS
from gateway.slots import iso


@dataclass
class CommandSummary:
    id: str
    label: str
    kind: str
    start: str
    end: str
    power_w: int | None
    statuses: list[str]
    delivered_wh_device: float | None
    report: dict[str, Any] | None


@dataclass
class EventSummary:
    """One DR event as the market settles it from the slot records it holds."""

    label: str
    direction: str
    start: str
    end: str
    commands: list[str]
    ok: bool
    reason: str | None
    baseline_wh: float | None
    actual_wh: int | None
    delivered_wh: float | None


@dataclass
class Summary:
    site: str
    broker: str
    mqtt_protocol: str
    battery: str
    speed: float
    wall_s: float
    sim_start: str
    sim_end: str
    interrupted: bool
    slots_published: int
    slots_acked: int
    gateway_records: int
    gateway_unacked: int
    day_slots: int
    day_slots_missing: int
    history_slots: int
    import_wh: int
    export_wh: int
    #: PV generation in the day's slot records (their ``pv_wh``: every inverter's counter).
    pv_wh: int
    commands_sent: int
    commands_acked: int
    commands: list[CommandSummary] = field(default_factory=list)
    events: list[EventSummary] = field(default_factory=list)
    #: Delivered energy of the reported events by direction ("up": 上げDR, "down": 下げDR).
    dr_delivered_wh: dict[str, float] = field(default_factory=dict)
    clamps: dict[str, int] = field(default_factory=dict)
    alarms: int = 0
    #: Each PV inverter's generation over the day, from its own counter as the gateway read it.
    pv_device_wh: dict[str, int] = field(default_factory=dict)
    #: The demo site's signing key (PEM), so a script can verify the records' chain.
    site_public_key: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise(
    backend: ReferenceBackend,
    *,
    gateway_records: int,
    gateway_unacked: int,
    live_from: datetime,
    sim_end: datetime,
    **run: Any,
) -> Summary:
    newest = backend.newest_by_slot()
    day = [r for r in newest.values() if backend.is_live(r)]
    history = len(newest) - len(day)
    settled = [r for r in day if r.get("source") != "missing"]
    clamps: Counter[str] = Counter()
    commands: list[CommandSummary] = []
    for sent in backend.commands.values():
        for ack in sent.acks:
            if ack.get("status") == "clamped":
                clamps[str(ack.get("clamped_by"))] += 1
        completed = [a for a in sent.acks if a.get("status") == "completed"]
        p = sent.dispatch.plan
        commands.append(
            CommandSummary(
                id=sent.dispatch.id,
                label=p.label,
                kind=p.kind,
                start=sent.doc["start"],
                end=sent.doc["end"],
                power_w=p.power_w,
                statuses=list(sent.statuses),
                delivered_wh_device=completed[-1].get("delivered_wh") if completed else None,
                report=sent.report,
            )
        )
    events = market_events(backend, newest)
    delivered: dict[str, float] = {}
    for e in events:
        if e.ok and e.delivered_wh is not None:
            delivered[e.direction] = round(delivered.get(e.direction, 0.0) + e.delivered_wh, 1)
    return Summary(
        site=backend.site,
        sim_start=live_from.isoformat(),
        sim_end=sim_end.isoformat(),
        slots_published=len(backend.records),
        slots_acked=sum(1 for s in backend.records if s <= backend.acked_upto),
        gateway_records=gateway_records,
        gateway_unacked=gateway_unacked,
        day_slots=len(day),
        day_slots_missing=len(day) - len(settled),
        history_slots=history,
        import_wh=sum(int(r.get("import_wh") or 0) for r in settled),
        export_wh=sum(int(r.get("export_wh") or 0) for r in settled),
        pv_wh=sum(int(r.get("pv_wh") or 0) for r in day),
        commands_sent=len(commands),
        commands_acked=sum(1 for c in commands if c.statuses),
        commands=commands,
        events=events,
        dr_delivered_wh=delivered,
        clamps=dict(sorted(clamps.items())),
        alarms=sum(1 for a in backend.alarms if a.get("active")),
        **run,
    )


def market_events(
    backend: ReferenceBackend, newest: dict[str, dict[str, Any]]
) -> list[EventSummary]:
    """Each day's commands of one direction as one event, judged from the stored slots."""
    history: dict[datetime, int | None] = {
        datetime.fromisoformat(k): r.get("import_wh") for k, r in newest.items()
    }
    groups: dict[tuple[date, str], list[SentCommand]] = {}
    for sent in backend.commands.values():
        direction = DIRECTIONS.get(sent.dispatch.plan.kind)
        if direction is not None:
            groups.setdefault((sent.dispatch.day, direction.value), []).append(sent)
    out: list[EventSummary] = []
    for (day, way), sents in sorted(
        groups.items(), key=lambda item: min(s.dispatch.start for s in item[1])
    ):
        start = min(s.dispatch.start for s in sents)
        end = max(s.dispatch.end for s in sents)
        event = Event(start, end, Direction(way))
        result = compute(history, {day}, event)
        settled = result.actual_total_wh is not None
        out.append(
            EventSummary(
                label=sents[0].dispatch.plan.label,
                direction=way,
                start=iso(start),
                end=iso(end),
                commands=[s.dispatch.id for s in sents],
                ok=result.ok and settled,
                reason=result.reason if not result.ok else None if settled else "not settled yet",
                baseline_wh=_r(result.adjusted_total_wh),
                actual_wh=result.actual_total_wh,
                delivered_wh=_r(result.delivered_total_wh),
            )
        )
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def render(summary: Summary, console: Console) -> None:
    s = summary
    stop = "interrupted" if s.interrupted else "finished"
    console.print(
        f"\n[bold]chisan demo {stop}[/bold]: {s.sim_start[:16]} → {s.sim_end[:16]} JST "
        f"simulated in {s.wall_s:.0f} s (×{s.speed:g}), broker {s.broker} "
        f"(MQTT {s.mqtt_protocol}), battery on {s.battery}"
    )
    t = Table(title="summary", show_header=False, title_justify="left")
    t.add_column("what")
    t.add_column("value")
    t.add_row(
        "slot records",
        f"{s.slots_published} published, {s.slots_acked} acked "
        f"(gateway: {s.gateway_records} signed, {s.gateway_unacked} unacked)",
    )
    t.add_row(
        "demo day",
        f"{s.day_slots} slots settled ({s.day_slots_missing} missing), "
        f"{s.history_slots} earlier slots backfilled from the meter's history",
    )
    t.add_row("energy bought (import)", f"{s.import_wh} Wh")
    t.add_row("energy sold (export)", f"{s.export_wh} Wh")
    per_pv = ", ".join(f"{k} {v} Wh" for k, v in s.pv_device_wh.items())
    t.add_row("PV generated (slot records)", f"{s.pv_wh} Wh" + (f" ({per_pv})" if per_pv else ""))
    t.add_row("DR commands", f"{s.commands_sent} sent, {s.commands_acked} acknowledged")
    for c in s.commands:
        line = f"{' → '.join(c.statuses) or 'no ack'}"
        r = c.report
        if r and r.get("ok"):
            line += (
                f"; delivered {r.get('delivered_wh')} Wh vs baseline {r.get('baseline_wh')} Wh"
                f" (actual {r.get('actual_wh')} Wh)"
            )
        elif r:
            line += f"; no baseline: {r.get('reason')}"
        else:
            line += "; report pending (20 min after the end)"
        t.add_row(f"  {c.label} {c.kind} {c.start[11:16]}–{c.end[11:16]}", line)
    for e in s.events:
        if e.ok:
            text = (
                f"delivered {e.delivered_wh} Wh: actual {e.actual_wh} Wh vs baseline "
                f"{e.baseline_wh} Wh"
            )
        else:
            text = str(e.reason)
        t.add_row(f"  {e.label} event {e.start[11:16]}–{e.end[11:16]} (market)", text)
    names = {"up": "上げDR", "down": "下げDR"}
    delivered = ", ".join(f"{names.get(k, k)} {v} Wh" for k, v in s.dr_delivered_wh.items())
    t.add_row("DR delivered vs baseline", delivered or "no report yet")
    clamps = ", ".join(f"{k} ×{v}" for k, v in s.clamps.items()) or "none"
    t.add_row("interlock clamps", clamps)
    t.add_row("alarms raised", str(s.alarms))
    console.print(t)
