"""``chisan status``: what the running daemon is doing, asked over its local control socket.

The operator's first look: where the power goes right now (meter, PV, battery, house), the
battery's charge, which commands and overrides are in force, whether the last slot records
reached the backend, and which alarms are raised. ``--watch`` keeps the view open and refreshes
it; the daemon answers from memory and its store, so asking every second costs it nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Group
from rich.table import Table
from rich.text import Text

from gateway.cli import CONFIG_OPTION, load_or_exit
from gateway.cli._common import fail

#: Exit status when the daemon cannot be asked (not running, no permission).
NOT_RUNNING = 2


def ask(socket: Path, timeout: float = 5.0) -> dict[str, Any]:
    """The daemon's status answer; :class:`ControlError` when it cannot be asked."""
    from gateway.localctl import ControlError, request

    reply = asyncio.run(request(socket, {"op": "status"}, timeout))
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error") or "the daemon refused the status request"))
    return reply


def _watts(entry: Any) -> str:
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "—"
    return f"{float(entry['value']):,.0f} W"


def _at(entry: Any) -> str:
    if not isinstance(entry, dict) or not entry.get("at"):
        return ""
    return str(entry["at"])[11:19]


def _flows_table(flows: dict[str, Any]) -> Table:
    table = Table("flow", "power", "measured at", title="power flows", title_justify="left")
    meter = flows.get("meter_w")
    direction = ""
    if isinstance(meter, dict) and isinstance(meter.get("value"), int | float):
        direction = " (import)" if meter["value"] > 0 else " (export)" if meter["value"] < 0 else ""
    table.add_row("meter" + direction, _watts(meter), _at(meter))
    table.add_row("PV", _watts(flows.get("pv_w")), _at(flows.get("pv_w")))
    per_pv = flows.get("pv_devices") or {}
    if isinstance(per_pv, dict) and len(per_pv) > 1:
        for name, entry in per_pv.items():
            table.add_row(f"  PV {name}", _watts(entry), _at(entry))
    battery = flows.get("battery_w")
    sign = ""
    if isinstance(battery, dict) and isinstance(battery.get("value"), int | float):
        sign = (
            " (charging)"
            if battery["value"] > 0
            else " (discharging)"
            if battery["value"] < 0
            else ""
        )
    table.add_row("battery" + sign, _watts(battery), _at(battery))
    house = flows.get("house_w")
    table.add_row("house", "—" if house is None else f"{house:,.0f} W", "")
    soc = flows.get("soc_pct")
    if isinstance(soc, dict) and soc.get("value") is not None:
        table.add_row("battery SOC", f"{soc['value']:g} %", _at(soc))
    return table


def _state_table(reply: dict[str, Any]) -> Table:
    table = Table("what", "state", title="gateway", title_justify="left")
    table.add_row("site", f"{reply.get('site')} (chisan {reply.get('version')})")
    link = reply.get("meter_link") or {}
    meter = str(link.get("state") or reply.get("meter") or "not configured")
    style = "green" if meter == "up" else "red"
    detail = f" — {link['reason']}" if link.get("reason") else ""
    join = link.get("last_join")
    if meter == "up" and isinstance(join, dict):
        detail = f" — channel {join.get('channel')}, LQI {join.get('lqi')}"
    table.add_row("smart meter", Text(meter + detail, style=style))
    broker = bool(reply.get("broker_connected"))
    table.add_row(
        "broker", Text("connected" if broker else "disconnected", "green" if broker else "red")
    )
    failsafe = bool(reply.get("failsafe"))
    table.add_row(
        "fail-safe",
        Text(
            "ACTIVE: meter data not fresh, battery left in auto" if failsafe else "off",
            "red" if failsafe else "green",
        ),
    )
    override = reply.get("override")
    table.add_row(
        "override",
        "none"
        if not override
        else f"{override.get('device')} {override.get('mode')} until {override.get('until')}",
    )
    commands = reply.get("commands") or {}
    active = commands.get("active") or {}
    table.add_row(
        "commands in force",
        ", ".join(f"{fam}: {c['kind']} {c['id']}" for fam, c in sorted(active.items())) or "none",
    )
    pending = commands.get("pending") or []
    if pending:
        table.add_row(
            "commands pending",
            "\n".join(
                f"{c['id']} rev {c['rev']} {c.get('kind')} {c['state']} "
                f"{str(c.get('start') or '')[11:16]}-{str(c.get('end') or '')[11:16]}"
                for c in pending
            ),
        )
    outbox = reply.get("outbox") or {}
    depth = int(outbox.get("depth") or reply.get("backlog") or 0)
    table.add_row(
        "outbox",
        "empty: every record acknowledged"
        if depth == 0
        else f"{depth} record(s) waiting, oldest seq {outbox.get('oldest_seq')} "
        f"({outbox.get('oldest_slot')})",
    )
    alarms = reply.get("alarms") or {}
    raised = alarms.get("active") or []
    table.add_row("alarms", Text(", ".join(raised), "red") if raised else Text("none", "green"))
    return table


def _devices_table(devices: list[dict[str, Any]]) -> Table:
    table = Table("device", "kind", "protocol", "address", "state", title="devices")
    table.title_justify = "left"
    for dev in devices:
        if not dev.get("enabled", True):
            state = Text("disabled", "dim")
        elif not dev.get("driven"):
            state = Text("not driven", "yellow")
        elif dev.get("answering"):
            state = Text(f"answering ({dev.get('polls')} polls)", "green")
        else:
            state = Text(f"not answering ({dev.get('failures')} failures)", "red")
        table.add_row(
            dev["name"], dev["kind"], dev["protocol"], str(dev.get("address") or ""), state
        )
    return table


def _slots_table(slots: list[dict[str, Any]]) -> Table:
    table = Table("seq", "slot (JST)", "rev", "source", "import Wh", "export Wh", "delivered")
    table.title, table.title_justify = "last slot records", "left"
    for rec in slots:
        start = str(rec.get("slot_start") or "")
        table.add_row(
            str(rec.get("seq")),
            start[:16].replace("T", " "),
            str(rec.get("rev")),
            str(rec.get("source")),
            "—" if rec.get("import_wh") is None else str(rec["import_wh"]),
            "—" if rec.get("export_wh") is None else str(rec["export_wh"]),
            Text("acked", "green") if rec.get("delivered") else Text("waiting", "yellow"),
        )
    return table


def render(reply: dict[str, Any]) -> Group:
    """The status answer as tables (also used by ``--watch``)."""
    parts: list[Any] = [_state_table(reply), _flows_table(reply.get("flows") or {})]
    if reply.get("devices"):
        parts.append(_devices_table(reply["devices"]))
    if reply.get("slots"):
        parts.append(_slots_table(reply["slots"]))
    recent = (reply.get("alarms") or {}).get("recent") or []
    if recent:
        table = Table("at", "alarm", "active", "message", title="recent alarms")
        table.title_justify = "left"
        for alarm in recent:
            table.add_row(
                str(alarm.get("at") or "")[:19].replace("T", " "),
                str(alarm.get("kind")),
                str(alarm.get("active", "")),
                str(alarm.get("message") or ""),
            )
        parts.append(table)
    parts.append(Text(f"as of {reply.get('now')}", style="dim"))
    return Group(*parts)


@click.command("status")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")
@click.option("--watch", is_flag=True, help="Keep refreshing until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,
    help="Stop --watch after this many refreshes (for scripts and tests).",
)
def status(
    config_path: Path, as_json: bool, watch: bool, interval: float, count: int | None
) -> None:
    """Show the running daemon: power flows, SOC, commands, overrides, slots, outbox, alarms."""
    from rich.console import Console

    from gateway.localctl import ControlError

    cfg = load_or_exit(config_path)
    socket = cfg.control.socket
    if not watch:
        try:
            reply = ask(socket)
        except ControlError as exc:
            fail(str(exc), NOT_RUNNING)
        if as_json:
            click.echo(json.dumps(reply, indent=2, sort_keys=True))
        else:
            Console().print(render(reply))
        return
    _watch(socket, as_json, interval, count)


def _watch(socket: Path, as_json: bool, interval: float, count: int | None) -> None:
    from rich.console import Console
    from rich.live import Live

    from gateway.localctl import ControlError

    def frame() -> Any:
        try:
            reply = ask(socket)
        except ControlError as exc:
            return Text(f"daemon not reachable: {exc} (retrying every {interval:g} s)", "red")
        if as_json:
            return json.dumps(reply, sort_keys=True)
        return render(reply)

    shown = 0
    try:
        if as_json:  # one JSON object per line, for a pipe
            while count is None or shown < count:
                click.echo(frame())
                shown += 1
                if count is None or shown < count:
                    time.sleep(interval)
            return
        console = Console()
        with Live(frame(), console=console, refresh_per_second=4, screen=False) as live:
            shown = 1
            while count is None or shown < count:
                time.sleep(interval)
                live.update(frame())
                shown += 1
    except KeyboardInterrupt:
        pass


COMMANDS = [status]
