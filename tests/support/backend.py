"""A fake market backend: stores slot records, acknowledges them, validates every message.

It behaves as the real one must: deduplicates on (site, slot_start, rev), acknowledges the highest
contiguous seq it has stored, reconnects when the broker comes back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.clock import Clock
from gateway.slots import SLOT, slot_start

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@functools.cache
def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())  # type: ignore[no-any-return]


@functools.cache
def validator(name: str) -> Any:
    doc = schema(name)
    return jsonschema.validators.validator_for(doc)(doc)


TOPIC_SCHEMAS = {
    "state": "state",
    "slot": "slot",
    "telemetry": "telemetry",
    "alarm": "alarm",
    "cmd/ack": "cmd-ack",
    "dr/report": "dr-report",
}


@dataclass
class FakeBackend:
    port: int
    prefix: str = "chisan/v1"
    site: str = "+"
    ack: bool = True
    records: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    by_seq: dict[int, dict[str, Any]] = field(default_factory=dict)
    deliveries: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    messages: list[tuple[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    #: Deliveries that disagree with an earlier one of the same (site, slot_start, rev) or seq:
    #: a re-send must be the very same record, or the chain the backend holds would fork.
    conflicts: list[str] = field(default_factory=list)
    acked_upto: int = 0

    def __post_init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.changed = asyncio.Event()

    async def __aenter__(self) -> FakeBackend:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, keepalive=2) as client:
                    self._client = client
                    await client.subscribe(f"{self.prefix}/{self.site}/#", qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        await self._on(client, message)
            except aiomqtt.MqttError:
                self.connected.clear()
                self._client = None
                await asyncio.sleep(0.1)

    async def _on(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        parts = topic.split("/")
        sub = "/".join(parts[3:])
        payload = message.payload
        assert isinstance(payload, bytes | bytearray)
        if sub in ("cmd", "slot/ack"):
            return  # our own publications, echoed back by the wildcard subscription
        try:
            doc = json.loads(payload)
        except ValueError:
            self.invalid.append(f"{topic}: not JSON")
            return
        self.messages.append((sub, doc))
        name = TOPIC_SCHEMAS.get(sub)
        if name is not None and (SCHEMAS / f"{name}.schema.json").exists():
            try:
                validator(name).validate(doc)
            except jsonschema.ValidationError as exc:
                self.invalid.append(f"{topic}: {exc.message}")
        if sub == "slot":
            key = (doc["site"], doc["slot_start"], doc["rev"])
            self.deliveries[key] += 1
            if self.records.setdefault(key, doc) != doc:
                self.conflicts.append(f"{key}: delivered twice with different contents")
            if self.by_seq.setdefault(doc["seq"], doc) != doc:
                self.conflicts.append(f"seq {doc['seq']}: delivered twice as different records")
            if self.ack:
                # Acknowledge on every record, duplicates included: an earlier ack may have been
                # lost with a broker that crashed, and the gateway waits for it.
                upto = self.acked_upto
                while upto + 1 in self.by_seq:
                    upto += 1
                if upto > 0:
                    self.acked_upto = upto
                    site = doc["site"]
                    # Not awaited inline: a publish on a dead connection would block this loop.
                    asyncio.get_running_loop().create_task(
                        self._publish(client, f"{self.prefix}/{site}/slot/ack", {"seq": upto})
                    )
        self.changed.set()

    async def _publish(self, client: aiomqtt.Client, topic: str, doc: dict[str, Any]) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topic, json.dumps(doc), qos=1, timeout=5)

    async def send(self, site: str, sub: str, payload: bytes | str, retain: bool = False) -> None:
        assert self._client is not None
        await self._client.publish(f"{self.prefix}/{site}/{sub}", payload, qos=1, retain=retain)

    async def wait_for(self, predicate: Any, timeout: float = 20) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.2)

        await asyncio.wait_for(loop(), timeout)

    def of(self, sub: str) -> list[Any]:
        return [doc for s, doc in self.messages if s == sub]


class Signer:
    def __init__(self, folder: Path) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.pem = folder / "backend.pub.pem"
        self.pem.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.n = 0

    def command(self, clock: Clock, sign: bool = True, **over: Any) -> bytes:
        self.n += 1
        start = slot_start(clock.now())
        doc: dict[str, Any] = {
            "id": f"dr-{self.n}",
            "rev": 1,
            "issued_at": clock.now().replace(microsecond=0).isoformat(),
            "kind": "battery_discharge",
            "start": start.isoformat(),
            "end": (start + SLOT).isoformat(),
            "power_w": 2000,
            "allow_export": True,
            "priority": 10,
            "randomize_s": 0,
            "test": False,
            "status": "active",
            "nonce": f"n-{self.n}-{id(self)}",
        }
        doc.update(over)
        doc = {k: v for k, v in doc.items() if v is not None}
        if sign:
            body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            doc["sig"] = base64.b64encode(self.key.sign(body.encode())).decode()
        return json.dumps(doc).encode()


def acks(backend: FakeBackend, cmd_id: str) -> list[str]:
    return [a["status"] for a in backend.of("cmd/ack") if a.get("id") == cmd_id]
