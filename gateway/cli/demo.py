"""``chisan demo``: a simulated day of a PV + storage home, in minutes (see gateway/demo)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway import logs


@click.command("demo")
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=180.0,
    show_default=True,
    help="Wall-clock seconds to run.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=1, max=5000),
    default=400.0,
    show_default=True,
    help="Clock acceleration (400: a simulated day in 3.6 minutes).",
)
@click.option(
    "--broker",
    type=click.Choice(["auto", "embedded", "mosquitto"]),
    default="auto",
    show_default=True,
    help="auto: mosquitto when installed, else the embedded amqtt broker.",
)
@click.option(
    "--battery",
    type=click.Choice(["echonet", "sunspec"]),
    default="echonet",
    show_default=True,
    help="The storage battery: ECHONET Lite on the node, or a SunSpec (Modbus TCP) inverter.",
)
@click.option(
    "--start",
    "start_at",
    default="05:00",
    show_default=True,
    metavar="HH:MM",
    help="Simulated time of day (JST, today) the demo starts at.",
)
@click.option(
    "--node",
    default="127.0.0.20",
    show_default=True,
    help="Loopback address of the simulated ECHONET node.",
)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Loopback address the gateway's ECHONET side binds (UDP 3610).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option(
    "--plain", is_flag=True, help="Plain progress lines even on a terminal (no live view)."
)
@click.option(
    "--records",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the slot records the backend stored to this file (JSON lines).",
)
def demo(
    duration: float,
    speed: float,
    broker: str,
    battery: str,
    start_at: str,
    node: str,
    bind: str,
    as_json: bool,
    plain: bool,
    records: Path | None,
) -> None:
    """Run a simulated day: home, broker, market backend and the gateway, in minutes."""
    import ipaddress
    from datetime import time as dtime

    from gateway.demo import BatteryChoice, BrokerChoice, DemoOptions
    from gateway.demo import main as demo_main

    try:
        hour, minute = (int(part) for part in start_at.split(":"))
        start = dtime(hour, minute)
    except ValueError:
        raise click.BadParameter(
            f"expected HH:MM, found {start_at!r}", param_hint="--start"
        ) from None
    for name, address in (("--node", node), ("--bind", bind)):
        try:
            if not ipaddress.IPv4Address(address).is_loopback:
                raise ValueError
        except ValueError:
            raise click.BadParameter(
                f"expected a loopback IPv4 address such as 127.0.0.20, found {address!r}",
                param_hint=name,
            ) from None
    if node == bind:
        raise click.BadParameter(
            "the node and the gateway need different addresses", param_hint="--bind"
        )
    logs.configure("error", "console")
    sys.exit(
        demo_main(
            DemoOptions(
                duration_s=duration,
                speed=speed,
                broker=BrokerChoice(broker),
                battery=BatteryChoice(battery),
                start=start,
                node=node,
                bind=bind,
                json=as_json,
                live=False if plain or as_json else None,
                records_file=records,
            )
        )
    )


COMMANDS = [demo]
