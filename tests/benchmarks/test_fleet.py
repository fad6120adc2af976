"""The fleet benchmark's tools work: its lean MQTT client against a real mosquitto, and a small
fleet through every phase (so the benchmark cannot rot between runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks import fleet
from benchmarks.mqttlite import Client, MqttLiteError, Will, _varint
from tests.support.mosquitto import Mosquitto, mosquitto_binary

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed")


@pytest.mark.parametrize(
    ("n", "wire"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
    ],
)
def test_remaining_length_encoding(n: int, wire: bytes) -> None:
    assert _varint(n) == wire


async def test_publish_subscribe_will_and_qos1(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        got: list[tuple[str, bytes]] = []
        arrived = asyncio.Event()

        def on_message(topic: str, payload: bytes) -> None:
            got.append((topic, payload))
            arrived.set()

        watcher = await Client.connect("127.0.0.1", broker.port, "watcher", on_message=on_message)
        await watcher.subscribe("t/#", 1)
        will = Will("t/will", b"gone", qos=1, retain=False)
        talker = await Client.connect("127.0.0.1", broker.port, "talker", will=will)
        big = bytes(range(256)) * 100  # a multi-byte remaining length, split across reads
        await talker.publish("t/a", big, 1)
        await asyncio.wait_for(arrived.wait(), 5)
        assert got == [("t/a", big)]
        arrived.clear()
        assert talker.transport is not None
        talker.transport.abort()  # not a clean DISCONNECT: the broker sends the will
        await asyncio.wait_for(arrived.wait(), 5)
        assert got[-1] == ("t/will", b"gone")
        with pytest.raises(MqttLiteError):
            await talker.publish("t/b", b"x", 1)
        watcher.close()
    finally:
        broker.stop()


async def test_small_fleet_runs_every_phase(tmp_path: Path) -> None:
    rows = await fleet.run(20, 10, tmp_path)
    metrics = {r.metric.split(": ", 1)[1]: r for r in rows}
    assert {
        "connect all",
        "boundary, all records acked",
        "slot publish → ack p99",
        "telemetry received",
        "command round trip p99",
        "all back after broker restart",
        "reconnect storm, peak attempts/s",
    } <= set(metrics)
    storm = metrics["reconnect storm, peak attempts/s"]
    assert storm.peer_value is not None and storm.value > 0
