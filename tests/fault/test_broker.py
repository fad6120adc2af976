"""Broker faults: killed with SIGKILL mid-backlog, down for 72 simulated hours, a silent network.

Pass criterion: nothing lost (every stored record reaches the backend, which acknowledges all of
them), duplicates only as identical re-sends, the backlog drains oldest first, and a link that
silently drops everything is declared dead within 1.5 keepalive periods.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.clock import AcceleratedClock
from gateway.slots import iso
from gateway.store import Store
from gateway.uplink import Uplink
from tests.integration.test_uplink import DAY, SITE, add_slots, mqtt_cfg, open_store, running
from tests.support.backend import FakeBackend
from tests.support.blackhole import BlackholeProxy
from tests.support.faults import size
from tests.support.mosquitto import Mosquitto, free_port


def first_deliveries(backend: FakeBackend) -> list[int]:
    seen: list[int] = []
    for sub, doc in backend.messages:
        if sub == "slot" and doc["seq"] not in seen:
            seen.append(doc["seq"])
    return seen


def assert_all_delivered(store: Store, backend: FakeBackend, in_order: bool = True) -> None:
    total = store.max_seq()
    expected = {(SITE, r["slot_start"], r["rev"]) for r in store.records_by_seq(1, total)}
    assert set(backend.records) == expected
    assert backend.acked_upto == total and store.backlog_count() == 0
    assert backend.conflicts == [] and backend.invalid == []
    if in_order:
        order = first_deliveries(backend)
        assert order == sorted(order), "the backlog did not drain oldest first"


async def test_broker_kill9_mid_backlog_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port)
    broker.start()
    store = open_store(tmp_path)
    add_slots(store, size(1440, 4320))
    uplink = Uplink(mqtt_cfg(port, resend_per_s=400, ack_timeout_s=3), SITE, store, _clock())
    try:
        async with FakeBackend(port) as backend, running(uplink):
            await backend.wait_for(lambda: len(backend.records) > 100, timeout=30)
            broker.kill9()
            killed_at = len(backend.records)
            assert store.backlog_count() > 0
            await asyncio.sleep(0.5)
            broker.start()
            await backend.wait_for(lambda: store.backlog_count() == 0, timeout=120)
    finally:
        broker.stop()
    assert killed_at < store.max_seq()
    # Records in flight when the broker died reach the backend after later ones: not in order.
    assert_all_delivered(store, backend, in_order=False)
    assert uplink.stats.connects >= 2


async def test_broker_down_for_72_hours(tmp_path: Path) -> None:
    """72 h of slots pile up (one every 30 simulated minutes) while the broker is gone."""
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port)
    store = open_store(tmp_path)
    clock = AcceleratedClock(28800.0, start=DAY)  # 72 h in 9 s
    uplink = Uplink(mqtt_cfg(port, reconnect_min_s=1, reconnect_max_s=300), SITE, store, clock)
    async with running(uplink):
        for n in range(72 * 2):
            store.append_slot(
                {
                    "site": SITE,
                    "slot_start": iso(DAY + timedelta(minutes=30 * n)),
                    "import_wh": n,
                    "export_wh": 0,
                    "source": "meter_boundary",
                    "rev": 1,
                }
            )
            uplink.notify()
            await clock.sleep(1800)
        assert clock.now() - DAY >= timedelta(hours=72)
        assert not uplink.connected and store.backlog_count() == 144
        # Backoff stays capped: at most reconnect_max_s (300 simulated s) after the broker returns.
        broker.start()
        try:
            async with FakeBackend(port) as backend:
                await backend.wait_for(lambda: store.backlog_count() == 0, timeout=30)
        finally:
            broker.stop()
    assert_all_delivered(store, backend)


async def test_silent_network_detected_within_one_and_a_half_keepalives(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    keepalive = 5
    store = open_store(tmp_path)
    add_slots(store, 10)
    async with BlackholeProxy(mosquitto.port) as proxy, FakeBackend(mosquitto.port) as backend:
        cfg = mqtt_cfg(proxy.port, keepalive_s=keepalive, reconnect_min_s=0.2, reconnect_max_s=1)
        uplink = Uplink(cfg, SITE, store, _clock())
        async with running(uplink):
            await backend.wait_for(lambda: store.backlog_count() == 0)
            await asyncio.sleep(1.0)  # let a little idle time pass
            proxy.silent = True
            t0 = time.monotonic()
            add_slots(store, 5, DAY + timedelta(days=1))  # published into the void
            uplink.notify()
            while uplink.connected:
                await asyncio.sleep(0.05)
                assert time.monotonic() - t0 < 3 * keepalive, "dead link never detected"
            detected = time.monotonic() - t0
            print(f"dead link detected after {detected:.2f} s (keepalive {keepalive} s)")
            assert detected <= 1.5 * keepalive
            assert uplink.stats.dead_links >= 1
            await asyncio.sleep(1.0)
            proxy.silent = False  # the network comes back
            await backend.wait_for(lambda: store.backlog_count() == 0, timeout=30)
    assert proxy.swallowed > 0
    assert_all_delivered(store, backend)


def _clock() -> Any:
    from gateway.clock import SystemClock

    return SystemClock()
