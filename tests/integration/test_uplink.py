"""The uplink against a real mosquitto and a fake backend that stores and acknowledges.

Nothing is lost: a backlog drains after the broker returns, malformed or unknown acks are
ignored, every published message matches its schema. Broker and gateway crashes are in
tests/fault (test_broker.py, test_kill9.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.clock import JST, SystemClock
from gateway.config import MqttConfig
from gateway.provenance import init_key, load_private
from gateway.slots import iso
from gateway.store import Store
from gateway.uplink import Uplink
from tests.conftest import REPO
from tests.support.backend import FakeBackend
from tests.support.mosquitto import Mosquitto, free_port

SITE = "sg-0001"
DAY = datetime(2026, 11, 26, 0, 0, tzinfo=JST)


def open_store(tmp: Path) -> Store:
    key_path = tmp / "site.pem"
    init_key(key_path)
    return Store(tmp / "chisan.db", SITE, load_private(key_path))


def add_slots(store: Store, n: int, start: datetime = DAY) -> None:
    for i in range(n):
        store.append_slot(
            {
                "site": SITE,
                "slot_start": iso(start + timedelta(minutes=30 * i)),
                "import_wh": 100 + i,
                "export_wh": i % 7 * 50,
                "source": "meter_boundary",
                "rev": 1,
            }
        )


def mqtt_cfg(port: int, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = {
        "url": f"mqtt://127.0.0.1:{port}",
        "client_id": SITE,
        "keepalive_s": 5,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.3,
        "resend_per_s": 10_000,
        "ack_timeout_s": 5,
        "telemetry_s": 0.2,
    }
    base.update(kw)
    return MqttConfig(**base)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_records_delivered_acked_and_schema_valid(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = open_store(tmp_path)
    add_slots(store, 5)
    telemetry = {"meter.power_w": {"value": -1200, "at": iso(DAY)}}
    uplink = Uplink(
        mqtt_cfg(mosquitto.port),
        SITE,
        store,
        SystemClock(),
        version="9.9",
        telemetry=lambda: telemetry,
    )
    store.queue_alarm(
        {"kind": "meter_lost", "active": True, "at": iso(DAY), "message": "meter silent"}
    )
    async with FakeBackend(mosquitto.port) as backend, running(uplink):
        await backend.wait_for(lambda: store.backlog_count() == 0)
        await backend.wait_for(lambda: backend.of("telemetry") and backend.of("alarm"))
        add_slots(store, 2, DAY + timedelta(days=1))
        uplink.notify()
        await backend.wait_for(lambda: store.backlog_count() == 0 and len(backend.records) == 7)
    assert backend.invalid == []
    assert sorted(backend.by_seq) == list(range(1, 8))
    states = backend.of("state")
    assert states[0]["online"] is True and states[0]["version"] == "9.9"
    assert backend.of("alarm")[0]["kind"] == "meter_lost"
    assert store.pending_alarms() == []
    assert store.verify().ok


async def test_backlog_of_a_day_drains_after_broker_returns(tmp_path: Path) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port)
    store = open_store(tmp_path)
    add_slots(store, 48)
    uplink = Uplink(mqtt_cfg(port), SITE, store, SystemClock())
    async with running(uplink):
        await asyncio.sleep(0.5)  # broker down: connection attempts fail and back off
        assert not uplink.connected and store.backlog_count() == 48
        broker.start()
        try:
            async with FakeBackend(port) as backend:
                await backend.wait_for(lambda: store.backlog_count() == 0, timeout=30)
                assert len(backend.records) == 48
                assert backend.invalid == []
        finally:
            broker.stop()


async def test_malformed_and_unknown_acks_are_ignored(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = open_store(tmp_path)
    add_slots(store, 3)
    uplink = Uplink(mqtt_cfg(mosquitto.port), SITE, store, SystemClock())
    with structlog.testing.capture_logs() as logs:
        async with FakeBackend(mosquitto.port, ack=False) as backend, running(uplink):
            await backend.wait_for(lambda: len(backend.records) == 3)
            for bad in (
                b"not json",
                b"[]",
                b'{"seq": "3"}',
                b'{"seq": -1}',
                b'{"seq": true}',
                b'{"sequence": 3}',
                b'{"seq": 99}',
            ):
                await backend.send(SITE, "slot/ack", bad)
            await backend.wait_for(lambda: uplink.stats.bad_acks == 7)
            assert store.backlog_count() == 3  # nothing was acknowledged by the garbage
            await backend.send(SITE, "slot/ack", json.dumps({"seq": 2}))
            await backend.wait_for(lambda: store.backlog_count() == 1)
    events = [e["event"] for e in logs]
    assert events.count("malformed slot ack ignored") == 6
    assert events.count("slot ack for unknown seq ignored") == 1


async def test_unacked_records_are_resent_after_timeout(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = open_store(tmp_path)
    add_slots(store, 2)
    uplink = Uplink(mqtt_cfg(mosquitto.port, ack_timeout_s=1), SITE, store, SystemClock())
    async with FakeBackend(mosquitto.port, ack=False) as backend, running(uplink):
        await backend.wait_for(
            lambda: (
                all(n >= 2 for n in backend.deliveries.values()) and len(backend.deliveries) == 2
            ),
            timeout=10,
        )
    assert uplink.stats.resent >= 2
    assert store.backlog_count() == 2


async def test_last_will_marks_offline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A gateway process killed with SIGKILL is marked offline by the broker's last will."""
    store = open_store(tmp_path)
    store.close()
    async with FakeBackend(mosquitto.port) as backend:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.uplink_child",
            str(tmp_path / "chisan.db"),
            str(tmp_path / "site.pem"),
            str(mosquitto.port),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            await backend.wait_for(lambda: backend.of("state"), timeout=20)
            assert backend.of("state")[-1]["online"] is True
            child.kill()
            await backend.wait_for(
                lambda: backend.of("state")[-1].get("online") is False, timeout=15
            )
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
    assert backend.invalid == []


@pytest.mark.parametrize("protocol", ["3.1.1"])
async def test_mqtt311_fallback(tmp_path: Path, mosquitto: Mosquitto, protocol: str) -> None:
    store = open_store(tmp_path)
    add_slots(store, 3)
    uplink = Uplink(mqtt_cfg(mosquitto.port, protocol=protocol), SITE, store, SystemClock())
    async with FakeBackend(mosquitto.port) as backend, running(uplink):
        await backend.wait_for(lambda: store.backlog_count() == 0)
    assert len(backend.records) == 3
