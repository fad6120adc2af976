"""``chisan sim``: simulated peers (ECHONET node, Wi-SUN module with smart meter, Modbus).

The simulators are part of the product: installers train on them, the demo and the tests use
them. Each protocol module attaches its own subcommand to :data:`sim`.
"""

from __future__ import annotations

import click


@click.group("sim")
def sim() -> None:
    """Run simulated devices (ECHONET node, B-route Wi-SUN module and meter, SunSpec Modbus)."""


COMMANDS = [sim]
