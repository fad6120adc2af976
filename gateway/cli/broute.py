"""``chisan broute scan|read`` and ``chisan sim broute``: the meter link without a config file.

Installers use these on site before anything else is set up: does the dongle see the meter and
how well (``scan``), do the grid operator's ID and password work and what does the meter say
(``read``)? And ``sim broute`` gives them (and the demo, and the tests) a meter to practise on.
Every failure is one line on stderr and exit status 1, never a traceback: the messages come from
the driver and say what to do (plug the module in, join the dialout group, fix the dialect...).
Heavy imports happen inside the commands so ``chisan --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gateway.cli._common import configure_cli_logs, fail, run_command
from gateway.cli.sim import sim

if TYPE_CHECKING:
    from drivers.broute.join import JoinResult
    from drivers.broute.meter import Instant, MeterInfo
    from drivers.broute.parser import PanDescriptor
    from drivers.capabilities import Boundary

T = TypeVar("T")

DIALECT_CHOICE = click.Choice(["auto", "bp35a1", "bp35c0", "rl7023"], case_sensitive=False)
MODULE_CHOICE = click.Choice(["bp35a1", "bp35c0", "rl7023"], case_sensitive=False)


def _run(coro: Awaitable[T]) -> T:
    """Run the command's coroutine; driver errors become one line and exit status 1."""
    from drivers.broute.errors import BrouteError, WrongDialect
    from drivers.capabilities import DeviceError
    from drivers.echonet.properties import PropertyError

    return run_command(
        coro,
        [
            (WrongDialect, lambda exc: f"{exc} (here: --dialect auto, or the other family)"),
            ((BrouteError, DeviceError), str),
            (PropertyError, lambda exc: f"meter sent an unreadable value: {exc}"),
        ],
    )


PORT_OPTION = click.option(
    "--port", required=True, help="Serial port of the Wi-SUN module (e.g. /dev/ttyUSB0)."
)
DIALECT_OPTION = click.option(
    "--dialect",
    type=DIALECT_CHOICE,
    default="auto",
    show_default=True,
    help="SKSTACK command forms: bp35a1/rl7023 (side-less) or bp35c0 (C-series).",
)


@click.group("broute")
def broute() -> None:
    """Talk to the smart meter over the B-route (Wi-SUN module) without a config file."""


@broute.command("scan")
@PORT_OPTION
@DIALECT_OPTION
@click.option(
    "--duration",
    type=click.IntRange(1, 14),
    default=None,
    help="SKSCAN duration D (≈ 9.6 ms × (2^D + 1) × 28 channels). Default: 6, then 7 and 8.",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Command timeout (s).")
@click.option("--json", "as_json", is_flag=True, help="Print the PANs as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log what the module is told.")
def scan(
    port: str, dialect: str, duration: int | None, timeout: float, as_json: bool, verbose: bool
) -> None:
    """List the meters (PANs) in range: channel, PAN ID, MAC, LQI and RSSI."""
    configure_cli_logs(verbose)
    from drivers.broute.dialect import Dialect
    from drivers.broute.scan import ScanConfig

    durations = (duration,) if duration is not None else (6, 7, 8)
    config = ScanConfig(Dialect(dialect.lower()), durations, command_timeout=timeout)
    done = _run(_scan(port, config, show_progress=not as_json))
    pans = done.pans
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dialect": done.dialect.value,
                    "durations": list(done.durations),
                    "pans": [_pan_json(p) for p in pans],
                }
            )
        )
        if not pans:
            fail(_no_pan_message(done.durations))
        return
    if not pans:
        fail(_no_pan_message(done.durations))
    from rich.console import Console
    from rich.table import Table

    table = Table("channel", "PAN ID", "MAC", "LQI", "RSSI dBm", "pair ID")
    for pan in pans:
        table.add_row(
            str(pan.channel),
            f"{pan.pan_id:04X}",
            pan.mac,
            str(pan.lqi),
            f"{pan.rssi_dbm:.1f}",
            pan.pair_id or "",
        )
    console = Console()
    console.print(table)
    console.print(f"module dialect: {done.dialect.value}")


def _no_pan_message(durations: tuple[int, ...]) -> str:
    from drivers.broute.dialect import scan_seconds

    total = sum(scan_seconds(d) for d in durations)
    return (
        f"no PAN found (scan durations {', '.join(map(str, durations))}, about {total:.0f} s): "
        "the meter is out of range or shielded, or its B-route service is not enabled yet; "
        "try a longer --duration or move the module"
    )


def _pan_json(pan: PanDescriptor) -> dict[str, Any]:
    return {
        "channel": pan.channel,
        "pan_id": f"{pan.pan_id:04X}",
        "mac": pan.mac,
        "lqi": pan.lqi,
        "rssi_dbm": round(pan.rssi_dbm, 1),
        "pair_id": pan.pair_id,
    }


async def _scan(port: str, config: Any, *, show_progress: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from drivers.broute.scan import ScanStarted
    from drivers.broute.transport import ModuleLink
    from gateway.clock import SystemClock

    clock = SystemClock()
    link = await ModuleLink.open(port, clock=clock)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (show_progress and console.is_terminal),
    )
    ticker: asyncio.Task[None] | None = None

    def started(event: ScanStarted) -> None:
        nonlocal ticker
        task = progress.add_task(f"scanning (duration {event.duration})", total=event.seconds)
        begin = clock.monotonic()

        async def tick() -> None:
            while True:
                progress.update(task, completed=min(event.seconds, clock.monotonic() - begin))
                await asyncio.sleep(0.2)

        if ticker is not None:
            ticker.cancel()
        ticker = asyncio.create_task(tick())

    link.on_progress = started
    try:
        with progress:
            return await link.scan(config)
    finally:
        if ticker is not None:
            ticker.cancel()
        await link.close()


@broute.command("read")
@PORT_OPTION
@DIALECT_OPTION
@click.option("--id", "rbid", required=True, help="B-route ID (32 characters, from the letter).")
@click.option(
    "--password-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the B-route password (mode 600).",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Request timeout (s).")
@click.option(
    "--min-interval",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between requests to the meter (it serves one at a time).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reading as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log what the module is told (secrets masked).")
def read(
    port: str,
    dialect: str,
    rbid: str,
    password_file: Path,
    timeout: float,
    min_interval: float,
    as_json: bool,
    verbose: bool,
) -> None:
    """Join the meter and print one reading: power, currents, energy and the last boundary."""
    configure_cli_logs(verbose)
    from drivers.broute.dialect import Dialect
    from drivers.broute.join import JoinConfig
    from gateway.secrets import SecretFileError, read_secret

    try:
        secret = read_secret(password_file)
    except SecretFileError as exc:
        fail(f"B-route password file {exc}")
    try:
        config = JoinConfig(
            rbid, secret.reveal(), dialect=Dialect(dialect.lower()), command_timeout=timeout
        )
    except ValueError as exc:
        fail(str(exc))
    result, info, instant, boundary = _run(_read(port, config, timeout, min_interval))
    payload = _reading_json(result, info, instant, boundary)
    if as_json:
        click.echo(json.dumps(payload))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("reading", "value")
    table.add_row("instantaneous power", _fmt(payload["power_w"], "W"))
    currents = payload["current_a"] or [None, None]
    table.add_row("current R / T", f"{_fmt(currents[0], 'A')} / {_fmt(currents[1], 'A')}")
    table.add_row("import (E0)", _fmt(payload["import_kwh"], "kWh"))
    table.add_row("export (E3)", _fmt(payload["export_kwh"], "kWh"))
    b = payload["boundary"]
    if b is not None:
        table.add_row(
            f"boundary {b['at']}",
            f"import {_fmt(b['import_kwh'], 'kWh')}, export {_fmt(b['export_kwh'], 'kWh')}",
        )
    pan = payload["pan"]
    table.add_row(
        "link",
        f"channel {pan['channel']}, PAN {pan['pan_id']}, MAC {pan['mac']}, {payload['dialect']}",
    )
    table.add_row("meter", info.scale.describe())
    Console().print(table)


def _fmt(value: Any, unit: str) -> str:
    return "no data" if value is None else f"{value} {unit}"


async def _read(
    port: str, config: Any, timeout_s: float, min_interval: float
) -> tuple[JoinResult, MeterInfo, Instant, Boundary | None]:
    from drivers.broute.meter import MeterSession
    from drivers.broute.transport import ModuleLink, SessionParams
    from gateway.clock import SystemClock

    clock = SystemClock()
    link = await ModuleLink.open(port, clock=clock)
    try:
        result = await link.join(config, SessionParams(send_timeout=timeout_s))
        meter = MeterSession(link, clock, min_interval_s=min_interval, timeout_s=timeout_s)
        info = await meter.start()
        instant, boundary = await meter.read_all()
        return result, info, instant, boundary
    finally:
        await link.terminate(2.0)
        await link.close()


def _reading_json(
    result: JoinResult, info: MeterInfo, instant: Instant, boundary: Boundary | None
) -> dict[str, Any]:
    from gateway.slots import iso

    energy = instant.energy

    def kwh(wh: int | None) -> float | None:
        return None if wh is None else wh / 1000

    return {
        "at": iso(instant.at),
        "power_w": instant.power_w,
        "current_a": list(instant.currents_a) if instant.currents_a is not None else None,
        "import_kwh": energy.import_kwh if energy else None,
        "export_kwh": energy.export_kwh if energy else None,
        "boundary": None
        if boundary is None
        else {
            "at": iso(boundary.at),
            "import_kwh": kwh(boundary.import_wh),
            "export_kwh": kwh(boundary.export_wh),
        },
        "meter": {
            "coefficient": info.scale.coefficient,
            "unit_kwh": float(info.scale.kwh_per_count / info.scale.coefficient),
            "digits": info.scale.digits,
        },
        "pan": {
            "channel": result.channel,
            "pan_id": f"{result.pan_id:04X}",
            "mac": result.mac,
            "lqi": result.lqi,
            "rssi_dbm": None if result.rssi_dbm is None else round(result.rssi_dbm, 1),
        },
        "dialect": result.dialect.value,
    }


# --- chisan sim broute ---------------------------------------------------------------------------


@sim.command("broute")
@click.option("--dialect", type=MODULE_CHOICE, default="bp35a1", show_default=True)
@click.option("--id", "rbid", default=None, help="B-route ID the meter accepts.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File with the password the meter accepts (default: the demo password).",
)
@click.option("--echo", type=click.Choice(["on", "off"]), default="on", show_default=True)
@click.option("--data", type=click.Choice(["hex", "binary"]), default="hex", show_default=True)
@click.option(
    "--speed", type=float, default=1.0, show_default=True, help="Meter clock speed factor."
)
@click.option(
    "--link-delay", type=float, default=0.08, show_default=True, help="Seconds per radio frame."
)
@click.option(
    "--reauth-s", type=float, default=0.0, help="PANA re-authentication every S (0 = never)."
)
@click.option("--lose", type=click.FloatRange(0, 1), default=0.0, help="Reply loss probability.")
@click.option("--garbage", type=click.FloatRange(0, 1), default=0.0, help="Garbage line rate.")
@click.option("--scan-scale", type=float, default=1.0, show_default=True, help="Scan time factor.")
@click.option("--digits", type=click.IntRange(1, 8), default=6, show_default=True, help="D7.")
def sim_broute(
    dialect: str,
    rbid: str | None,
    password_file: Path | None,
    echo: str,
    data: str,
    speed: float,
    link_delay: float,
    reauth_s: float,
    lose: float,
    garbage: float,
    scan_scale: float,
    digits: int,
) -> None:
    """A Wi-SUN module with a smart meter behind it, on a pseudo-terminal (until Ctrl-C)."""
    from drivers.broute.dialect import Dialect
    from drivers.broute.sim import DEFAULT_PASSWORD, DEFAULT_RBID, MeterModelConfig, ModuleConfig

    password = DEFAULT_PASSWORD
    if password_file is not None:
        from gateway.secrets import SecretFileError, read_secret

        try:
            password = read_secret(password_file).reveal()
        except SecretFileError as exc:
            fail(f"password file {exc}")
    if speed <= 0:
        fail("--speed must be positive")
    module = ModuleConfig(
        dialect=Dialect(dialect.lower()),
        rbid=rbid or DEFAULT_RBID,
        password=password,
        echo=echo == "on",
        hex_data=data == "hex",
        link_delay=link_delay,
        link_jitter=link_delay / 4,
        reauth_s=reauth_s,
        lose=lose,
        garbage=garbage,
        scan_scale=scan_scale,
    )
    meter = MeterModelConfig(digits=digits)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(module, meter, speed, show_password=password_file is None))


async def _serve(module: Any, meter: Any, speed: float, *, show_password: bool) -> None:
    from drivers.broute.sim import PtyEmulator
    from gateway.clock import AcceleratedClock, Clock, SystemClock

    clock: Clock = SystemClock() if speed == 1 else AcceleratedClock(speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with PtyEmulator(module, meter, clock) as emulator:
        secret = f"password {module.password}" if show_password else "password from the file"
        click.echo(f"B-route emulator ({module.dialect.value}) on {emulator.path}")
        click.echo(f"meter accepts ID {module.rbid}, {secret}")
        click.echo(
            f"try: chisan broute read --port {emulator.path} --id {module.rbid} "
            "--password-file <file>"
        )
        sys.stdout.flush()
        await stop.wait()
    click.echo("emulator stopped")


COMMANDS = [broute]
