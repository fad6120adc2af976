"""``chisan dr report ID``: the DR performance of one event, from the store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli import CONFIG_OPTION, load_or_exit
from gateway.cli._common import fail


@click.group("dr")
def dr() -> None:
    """Demand-response events: performance against the baseline."""


@dr.command("report")
@click.argument("command_id")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report_cmd(command_id: str, config_path: Path, as_json: bool) -> None:
    """Baseline (High 4 of 5 / High 2 of 3), actual and delivered energy of one DR event."""
    from rich.console import Console
    from rich.table import Table

    from gateway.dr import report
    from gateway.store import Store, StoreError

    cfg = load_or_exit(config_path)
    try:
        store = Store.open_readonly(cfg.store.path, cfg.site.id)
    except StoreError as exc:
        fail(str(exc), 2)
    try:
        doc = report(store, command_id)
    except (KeyError, ValueError) as exc:
        fail(str(exc.args[0] if exc.args else exc))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    console = Console()
    console.print(
        f"[bold]{doc['id']}[/bold] rev {doc['rev']} {doc['kind']} ({doc['direction']}) "
        f"{doc['start']} – {doc['end']}: {doc['method']}"
    )
    if not doc["ok"]:
        console.print(f"[yellow]no baseline: {doc['reason']}[/yellow]")
    table = Table("slot", "baseline Wh", "actual Wh", "delivered Wh")
    for s in doc["slots"]:
        table.add_row(
            s["slot_start"][11:16],
            str(s["baseline_wh"]),
            str(s["actual_wh"]),
            str(s["delivered_wh"]),
        )
    table.add_row("total", str(doc["baseline_wh"]), str(doc["actual_wh"]), str(doc["delivered_wh"]))
    console.print(table)
    console.print(f"baseline days: {', '.join(doc['baseline_days']) or '—'}")


COMMANDS = [dr]
