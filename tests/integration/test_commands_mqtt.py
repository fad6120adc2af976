"""DR commands over a real broker: the backend publishes on <p>/cmd, acks come back on cmd/ack.

The uplink is the real one with ``on_command=manager.handle``; the fake backend validates every
ack against docs/schemas/cmd-ack.schema.json. The manager runs on a ManualClock fixed at the
commands' issue time, so the test does not depend on the wall clock; the uplink on the real one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.clock import JST, ManualClock, SystemClock
from gateway.commands import CommandManager, Family
from gateway.config import CommandsConfig, MqttConfig
from gateway.provenance import init_key, load_private
from gateway.store import Store
from gateway.uplink import Uplink
from tests.support.backend import FakeBackend
from tests.support.mosquitto import Mosquitto, free_port

SITE = "sg-0001"
T0 = datetime(2026, 11, 27, 16, 55, tzinfo=JST)
START = datetime(2026, 11, 27, 17, 0, tzinfo=JST)
END = datetime(2026, 11, 27, 18, 0, tzinfo=JST)


def iso(when: datetime) -> str:
    return when.isoformat()


class Backend:
    """The market backend's half: an Ed25519 key, and commands signed as the spec says."""

    def __init__(self, tmp: Path) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public_key_file = tmp / "backend-ed25519.pub"
        self.public_key_file.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.n = 0

    def command(self, **over: Any) -> bytes:
        self.n += 1
        doc: dict[str, Any] = {
            "id": f"cmd-{self.n}",
            "rev": 1,
            "issued_at": iso(T0),
            "kind": "battery_discharge",
            "start": iso(START),
            "end": iso(END),
            "power_w": 2000,
            "allow_export": False,
            "priority": 10,
            "status": "active",
            "nonce": f"nonce-{self.n:06d}",
        }
        doc.update(over)
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        doc["sig"] = base64.b64encode(self.key.sign(body.encode())).decode()
        return json.dumps(doc).encode()


def mqtt_cfg(port: int) -> MqttConfig:
    return MqttConfig(
        url=f"mqtt://127.0.0.1:{port}",
        client_id=SITE,
        keepalive_s=5,
        reconnect_min_s=0.05,
        reconnect_max_s=0.3,
        ack_timeout_s=5,
    )


class Gateway:
    def __init__(self, tmp: Path, port: int, backend: Backend) -> None:
        init_key(tmp / "site.pem")
        self.store = Store(tmp / "chisan.db", SITE, load_private(tmp / "site.pem"))
        self.clock = ManualClock(T0)
        self.uplink = Uplink(mqtt_cfg(port), SITE, self.store, SystemClock())
        self.manager = CommandManager(
            CommandsConfig(public_key_file=backend.public_key_file),
            SITE,
            self.store,
            self.clock,
            self.publish_ack,
        )
        self.uplink.on_command = self.manager.handle

    async def publish_ack(self, ack: dict[str, Any]) -> bool:
        return await self.uplink.publish(self.uplink.topics.cmd_ack, ack, qos=1)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[None]:
    task = asyncio.create_task(uplink.run())
    try:
        await asyncio.wait_for(uplink.wait_connected(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def acks_of(backend: FakeBackend, cmd_id: str | None) -> list[str]:
    return [a["status"] for a in backend.of("cmd/ack") if a["id"] == cmd_id]


def waiting_for(backend: FakeBackend, n: int) -> Callable[[], bool]:
    return lambda: len(backend.of("cmd/ack")) >= n


async def test_commands_are_acknowledged_over_mqtt(tmp_path: Path, mosquitto: Mosquitto) -> None:
    signer = Backend(tmp_path)
    gw = Gateway(tmp_path, mosquitto.port, signer)
    async with FakeBackend(mosquitto.port) as backend:
        # A retained command (which the backend must never send) reaches the gateway when it
        # subscribes, flagged as retained: the uplink drops it before the manager sees it.
        await backend.send(SITE, "cmd", signer.command(id="retained"), retain=True)
        await asyncio.sleep(0.1)
    async with FakeBackend(mosquitto.port) as backend, running(gw.uplink):
        good = signer.command(id="dr-1")
        await backend.send(SITE, "cmd", good)
        await backend.wait_for(waiting_for(backend, 2))
        assert acks_of(backend, "retained") == []
        assert acks_of(backend, "dr-1") == ["received", "scheduled"]
        assert gw.manager.active(START)[Family.BATTERY].id == "dr-1"

        await backend.send(SITE, "cmd", b"\x00not json at all")
        await backend.send(SITE, "cmd", signer.command(id="negative", power_w=-1))
        forged = json.loads(signer.command(id="forged"))
        forged["power_w"] = 9000
        await backend.send(SITE, "cmd", json.dumps(forged))
        await backend.send(SITE, "cmd", b"{" + b" " * (1 << 20) + b"}")
        await backend.wait_for(waiting_for(backend, 6))
        rejected = backend.of("cmd/ack")[2:]
        assert [(a["id"], a["status"]) for a in rejected] == [
            (None, "rejected"),
            ("negative", "rejected"),
            ("forged", "rejected"),
            (None, "rejected"),
        ]
        assert [a["reason"].split(":")[0] for a in rejected] == [
            "not JSON",
            "power_w -1 is below the minimum 1",
            "bad signature",
            "payload too large",
        ]

        await backend.send(SITE, "cmd", good)  # a redelivery: the last ack again, nothing else
        await backend.wait_for(waiting_for(backend, 7))
        assert backend.of("cmd/ack")[-1] == backend.of("cmd/ack")[1]

        gw.clock.set(START)
        await gw.manager.started("dr-1", 1, clamped_by="soc_reserve", allowed_w=800)
        gw.clock.set(END)
        await gw.manager.completed("dr-1", 1, 790)
        await backend.wait_for(waiting_for(backend, 10))
    assert acks_of(backend, "dr-1") == [
        "received",
        "scheduled",
        "scheduled",
        "started",
        "clamped",
        "completed",
    ]
    assert backend.of("cmd/ack")[-1]["delivered_wh"] == 790
    # every ack matched the schema (the backend ignores its own commands echoed back)
    assert backend.invalid == []
    gw.store.close()


async def test_acks_made_offline_are_sent_after_reconnect(tmp_path: Path) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port)
    signer = Backend(tmp_path)
    gw = Gateway(tmp_path, port, signer)
    # Commands that arrived before the connection dropped; their acks could not go out.
    await gw.manager.handle(signer.command())
    await gw.manager.handle(b"[]")
    await gw.manager.started("cmd-1", 1)
    assert gw.manager.pending_acks == 4
    broker.start()
    try:
        async with FakeBackend(port) as backend, running(gw.uplink):
            await gw.manager.resend_pending_acks()
            await backend.wait_for(waiting_for(backend, 4))
            await gw.manager.resend_pending_acks()  # nothing left: nothing sent twice
            await asyncio.sleep(0.3)
    finally:
        broker.stop()
    assert [(a["id"], a["status"]) for a in backend.of("cmd/ack")] == [
        ("cmd-1", "received"),
        ("cmd-1", "scheduled"),
        (None, "rejected"),
        ("cmd-1", "started"),
    ]
    assert gw.manager.pending_acks == 0
    assert backend.invalid == []
    gw.store.close()


async def test_a_command_survives_a_gateway_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    signer = Backend(tmp_path)
    gw = Gateway(tmp_path, mosquitto.port, signer)
    payload = signer.command(randomize_s=1200)
    async with FakeBackend(mosquitto.port) as backend:
        async with running(gw.uplink):
            await backend.send(SITE, "cmd", payload)
            await backend.wait_for(waiting_for(backend, 2))
        effective = backend.of("cmd/ack")[1]["effective_start"]
        gw.store.close()
        again = Gateway(tmp_path, mosquitto.port, signer)
        again.clock.set(datetime.fromisoformat(effective) + timedelta(seconds=1))
        assert again.manager.active(again.clock.now())[Family.BATTERY].id == "cmd-1"
        async with running(again.uplink):
            await backend.send(SITE, "cmd", payload)  # redelivered after the restart
            await backend.wait_for(waiting_for(backend, 3))
    assert backend.of("cmd/ack")[2] == backend.of("cmd/ack")[1]
    assert backend.invalid == []
    again.store.close()
