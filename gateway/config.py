"""The typed configuration, built once from TOML by the loader that also reports every mistake.

Every key is documented in README.md and config/example.toml. Relative file paths are resolved
against the config file's folder. Components receive the section they need, never the raw TOML.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers.modbus import registermap as rm
from drivers.modbus.registermap import RegisterSpec
from gateway import secrets
from gateway.config_errors import Collector, ConfigError, ConfigIssue, describe

SITE_ID = re.compile(r"^[a-z0-9-]{3,64}$")
DEVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
EOJ_RE = re.compile(r"^[0-9A-Fa-f]{6}$")

DIALECTS = ("bp35a1", "bp35c0", "rl7023", "auto")
DEVICE_KINDS = ("battery", "pv", "ev", "water_heater", "aircon")
PROTOCOLS = ("echonet", "modbus")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
MQTT_PROTOCOLS = ("5", "3.1.1")
#: ECHONET classes that may serve each device kind; an eoj of another class is a typo.
KIND_CLASSES: dict[str, tuple[int, ...]] = {
    "battery": (0x027D,),
    "pv": (0x0279,),
    "ev": (0x027E, 0x02A1),
    "water_heater": (0x026B,),
    "aircon": (0x0130,),
}


@dataclass(frozen=True)
class SiteConfig:
    id: str
    timezone: str = "Asia/Tokyo"
    fit: bool = False


@dataclass(frozen=True)
class MqttConfig:
    url: str
    client_id: str
    topic_prefix: str = "chisan/v1"
    keepalive_s: int = 60
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    protocol: str = "5"
    session_expiry_s: int = 7 * 24 * 3600
    telemetry_s: float = 10.0
    ack_timeout_s: float = 60.0
    resend_per_s: float = 50.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 300.0

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


@dataclass(frozen=True)
class BrouteConfig:
    port: str
    id: str
    password_file: Path
    dialect: str = "auto"
    poll_s: float = 10.0
    baudrate: int = 115200
    timeout_s: float = 10.0
    retries: int = 3
    min_interval_s: float = 2.0
    scan_durations: tuple[int, ...] = (6, 7, 8)


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    kind: str
    protocol: str
    host: str | None = None
    eoj: str | None = None
    port: int | None = None
    serial: str | None = None
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_s: float = 3.0
    retries: int = 1
    unit_id: int = 1
    sunspec: bool = False
    registers: tuple[RegisterSpec, ...] = ()
    poll_s: float = 10.0
    enabled: bool = True
    #: Installer-declared: the battery may discharge into export (the grid-connection contract
    #: allows reverse flow). Used only where the device cannot say; the device's own word wins.
    reverse_flow: bool | None = None


@dataclass(frozen=True)
class LimitsConfig:
    soc_reserve_pct: float = 30
    soc_max_pct: float = 95
    export_limit_w: int = 4500
    breaker_a: int = 60
    breaker_margin_a: float = 5.0
    meter_stale_s: float = 60.0
    failsafe_hysteresis_s: float = 120.0
    min_dwell_s: float = 60.0
    battery_stale_s: float = 60.0


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("/var/lib/chisan/chisan.db")
    backfill_days: int = 7
    key_file: Path | None = None

    @property
    def site_key(self) -> Path:
        return self.key_file or self.path.parent / "site-ed25519.pem"


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class EchonetConfig:
    bind: str = "0.0.0.0"
    multicast_interface: str = "0.0.0.0"
    timeout_s: float = 3.0
    retries: int = 2
    max_properties: int = 10


@dataclass(frozen=True)
class CommandsConfig:
    public_key_file: Path | None = None
    require_signature: bool = True
    issued_at_window_s: float = 600.0
    max_payload_bytes: int = 16384


@dataclass(frozen=True)
class ControlConfig:
    socket: Path = Path("/run/chisan/control.sock")
    reassert_s: float = 30.0


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = 9464
    allow_remote: bool = False


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = False
    url: str = ""
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    client_id: str = ""
    discovery_prefix: str = "homeassistant"
    node_id: str = ""
    state_interval_s: float = 10.0


@dataclass(frozen=True)
class Config:
    source: Path
    site: SiteConfig
    mqtt: MqttConfig
    broute: BrouteConfig | None
    devices: tuple[DeviceConfig, ...]
    limits: LimitsConfig
    store: StoreConfig
    log: LogConfig
    echonet: EchonetConfig
    commands: CommandsConfig
    control: ControlConfig
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    home_assistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)


# --------------------------------------------------------------------------------------------
# Typed extraction with error collection


class _Table:
    """Reads typed values out of one TOML table, recording every problem in the collector."""

    def __init__(self, col: Collector, path: str, data: Any, base: Path) -> None:
        self.col = col
        self.path = path
        self.base = base
        if data is None:
            data = {}
        if not isinstance(data, dict):
            col.expected(path, "a table", data)
            data = {}
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                self.col.add(self.key(name), "missing required key")
            return None
        return self.data[name]

    def string(
        self,
        name: str,
        default: str | None = None,
        *,
        required: bool = False,
        choices: tuple[str, ...] | None = None,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str | None:
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, str):
            self.col.expected(self.key(name), "a string", value)
            return default
        if choices is not None and value not in choices:
            self.col.expected(self.key(name), "one of " + " | ".join(choices), value)
            return default
        if pattern is not None and not pattern.match(value):
            self.col.expected(self.key(name), what or f"a string matching {pattern.pattern}", value)
            return default
        return value

    def boolean(self, name: str, default: bool, *, required: bool = False) -> bool:
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.col.expected(self.key(name), "true or false", value)
            return default
        return value

    def integer(
        self,
        name: str,
        default: int | None,
        *,
        lo: int | None = None,
        hi: int | None = None,
        required: bool = False,
    ) -> int | None:
        value = self._get(name, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.col.expected(self.key(name), f"an integer{_range(lo, hi)}", value)
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.col.expected(self.key(name), f"an integer{_range(lo, hi)}", value)
            return default
        return value

    def number(
        self,
        name: str,
        default: float | None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        positive: bool = False,
        required: bool = False,
    ) -> float | None:
        value = self._get(name, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.col.expected(self.key(name), f"a number{_range(lo, hi, positive)}", value)
            return default
        bad = (lo is not None and value < lo) or (hi is not None and value > hi)
        if bad or (positive and value <= 0):
            self.col.expected(self.key(name), f"a number{_range(lo, hi, positive)}", value)
            return default
        return float(value) if isinstance(value, float) else value

    def file(self, name: str, *, required: bool = False, secret: bool = False) -> Path | None:
        """A path that must exist; secret files must also be private (0600)."""
        raw = self.string(name, required=required)
        if raw is None:
            return None
        if not raw:
            self.col.expected(self.key(name), "a file path", raw)
            return None
        if "\0" in raw:
            self.col.expected(self.key(name), "a file path (no NUL character)", raw)
            return None
        try:
            path = Path(raw).expanduser()
            if not path.is_absolute():
                path = (self.base / path).resolve()
            real, managed = secrets.resolve(path)
            if not real.exists():
                self.col.add(self.key(name), f"file not found: {path}")
            elif not real.is_file():
                self.col.add(self.key(name), f"not a regular file: {path}")
            elif secret and not managed:
                problem = secrets.check_private(real)
                if problem:
                    self.col.add(self.key(name), f"secret file {real} is {problem}")
        except (OSError, RuntimeError) as exc:
            # A name too long, a loop of links, a folder we may not read, ~user of no user.
            self.col.add(self.key(name), f"cannot use {raw!r}: {_why(exc)}")
            return None
        return path

    def path_value(self, name: str, default: Path) -> Path:
        return self.optional_path(name) or default

    def optional_path(self, name: str) -> Path | None:
        """A path that need not exist yet, resolved against the config's folder; None if unset
        or unusable (then an issue is recorded)."""
        raw = self.string(name)
        if raw is None:
            return None
        if "\0" in raw:
            self.col.expected(self.key(name), "a path (no NUL character)", raw)
            return None
        try:
            path = Path(raw).expanduser()
            return path if path.is_absolute() else (self.base / path).resolve()
        except (OSError, RuntimeError) as exc:
            self.col.add(self.key(name), f"cannot use {raw!r}: {_why(exc)}")
            return None

    def forbid(self, name: str, message: str) -> None:
        if name in self.data:
            self.used.add(name)
            self.col.add(self.key(name), message)

    def done(self) -> None:
        self.col.unknown_keys(self.path, self.data, sorted(self.used))


def _why(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _range(lo: float | None, hi: float | None, positive: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" {lo}-{hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return " > 0" if positive else ""


_SECRET_IN_MAIN = "secrets are not allowed in the config file; put it in its own file (0600) "


def _site(col: Collector, raw: dict[str, Any], base: Path) -> SiteConfig:
    t = _Table(col, "site", raw.get("site"), base)
    if "site" not in raw:
        col.add("site", "missing required table [site]")
    sid = t.string("id", "invalid", required=True, pattern=SITE_ID, what="3-64 of a-z 0-9 -")
    tz = t.string("timezone", "Asia/Tokyo")
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            t.col.expected("site.timezone", 'an IANA time zone such as "Asia/Tokyo"', tz)
    fit = t.boolean("fit", False, required=True)
    t.done()
    return SiteConfig(id=sid or "invalid", timezone=tz or "Asia/Tokyo", fit=fit)


def _mqtt(col: Collector, raw: dict[str, Any], base: Path, site_id: str) -> MqttConfig:
    t = _Table(col, "mqtt", raw.get("mqtt"), base)
    if "mqtt" not in raw:
        col.add("mqtt", "missing required table [mqtt]")
    url = t.string("url", "mqtt://127.0.0.1:1883", required=True) or "mqtt://127.0.0.1:1883"
    try:
        parts = urlsplit(url)
        _ = parts.port
        valid = parts.scheme in ("mqtt", "mqtts") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        col.expected("mqtt.url", "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]", url)
    client_id = t.string("client_id", site_id) or site_id
    prefix = t.string("topic_prefix", "chisan/v1") or "chisan/v1"
    if any(c in prefix for c in "#+") or prefix.startswith("/") or prefix.endswith("/"):
        col.expected("mqtt.topic_prefix", "a topic without wildcards or leading/trailing /", prefix)
    keepalive = t.integer("keepalive_s", 60, lo=5, hi=3600) or 60
    ca = t.file("ca_file")
    cert = t.file("cert_file")
    key = t.file("key_file", secret=True)
    if url.startswith("mqtts://") and ca is None and "ca_file" not in t.data:
        col.add("mqtt.ca_file", "mqtts:// requires ca_file (the broker's CA certificate)")
    if (cert is None) != (key is None) and not ("cert_file" in t.data and "key_file" in t.data):
        col.add("mqtt.cert_file", "cert_file and key_file go together (client-certificate TLS)")
    if (cert or key) and not url.startswith("mqtts://"):
        col.add("mqtt.url", "client certificates need an mqtts:// url")
    username = t.string("username")
    password_file = t.file("password_file", secret=True)
    t.forbid("password", _SECRET_IN_MAIN + "and name it in mqtt.password_file")
    protocol = t.string("protocol", "5", choices=MQTT_PROTOCOLS) or "5"
    expiry = t.integer("session_expiry_s", 7 * 24 * 3600, lo=0, hi=0xFFFFFFFF)
    telemetry = t.number("telemetry_s", 10.0, lo=1, hi=3600)
    ack_timeout = t.number("ack_timeout_s", 60.0, lo=1, hi=86400)
    resend = t.number("resend_per_s", 50.0, positive=True)
    rmin = t.number("reconnect_min_s", 1.0, positive=True)
    rmax = t.number("reconnect_max_s", 300.0, positive=True)
    if rmin is not None and rmax is not None and rmax < rmin:
        col.add("mqtt.reconnect_max_s", f"must be >= reconnect_min_s ({rmin}), found {rmax}")
    t.done()
    return MqttConfig(
        url=url,
        client_id=client_id,
        topic_prefix=prefix,
        keepalive_s=keepalive,
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        username=username,
        password_file=password_file,
        protocol=protocol,
        session_expiry_s=expiry if expiry is not None else 7 * 24 * 3600,
        telemetry_s=telemetry or 10.0,
        ack_timeout_s=ack_timeout or 60.0,
        resend_per_s=resend or 50.0,
        reconnect_min_s=rmin or 1.0,
        reconnect_max_s=rmax or 300.0,
    )


def _broute(col: Collector, raw: dict[str, Any], base: Path) -> BrouteConfig | None:
    if "broute" not in raw:
        return None
    t = _Table(col, "broute", raw.get("broute"), base)
    port = t.string("port", "/dev/ttyUSB0", required=True) or "/dev/ttyUSB0"
    dialect = t.string("dialect", "auto", choices=DIALECTS) or "auto"
    bid = t.string("id", "", required=True, pattern=HEX32, what="32 hexadecimal characters")
    pwd = t.file("password_file", required=True, secret=True)
    t.forbid("password", _SECRET_IN_MAIN + "and name it in broute.password_file")
    if pwd is not None:
        _check_broute_password(col, pwd)
    poll = t.number("poll_s", 10.0, lo=5, hi=3600)
    baud = t.integer("baudrate", 115200, lo=1200, hi=921600)
    timeout = t.number("timeout_s", 10.0, lo=1, hi=120)
    retries = t.integer("retries", 3, lo=0, hi=10)
    interval = t.number("min_interval_s", 2.0, lo=0, hi=60)
    durations = t._get("scan_durations", False)
    scan: tuple[int, ...] = (6, 7, 8)
    if durations is not None:
        ok = (
            isinstance(durations, list)
            and durations
            and all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 14 for d in durations
            )
        )
        if ok:
            scan = tuple(durations)
        else:
            col.expected("broute.scan_durations", "a non-empty array of integers 1-14", durations)
    t.done()
    return BrouteConfig(
        port=port,
        id=(bid or "").upper(),
        password_file=pwd or Path("/nonexistent"),
        dialect=dialect,
        poll_s=poll or 10.0,
        baudrate=baud or 115200,
        timeout_s=timeout or 10.0,
        retries=retries if retries is not None else 3,
        min_interval_s=interval if interval is not None else 2.0,
        scan_durations=scan,
    )


def _check_broute_password(col: Collector, path: Path) -> None:
    """The grid operator issues a 12-character password; a file holding anything else is a typo."""
    real, managed = secrets.resolve(path)
    if not real.is_file() or (not managed and secrets.check_private(real)):
        return
    try:
        value = real.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        col.add("broute.password_file", f"cannot read {real} as text")
        return
    if len(value) != 12 or not value.isascii() or not value.isprintable() or " " in value:
        col.add(
            "broute.password_file",
            f"expected the 12-character B-route password in {real}, found {len(value)} characters",
        )


def _devices(col: Collector, raw: dict[str, Any], base: Path) -> tuple[DeviceConfig, ...]:
    items = raw.get("device", [])
    if not isinstance(items, list):
        col.expected("device", "an array of tables [[device]]", items)
        return ()
    seen: dict[str, int] = {}
    out: list[DeviceConfig] = []
    for i, item in enumerate(items):
        t = _Table(col, f"device[{i}]", item, base)
        name = t.string(
            "name",
            f"device{i}",
            required=True,
            pattern=DEVICE_NAME,
            what="1-32 of a-z 0-9 _ - starting with a letter or digit",
        )
        if name is not None and "name" in t.data:
            if name in seen:
                col.add(
                    t.key("name"), f'duplicate device name "{name}" (also device[{seen[name]}])'
                )
            else:
                seen[name] = i
        kind = t.string("kind", None, required=True, choices=DEVICE_KINDS)
        protocol = t.string("protocol", None, required=True, choices=PROTOCOLS)
        host = t.string("host")
        eoj = t.string("eoj")
        port_raw = t._get("port", False)
        serial = t.string("serial")
        unit_id = t.integer("unit_id", 1, lo=0, hi=255)
        sunspec = t.boolean("sunspec", False)
        baud = t.integer("baudrate", 9600, lo=1200, hi=921600)
        registers = t._get("registers", False)
        parity = t.string("parity", "N", choices=MODBUS_PARITIES) or "N"
        stopbits = t.integer("stopbits", 1, lo=1, hi=2) or 1
        bytesize = t.integer("bytesize", 8, lo=7, hi=8) or 8
        mb_timeout = t.number("timeout_s", 3.0, lo=0.05, hi=60) or 3.0
        mb_retries = t.integer("retries", 1, lo=0, hi=5)
        poll = t.number("poll_s", 10.0, lo=1, hi=3600)
        enabled = t.boolean("enabled", True)
        reverse_flow: bool | None = None
        if "reverse_flow" in t.data:
            reverse_flow = t.boolean("reverse_flow", False)
            if kind is not None and kind != "battery":
                col.add(t.key("reverse_flow"), f"only valid for batteries, not a {kind}")
        specs: tuple[RegisterSpec, ...] = ()
        port: int | None = None
        if port_raw is not None:
            if (
                isinstance(port_raw, int)
                and not isinstance(port_raw, bool)
                and 1 <= port_raw <= 65535
            ):
                port = port_raw
            else:
                col.expected(t.key("port"), "a TCP port 1-65535", port_raw)
        if host is not None:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                if not re.match(r"^[A-Za-z0-9.-]{1,253}$", host):
                    col.expected(t.key("host"), "an IP address or host name", host)
        if protocol == "echonet":
            if host is None and "host" not in t.data:
                col.add(t.key("host"), "missing required key (echonet devices need host)")
            if eoj is None and "eoj" not in t.data:
                col.add(t.key("eoj"), "missing required key (echonet devices need eoj)")
            elif eoj is not None:
                if not EOJ_RE.match(eoj):
                    col.expected(t.key("eoj"), '6 hexadecimal digits such as "027D01"', eoj)
                    eoj = None
                else:
                    eoj = eoj.upper()
                    cls = int(eoj[:4], 16)
                    if kind in KIND_CLASSES and cls not in KIND_CLASSES[kind]:
                        want = " or ".join(f"{c:04X}xx" for c in KIND_CLASSES[kind])
                        col.add(t.key("eoj"), f'a {kind} has class {want}, found "{eoj}"')
                    if eoj[4:] == "00":
                        col.expected(t.key("eoj"), "an instance 01-7F (00 addresses all)", eoj)
            for key in ("port", "serial", "unit_id", "sunspec", "registers", *MODBUS_ONLY):
                if key in t.data:
                    col.add(t.key(key), 'only valid for protocol = "modbus"')
        elif protocol == "modbus":
            if "eoj" in t.data:
                col.add(t.key("eoj"), 'an eoj is only valid for protocol = "echonet"')
            if host is None and serial is None:
                col.add(t.key("host"), "modbus devices need host (TCP) or serial (RTU)")
            if host is not None and serial is not None:
                col.add(t.key("serial"), "give host (TCP) or serial (RTU), not both")
            if serial is None:
                for key in ("parity", "stopbits", "bytesize", "baudrate"):
                    if key in t.data:
                        col.add(t.key(key), "only valid for serial (RTU) devices")
            if registers is not None:
                if sunspec:
                    col.add(t.key("registers"), "give sunspec = true or registers, not both")
                specs = _registers(col, t.key("registers"), registers, kind)
            elif not sunspec:
                col.add(t.key("sunspec"), "modbus devices need sunspec = true or a register map")
        t.done()
        out.append(
            DeviceConfig(
                name=name or f"device{i}",
                kind=kind or "battery",
                protocol=protocol or "echonet",
                host=host,
                eoj=eoj,
                port=port if port is not None else (502 if protocol == "modbus" else None),
                serial=serial,
                baudrate=baud or 9600,
                parity=parity,
                stopbits=stopbits,
                bytesize=bytesize,
                timeout_s=mb_timeout,
                retries=mb_retries if mb_retries is not None else 1,
                unit_id=unit_id if unit_id is not None else 1,
                sunspec=sunspec,
                registers=specs,
                poll_s=poll or 10.0,
                enabled=enabled,
                reverse_flow=reverse_flow,
            )
        )
    _check_modbus_links(col, out)
    _check_one_battery(col, out)
    return tuple(out)


def _check_one_battery(col: Collector, devices: list[DeviceConfig]) -> None:
    """The interlock's arithmetic (house = meter − battery) and the DR acks know one battery."""
    first: tuple[int, DeviceConfig] | None = None
    for i, dev in enumerate(devices):
        if dev.kind != "battery" or not dev.enabled:
            continue
        if first is None:
            first = (i, dev)
            continue
        j, other = first
        col.add(
            f"device[{i}].kind",
            f"only one battery can be controlled; device[{j}] ({other.name}) is already the "
            f"battery (set enabled = false on one of them)",
        )


# --------------------------------------------------------------------------------------------
# Modbus: register maps and shared links

MODBUS_PARITIES = ("N", "E", "O")
MODBUS_ONLY = ("baudrate", "parity", "stopbits", "bytesize", "timeout_s", "retries")


def _registers(col: Collector, path: str, raw: Any, kind: str | None) -> tuple[RegisterSpec, ...]:
    """``[[device.registers]]``: every entry checked, then the map as a whole for ``kind``."""
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        col.expected(path, "an array of tables [[device.registers]]", raw)
        return ()
    specs: list[RegisterSpec] = []
    where: list[int] = []
    seen: dict[str, int] = {}
    for j, item in enumerate(raw):
        spec = _register(col, f"{path}[{j}]", item, kind)
        if spec is None:
            continue
        if spec.meaning in seen:
            col.add(
                f"{path}[{j}].meaning",
                f'duplicate meaning "{spec.meaning}" (also {path}[{seen[spec.meaning]}])',
            )
            continue
        seen[spec.meaning] = j
        specs.append(spec)
        where.append(j)
    for a, b in rm.overlaps(specs):
        first, second = specs[a], specs[b]
        col.add(
            f"{path}[{where[b]}].address",
            f"{second.function} registers {second.address}-{second.end - 1} ({second.meaning}) "
            f"overlap {path}[{where[a]}] at {first.address}-{first.end - 1} ({first.meaning})",
        )
    if kind in rm.REQUIRED and raw:
        # A meaning named by a broken entry, or mistyped, was reported there already.
        named = {str(item.get("meaning")) for item in raw}
        mistyped = any(m not in rm.MEANINGS or kind not in rm.MEANINGS[m].kinds for m in named)
        for missing in [] if mistyped else rm.missing_meanings(kind, named):
            col.add(
                path,
                f"a {kind} register map needs meaning {missing}",
                line=col.lines.get(f"{path}[0]"),
            )
    elif kind is not None and kind not in rm.REQUIRED:
        col.add(path, f"register maps drive battery and pv devices, not a {kind}")
    return tuple(specs)


def _register(col: Collector, path: str, item: Any, kind: str | None) -> RegisterSpec | None:
    t = _Table(col, path, item, Path())
    meaning = t.string("meaning", required=True)
    info = None
    if meaning is not None:
        info = rm.MEANINGS.get(meaning)
        if info is None:
            close = difflib.get_close_matches(meaning, list(rm.MEANINGS), n=1, cutoff=0.5)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            col.add(
                t.key("meaning"),
                f"expected one of {' | '.join(rm.MEANINGS)}, found {describe(meaning)}{hint}",
            )
        elif kind is not None and kind not in info.kinds:
            fits = [m for m, i in rm.MEANINGS.items() if kind in i.kinds]
            col.add(
                t.key("meaning"),
                f'"{meaning}" is not a {kind} reading; a {kind} has ' + ", ".join(fits),
            )
            info = None
    address = t.integer("address", None, lo=0, hi=0xFFFF)
    function = t.string("function", "holding", choices=rm.FUNCTIONS) or "holding"
    rtype = t.string("type", "u16", choices=tuple(rm.TYPES)) or "u16"
    order = t.string("word_order", "big", choices=rm.WORD_ORDERS) or "big"
    scale = t.number("scale", 1.0)
    if scale == 0:
        col.expected(t.key("scale"), "a non-zero number", scale)
    unit = t.string("unit")
    value = t.number("value", None)
    values_raw = t._get("values", False)
    t.done()
    if info is None or meaning is None:
        return None
    ok = True
    if unit is not None and unit not in rm.UNITS[info.dimension]:
        units = " | ".join(u for u in rm.UNITS[info.dimension] if u) or "no unit"
        col.expected(t.key("unit"), f"{units} for {meaning}", unit)
        ok = False
    if value is not None:
        if not info.constant_ok:
            col.add(
                t.key("value"),
                f"a constant value is only allowed for capacity and rates, not {meaning}",
            )
            ok = False
        elif "address" in t.data:
            col.add(t.key("value"), "give address (a register) or value (a constant), not both")
            ok = False
    elif "address" not in t.data:
        col.add(
            t.key("address"), "missing required key" + (" (or value)" if info.constant_ok else "")
        )
        ok = False
    if info.write and function != "holding":
        col.add(
            t.key("function"),
            f'{meaning} is written by the gateway: expected "holding", found "{function}" '
            "(input registers are read-only)",
        )
        ok = False
    if info.write and info.signed and rtype in ("u16", "u32"):
        col.expected(t.key("type"), "s16 | s32 | f32 (+ charge / - discharge)", rtype)
        ok = False
    values: dict[str, int] = {}
    if meaning == "mode":
        values = _mode_values(col, t.key("values"), values_raw, rtype)
        ok = ok and bool(values)
    elif values_raw is not None:
        col.add(t.key("values"), 'only valid for meaning = "mode"')
    if not ok or (address is None and value is None) or scale is None or scale == 0:
        return None
    return RegisterSpec(
        meaning=meaning,
        address=address if value is None else None,
        function=function,
        type=rtype,
        word_order=order,
        scale=float(scale),
        unit=unit or info.unit,
        values=values,
        value=float(value) if value is not None else None,
    )


def _mode_values(col: Collector, path: str, raw: Any, rtype: str) -> dict[str, int]:
    if raw is None:
        col.add(
            path, "missing required key (the device's code for each of " + ", ".join(rm.MODES) + ")"
        )
        return {}
    if not isinstance(raw, dict):
        col.expected(
            path, "a table such as { auto = 0, charge = 1, discharge = 2, standby = 3 }", raw
        )
        return {}
    col.unknown_keys(path, raw, rm.MODES)
    values: dict[str, int] = {}
    for mode in rm.MODES:
        code = raw.get(mode)
        if code is None:
            col.add(f"{path}.{mode}", "missing required key (the device's code for this mode)")
        elif isinstance(code, bool) or not isinstance(code, int) or not -32768 <= code <= 0xFFFF:
            col.expected(f"{path}.{mode}", "an integer register value", code)
        else:
            values[mode] = code
    codes = list(values.values())
    if len(set(codes)) != len(codes):
        col.add(path, f"two modes share one code: {values}")
        return {}
    if rtype == "f32":
        col.add(path, "a mode register holds integer codes: use u16, s16, u32 or s32")
        return {}
    if set(values) != set(rm.MODES) or any(k not in rm.MODES for k in raw):
        return {}
    return values


def _link_key(dev: DeviceConfig) -> tuple[str, str, int]:
    return ("tcp", dev.host, dev.port or 502) if dev.host else ("rtu", dev.serial or "", 0)


def _same_link(a: DeviceConfig, b: DeviceConfig) -> bool:
    return a.protocol == b.protocol == "modbus" and _link_key(a) == _link_key(b)


def _check_modbus_links(col: Collector, devices: list[DeviceConfig]) -> None:
    """Devices on one serial port or TCP endpoint share one connection: one set of settings."""
    first: dict[tuple[str, str, int], tuple[int, DeviceConfig]] = {}
    for i, dev in enumerate(devices):
        if dev.protocol != "modbus" or not dev.enabled:
            continue
        key = _link_key(dev)
        if key not in first:
            first[key] = (i, dev)
            continue
        j, other = first[key]
        where = f"{dev.host}:{dev.port}" if dev.host else dev.serial
        twin = next(
            (
                k
                for k, d in enumerate(devices[:i])
                if _same_link(d, dev)
                and d.unit_id == dev.unit_id
                and d.kind == dev.kind
                and d.enabled
            ),
            None,
        )
        if twin is not None:  # a hybrid inverter may serve a pv and a battery at one unit id
            col.add(
                f"device[{i}].unit_id",
                f"unit {dev.unit_id} on {where} is already the {dev.kind} device[{twin}] "
                f"({devices[twin].name})",
            )
        for name in ("baudrate", "parity", "stopbits", "bytesize", "timeout_s"):
            mine, theirs = getattr(dev, name), getattr(other, name)
            if mine != theirs:
                col.add(
                    f"device[{i}].{name}",
                    f"{where} is shared with device[{j}] ({other.name}), which has "
                    f"{name} = {theirs!r}; found {mine!r}",
                )


def _limits(col: Collector, raw: dict[str, Any], base: Path) -> LimitsConfig:
    t = _Table(col, "limits", raw.get("limits"), base)
    d = LimitsConfig()
    reserve = t.number("soc_reserve_pct", d.soc_reserve_pct, lo=0, hi=100)
    soc_max = t.number("soc_max_pct", d.soc_max_pct, lo=0, hi=100)
    export = t.integer("export_limit_w", d.export_limit_w, lo=0)
    breaker = t.integer("breaker_a", d.breaker_a, lo=10, hi=120)
    margin = t.number("breaker_margin_a", d.breaker_margin_a, lo=0, hi=50)
    stale = t.number("meter_stale_s", d.meter_stale_s, lo=5, hi=3600)
    hyst = t.number("failsafe_hysteresis_s", d.failsafe_hysteresis_s, lo=0, hi=3600)
    dwell = t.number("min_dwell_s", d.min_dwell_s, lo=0, hi=3600)
    battery_stale = t.number("battery_stale_s", d.battery_stale_s, lo=5, hi=3600)
    if reserve is not None and soc_max is not None and soc_max <= reserve:
        col.add(
            "limits.soc_max_pct",
            f"must be greater than limits.soc_reserve_pct ({_num(reserve)}), found {_num(soc_max)}",
        )
    if breaker is not None and margin is not None and margin >= breaker:
        col.add("limits.breaker_margin_a", f"must be less than breaker_a ({breaker})")
    t.done()
    return LimitsConfig(
        soc_reserve_pct=reserve if reserve is not None else d.soc_reserve_pct,
        soc_max_pct=soc_max if soc_max is not None else d.soc_max_pct,
        export_limit_w=export if export is not None else d.export_limit_w,
        breaker_a=breaker or d.breaker_a,
        breaker_margin_a=margin if margin is not None else d.breaker_margin_a,
        meter_stale_s=stale or d.meter_stale_s,
        failsafe_hysteresis_s=hyst if hyst is not None else d.failsafe_hysteresis_s,
        min_dwell_s=dwell if dwell is not None else d.min_dwell_s,
        battery_stale_s=battery_stale or d.battery_stale_s,
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _store(col: Collector, raw: dict[str, Any], base: Path) -> StoreConfig:
    t = _Table(col, "store", raw.get("store"), base)
    path = t.path_value("path", StoreConfig.path)
    days = t.integer("backfill_days", 7, lo=0, hi=99)
    key_path = t.optional_path("key_file")
    if key_path is not None:
        try:
            problem = secrets.check_private(key_path) if key_path.exists() else None
        except OSError as exc:
            problem = f"unusable ({exc.strerror or exc})"
        if problem:
            col.add("store.key_file", f"secret file {key_path} is {problem}")
    t.done()
    return StoreConfig(path=path, backfill_days=days if days is not None else 7, key_file=key_path)


def _log(col: Collector, raw: dict[str, Any], base: Path) -> LogConfig:
    t = _Table(col, "log", raw.get("log"), base)
    level = t.string("level", "info", choices=LOG_LEVELS) or "info"
    fmt = t.string("format", "auto", choices=LOG_FORMATS) or "auto"
    t.done()
    return LogConfig(level=level, format=fmt)


def _echonet(col: Collector, raw: dict[str, Any], base: Path) -> EchonetConfig:
    t = _Table(col, "echonet", raw.get("echonet"), base)
    d = EchonetConfig()
    bind = t.string("bind", d.bind) or d.bind
    iface = t.string("multicast_interface", d.multicast_interface) or d.multicast_interface
    for key, value in (("bind", bind), ("multicast_interface", iface)):
        try:
            if ipaddress.ip_address(value).version != 4:
                raise ValueError
        except ValueError:
            col.expected(f"echonet.{key}", "an IPv4 address", value)
    timeout = t.number("timeout_s", d.timeout_s, lo=0.05, hi=60)
    retries = t.integer("retries", d.retries, lo=0, hi=10)
    max_props = t.integer("max_properties", d.max_properties, lo=1, hi=255)
    t.done()
    return EchonetConfig(
        bind=bind,
        multicast_interface=iface,
        timeout_s=timeout or d.timeout_s,
        retries=retries if retries is not None else d.retries,
        max_properties=max_props or d.max_properties,
    )


def _commands(col: Collector, raw: dict[str, Any], base: Path) -> CommandsConfig:
    t = _Table(col, "commands", raw.get("commands"), base)
    d = CommandsConfig()
    key = t.file("public_key_file")
    require = t.boolean("require_signature", True)
    window = t.number("issued_at_window_s", d.issued_at_window_s, lo=1, hi=7 * 86400)
    max_payload = t.integer("max_payload_bytes", d.max_payload_bytes, lo=256, hi=1 << 20)
    if require and key is None and "public_key_file" not in t.data and "commands" in raw:
        col.add(
            "commands.public_key_file",
            "require_signature = true needs the backend's public key (PEM) here",
        )
    t.done()
    return CommandsConfig(
        public_key_file=key,
        require_signature=require,
        issued_at_window_s=window or d.issued_at_window_s,
        max_payload_bytes=max_payload or d.max_payload_bytes,
    )


def _control(col: Collector, raw: dict[str, Any], base: Path) -> ControlConfig:
    t = _Table(col, "control", raw.get("control"), base)
    d = ControlConfig()
    sock = t.path_value("socket", d.socket)
    reassert = t.number("reassert_s", d.reassert_s, lo=1, hi=3600)
    t.done()
    return ControlConfig(socket=sock, reassert_s=reassert or d.reassert_s)


def _metrics(col: Collector, raw: dict[str, Any], base: Path) -> MetricsConfig:
    t = _Table(col, "metrics", raw.get("metrics"), base)
    d = MetricsConfig()
    enabled = t.boolean("enabled", d.enabled)
    listen = t.string("listen", d.listen) or d.listen
    port = t.integer("port", d.port, lo=1, hi=65535) or d.port
    allow_remote = t.boolean("allow_remote", d.allow_remote)
    try:
        address = ipaddress.ip_address(listen)
    except ValueError:
        col.expected("metrics.listen", 'an IP address such as "127.0.0.1"', listen)
    else:
        if not address.is_loopback and not allow_remote:
            col.add(
                "metrics.listen",
                f"{listen} is not a loopback address: the metrics endpoint has no authentication "
                "and shows when the house uses power (and so when nobody is home); keep it on "
                "127.0.0.1 (scrape through an SSH tunnel or a local agent) or set "
                "metrics.allow_remote = true to expose it on purpose",
            )
    t.done()
    return MetricsConfig(enabled=enabled, listen=listen, port=port, allow_remote=allow_remote)


HA_NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HA_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


def _home_assistant(
    col: Collector, raw: dict[str, Any], base: Path, site_id: str
) -> HomeAssistantConfig:
    t = _Table(col, "home_assistant", raw.get("home_assistant"), base)
    d = HomeAssistantConfig()
    enabled = t.boolean("enabled", d.enabled)
    url = t.string("url", "", required=enabled) or ""
    if url:
        try:
            parts = urlsplit(url)
            _ = parts.port
            valid = parts.scheme in ("mqtt", "mqtts") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            col.expected("home_assistant.url", "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]", url)
    username = t.string("username")
    password_file = t.file("password_file", secret=True)
    t.forbid("password", _SECRET_IN_MAIN + "and name it in home_assistant.password_file")
    ca_file = t.file("ca_file")
    prefix = t.string(
        "discovery_prefix",
        d.discovery_prefix,
        pattern=HA_PREFIX,
        what="a topic of a-z A-Z 0-9 _ - levels, without wildcards or leading/trailing /",
    )
    default_node = "chisan_" + site_id.replace("-", "_")
    node_id = t.string("node_id", default_node, pattern=HA_NODE_ID, what="1-64 of A-Z a-z 0-9 _ -")
    client_id = t.string("client_id", f"{node_id or default_node}-ha") or ""
    interval = t.number("state_interval_s", d.state_interval_s, lo=1, hi=3600)
    t.done()
    return HomeAssistantConfig(
        enabled=enabled,
        url=url,
        username=username,
        password_file=password_file,
        ca_file=ca_file,
        client_id=client_id,
        discovery_prefix=prefix or d.discovery_prefix,
        node_id=node_id or default_node,
        state_interval_s=interval or d.state_interval_s,
    )


def _check_home_assistant_broker(col: Collector, cfg: Config) -> None:
    """The market broker confines the gateway to its site's topics and must never carry the
    home's discovery and state messages: the resident's broker has to be another one."""
    ha = cfg.home_assistant
    if not ha.enabled or not ha.url:
        return
    try:
        mine, market = urlsplit(ha.url), urlsplit(cfg.mqtt.url)
        same = (mine.hostname, _mqtt_port(mine.scheme, mine.port)) == (
            market.hostname,
            _mqtt_port(market.scheme, market.port),
        )
    except ValueError:
        return
    if same:
        col.add(
            "home_assistant.url",
            f"{ha.url} is the market broker (mqtt.url); Home Assistant needs the resident's own "
            "broker (the market broker only accepts this site's topics)",
        )


def _mqtt_port(scheme: str, port: int | None) -> int:
    return port or (8883 if scheme == "mqtts" else 1883)


SECTIONS = (
    "site",
    "mqtt",
    "broute",
    "device",
    "limits",
    "store",
    "log",
    "echonet",
    "commands",
    "control",
    "metrics",
    "home_assistant",
)


def parse(raw: dict[str, Any], source: Path, text: str = "") -> Config:
    """Build the typed config from already-parsed TOML; raise ConfigError listing every issue."""
    col = Collector(source, text)
    base = source.parent if source.name else Path.cwd()
    col.unknown_keys("", raw, SECTIONS)
    site = _site(col, raw, base)
    cfg = Config(
        source=source,
        site=site,
        mqtt=_mqtt(col, raw, base, site.id),
        broute=_broute(col, raw, base),
        devices=_devices(col, raw, base),
        limits=_limits(col, raw, base),
        store=_store(col, raw, base),
        log=_log(col, raw, base),
        echonet=_echonet(col, raw, base),
        commands=_commands(col, raw, base),
        control=_control(col, raw, base),
        metrics=_metrics(col, raw, base),
        home_assistant=_home_assistant(col, raw, base, site.id),
    )
    _check_home_assistant_broker(col, cfg)
    if col.issues:
        raise ConfigError(col.issues)
    return cfg


def load(path: Path | str) -> Config:
    """Read and validate a config file."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(source), None, "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(source), None, "", exc.strerror or str(exc))]) from None
    return loads(data, source)


def loads(data: bytes, source: Path) -> Config:
    """Validate config file contents; ``source`` names the file and anchors relative paths."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [ConfigIssue(str(source), None, "", f"not UTF-8 text (byte {exc.start})")]
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        msg = getattr(exc, "msg", None) or str(exc)
        if line is None:
            found = re.search(r"line (\d+)", str(exc))
            line = int(found.group(1)) if found else None
        raise ConfigError(
            [ConfigIssue(str(source), line, "", f"TOML syntax error: {msg}")]
        ) from None
    return parse(raw, source, text)
