"""Prometheus metrics on a loopback HTTP endpoint, fed by hooks the gateway already has.

Nothing in the data path calls into this module: the readings hub has subscribers, settlement an
``on_record`` callback, the uplink an ``on_slot_acked`` callback, the command manager an
``on_ack`` callback and control an ``on_decision`` callback; :mod:`gateway.app` connects those to
a :class:`Metrics`. Values that already live somewhere (outbox depth, uplink counters, poll
failures, the fail-safe) are read at scrape time by a collector instead of being copied.

The registry is private to each :class:`Metrics` (no process-wide state), so two gateways in one
test process, or a test and the daemon, never share series. The HTTP server is a small asyncio
server on the daemon's own loop rather than prometheus-client's threaded one: the scrape-time
reads touch the store's SQLite connection and asyncio objects, which belong to the loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from drivers import readings as rk
from gateway.clock import Clock
from gateway.logs import get_logger
from gateway.readings import Reading

#: Numeric readings exported as their own gauge: hub key -> (metric name, help).
READING_GAUGES: dict[str, tuple[str, str]] = {
    rk.METER_POWER_W: ("chisan_meter_power_watts", "Smart meter power, + import / - export"),
    rk.METER_IMPORT_KWH: ("chisan_meter_import_energy_kwh", "Smart meter cumulative import"),
    rk.METER_EXPORT_KWH: ("chisan_meter_export_energy_kwh", "Smart meter cumulative export"),
    rk.PV_POWER_W: ("chisan_pv_power_watts", "PV generation power"),
    rk.PV_GENERATED_WH: ("chisan_pv_generated_energy_wh", "PV cumulative generation"),
    rk.BATTERY_POWER_W: ("chisan_battery_power_watts", "Battery power, + charge / - discharge"),
    rk.BATTERY_SOC_PCT: ("chisan_battery_soc_percent", "Battery state of charge"),
    rk.BATTERY_REMAINING_WH: ("chisan_battery_remaining_energy_wh", "Battery stored energy"),
    rk.BATTERY_CHARGED_WH: ("chisan_battery_charged_energy_wh", "Battery cumulative charge"),
    rk.BATTERY_DISCHARGED_WH: (
        "chisan_battery_discharged_energy_wh",
        "Battery cumulative discharge",
    ),
}
SLOT = timedelta(minutes=30)
#: From seconds (a live boundary) to days (history backfilled after an outage).
DELAY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 86400, 7 * 86400)
_LABEL = re.compile(r"[^a-z0-9_]+")


@dataclass
class Sources:
    """What the scrape-time collector reads; each is optional (a gateway without a meter has no
    settlement, a test may bring only a store)."""

    outbox_depth: Callable[[], int] | None = None
    uplink_stats: Callable[[], Any] | None = None
    pending_command_acks: Callable[[], int] | None = None
    failsafe: Callable[[], bool] | None = None
    pollers: Callable[[], Iterable[Any]] = lambda: ()


@dataclass
class Metrics:
    """The instruments and the hooks that move them."""

    clock: Clock
    site: str
    version: str
    sources: Sources = field(default_factory=Sources)
    process: bool = True

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.metrics", site=self.site)
        r = self.registry = CollectorRegistry()
        self._readings: dict[str, Reading] = {}
        self._gauges = {
            key: Gauge(name, doc, registry=r) for key, (name, doc) in READING_GAUGES.items()
        }
        self.battery_mode = Gauge(
            "chisan_battery_mode",
            "1 for the battery's current operating mode",
            ["mode"],
            registry=r,
        )
        self.slot_records = Counter(
            "chisan_slot_records", "Slot records stored (each revision)", ["source"], registry=r
        )
        self.slot_stored_delay = Histogram(
            "chisan_slot_stored_delay_seconds",
            "From the end of a slot to its record being stored",
            ["source"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.slot_acked_delay = Histogram(
            "chisan_slot_acked_delay_seconds",
            "From the end of a slot to the backend's acknowledgement of its record",
            ["source"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.command_acks = Counter(
            "chisan_command_acks", "Command acknowledgements by status", ["status"], registry=r
        )
        self.clamps = Counter(
            "chisan_interlock_clamps",
            "Interlock verdicts that cut a request down (clamped) or held it back (blocked), "
            "counted when the verdict changes",
            ["family", "rule", "outcome"],
            registry=r,
        )
        self.device_errors = Counter(
            "chisan_device_setpoint_errors",
            "Setpoints a device did not take",
            ["family"],
            registry=r,
        )
        Info("chisan_build", "Gateway version and site", registry=r).info(
            {"version": self.version, "site": self.site}
        )
        self._last_verdict: dict[str, tuple[Any, ...]] = {}
        self._slot_source: dict[int, str] = {}
        r.register(_LiveCollector(self))
        if self.process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

    # ------------------------------------------------------------------ hooks

    def on_reading(self, key: str, reading: Reading) -> None:
        """Readings hub subscriber."""
        self._readings[key] = reading
        gauge = self._gauges.get(key)
        value = reading.value
        if gauge is not None:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            gauge.set(value if numeric else float("nan"))  # unknown is not zero
        elif key == rk.BATTERY_MODE and value is not None:
            for mode in list(self._modes_seen()):
                self.battery_mode.labels(mode=mode).set(0)
            self.battery_mode.labels(mode=_label(str(value))).set(1)

    def _modes_seen(self) -> Iterator[str]:
        for metric in self.battery_mode.collect():
            for sample in metric.samples:
                yield sample.labels["mode"]

    def slot_stored(self, record: dict[str, Any]) -> None:
        """Settlement's ``on_record``: one slot record revision is in the store."""
        source = str(record.get("source", "unknown"))
        self.slot_records.labels(source=source).inc()
        delay = self._since_slot_end(record)
        if delay is not None:
            self.slot_stored_delay.labels(source=source).observe(delay)

    def slot_acked(self, record: dict[str, Any]) -> None:
        """The uplink's ``on_slot_acked``: the backend acknowledged this record."""
        delay = self._since_slot_end(record)
        if delay is not None:
            source = str(record.get("source", "unknown"))
            self.slot_acked_delay.labels(source=source).observe(delay)

    def _since_slot_end(self, record: dict[str, Any]) -> float | None:
        try:
            start = datetime.fromisoformat(str(record["slot_start"]))
        except (KeyError, ValueError):
            return None
        return max(0.0, (self.clock.now() - (start + SLOT)).total_seconds())

    def command_ack(self, ack: dict[str, Any]) -> None:
        """The command manager's ``on_ack``: one acknowledgement was produced."""
        self.command_acks.labels(status=_label(str(ack.get("status", "unknown")))).inc()

    def decision(self, family: str, decision: Any | None) -> None:
        """Control's ``on_decision``, called every round: a clamp is counted once, when the
        verdict (request, allowed setpoint, rules) changes, not on every re-evaluation. None
        means the device refused the allowed setpoint."""
        if decision is None:
            self.device_errors.labels(family=family).inc()
            return
        verdict = (decision.requested, decision.allowed, decision.rules, decision.blocked)
        if self._last_verdict.get(family) == verdict:
            return
        self._last_verdict[family] = verdict
        if not (decision.clamped or decision.blocked):
            return
        outcome = "blocked" if decision.blocked else "clamped"
        for rule in decision.rules:
            self.clamps.labels(family=family, rule=_label(str(rule)), outcome=outcome).inc()

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


def _label(value: str) -> str:
    return _LABEL.sub("_", value.lower()).strip("_") or "unknown"


class _LiveCollector(Collector):
    """Values read at scrape time from their owners."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable[Any]:
        return ()  # the series depend on what is configured; nothing to pre-declare

    def collect(self) -> Iterable[Any]:
        m, src = self.m, self.m.sources
        now = m.clock.now()
        age = GaugeMetricFamily(
            "chisan_reading_age_seconds", "Time since each reading was taken", labels=["key"]
        )
        for key, reading in sorted(m._readings.items()):
            age.add_metric([key], max(0.0, (now - reading.at).total_seconds()))
        yield age
        if src.outbox_depth is not None:
            yield GaugeMetricFamily(
                "chisan_outbox_depth",
                "Slot records not yet acknowledged by the backend",
                value=_safe(src.outbox_depth),
            )
        if src.pending_command_acks is not None:
            yield GaugeMetricFamily(
                "chisan_command_acks_pending",
                "Command acknowledgements waiting for the uplink",
                value=_safe(src.pending_command_acks),
            )
        if src.failsafe is not None:
            yield GaugeMetricFamily(
                "chisan_failsafe_active",
                "1 while forced control is stopped for stale meter data",
                value=float(bool(src.failsafe())),
            )
        if src.uplink_stats is not None:
            yield from _uplink(src.uplink_stats())
        yield from _pollers(list(src.pollers()))


def _safe(read: Callable[[], int]) -> float:
    try:
        return float(read())
    except Exception:  # a scrape must not fail because one source is unavailable
        return float("nan")


def _uplink(stats: Any) -> Iterator[Any]:
    connects = int(stats.connects)
    yield GaugeMetricFamily(
        "chisan_mqtt_connected", "1 while connected to the market broker", value=stats.connected
    )
    yield CounterMetricFamily(
        "chisan_mqtt_connects", "Successful connections to the market broker", value=connects
    )
    yield CounterMetricFamily(
        "chisan_mqtt_reconnects",
        "Connections after the first (each follows a lost connection)",
        value=max(0, connects - 1),
    )
    for name, doc, value in (
        ("chisan_slot_published", "Slot record publications (re-sends included)", stats.published),
        ("chisan_slot_resent", "Slot records re-sent for want of an ack", stats.resent),
        ("chisan_slot_acked", "Slot records acknowledged by the backend", stats.acked),
        ("chisan_slot_bad_acks", "Slot acks ignored as malformed or unknown", stats.bad_acks),
    ):
        yield CounterMetricFamily(name, doc, value=int(value))


def _pollers(pollers: list[Any]) -> Iterator[Any]:
    if not pollers:
        return
    polls = CounterMetricFamily("chisan_device_polls", "Successful device polls", labels=["device"])
    fails = CounterMetricFamily(
        "chisan_device_poll_failures", "Device polls that got no usable answer", labels=["device"]
    )
    up = GaugeMetricFamily(
        "chisan_device_up", "1 when the device's last poll succeeded", labels=["device"]
    )
    readings = GaugeMetricFamily(
        "chisan_device_reading",
        "Each device's latest numeric readings, by device name and reading key",
        labels=["device", "key"],
    )
    for poller in pollers:
        name = str(poller.name)
        polls.add_metric([name], int(poller.polls))
        fails.add_metric([name], int(poller.failures))
        up.add_metric([name], 0.0 if getattr(poller, "_failing", False) else 1.0)
        for key, measured in sorted(dict(getattr(poller, "last", {})).items()):
            v = getattr(measured, "value", None)
            if isinstance(v, int | float) and not isinstance(v, bool):
                readings.add_metric([name, key], float(v))
    yield polls
    yield fails
    yield up
    yield readings


# ---------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    content_type: str
    body: bytes

    def encode(self, head_only: bool = False) -> bytes:
        head = (
            f"HTTP/1.1 {self.status} {self.reason}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        return head if head_only else head + self.body


def respond(request_line: str, exposition: Callable[[], bytes]) -> tuple[Response, bool]:
    """The answer to one request line (``GET /metrics HTTP/1.1``); True when HEAD."""
    text = "text/plain; charset=utf-8"
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return Response(400, "Bad Request", text, b"malformed request line\n"), False
    method, target, _ = parts
    if method not in ("GET", "HEAD"):
        return Response(405, "Method Not Allowed", text, b"only GET and HEAD\n"), False
    path = target.split("?", 1)[0]
    if path == "/metrics":
        return Response(200, "OK", CONTENT_TYPE_LATEST, exposition()), method == "HEAD"
    if path == "/":
        return Response(200, "OK", text, b"chisan gateway: metrics at /metrics\n"), False
    return Response(404, "Not Found", text, b"not found; metrics are at /metrics\n"), False


@dataclass
class MetricsServer:
    """Daemon component: serves ``/metrics`` until cancelled."""

    metrics: Metrics
    host: str
    port: int
    name: str = "metrics"
    read_timeout_s: float = 5.0
    max_header_bytes: int = 16384

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.metrics")
        self.bound_port: int | None = None

    async def run(self) -> None:
        server = await asyncio.start_server(self._client, self.host, self.port)
        self.bound_port = int(server.sockets[0].getsockname()[1])
        self.log.info("metrics endpoint listening", url=f"http://{self.host}:{self.bound_port}/")
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.bound_port = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                line = await reader.readline()
                size = len(line)
                while True:  # the headers carry nothing this server needs
                    header = await reader.readline()
                    size += len(header)
                    if header in (b"\r\n", b"\n", b"") or size > self.max_header_bytes:
                        break
            response, head = respond(line.decode("latin-1").strip(), self.metrics.exposition)
            writer.write(response.encode(head_only=head))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        except Exception as exc:  # one bad scrape must not stop the endpoint
            self.log.warning("metrics request failed", error=str(exc))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
