"""``chisan modbus scan|read`` and ``chisan sim modbus``: SunSpec devices without a config file.

Installers check an inverter before configuring it: does it speak SunSpec, and where (``scan``
lists the models found, with names and lengths, broken and unknown ones included), and what it
says (``read`` decodes one model, scale factors applied, with units). ``sim modbus`` runs a
simulated PV inverter and storage inverter to practise on. Every failure is one line on stderr
and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gateway.cli._common import configure_cli_logs, fail, run_command
from gateway.cli.sim import sim

if TYPE_CHECKING:
    from drivers.modbus.discovery import Chain
    from drivers.modbus.sunspec import DecodedModel, PointValue
    from drivers.modbus.transport import ModbusTransport

T = TypeVar("T")

DEFAULT_PORT = 502


def _target(text: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (IPv6 as ``[addr]:port``)."""
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        host = addr
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    if not host:
        fail(f"expected HOST or HOST:PORT, got {text!r}", 2)
    return host, port


def _port(text: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        fail(f"port must be 1..65535 in {whole!r}", 2)
    return port


def _transport(target: str, unit: int, timeout: float, verbose: bool) -> ModbusTransport:
    import logging

    from drivers.modbus.transport import ModbusSettings, ModbusTransport

    if not verbose:  # pymodbus logs each failed connect; the error line says it once
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if timeout <= 0:
        fail("--timeout must be positive", 2)
    host, port = _target(target)
    settings = ModbusSettings(host=host, port=port, unit_id=unit, timeout_s=timeout)
    return ModbusTransport(f"{host}:{port}", settings)


def _run(coro: Awaitable[T]) -> T:
    """Run a command; driver and SunSpec errors become one line and exit status 1."""
    from drivers.capabilities import DeviceError
    from drivers.modbus.sunspec import SunSpecError

    return run_command(coro, [(DeviceError, _device_message), (SunSpecError, str)])


def _device_message(exc: Exception) -> str:
    """``HOST:PORT: what happened``, without saying the address twice."""
    text = str(exc)
    device = getattr(exc, "device", "")
    head = f"{device}: "
    if device and text.startswith(head) and device in text[len(head) :]:
        return text[len(head) :]
    return text


async def _scan(transport: ModbusTransport) -> Chain:
    from drivers.modbus.discovery import NoMarker, walk_chain

    try:
        return await walk_chain(transport.read)
    except NoMarker as exc:
        raise NoMarker(f"{transport.device}: not a SunSpec device ({exc})") from None
    finally:
        await transport.close()


def _chain_json(chain: Chain) -> list[dict[str, Any]]:
    return [
        {
            "id": e.model_id,
            "name": e.name,
            "label": e.label,
            "address": e.header.address,
            "length": e.header.length,
            "problem": e.problem,
        }
        for e in chain.entries
    ]


UNIT_OPTION = click.option(
    "--unit", type=click.IntRange(0, 247), default=1, show_default=True, help="Modbus unit ID."
)
TIMEOUT_OPTION = click.option(
    "--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait per request."
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.group("modbus")
def modbus() -> None:
    """Talk to SunSpec Modbus TCP devices without a config file."""


@modbus.command("scan")
@click.argument("target", metavar="HOST[:PORT]")
@UNIT_OPTION
@TIMEOUT_OPTION
@JSON_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def scan(target: str, unit: int, timeout: float, as_json: bool, verbose: bool) -> None:
    """List the SunSpec models a device has: ID, name, address and length."""
    configure_cli_logs(verbose)
    transport = _transport(target, unit, timeout, verbose)
    chain = _run(_scan(transport))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "target": transport.device,
                    "unit": unit,
                    "base": chain.base,
                    "models": _chain_json(chain),
                    "notes": chain.notes,
                }
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model")
    table.add_column("name", no_wrap=True)
    for column in ("label", "address", "length", "status"):
        table.add_column(column)
    for e in chain.entries:
        status = "[red]" + e.problem + "[/red]" if e.problem else ("ok" if e.known else "unknown")
        table.add_row(
            str(e.model_id), e.name, e.label, str(e.header.address), str(e.header.length), status
        )
    console = Console()
    console.print(f"SunSpec at {transport.device} unit {unit}, base {chain.base}")
    console.print(table)
    for note in chain.notes:
        click.echo(f"warning: {note}", err=True)


def _point_json(point: PointValue) -> dict[str, Any]:
    return {"value": point.value, "units": point.units}


def _model_json(decoded: DecodedModel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": decoded.model_id,
        "name": decoded.name,
        "label": decoded.label,
        "points": {name: _point_json(p) for name, p in decoded.points.items()},
    }
    if decoded.blocks:
        out["blocks"] = [{n: _point_json(p) for n, p in b.items()} for b in decoded.blocks]
    return out


def _shown(value: object) -> str:
    if value is None:
        return "[dim]-[/dim]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@modbus.command("read")
@click.argument("target", metavar="HOST[:PORT]")
@click.option("--model", "model_id", type=click.IntRange(1, 65534), required=True)
@UNIT_OPTION
@TIMEOUT_OPTION
@JSON_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def read(
    target: str, model_id: int, unit: int, timeout: float, as_json: bool, verbose: bool
) -> None:
    """Decode one SunSpec model: every point, scale factors applied, with units."""
    configure_cli_logs(verbose)
    from drivers.modbus.models import MODELS
    from drivers.modbus.sunspec import SunSpecError, decode_model

    transport = _transport(target, unit, timeout, verbose)

    async def go() -> DecodedModel:
        chain = await _scan(transport)
        entry = next((e for e in chain.entries if e.model_id == model_id), None)
        if entry is None:
            found = ", ".join(str(e.model_id) for e in chain.entries) or "none"
            raise SunSpecError(f"{transport.device} has no model {model_id} (models: {found})")
        if model_id not in MODELS:
            raise SunSpecError(f"model {model_id} has no definition in chisan: cannot decode it")
        if entry.problem:
            raise SunSpecError(f"{transport.device}: {entry.problem}")
        try:
            words = await transport.read(entry.header.address, entry.header.length)
        finally:
            await transport.close()
        return decode_model(model_id, words)

    decoded = _run(go())
    if as_json:
        click.echo(json.dumps({"target": transport.device, "unit": unit, **_model_json(decoded)}))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"model {decoded.model_id} {decoded.name} ({decoded.label})")
    table = Table()
    table.add_column("point", no_wrap=True)
    table.add_column("value", no_wrap=True)
    table.add_column("units")
    for name, point in decoded.points.items():
        table.add_row(name, _shown(point.value), point.units or "")
    for i, block in enumerate(decoded.blocks, 1):
        for name, point in block.items():
            table.add_row(f"[{i}].{name}", _shown(point.value), point.units or "")
    console.print(table)


# --------------------------------------------------------------------------------- simulator


@sim.command("modbus")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), help="TCP port (required without --rtu).")
@click.option("--rtu", is_flag=True, help="Serve Modbus RTU on a pseudo-terminal instead.")
@click.option("--base", type=click.Choice(["40000", "0", "50000"]), default="40000")
@click.option(
    "--battery",
    "battery_variant",
    type=click.Choice(["124", "802"]),
    default="124",
    show_default=True,
    help="Storage models: 124 (basic storage) or 802 with the DER models 701/702/704/713.",
)
@click.option("--pv-unit", type=click.IntRange(1, 247), default=1, show_default=True)
@click.option("--battery-unit", type=click.IntRange(1, 247), default=2, show_default=True)
@click.option("--soc", type=click.FloatRange(0, 100), default=50.0, show_default=True)
@click.option("--speed", type=float, default=1.0, show_default=True, help="Clock speed-up.")
@click.option("--single-client", is_flag=True, help="Refuse a second TCP client.")
@click.option(
    "--exception",
    "exception_code",
    type=click.IntRange(1, 11),
    default=None,
    help="Answer every request with this Modbus exception code.",
)
@click.option("--no-answer", is_flag=True, help="Accept requests but never answer (timeouts).")
def sim_modbus(
    host: str,
    port: int | None,
    rtu: bool,
    base: str,
    battery_variant: str,
    pv_unit: int,
    battery_unit: int,
    soc: float,
    speed: float,
    single_client: bool,
    exception_code: int | None,
    no_answer: bool,
) -> None:
    """Run a simulated SunSpec PV inverter and storage inverter until Ctrl-C / SIGTERM."""
    configure_cli_logs(verbose=False)
    from drivers.modbus.sim import ModbusSim
    from drivers.modbus.simdevices import SimBatteryInverter, SimPvInverter
    from gateway.clock import AcceleratedClock, Clock, SystemClock

    if port is None and not rtu:
        fail("--port is required (or --rtu for a pseudo-terminal)", 2)
    if pv_unit == battery_unit:
        fail("--pv-unit and --battery-unit must differ", 2)
    if speed <= 0:
        fail("--speed must be positive", 2)
    clock: Clock = SystemClock() if speed == 1 else AcceleratedClock(speed)
    units = [
        SimPvInverter(clock, unit_id=pv_unit),
        SimBatteryInverter(clock, variant=battery_variant, unit_id=battery_unit, soc_pct=soc),
    ]
    server = ModbusSim(clock, units, base=int(base), host=host, port=port, rtu=rtu)
    server.exception_code = exception_code
    server.refuse_second_client(single_client)

    async def serve() -> None:
        import signal

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.start()
        except (OSError, RuntimeError) as exc:
            fail(f"cannot listen on {host}:{port}: {exc}")
        if no_answer:
            server.stall()
        where = f"RTU on {server.rtu_path}" if rtu else f"TCP {host}:{server.port}"
        click.echo(
            f"Modbus simulator on {where}: PV inverter unit {pv_unit} (1, 103, 120, 123), "
            f"battery unit {battery_unit} (model {battery_variant}), base {base}"
            f" (speed x{speed:g}); Ctrl-C to stop",
            err=True,
        )
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(serve())


COMMANDS = [modbus]
