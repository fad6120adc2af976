"""Test peers for the observability endpoints: a Prometheus-style scraper over real HTTP and an
MQTT watcher that keeps the last retained payload of every topic it sees."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def http_get(port: int, path: str = "/metrics", method: str = "GET") -> tuple[int, bytes]:
    """One HTTP/1.1 request to 127.0.0.1; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


async def scrape(port: int) -> Samples:
    status, body = await http_get(port)
    assert status == 200, body
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@dataclass
class Watcher:
    """Subscribes to some filters on a broker; ``last[topic]`` is the newest payload seen."""

    port: int
    filters: tuple[str, ...]
    last: dict[str, bytes] = field(default_factory=dict)
    retained: dict[str, bool] = field(default_factory=dict)
    history: list[tuple[str, bytes]] = field(default_factory=list)

    async def wait(self, predicate: object, timeout: float = 20) -> None:
        assert callable(predicate)
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def watching(port: int, *filters: str) -> AsyncIterator[Watcher]:
    watcher = Watcher(port, filters)
    ready = asyncio.Event()

    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            for f in filters:
                await client.subscribe(f, qos=1)
            ready.set()
            async for message in client.messages:
                payload = message.payload
                data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
                topic = str(message.topic)
                watcher.last[topic] = data
                watcher.retained[topic] = bool(message.retain)
                watcher.history.append((topic, data))

    task = asyncio.create_task(run())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task
