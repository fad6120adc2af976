"""The demo's closing figures, computed from what the reference backend stored and was told.

Energy comes from the settled slot records (newest revision per slot, the market's view), DR
performance from the gateway's own ``dr/report`` (High 4 of 5 baseline, gateway/dr.py), clamps
from the ``clamped`` acknowledgements (one per command revision, by rule id).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.demo.backend import ReferenceBackend


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
    commands_sent: int
    commands_acked: int
    commands: list[CommandSummary] = field(default_factory=list)
    dr_delivered_wh: float = 0.0
    clamps: dict[str, int] = field(default_factory=dict)
    alarms: int = 0
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
    delivered = sum(
        float(c.report["delivered_wh"])
        for c in commands
        if c.report and c.report.get("ok") and c.report.get("delivered_wh") is not None
    )
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
        commands_sent=len(commands),
        commands_acked=sum(1 for c in commands if c.statuses),
        commands=commands,
        dr_delivered_wh=round(delivered, 1),
        clamps=dict(sorted(clamps.items())),
        alarms=sum(1 for a in backend.alarms if a.get("active")),
        **run,
    )


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
    t.add_row("DR delivered vs baseline", f"{s.dr_delivered_wh} Wh")
    clamps = ", ".join(f"{k} ×{v}" for k, v in s.clamps.items()) or "none"
    t.add_row("interlock clamps", clamps)
    t.add_row("alarms raised", str(s.alarms))
    console.print(t)
