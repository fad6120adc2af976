"""What ``chisan setup`` finds and writes: device discovery and the config file it produces.

Discovery reuses the drivers' own tools (ECHONET node discovery, the B-route scan-only machine,
SunSpec model discovery), so a device setup finds is one the daemon can drive. The config text is
rendered here from plain answers; the command then validates it with the daemon's own loader
before it replaces anything, so setup can never leave a config that ``check-config`` rejects.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.clock import Clock
from gateway.config import KIND_CLASSES

SITE_ID = re.compile(r"^[a-z0-9-]{3,64}$")
HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
PASSWORD_FILE = "broute-password"

#: ECHONET class → device kind, from the config's own table (the loader checks the same pairs).
CLASS_KINDS: dict[int, str] = {
    cls: kind for kind, classes in KIND_CLASSES.items() for cls in classes
}


@dataclass
class FoundDevice:
    """A device setup will write as one ``[[device]]`` table."""

    kind: str
    protocol: str
    host: str
    eoj: str | None = None
    port: int | None = None
    unit_id: int | None = None
    label: str = ""
    name: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Answers:
    """Everything the config needs; discovery fills some, flags or prompts the rest."""

    site: str
    broker: str
    fit: bool
    serial: str | None
    dialect: str = "auto"
    broute_id: str | None = None
    ca_file: Path | None = None
    echonet_bind: str | None = None
    store_path: Path | None = None
    backend_key: Path | None = None
    devices: list[FoundDevice] = field(default_factory=list)


# ------------------------------------------------------------------------------------ checks


def check_site(value: str) -> str:
    value = value.strip()
    if not SITE_ID.match(value):
        raise ValueError("site id: 3-64 characters of a-z, 0-9 and -")
    return value


def check_broker(value: str) -> str:
    value = value.strip()
    if not re.match(r"^mqtts?://[^/:\s]+(:\d{1,5})?/?$", value):
        raise ValueError("broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    return value.rstrip("/")


def check_broute_id(value: str) -> str:
    value = value.strip()
    if not HEX32.match(value):
        raise ValueError("B-route ID: 32 hexadecimal characters (from the grid operator's letter)")
    return value.upper()


def check_password(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 32 or not value.isascii() or not value.isprintable():
        raise ValueError("B-route password: printable ASCII, usually 12 characters")
    if " " in value:
        raise ValueError("B-route password: no spaces")
    return value


def parse_modbus_host(text: str) -> tuple[str, int, int]:
    """``HOST[:PORT][/UNIT]`` → (host, port, unit id)."""
    m = re.match(r"^([^:/\s]+)(?::(\d{1,5}))?(?:/(\d{1,3}))?$", text.strip())
    if not m:
        raise ValueError(f"--modbus-host must be HOST[:PORT][/UNIT], not {text!r}")
    port = int(m.group(2) or 502)
    unit = int(m.group(3) or 1)
    if not 1 <= port <= 65535 or not 0 <= unit <= 255:
        raise ValueError(f"--modbus-host {text!r}: port 1-65535, unit 0-255")
    return m.group(1), port, unit


def serial_candidates() -> list[str]:
    """Stable names of the serial adapters plugged in (what ``broute.port`` should say)."""
    folder = Path("/dev/serial/by-id")
    with contextlib.suppress(OSError):
        return sorted(str(p) for p in folder.iterdir())
    return []


# --------------------------------------------------------------------------------- discovery


async def discover_echonet(
    bind: str, hosts: Sequence[str], clock: Clock, timeout_s: float = 3.0
) -> tuple[list[FoundDevice], dict[str, str]]:
    """Devices of the kinds chisan drives on the nodes found (multicast when no ``hosts``),
    and the addresses that did not answer. A PV's FIT contract (C1) is read on the way."""
    from drivers.echonet.adapters import EchonetPv
    from drivers.echonet.discovery import discover
    from drivers.echonet.transport import EchonetError, EchonetTransport, TransportSettings

    multicast = not hosts
    settings = TransportSettings(
        bind=bind,
        multicast_interface=bind if multicast else None,
        timeout_s=timeout_s,
        retries=1,
    )
    transport = EchonetTransport(settings, clock)
    found: list[FoundDevice] = []
    async with transport:
        result = await discover(transport, hosts=hosts, multicast=multicast, window_s=timeout_s)
        for node in result.nodes:
            for obj in node.objects:
                kind = CLASS_KINDS.get(obj.eoj.class_id)
                if kind is None:
                    continue
                maker = obj.maker_name or node.maker_name
                device = FoundDevice(
                    kind,
                    "echonet",
                    node.address,
                    eoj=str(obj.eoj),
                    label=f"{obj.class_name}{f' ({maker})' if maker else ''}",
                )
                if kind == "pv":
                    pv = EchonetPv("pv", node.address, obj.eoj, transport, clock)
                    with contextlib.suppress(EchonetError):
                        device.facts["fit_contract"] = (await pv.fit_contract()).value
                found.append(device)
    return found, dict(result.failures)


async def sunspec_scan(host: str, port: int, unit_id: int, clock: Clock) -> FoundDevice:
    """One Modbus TCP host's SunSpec device (the one place setup asks the Modbus driver).

    Storage (model 124) makes it a battery, an inverter model alone a PV inverter. Raises the
    driver's :class:`~drivers.modbus.transport.ModbusError` when nothing SunSpec answers.
    """
    from drivers.modbus.adapters import ModbusProtocolError, SunSpecDevice
    from drivers.modbus.sunspec import INVERTER_MODELS
    from drivers.modbus.transport import ModbusSettings, ModbusTransport

    where = f"{host}:{port}/{unit_id}"
    transport = ModbusTransport(
        where, ModbusSettings(host=host, port=port, unit_id=unit_id, timeout_s=3.0)
    )
    device = SunSpecDevice(where, transport, clock)
    try:
        models = await device.models()
        common = await device.common() if 1 in models else None
    finally:
        with contextlib.suppress(Exception):
            await transport.close()
    if 124 in models:
        kind = "battery"
    elif any(m in models for m in INVERTER_MODELS):
        kind = "pv"
    else:
        raise ModbusProtocolError(where, f"SunSpec models {sorted(models)}: no inverter or storage")
    label = "SunSpec " + ("storage inverter" if kind == "battery" else "PV inverter")
    if common is not None and (common.manufacturer or common.model):
        label += f" ({' '.join(p for p in (common.manufacturer, common.model) if p)})"
    return FoundDevice(
        kind,
        "modbus",
        host,
        port=port,
        unit_id=unit_id,
        label=label,
        facts={"models": sorted(models)},
    )


async def broute_scan(port: str, clock: Clock, durations: tuple[int, ...] = (6, 7, 8)) -> Any:
    """The scan-only machine: which meters the module hears, and the module's dialect."""
    from drivers.broute.dialect import Dialect
    from drivers.broute.scan import ScanConfig
    from drivers.broute.transport import ModuleLink

    link = await ModuleLink.open(port, clock=clock)
    try:
        return await link.scan(ScanConfig(Dialect.AUTO, durations))
    finally:
        await link.close()


def name_devices(devices: Iterable[FoundDevice]) -> list[FoundDevice]:
    """Names as an installer would pick them: the kind, then kind-2, kind-3…"""
    seen: dict[str, int] = {}
    out = []
    for dev in devices:
        seen[dev.kind] = seen.get(dev.kind, 0) + 1
        dev.name = dev.kind if seen[dev.kind] == 1 else f"{dev.kind}-{seen[dev.kind]}"
        out.append(dev)
    return out


def fit_from(devices: Iterable[FoundDevice]) -> bool | None:
    """The FIT answer a PV gave (C1), when one did."""
    for dev in devices:
        contract = dev.facts.get("fit_contract")
        if contract in ("fit", "non_fit"):
            return bool(contract == "fit")
    return None


# ---------------------------------------------------------------------------------- rendering


def _s(value: object) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(value), ensure_ascii=False)


def render_config(a: Answers, written_at: str) -> str:
    lines = [
        f"# Written by chisan setup on {written_at}.",
        "# Check it with: chisan check-config -c <this file>; then: chisan doctor -c <this file>",
        "",
        "[site]",
        f"id = {_s(a.site)}",
        f"fit = {str(a.fit).lower()}",
        "",
        "[mqtt]",
        f"url = {_s(a.broker)}",
    ]
    if a.ca_file is not None:
        lines.append(f"ca_file = {_s(a.ca_file)}")
    if a.serial is not None and a.broute_id is not None:
        lines += [
            "",
            "[broute]",
            f"port = {_s(a.serial)}",
            f"dialect = {_s(a.dialect)}",
            f"id = {_s(a.broute_id)}",
            f"password_file = {_s(PASSWORD_FILE)}",
        ]
    if a.echonet_bind and a.echonet_bind != "0.0.0.0":
        lines += [
            "",
            "[echonet]",
            f"bind = {_s(a.echonet_bind)}",
            f"multicast_interface = {_s(a.echonet_bind)}",
        ]
    batteries = 0
    for dev in a.devices:
        lines += ["", "[[device]]"]
        if dev.label:
            lines.insert(len(lines) - 1, f"# {dev.label}")
        lines += [
            f"name = {_s(dev.name)}",
            f"kind = {_s(dev.kind)}",
            f"protocol = {_s(dev.protocol)}",
            f"host = {_s(dev.host)}",
        ]
        if dev.protocol == "echonet":
            lines.append(f"eoj = {_s(dev.eoj)}")
        else:
            lines += [f"port = {dev.port}", f"unit_id = {dev.unit_id}", "sunspec = true"]
        if dev.kind == "battery":
            batteries += 1
            if batteries > 1:
                # One battery is controlled: the first found is it; this one waits, disabled.
                lines += ["enabled = false  # one battery is controlled; swap to choose this one"]
    if a.backend_key is not None:
        lines += ["", "[commands]", f"public_key_file = {_s(a.backend_key)}"]
    if a.store_path is not None:
        lines += ["", "[store]", f"path = {_s(a.store_path)}"]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write a file atomically with mode 0600 from its first byte (never briefly readable)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
