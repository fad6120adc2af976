"""The demo's private MQTT broker: mosquitto when installed, otherwise amqtt inside this process.

A fresh machine has no broker, and the demo must still run: amqtt is a pure-Python broker that
ships as a dependency. It speaks MQTT 3.1.1 only, so the gateway then uses its 3.1.1 fallback
(persistent session instead of the session expiry interval); mosquitto runs it on MQTT 5 as in
the field. Both listen on a free loopback port and keep nothing on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from drivers.loopback import free_port


class BrokerChoice(StrEnum):
    AUTO = "auto"
    EMBEDDED = "embedded"
    MOSQUITTO = "mosquitto"


@dataclass(frozen=True)
class BrokerInfo:
    """What runs: ``name`` (mosquitto/amqtt), its port and the MQTT version the gateway uses."""

    name: str
    port: int
    protocol: str


class BrokerUnavailable(RuntimeError):
    """The broker asked for cannot run here; the message says what to install."""


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    fallback = "/usr/sbin/mosquitto"
    return fallback if os.access(fallback, os.X_OK) else None


def resolve(choice: BrokerChoice) -> BrokerChoice:
    """``auto``: mosquitto when present, the embedded broker otherwise."""
    if choice is BrokerChoice.AUTO:
        return BrokerChoice.MOSQUITTO if mosquitto_binary() else BrokerChoice.EMBEDDED
    return choice


async def _wait_listening(port: int, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise BrokerUnavailable(f"the broker did not listen on port {port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def _mosquitto(folder: Path) -> AsyncIterator[BrokerInfo]:
    binary = mosquitto_binary()
    if binary is None:
        raise BrokerUnavailable(
            "mosquitto is not installed (apt-get install mosquitto), or use --broker embedded"
        )
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "set_tcp_nodelay true\n"
    )
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        str(conf),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _wait_listening(port)
        yield BrokerInfo("mosquitto", port, "5")
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def _amqtt() -> AsyncIterator[BrokerInfo]:
    try:
        from amqtt.broker import Broker
    except ImportError as exc:  # pragma: no cover - a dependency of chisan
        raise BrokerUnavailable(f"the embedded broker (amqtt) is not installed: {exc}") from exc
    # amqtt reports every client that disconnects at INFO/WARNING: noise in a console demo.
    logging.getLogger("amqtt").setLevel(logging.ERROR)
    logging.getLogger("transitions").setLevel(logging.ERROR)
    port = free_port()
    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()  # returns once the listener is bound
    try:
        yield BrokerInfo("amqtt", port, "3.1.1")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), 5)


@contextlib.asynccontextmanager
async def private_broker(choice: BrokerChoice, folder: Path) -> AsyncIterator[BrokerInfo]:
    """Start the chosen broker on a free loopback port; stop it on exit."""
    if resolve(choice) is BrokerChoice.MOSQUITTO:
        async with _mosquitto(folder) as info:
            yield info
    else:
        async with _amqtt() as info:
            yield info
