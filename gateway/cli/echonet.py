"""``chisan echonet discover|get|set`` and ``chisan sim echonet``: ECHONET Lite without a config.

Installers check a home's devices before anything is configured: what answers on the LAN
(``discover``), what a device says (``get``), whether it obeys (``set``). ``sim echonet`` runs a
simulated node (PV, battery, water heater, aircon) to practise on; the demo and the tests use the
same simulator in-process. Every failure is one line on stderr and a non-zero exit status, never a
traceback. Heavy imports happen inside the commands so ``chisan --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gateway.cli._common import configure_cli_logs, fail, run_command
from gateway.cli.sim import sim

if TYPE_CHECKING:
    from drivers.echonet.frame import EOJ
    from drivers.echonet.transport import EchonetTransport

T = TypeVar("T")


def _run(coro: Awaitable[T]) -> T:
    """Run a command's coroutine; driver errors become one line and exit status 1."""
    from drivers.capabilities import DeviceError

    return run_command(coro, [(DeviceError, _device_error_message)])


def _device_error_message(exc: Exception) -> str:
    message = str(exc)
    if "Address already in use" in message:
        message += " (is the chisan daemon running? choose another --bind address)"
    return message


def _parse_eoj(text: str) -> EOJ:
    from drivers.echonet.frame import EOJ

    try:
        return EOJ.parse(text)
    except ValueError:
        fail(f"EOJ must be 6 hex digits like 027D01, got {text!r}", 2)


def _parse_epc(text: str) -> int:
    digits = text.strip()
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    try:
        if len(digits) != 2:
            raise ValueError
        return int(digits, 16)
    except ValueError:
        fail(f"EPC must be two hex digits like E4, got {text!r}", 2)


def _parse_assignment(text: str) -> tuple[int, bytes]:
    epc_text, sep, hex_text = text.partition("=")
    if not sep:
        fail(f"expected EPC=HEX like DA=42, got {text!r}", 2)
    epc = _parse_epc(epc_text)
    digits = hex_text.strip()
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    try:
        edt = bytes.fromhex(digits)
    except ValueError:
        fail(f"value of {epc:02X} must be hex bytes like 42 or 000003E8, got {hex_text!r}", 2)
    if not edt or len(edt) > 255:
        fail(f"value of {epc:02X} must be 1 to 255 bytes", 2)
    return epc, edt


def _transport(bind: str, timeout: float, retries: int, interface: str | None) -> EchonetTransport:
    from drivers.echonet.transport import EchonetTransport, TransportSettings
    from gateway.clock import SystemClock

    if timeout <= 0:
        fail("--timeout must be positive", 2)
    settings = TransportSettings(
        bind=bind, multicast_interface=interface, timeout_s=timeout, retries=retries
    )
    return EchonetTransport(settings, SystemClock())


async def _explained(
    transport: Any, host: str, target: Any, request: Callable[[], Awaitable[T]]
) -> T:
    """Run one request; a timeout whose cause can be named (wrong object, busy port) says so."""
    from drivers.echonet.transport import EchonetTimeout

    async with transport:
        try:
            return await request()
        except EchonetTimeout:
            reason = await _explain_timeout(transport, host, target)
            if reason:
                fail(reason)
            raise


async def _explain_timeout(transport: EchonetTransport, host: str, eoj: EOJ) -> str | None:
    """After a timeout: does the node answer at all, and does it have this object?"""
    from drivers.echonet.discovery import parse_instance_list
    from drivers.echonet.frame import NODE_PROFILE
    from drivers.echonet.transport import EchonetError

    if eoj.is_node_profile:
        return None
    try:
        answer = await transport.get(host, NODE_PROFILE, [0xD6])
    except EchonetError:
        return None
    eojs = parse_instance_list(answer.get(0xD6))
    if (
        eojs is None
        or eoj in eojs
        or (eoj.instance == 0 and any(e.class_id == eoj.class_id for e in eojs))
    ):
        return None
    listed = ", ".join(str(e) for e in eojs) or "none"
    return f"{host} has no object {eoj} (its objects: {listed})"


BIND_OPTION = click.option(
    "--bind",
    default="0.0.0.0",
    show_default=True,
    help="Local address to use (port 3610); the daemon's address if it runs here.",
)
TIMEOUT_OPTION = click.option(
    "--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait per attempt."
)
RETRIES_OPTION = click.option(
    "--retries", type=click.IntRange(0, 10), default=2, show_default=True, help="Retries."
)


@click.group("echonet")
def echonet() -> None:
    """Talk to ECHONET Lite devices on the LAN without a config file."""


# ---------------------------------------------------------------------------------- discover


@echonet.command("discover")
@click.option(
    "--interface",
    default="0.0.0.0",
    show_default=True,
    help="Address of the interface to multicast on (0.0.0.0: the system's choice).",
)
@BIND_OPTION
@click.option(
    "--timeout",
    type=float,
    default=3.0,
    show_default=True,
    help="Seconds to collect multicast answers (and per unicast attempt).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Ask this address directly (repeatable); then no multicast unless --multicast.",
)
@click.option("--multicast", "force_multicast", is_flag=True, help="Multicast also with --host.")
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def discover(
    interface: str,
    bind: str,
    timeout: float,
    hosts: Sequence[str],
    force_multicast: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """List ECHONET nodes and their objects: address, EOJ, class, maker, release."""
    configure_cli_logs(verbose)
    from drivers.echonet.discovery import DiscoveryResult, discover

    multicast = force_multicast or not hosts
    transport = _transport(bind, timeout, 1, interface if multicast else None)

    async def go() -> DiscoveryResult:
        async with transport:
            return await discover(transport, hosts=hosts, multicast=multicast, window_s=timeout)

    result = _run(go())
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("address", "EOJ", "class", "maker", "release")
        for node in result.nodes:
            for obj in node.objects or ():
                table.add_row(
                    node.address,
                    str(obj.eoj),
                    obj.class_name,
                    obj.maker_name or node.maker_name or "?",
                    obj.release or "?",
                )
            if not node.objects:
                table.add_row(node.address, "-", "(no device objects)", node.maker_name or "?", "")
        if result.nodes:
            Console().print(table)
    for host, why in result.failures.items():
        click.echo(f"warning: {host}: {why}", err=True)
    if not result.nodes:
        where = ", ".join(hosts) if hosts else f"multicast on {interface}"
        fail(f"no ECHONET node answered ({where}, {timeout:g} s)")


# ---------------------------------------------------------------------------------------- get


@echonet.command("get")
@click.argument("host")
@click.argument("eoj")
@click.argument("epcs", nargs=-1, required=True)
@BIND_OPTION
@TIMEOUT_OPTION
@RETRIES_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def get(
    host: str,
    eoj: str,
    epcs: Sequence[str],
    bind: str,
    timeout: float,
    retries: int,
    as_json: bool,
    verbose: bool,
) -> None:
    """Read properties: chisan echonet get 192.168.1.20 027D01 E4 DA CF."""
    configure_cli_logs(verbose)
    from drivers.echonet.properties import PropertyError, decode_value, spec_for
    from drivers.echonet.transport import GetResult

    target = _parse_eoj(eoj)
    wanted = list(dict.fromkeys(_parse_epc(e) for e in epcs))
    transport = _transport(bind, timeout, retries, None)

    result: GetResult = _run(
        _explained(transport, host, target, lambda: transport.get(host, target, wanted))
    )
    if not result.values:
        refused = " ".join(f"{e:02X}" for e in result.missing)
        fail(f"{host} {target}: the device refused every property asked ({refused})")
    rows: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for epc in wanted:
        key = f"{epc:02X}"
        edt = result.get(epc)
        spec = spec_for(target.class_id, epc)
        names[key] = spec.name if spec else "(unknown)"
        if edt is None:
            rows[key] = {"raw": "", "value": None}
            continue
        try:
            decoded = decode_value(target.class_id, epc, edt)
        except PropertyError as exc:
            rows[key] = {"raw": edt.hex().upper(), "value": None, "error": exc.reason}
            continue
        row: dict[str, Any] = {"raw": decoded.raw, "value": decoded.value}
        if decoded.unit:
            row["unit"] = decoded.unit
        rows[key] = row
    if as_json:
        click.echo(json.dumps({"host": host, "eoj": str(target), "properties": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("EPC", "name", "value", "unit", "raw")
    for key, row in rows.items():
        if row["value"] is None:
            shown = "(refused)" if not row["raw"] else row.get("error", "(no data)")
        else:
            shown = json.dumps(row["value"], ensure_ascii=False)
            shown = shown.strip('"') if isinstance(row["value"], str) else shown
        table.add_row(key, names[key], shown, row.get("unit", ""), row["raw"])
    Console().print(table)


# ---------------------------------------------------------------------------------------- set


@echonet.command("set")
@click.argument("host")
@click.argument("eoj")
@click.argument("assignments", nargs=-1, required=True)
@BIND_OPTION
@TIMEOUT_OPTION
@RETRIES_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def set_(
    host: str,
    eoj: str,
    assignments: Sequence[str],
    bind: str,
    timeout: float,
    retries: int,
    verbose: bool,
) -> None:
    """Write properties (SetC): chisan echonet set 192.168.1.20 027D01 DA=44."""
    configure_cli_logs(verbose)
    from drivers.echonet.transport import SetResult

    target = _parse_eoj(eoj)
    props = [_parse_assignment(a) for a in assignments]
    transport = _transport(bind, timeout, retries, None)

    result: SetResult = _run(
        _explained(transport, host, target, lambda: transport.set(host, target, props))
    )
    for epc, edt in props:
        verdict = "accepted" if epc in result.accepted else "refused"
        click.echo(f"{epc:02X}={edt.hex().upper()} {verdict}")
    if result.refused:
        refused = " ".join(f"{e:02X}" for e in result.refused)
        fail(f"{host} {target} refused {refused}")


# --------------------------------------------------------------------------------- simulator


@sim.command("echonet")
@click.option("--bind", required=True, help="Address of the simulated node (port 3610).")
@click.option(
    "--devices",
    default="pv,battery,water_heater",
    show_default=True,
    help="Comma-separated: pv, battery, water_heater, aircon, ev (V2H).",
)
@click.option("--soc", type=click.FloatRange(0, 100), default=50.0, show_default=True)
@click.option("--speed", type=float, default=1.0, show_default=True, help="Clock speed-up.")
@click.option("--drop", type=click.FloatRange(0, 100), default=0.0, help="Drop % of requests.")
@click.option("--delay", type=click.FloatRange(0), default=0.0, help="Answer S seconds late.")
@click.option("--sna", default="", help="EPCs to refuse, comma-separated (e.g. E4,D3).")
@click.option("--max-props", type=click.IntRange(1), default=None, help="Ignore bigger frames.")
@click.option(
    "--truncate-above", type=click.IntRange(1), default=None, help="Cut bigger answers short."
)
@click.option("--mode-delay", type=click.FloatRange(0), default=2.0, show_default=True)
@click.option("--no-reverse-flow", is_flag=True, help="Battery DB = reverse flow not acceptable.")
@click.option("--fit", is_flag=True, help="PV C1 = FIT contract.")
@click.option(
    "--interface",
    default=None,
    help="Join the multicast group on this address (default: the bind address).",
)
@click.option("--no-multicast", is_flag=True, help="Do not join the multicast group.")
def sim_echonet(
    bind: str,
    devices: str,
    soc: float,
    speed: float,
    drop: float,
    delay: float,
    sna: str,
    max_props: int | None,
    truncate_above: int | None,
    mode_delay: float,
    no_reverse_flow: bool,
    fit: bool,
    interface: str | None,
    no_multicast: bool,
) -> None:
    """Run one simulated ECHONET node until Ctrl-C / SIGTERM."""
    configure_cli_logs(verbose=True)
    from drivers.echonet.sim import DEVICE_KINDS, Faults, SimNode
    from gateway.clock import AcceleratedClock, Clock, SystemClock

    kinds = [d.strip() for d in devices.split(",") if d.strip()]
    bad = [k for k in kinds if k not in DEVICE_KINDS]
    if bad or not kinds:
        fail(f"--devices takes {', '.join(DEVICE_KINDS)}; got {devices!r}", 2)
    if speed <= 0:
        fail("--speed must be positive", 2)
    sna_epcs = {_parse_epc(e) for e in sna.split(",") if e.strip()}
    clock: Clock = SystemClock() if speed == 1 else AcceleratedClock(speed)
    faults = Faults(
        drop_pct=drop,
        delay_s=delay,
        sna_epcs=sna_epcs,
        max_props=max_props,
        truncate_above=truncate_above,
    )
    node = SimNode(
        bind,
        devices=kinds,
        clock=clock,
        soc_pct=soc,
        reverse_flow=not no_reverse_flow,
        fit=fit,
        mode_delay_s=mode_delay,
        faults=faults,
        multicast_interface=None if no_multicast else (interface or bind),
    )

    async def serve() -> None:
        import signal

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await node.start()
        except OSError as exc:
            fail(f"cannot bind {bind}:3610: {exc.strerror or exc}")
        click.echo(
            f"ECHONET simulator on {bind}:3610 with {', '.join(kinds)}"
            f" (speed x{speed:g}); Ctrl-C to stop",
            err=True,
        )
        try:
            await stop.wait()
        finally:
            await node.close()

    asyncio.run(serve())


COMMANDS = [echonet]
