"""``chisan override``: talk to the running daemon over its local socket (``chisan status`` lives
in :mod:`gateway.cli.status`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from gateway.cli import CONFIG_OPTION, load_or_exit
from gateway.cli._common import fail


def _send(config_path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from gateway.localctl import ControlError, request

    cfg = load_or_exit(config_path)
    try:
        return asyncio.run(request(cfg.control.socket, body))
    except ControlError as exc:
        fail(str(exc), 2)


@click.group("override")
def override() -> None:
    """Resident/installer override of remote commands (beats DR until it ends)."""


@override.command("battery")
@click.argument("mode", type=click.Choice(["auto", "standby"]))
@click.option("--until", "until", required=True, help="End of the override, HH:MM (JST).")
@CONFIG_OPTION
def override_battery(mode: str, until: str, config_path: Path) -> None:
    """Hold the battery in its automatic mode or standby until HH:MM."""
    from gateway.clock import SystemClock
    from gateway.localctl import ControlError, next_time

    try:
        when = next_time(until, SystemClock().now())
    except ControlError as exc:
        fail(str(exc), 2)
    reply = _send(config_path, {"op": "override", "mode": mode, "until": when.isoformat()})
    if not reply.get("ok"):
        fail(str(reply.get("error")))
    click.echo(f"override: battery {mode} until {when:%Y-%m-%d %H:%M} JST")


@override.command("clear")
@CONFIG_OPTION
def override_clear(config_path: Path) -> None:
    """End the override now; remote commands apply again."""
    reply = _send(config_path, {"op": "clear"})
    if not reply.get("ok"):
        fail(str(reply.get("error")))
    click.echo("override cleared" if reply.get("cleared") else "no override was set")


COMMANDS = [override]
