"""A whole simulated home for end-to-end tests: the B-route meter emulator on a pty, a simulated
ECHONET node on a loopback address, the gateway built from a real config file, and a fake
backend on the test's mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.broute.sim import (
    DEFAULT_PASSWORD,
    DEFAULT_RBID,
    MeterModelConfig,
    ModuleConfig,
    PtyEmulator,
)
from drivers.echonet.sim import SimNode
from gateway.app import Gateway
from gateway.clock import Clock
from gateway.config import Config, load
from gateway.demo import DEMO_CONFIG
from gateway.supervisor import Supervisor
from tests.support.backend import FakeBackend

SITE = "demo-0001"


@dataclass
class Home:
    app: Gateway
    cfg: Config
    cfg_path: Path
    emu: PtyEmulator
    node: SimNode
    backend: FakeBackend


async def until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def simulated_home(
    folder: Path,
    broker_port: int,
    clock: Clock,
    node_address: str,
    devices: Sequence[str],
    *,
    edit_config: Callable[[str], str] = lambda text: text,
    meter_sees_battery: bool = False,
    **node_options: Any,
) -> AsyncIterator[Home]:
    """Start everything, yield the running home, stop it all again.

    ``backend.pub.pem`` in ``folder`` is the backend's command key; a random one is written when
    the test brings none. ``meter_sees_battery`` puts the simulated battery behind the simulated
    meter, as in a real home.
    """
    pw = folder / "broute-password"
    pw.write_text(DEFAULT_PASSWORD)
    pw.chmod(0o600)
    key = folder / "backend.pub.pem"
    if not key.exists():
        key.write_bytes(
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    module = ModuleConfig(link_delay=0.003, link_jitter=0.0, scan_scale=0.02)
    node = SimNode(node_address, devices=devices, clock=clock, **node_options)
    async with PtyEmulator(module, MeterModelConfig(), clock) as emu, node:
        if meter_sees_battery:
            emu.meter.extra_load = lambda: float(node.battery.power_w)
        text = DEMO_CONFIG.format(
            site=SITE, mqtt_port=broker_port, pty=emu.path, rbid=DEFAULT_RBID, node=node_address
        )
        if "water_heater" not in devices:
            text = text.replace('name = "ecocute"', 'name = "ecocute"\nenabled = false')
        cfg_path = folder / "chisan.toml"
        cfg_path.write_text(edit_config(text))
        cfg = load(cfg_path)
        app = Gateway(cfg, clock).build()
        sup = Supervisor(app.components, clock)
        async with FakeBackend(broker_port) as backend:
            task = asyncio.create_task(sup.run())
            try:
                yield Home(app, cfg, cfg_path, emu, node, backend)
            finally:
                sup.stop()
                await task
                app.close()
