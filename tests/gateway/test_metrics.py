"""Metrics: the hooks move the right series, the scrape never fails, the endpoint speaks HTTP to
a real socket, and the config refuses an exposed endpoint unless asked, saying why."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from drivers.capabilities import Measured
from gateway.clock import JST, ManualClock
from gateway.config import load
from gateway.interlock.model import (
    AUTO,
    Decision,
    FailsafeState,
    Reason,
    Rule,
    Setpoint,
    SetpointKind,
)
from gateway.metrics import Metrics, MetricsServer, Sources, respond
from gateway.readings import ReadingsHub
from tests.conftest import BASE_CONFIG
from tests.gateway.test_config import issues_of
from tests.support.observe import Samples, http_get, scrape, value

T0 = datetime(2026, 11, 27, 10, 0, 5, tzinfo=JST)


@dataclass
class Stats:
    connects: int = 3
    connected: bool = True
    published: int = 10
    resent: int = 2
    acked: int = 8
    bad_acks: int = 1


@dataclass
class Poller:
    name: str
    polls: int
    failures: int
    _failing: bool
    last: dict[str, Measured[object]] = field(default_factory=dict)


def samples(m: Metrics) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def make(sources: Sources | None = None) -> tuple[Metrics, ManualClock, ReadingsHub]:
    clock = ManualClock(T0)
    m = Metrics(clock, "sg-0001", "1.2.3", sources or Sources(), process=False)
    hub = ReadingsHub()
    hub.subscribe(m.on_reading)
    return m, clock, hub


def test_readings_set_gauges_and_ages() -> None:
    m, clock, hub = make()
    hub.update("meter.power_w", -1234, T0 - timedelta(seconds=4), "meter")
    hub.update("battery.soc_pct", 57.5, T0, "device")
    hub.update("battery.power_w", None, T0, "device")  # unknown: the gauge keeps no value
    hub.update("battery.mode", "charge", T0, "device")
    s = samples(m)
    assert value(s, "chisan_meter_power_watts") == -1234
    assert value(s, "chisan_battery_soc_percent") == 57.5
    unknown = value(s, "chisan_battery_power_watts")
    assert unknown is not None and unknown != unknown  # NaN: unknown, not zero
    assert value(s, "chisan_pv_power_watts") == 0  # never reported
    assert value(s, "chisan_battery_mode", mode="charge") == 1
    assert value(s, "chisan_reading_age_seconds", key="meter.power_w") == 4
    hub.update("battery.mode", "discharge", T0, "device")
    clock.advance(10)
    s = samples(m)
    assert value(s, "chisan_battery_mode", mode="charge") == 0
    assert value(s, "chisan_battery_mode", mode="discharge") == 1
    assert value(s, "chisan_reading_age_seconds", key="meter.power_w") == 14
    assert value(s, "chisan_build_info", version="1.2.3", site="sg-0001") == 1


def decision(allowed_w: float, *rules: Rule, blocked: bool = False) -> Decision:
    requested = Setpoint(SetpointKind.BATTERY_DISCHARGE, 5000, source="dr-1")
    allowed = AUTO if blocked else Setpoint(SetpointKind.BATTERY_DISCHARGE, allowed_w)
    reasons = tuple(Reason(r, "because") for r in rules)
    clamped = bool(rules) and not blocked
    return Decision(requested, allowed, reasons, clamped, blocked, FailsafeState(active=False))


def test_a_clamp_counts_once_per_verdict_not_per_round() -> None:
    m, _, _ = make()
    for _ in range(5):  # control re-evaluates every second
        m.decision("battery", decision(3000, Rule.DEVICE_RATING))
    m.decision("battery", decision(2500, Rule.EXPORT_LIMIT, Rule.DEVICE_RATING))
    m.decision("battery", decision(5000))  # unclamped: nothing counted
    m.decision("battery", decision(0, Rule.SOC_RESERVE, blocked=True))
    m.decision("battery", None)  # the device refused a setpoint
    s = samples(m)
    labels = {"family": "battery", "outcome": "clamped"}
    assert value(s, "chisan_interlock_clamps_total", rule="device_rating", **labels) == 2
    assert value(s, "chisan_interlock_clamps_total", rule="export_limit", **labels) == 1
    assert (
        value(
            s,
            "chisan_interlock_clamps_total",
            family="battery",
            rule="soc_reserve",
            outcome="blocked",
        )
        == 1
    )
    assert value(s, "chisan_device_setpoint_errors_total", family="battery") == 1


def test_command_acks_counted_by_status() -> None:
    m, _, _ = make()
    for status in ("received", "scheduled", "started", "clamped", "completed", "received"):
        m.command_ack({"id": "dr-1", "rev": 1, "status": status})
    m.command_ack({"id": None, "status": "Weird Status!"})
    s = samples(m)
    assert value(s, "chisan_command_acks_total", status="received") == 2
    assert value(s, "chisan_command_acks_total", status="completed") == 1
    assert value(s, "chisan_command_acks_total", status="weird_status") == 1


def test_slot_delays_from_the_end_of_the_slot() -> None:
    m, clock, _ = make()
    live = {"seq": 7, "slot_start": "2026-11-27T09:30:00+09:00", "source": "meter_boundary"}
    m.slot_stored(live)  # 10:00:05: 5 s after the boundary
    clock.advance(40)
    m.slot_acked(live)  # 45 s after the boundary
    m.slot_stored({"seq": 8, "slot_start": "garbage", "source": "meter_boundary"})
    s = samples(m)
    src = {"source": "meter_boundary"}
    assert value(s, "chisan_slot_records_total", **src) == 2
    assert value(s, "chisan_slot_stored_delay_seconds_sum", **src) == 5
    assert value(s, "chisan_slot_stored_delay_seconds_count", **src) == 1
    assert value(s, "chisan_slot_stored_delay_seconds_bucket", le="5.0", **src) == 1
    assert value(s, "chisan_slot_acked_delay_seconds_sum", **src) == 45
    assert value(s, "chisan_slot_acked_delay_seconds_bucket", le="30.0", **src) == 0


def test_scrape_time_sources_and_a_broken_one() -> None:
    def broken() -> int:
        raise RuntimeError("database is locked")

    last: dict[str, Measured[object]] = {
        "battery.soc_pct": Measured(71, T0),
        "battery.mode": Measured("auto", T0),
        "battery.power_w": Measured(None, T0),
    }
    pollers = [Poller("battery", 9, 0, False, last), Poller("pv", 3, 6, True)]
    m, _, _ = make(
        Sources(
            outbox_depth=lambda: 42,
            uplink_stats=Stats,
            pending_command_acks=broken,
            failsafe=lambda: True,
            pollers=lambda: pollers,
        )
    )
    s = samples(m)
    assert value(s, "chisan_outbox_depth") == 42
    assert value(s, "chisan_mqtt_connects_total") == 3
    assert value(s, "chisan_mqtt_reconnects_total") == 2
    assert value(s, "chisan_mqtt_connected") == 1
    assert value(s, "chisan_slot_resent_total") == 2
    assert value(s, "chisan_failsafe_active") == 1
    assert value(s, "chisan_device_poll_failures_total", device="pv") == 6
    assert value(s, "chisan_device_up", device="pv") == 0
    assert value(s, "chisan_device_up", device="battery") == 1
    assert value(s, "chisan_device_reading", device="battery", key="battery.soc_pct") == 71
    assert value(s, "chisan_device_reading", device="battery", key="battery.mode") is None
    assert value(s, "chisan_device_reading", device="battery", key="battery.power_w") is None
    pending = value(s, "chisan_command_acks_pending")
    assert pending is not None and pending != pending  # NaN: unknown, and the scrape still works


def test_two_gateways_in_one_process_do_not_share_series() -> None:
    a, _, hub_a = make()
    b, _, _ = make()
    hub_a.update("pv.power_w", 3100, T0)
    assert value(samples(a), "chisan_pv_power_watts") == 3100
    assert value(samples(b), "chisan_pv_power_watts") == 0


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("GET /metrics HTTP/1.1", 200),
        ("GET /metrics?x=1 HTTP/1.0", 200),
        ("GET / HTTP/1.1", 200),
        ("GET /nope HTTP/1.1", 404),
        ("POST /metrics HTTP/1.1", 405),
        ("GET /metrics", 400),
        ("\x00\x01garbage", 400),
        ("", 400),
    ],
)
def test_request_lines(line: str, status: int) -> None:
    response, _ = respond(line, lambda: b"x 1\n")
    assert response.status == status


@contextlib.asynccontextmanager
async def serving(m: Metrics) -> AsyncIterator[int]:
    server = MetricsServer(m, "127.0.0.1", 0, read_timeout_s=0.5)
    task = asyncio.create_task(server.run())
    try:
        async with asyncio.timeout(5):
            while server.bound_port is None:
                await asyncio.sleep(0.01)
        yield server.bound_port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_endpoint_over_a_real_socket() -> None:
    m, _, hub = make()
    hub.update("battery.soc_pct", 81, T0)
    async with serving(m) as port:
        s = await scrape(port)
        assert value(s, "chisan_battery_soc_percent") == 81
        status, body = await http_get(port, "/metrics", "HEAD")
        assert (status, body) == (200, b"")
        assert (await http_get(port, "/other"))[0] == 404
        assert (await http_get(port, "/metrics", "DELETE"))[0] == 405
        # A client that connects and says nothing is dropped; the next scrape is served.
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        garbage_r, garbage_w = await asyncio.open_connection("127.0.0.1", port)
        garbage_w.write(b"\xff\xfe\r\n\r\n")
        await garbage_w.drain()
        assert (await garbage_r.read()).startswith(b"HTTP/1.1 400")
        hub.update("battery.soc_pct", 80, T0)
        assert value(await scrape(port), "chisan_battery_soc_percent") == 80
        writer.close()


async def test_a_port_in_use_fails_the_component_with_the_reason() -> None:
    m, _, _ = make()
    async with serving(m) as port:
        with pytest.raises(OSError, match="address already in use"):
            await MetricsServer(m, "127.0.0.1", port).run()


# ---------------------------------------------------------------------- config


Write = Callable[..., Path]


def test_metrics_off_by_default(write_config: Write) -> None:
    cfg = load(write_config())
    assert not cfg.metrics.enabled
    assert (cfg.metrics.listen, cfg.metrics.port) == ("127.0.0.1", 9464)


def test_metrics_on_loopback(write_config: Write) -> None:
    cfg = load(write_config(BASE_CONFIG + '\n[metrics]\nenabled = true\nlisten = "::1"\n'))
    assert cfg.metrics.enabled and cfg.metrics.listen == "::1"


def test_exposed_metrics_refused_unless_allowed(write_config: Write) -> None:
    text = BASE_CONFIG + '\n[metrics]\nenabled = true\nlisten = "0.0.0.0"\n'
    [issue] = issues_of(write_config(text))
    assert issue.path == "metrics.listen"
    assert "not a loopback address" in issue.message and "allow_remote" in issue.message
    allowed = load(write_config(text + "allow_remote = true\n"))
    assert allowed.metrics.listen == "0.0.0.0"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('listen = "localhost"', "metrics.listen"),
        ("port = 70000", "metrics.port"),
        ('enabled = "yes"', "metrics.enabled"),
        ("colour = 1", "metrics.colour"),
    ],
)
def test_bad_metrics_keys(write_config: Write, line: str, key: str) -> None:
    [issue] = issues_of(write_config(BASE_CONFIG + f"\n[metrics]\n{line}\n"))
    assert issue.path == key
