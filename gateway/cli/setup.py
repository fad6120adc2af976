"""``chisan setup``: from a bare gateway to a config that passes ``check-config``.

It finds what can be found (ECHONET devices by multicast or at given addresses, the meter through
a B-route scan, SunSpec inverters at given Modbus hosts), asks for what only the installer knows
(site id, broker, B-route ID and password), and writes the config plus the password file (0600).
Every answer can come from a flag, so the same command provisions a fleet unattended (``--yes``).
An existing config is never replaced without ``--force``; the new one is validated by the
daemon's own loader before it takes the old one's place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.cli._common import configure_cli_logs, fail

T = TypeVar("T")


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """A click value_proc: a bad answer is asked again with the reason."""

    def proc(value: str) -> str:
        try:
            return check(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return proc


@dataclass
class Asker:
    """Takes each answer from its flag, else asks (interactive), else notes it as missing."""

    interactive: bool
    missing: list[str] = field(default_factory=list)

    def need(self, value: T | None, flag: str, what: str, ask: Callable[[], T]) -> T | None:
        if value is not None:
            return value
        if self.interactive:
            return ask()
        self.missing.append(f"{flag} ({what})")
        return None

    def stop_if_missing(self) -> None:
        if self.missing:
            fail("missing answers with --yes: " + ", ".join(self.missing), 2)


@click.command("setup")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/chisan/chisan.toml"),
    show_default=True,
    help="Config file to write; the password file goes beside it.",
)
@click.option("--force", is_flag=True, help="Replace an existing config and password file.")
@click.option("--yes", "-y", is_flag=True, help="Never ask: every answer comes from flags.")
@click.option("--no-discover", is_flag=True, help="Write only what the flags say; probe nothing.")
@click.option("--site", help="Site id from the market operator (a-z 0-9 -).")
@click.option("--broker", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT].")
@click.option(
    "--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="Broker CA (mqtts://)."
)
@click.option("--broute-id", help="B-route ID: 32 hexadecimal characters.")
@click.option(
    "--broute-password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the B-route password from this file.",
)
@click.option("--broute-password-stdin", is_flag=True, help="Read the B-route password from stdin.")
@click.option("--serial", help="Serial port of the Wi-SUN module (default: the one plugged in).")
@click.option(
    "--echonet-host",
    "echonet_hosts",
    multiple=True,
    help="Ask this ECHONET address directly (repeatable); skips multicast.",
)
@click.option(
    "--modbus-host",
    "modbus_hosts",
    multiple=True,
    help="Scan this SunSpec device, HOST[:PORT][/UNIT] (repeatable).",
)
@click.option(
    "--bind",
    default="0.0.0.0",
    show_default=True,
    help="Local address for ECHONET (UDP 3610); written to [echonet] when not 0.0.0.0.",
)
@click.option(
    "--fit/--no-fit",
    default=None,
    help="Still under the feed-in tariff? (default: what the PV reports)",
)
@click.option(
    "--store", "store_path", type=click.Path(path_type=Path), help="Database path ([store] path)."
)
@click.option(
    "--backend-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Backend's command public key (PEM) for [commands] public_key_file.",
)
@click.option(
    "--scan-duration",
    "scan_durations",
    type=click.IntRange(1, 14),
    multiple=True,
    help="B-route scan durations to try (default 6, 7, 8).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what discovery does.")
def setup(
    output: Path,
    force: bool,
    yes: bool,
    no_discover: bool,
    site: str | None,
    broker: str | None,
    ca_file: Path | None,
    broute_id: str | None,
    broute_password_file: Path | None,
    broute_password_stdin: bool,
    serial: str | None,
    echonet_hosts: Sequence[str],
    modbus_hosts: Sequence[str],
    bind: str,
    fit: bool | None,
    store_path: Path | None,
    backend_key: Path | None,
    scan_durations: Sequence[int],
    verbose: bool,
) -> None:
    """Discover the home's devices, ask what cannot be discovered, write a valid config."""
    from gateway import installer
    from gateway.clock import SystemClock

    configure_cli_logs(verbose)
    output = output.absolute()
    secret_path = output.parent / installer.PASSWORD_FILE
    if output.exists() and not force:
        fail(f"{output} exists: not replaced (pass --force to replace it)")
    if broute_password_file is not None and broute_password_stdin:
        fail(
            "give the B-route password by --broute-password-file or --broute-password-stdin, "
            "not both",
            2,
        )
    interactive = not yes
    asker = Asker(interactive)
    try:
        site = installer.check_site(site) if site else None
        broker = installer.check_broker(broker) if broker else None
        broute_id = installer.check_broute_id(broute_id) if broute_id else None
        modbus = [installer.parse_modbus_host(h) for h in modbus_hosts]
    except ValueError as exc:
        fail(str(exc), 2)
    password = _password_from_flags(broute_password_file, broute_password_stdin)

    # Everything only a person knows is asked first; discovery then runs unattended.
    site = asker.need(
        site,
        "--site",
        "site id",
        lambda: click.prompt(
            "Site id (from the market operator)", value_proc=_checked(installer.check_site)
        ),
    )
    broker = asker.need(
        broker,
        "--broker",
        "broker URL",
        lambda: click.prompt(
            "Broker URL",
            default="mqtts://broker.example.jp:8883",
            value_proc=_checked(installer.check_broker),
        ),
    )
    if broker and broker.startswith("mqtts://") and ca_file is None:
        ca_file = asker.need(
            None,
            "--ca-file",
            "broker CA for mqtts://",
            lambda: Path(click.prompt("Broker CA certificate file (PEM)")),
        )
    if serial is None:
        ports = installer.serial_candidates()
        if len(ports) == 1 or (ports and not interactive):
            serial = ports[0]
        serial = asker.need(
            serial,
            "--serial",
            "Wi-SUN module port",
            lambda: click.prompt(
                "Serial port of the Wi-SUN module", default=ports[0] if ports else None
            ),
        )
    broute_id = asker.need(
        broute_id,
        "--broute-id",
        "B-route ID",
        lambda: click.prompt(
            "B-route ID (32 characters, from the letter)",
            value_proc=_checked(installer.check_broute_id),
        ),
    )
    password = asker.need(
        password,
        "--broute-password-file or --broute-password-stdin",
        "B-route password",
        lambda: click.prompt(
            "B-route password", hide_input=True, value_proc=_checked(installer.check_password)
        ),
    )
    asker.stop_if_missing()

    # ---------------------------------------------------------------- discovery
    clock = SystemClock()
    dialect = "auto"
    devices: list[installer.FoundDevice] = []
    if not no_discover:
        dialect = _scan_meter(serial, tuple(scan_durations) or (6, 7, 8), clock)
        devices = _discover(bind, echonet_hosts, modbus, clock)
    devices = installer.name_devices(devices)
    _show_devices(devices)

    if fit is None:
        fit = installer.fit_from(devices)
        if fit is not None:
            click.echo(f"site.fit = {str(fit).lower()} (from the PV's FIT contract property)")
    fit = asker.need(
        fit,
        "--fit/--no-fit",
        "feed-in tariff",
        lambda: click.confirm("Is the home still under the feed-in tariff (FIT)?", default=False),
    )
    asker.stop_if_missing()
    if interactive and not click.confirm(f"Write {output}?", default=True):
        fail("nothing written", 1)

    assert site is not None and broker is not None and fit is not None and password is not None
    answers = installer.Answers(
        site=site,
        broker=broker,
        fit=fit,
        serial=serial,
        dialect=dialect,
        broute_id=broute_id,
        ca_file=ca_file.absolute() if ca_file else None,
        echonet_bind=bind,
        store_path=store_path.absolute() if store_path else None,
        backend_key=backend_key.absolute() if backend_key else None,
        devices=devices,
    )
    _write(output, secret_path, answers, password, force)


def _password_from_flags(path: Path | None, stdin: bool) -> str | None:
    from gateway import installer

    text: str | None = None
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"{path}: {exc}", 2)
    elif stdin:
        text = sys.stdin.readline().rstrip("\r\n")
    if text is None:
        return None
    try:
        return installer.check_password(text)
    except ValueError as exc:
        fail(str(exc), 2)


def _scan_meter(serial: str | None, durations: tuple[int, ...], clock: Any) -> str:
    """Scan for the meter; its module's dialect goes into the config. Problems are warnings:
    the meter may be switched on later, and the daemon keeps trying."""
    from drivers.broute.errors import BrouteError
    from gateway import installer

    if serial is None:
        return "auto"
    click.echo(f"scanning for the smart meter on {serial}…")
    try:
        done = asyncio.run(installer.broute_scan(serial, clock, durations))
    except BrouteError as exc:
        click.echo(f"warning: B-route scan failed: {exc}", err=True)
        return "auto"
    for pan in done.pans:
        click.echo(
            f"  meter heard: channel {pan.channel}, PAN {pan.pan_id:04X}, MAC {pan.mac}, "
            f"LQI {pan.lqi} ({pan.rssi_dbm:.0f} dBm)"
        )
    if not done.pans:
        click.echo(
            "warning: no meter answered the scan; check it with chisan doctor later", err=True
        )
    dialect: str = done.dialect.value
    return dialect if dialect != "auto" else "auto"


def _discover(
    bind: str, echonet_hosts: Sequence[str], modbus: Sequence[tuple[str, int, int]], clock: Any
) -> list[Any]:
    from drivers.capabilities import DeviceError
    from gateway import installer

    async def go() -> list[Any]:
        found: list[Any] = []
        how = f"at {', '.join(echonet_hosts)}" if echonet_hosts else "by multicast"
        click.echo(f"looking for ECHONET devices {how}…")
        try:
            echonet, failures = await installer.discover_echonet(bind, echonet_hosts, clock)
            found.extend(echonet)
            for host, why in failures.items():
                click.echo(f"warning: {host} did not answer: {why}", err=True)
        except DeviceError as exc:
            click.echo(f"warning: ECHONET discovery failed: {exc}", err=True)
        for host, port, unit in modbus:
            click.echo(f"scanning SunSpec at {host}:{port} unit {unit}…")
            try:
                found.append(await installer.sunspec_scan(host, port, unit, clock))
            except DeviceError as exc:
                click.echo(f"warning: no SunSpec device at {host}:{port}: {exc}", err=True)
        return found

    return asyncio.run(go())


def _show_devices(devices: Sequence[Any]) -> None:
    if not devices:
        click.echo("no devices found: the config will have none (add [[device]] tables later)")
        return
    click.echo(f"{len(devices)} device(s):")
    for dev in devices:
        where = f"{dev.host} eoj {dev.eoj}" if dev.eoj else f"{dev.host}:{dev.port}/{dev.unit_id}"
        click.echo(f"  {dev.name:<14} {dev.kind:<13} {dev.protocol:<8} {where}  {dev.label}")


def _write(output: Path, secret: Path, answers: Any, password: str, force: bool) -> None:
    from gateway import installer
    from gateway.clock import SystemClock
    from gateway.config import load
    from gateway.config_errors import ConfigError
    from gateway.slots import iso

    if secret.exists() and not force:
        try:
            same = secret.read_text(encoding="utf-8").strip() == password
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            fail(f"{secret} exists with another password: not replaced (pass --force)")
    try:
        output.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {output.parent}: {exc.strerror or exc}")
    text = installer.render_config(answers, iso(SystemClock().now()))
    staged = output.with_name(f".{output.name}.new")
    try:
        installer.write_private(secret, password + "\n")
        installer.write_private(staged, text)
        os.chmod(staged, 0o640)
        try:
            load(staged)
        except ConfigError as err:
            for issue in err.issues:
                click.echo(str(issue), err=True)
            fail("the written config does not validate; nothing replaced")
        if output.exists() and not force:  # appeared meanwhile
            fail(f"{output} exists: not replaced (pass --force to replace it)")
        os.replace(staged, output)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
    click.echo(f"wrote {output} and {secret} (mode 0600)")
    click.echo(f"next: chisan keys init -c {output}, then chisan doctor -c {output}")


COMMANDS = [setup]
