"""A broker set up as a fleet's would be: gateways on a TLS listener that requires a client
certificate and confines each one by ACL to ``<prefix>/<its CN>/#``; the backend on a second,
private listener (in production a separate, trusted network path)."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.mosquitto import Mosquitto, free_port
from tests.support.pki import write_pki

PREFIX = "chisan/v1"
#: Sites with certificates; the first is the gateway under test.
SITES = ("demo-0001", "sg-0002", "demo-00011")


@dataclass
class AclBroker:
    broker: Mosquitto
    backend_port: int
    tls_port: int
    pki: dict[str, Path]
    folder: Path

    def tls(self, site: str) -> aiomqtt.TLSParameters:
        return aiomqtt.TLSParameters(
            ca_certs=str(self.pki["ca"]),
            certfile=str(self.pki[f"{site}_cert"]),
            keyfile=str(self.pki[f"{site}_key"]),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )

    def mqtt_section(self, site: str) -> str:
        """The gateway's ``[mqtt]`` table for this broker, with ``site``'s certificate."""
        return (
            "[mqtt]\n"
            f'url = "mqtts://127.0.0.1:{self.tls_port}"\n'
            f'ca_file = "{self.pki["ca"]}"\n'
            f'cert_file = "{self.pki[f"{site}_cert"]}"\n'
            f'key_file = "{self.pki[f"{site}_key"]}"\n'
            "reconnect_min_s = 0.05\nreconnect_max_s = 0.5\n"
        )


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[AclBroker]:
    folder = tmp_path / "broker"
    folder.mkdir()
    pki = write_pki(folder, SITES[0], SITES)
    acl = folder / "acl"
    # %u is the certificate's CN (use_identity_as_username): a client cannot choose it, unlike
    # its client id. Nothing else is granted on the gateways' listener.
    acl.write_text(f"pattern readwrite {PREFIX}/%u/#\n")
    backend_port, tls_port = free_port(), free_port()
    broker = Mosquitto(folder, backend_port)
    broker.conf.write_text(
        "per_listener_settings true\n"
        + ("user root\n" if os.geteuid() == 0 else "")
        + "log_dest stderr\nlog_type error\n"
        + f"listener {backend_port} 127.0.0.1\nallow_anonymous true\n"
        + f"listener {tls_port} 127.0.0.1\n"
        + f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        + "require_certificate true\nuse_identity_as_username true\n"
        + f"allow_anonymous false\nacl_file {acl}\n"
    )
    broker.start()
    try:
        yield AclBroker(broker, backend_port, tls_port, pki, folder)
    finally:
        broker.stop()


@dataclass
class Listener:
    """A client that records every message it receives, in order."""

    client: aiomqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)

    def topics(self) -> list[str]:
        return [t for t, _ in self.received]

    def payloads(self, topic: str) -> list[Any]:
        return [json.loads(p) for t, p in self.received if t == topic]


@contextlib.asynccontextmanager
async def listening(client: aiomqtt.Client) -> AsyncIterator[Listener]:
    import asyncio

    listener = Listener(client)

    async def pump() -> None:
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes | bytearray)
            listener.received.append((str(message.topic), bytes(payload)))

    async with client:
        task = asyncio.create_task(pump())
        try:
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
