"""What the operator watches: a live console dashboard on a terminal, plain lines elsewhere.

The dashboard shows the power flows as the gateway reads them (meter, PV, battery, house), the
latest settled slots and whether the backend acknowledged them, the DR commands with every status
the gateway reported, and a tail of events. Without a terminal (CI logs, pipes) each event is one
line and the flows are printed once per simulated hour.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gateway.demo.backend import ReferenceBackend

STYLES = {
    "slot": "cyan",
    "cmd": "magenta",
    "ack": "magenta",
    "report": "bold green",
    "alarm": "red",
    "warn": "yellow",
    "info": "dim",
}


@dataclass
class Flows:
    """Power in W as the gateway last read it (None: not read yet)."""

    meter_w: float | None = None
    pv_w: float | None = None
    battery_w: float | None = None
    soc_pct: float | None = None
    water_heater: str | None = None
    #: Each PV inverter's own power (``pv_w`` is their sum).
    pv_devices: dict[str, float | None] = field(default_factory=dict)

    @property
    def pv_text(self) -> str:
        if len(self.pv_devices) < 2:
            return _w(self.pv_w)
        parts = " + ".join(f"{name} {_w(w)}" for name, w in self.pv_devices.items())
        return f"{_w(self.pv_w)} ({parts})"

    @property
    def house_w(self) -> float | None:
        if self.meter_w is None:
            return None
        return self.meter_w + (self.pv_w or 0.0) - (self.battery_w or 0.0)  # incl. the EcoCute


def _w(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+,.0f} W" if signed else f"{value:,.0f} W"


@dataclass
class DemoView:
    console: Console
    backend: ReferenceBackend
    now: Callable[[], datetime]
    flows: Callable[[], Flows]
    header: str
    deadline: float
    live: bool
    history_seen: int = 0
    events: deque[tuple[str, str, str]] = field(default_factory=lambda: deque(maxlen=12))

    def __post_init__(self) -> None:
        self._live: Live | None = None
        self._last_hour: int | None = None

    # ------------------------------------------------------------------ events

    def feed(self, kind: str, text: str) -> None:
        stamp = f"{self.now():%H:%M}"
        if kind == "history":
            self.history_seen += 1
            return
        self.events.append((stamp, kind, text))
        if not self.live:
            self.console.print(f"{stamp} {text}", markup=False, highlight=False)

    def tick(self) -> None:
        """Called a few times a second: refresh the dashboard, or print the hourly flows."""
        if self._live is not None:
            self._live.update(self.render())
            return
        now = self.now()
        if self._last_hour != now.hour:
            self._last_hour = now.hour
            f = self.flows()
            self.console.print(
                f"{now:%H:%M} flows: meter {_w(f.meter_w, True)}, PV {f.pv_text}, "
                f"battery {_w(f.battery_w, True)} SOC "
                f"{'—' if f.soc_pct is None else f'{f.soc_pct:.0f} %'}, "
                f"EcoCute {f.water_heater or '—'}, house {_w(f.house_w)}; "
                f"{len(self.backend.records)} records stored, acked up to seq "
                f"{self.backend.acked_upto}",
                markup=False,
                highlight=False,
            )

    def __enter__(self) -> DemoView:
        if self.live:
            self._live = Live(self.render(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        else:
            self.console.print(self.header, markup=False, highlight=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(None, None, None)
            self._live = None

    # ------------------------------------------------------------------ dashboard

    def render(self) -> Group:
        now = self.now()
        left = max(0.0, self.deadline - time.monotonic())
        title = Text.assemble(
            (f"{now:%Y-%m-%d %H:%M} JST", "bold"), f"  ·  {left:.0f} s left  ·  ", self.header
        )
        return Group(
            Panel(title, expand=True),
            self._flows_table(),
            self._slots_table(),
            self._commands_table(),
            self._events_panel(),
        )

    def _flows_table(self) -> Table:
        f = self.flows()
        t = Table(title="power flows (as the gateway reads them)", title_justify="left")
        for col in ("grid (+ buy / − sell)", "PV", "battery (+ charge)", "SOC", "EcoCute", "house"):
            t.add_column(col, justify="right")
        t.add_row(
            _w(f.meter_w, True),
            f.pv_text,
            _w(f.battery_w, True),
            "—" if f.soc_pct is None else f"{f.soc_pct:.1f} %",
            f.water_heater or "—",
            _w(f.house_w),
        )
        return t

    def _slots_table(self) -> Table:
        b = self.backend
        t = Table(
            title=(
                f"slot records: {len(b.records)} stored, acked up to seq {b.acked_upto} "
                f"({self.history_seen} from the meter's history)"
            ),
            title_justify="left",
        )
        for col in ("slot", "buy Wh", "sell Wh", "source", "rev", "seq", "acked"):
            t.add_column(col)
        rows = [r for r in b.newest_by_slot().values() if b.is_live(r)][-6:]
        for r in rows:
            t.add_row(
                str(r.get("slot_start", ""))[11:16],
                _num(r.get("import_wh")),
                _num(r.get("export_wh")),
                str(r.get("source")),
                str(r.get("rev")),
                str(r.get("seq")),
                "✓" if int(r.get("seq", 0)) <= b.acked_upto else "…",
            )
        return t

    def _commands_table(self) -> Table:
        t = Table(title="DR commands", title_justify="left")
        for col in ("DR", "kind", "window", "setpoint", "acks", "delivered vs baseline"):
            t.add_column(col)
        for sent in self.backend.commands.values():
            p = sent.dispatch.plan
            report: Any = sent.report
            delivered = "—"
            if report and report.get("ok"):
                delivered = f"{report.get('delivered_wh')} / {report.get('baseline_wh')} Wh"
            elif report:
                delivered = str(report.get("reason"))[:40]
            t.add_row(
                p.label,
                p.kind,
                f"{sent.dispatch.start:%H:%M}–{sent.dispatch.end:%H:%M}",
                "—" if p.power_w is None else f"{p.power_w} W",
                " → ".join(sent.statuses),
                delivered,
            )
        return t

    def _events_panel(self) -> Panel:
        text = Text()
        for stamp, kind, line in self.events:
            text.append(f"{stamp} ", style="dim")
            text.append(line + "\n", style=STYLES.get(kind, ""))
        return Panel(text, title="events", title_align="left")


def _num(value: Any) -> str:
    return "—" if value is None else str(value)
