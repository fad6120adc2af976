"""``chisan demo``: the gateway's main job on simulated devices and a private broker.

Everything a real home has, simulated in one process: a smart meter behind a Wi-SUN module on a
pseudo-terminal (the B-route emulator), ECHONET Lite devices on loopback addresses, a private
mosquitto broker on a free port, and a small market backend that stores and acknowledges every
slot record. The clock runs accelerated so 30-minute slots pass in seconds; the gateway itself
runs unchanged from a generated config file, exactly as ``chisan run`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from gateway.clock import JST, AcceleratedClock, Clock

DEMO_SITE = "demo-0001"
DEMO_NODE = "127.0.0.20"  # the simulated ECHONET node: PV, battery, water heater

DEMO_CONFIG = """
[site]
id = "{site}"
fit = false

[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
telemetry_s = 10
ack_timeout_s = 30

[broute]
port = "{pty}"
dialect = "auto"
id = "{rbid}"
password_file = "broute-password"
poll_s = 10
timeout_s = 20

[echonet]
bind = "127.0.0.1"
multicast_interface = "127.0.0.1"
timeout_s = 2

[[device]]
name = "battery"
kind = "battery"
protocol = "echonet"
host = "{node}"
eoj = "027D01"
poll_s = 10

[[device]]
name = "pv"
kind = "pv"
protocol = "echonet"
host = "{node}"
eoj = "027901"
poll_s = 10

[[device]]
name = "ecocute"
kind = "water_heater"
protocol = "echonet"
host = "{node}"
eoj = "026B01"
poll_s = 30

[commands]
public_key_file = "backend.pub.pem"

[store]
path = "chisan.db"

[control]
socket = "control.sock"

[log]
level = "warning"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def private_broker(folder: Path) -> AsyncIterator[int]:
    """A mosquitto of our own on a free loopback port (installed by scripts/setup.sh)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(binary, os.X_OK):
        raise RuntimeError("mosquitto is not installed: run scripts/setup.sh first")
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
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)


@dataclass
class DemoBackend:
    """The market's side: stores slot records, acknowledges them, shows what arrives."""

    port: int
    site: str
    console: Console
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=dict)
    acks: list[dict[str, Any]] = field(default_factory=list)
    key: Any = None
    client: Any = None

    async def send_command(self, clock: Clock, kind: str, power_w: int) -> str:
        """Publish one signed DR command for the current slot, as the market backend would."""
        import base64

        from gateway.provenance import canonical_json
        from gateway.slots import SLOT, slot_start

        start = slot_start(clock.now())
        doc: dict[str, Any] = {
            "id": f"demo-{kind}-{start:%H%M}",
            "rev": 1,
            "issued_at": clock.now().replace(microsecond=0).isoformat(),
            "kind": kind,
            "start": start.isoformat(),
            "end": (start + SLOT).isoformat(),
            "power_w": power_w,
            "priority": 10,
            "status": "active",
            "nonce": f"demo-nonce-{start:%Y%m%d%H%M}",
        }
        if kind == "battery_discharge":
            doc["allow_export"] = False
        doc["sig"] = base64.b64encode(self.key.sign(canonical_json(doc))).decode()
        self.console.print(
            f"[magenta]backend → cmd[/magenta] {doc['id']}: {kind} {power_w} W "
            f"{start:%H:%M}–{start + SLOT:%H:%M}"
        )
        await self.client.publish(f"chisan/v1/{self.site}/cmd", json.dumps(doc), qos=1)
        return str(doc["id"])

    async def run(self) -> None:
        import aiomqtt

        prefix = f"chisan/v1/{self.site}"
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, keepalive=5) as client:
                    self.client = client
                    await client.subscribe(f"{prefix}/#", qos=1)
                    async for message in client.messages:
                        try:
                            doc = json.loads(message.payload)
                        except (ValueError, AttributeError):
                            continue
                        topic = str(message.topic)[len(prefix) + 1 :]
                        if topic == "slot":
                            self._slot(doc)
                            upto = max(self.records)
                            while upto and not all(s in self.records for s in range(1, upto)):
                                upto -= 1
                            await client.publish(f"{prefix}/slot/ack", json.dumps({"seq": upto}))
                        elif topic == "telemetry":
                            self.telemetry = doc
                        elif topic == "state":
                            self.console.print(f"[dim]state[/dim] {doc}")
                        elif topic == "alarm":
                            self.console.print(f"[red]alarm[/red] {doc}")
                        elif topic == "cmd/ack":
                            self.acks.append(doc)
                            extra = {
                                k: v
                                for k, v in doc.items()
                                if k not in ("id", "rev", "status", "at")
                            }
                            self.console.print(
                                f"[magenta]ack[/magenta] {doc.get('id')}: "
                                f"[bold]{doc.get('status')}[/bold] {extra or ''}"
                            )
                        elif topic == "dr/report":
                            self.console.print(f"[magenta]DR report[/magenta] {doc}")
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def _slot(self, doc: dict[str, Any]) -> None:
        new = doc["seq"] not in self.records
        self.records[doc["seq"]] = doc
        if new:
            imp = "—" if doc["import_wh"] is None else f"{doc['import_wh']:>5} Wh"
            exp = "—" if doc["export_wh"] is None else f"{doc['export_wh']:>5} Wh"
            self.console.print(
                f"slot {doc['slot_start'][5:16].replace('T', ' ')}  import {imp}  "
                f"export {exp}  [cyan]{doc['source']}[/cyan] rev {doc['rev']} "
                f"seq {doc['seq']} [dim]{doc['hash'][:12]}…[/dim]"
            )


async def run_demo(duration_s: float, speed: float = 30.0, console: Console | None = None) -> int:
    """Run the whole demo for ``duration_s`` real seconds; returns the records the backend got."""
    from drivers.broute.sim import (
        DEFAULT_PASSWORD,
        DEFAULT_RBID,
        MeterModelConfig,
        ModuleConfig,
        PtyEmulator,
    )
    from drivers.echonet.sim import SimNode
    from gateway.app import Gateway
    from gateway.config import load
    from gateway.supervisor import Supervisor

    console = console or Console()
    now = datetime.now(JST)
    # Start a minute before the next boundary so the first live slot arrives soon.
    start = now.replace(minute=29 if now.minute < 30 else 59, second=0, microsecond=0)
    clock: Clock = AcceleratedClock(speed, start)
    with tempfile.TemporaryDirectory(prefix="chisan-demo-") as tmp:
        folder = Path(tmp)
        pw = folder / "broute-password"
        pw.write_text(DEFAULT_PASSWORD + "\n")
        pw.chmod(0o600)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        backend_key = Ed25519PrivateKey.generate()
        (folder / "backend.pub.pem").write_bytes(
            backend_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        async with private_broker(folder) as port:
            module = ModuleConfig(link_delay=0.01, link_jitter=0.0, scan_scale=0.02)
            node = SimNode(
                DEMO_NODE, devices=("pv", "battery", "water_heater"), clock=clock, soc_pct=60
            )
            async with PtyEmulator(module, MeterModelConfig(), clock) as emu, node:
                emu.meter.extra_load = lambda: float(node.battery.power_w)  # behind the meter
                cfg_path = folder / "chisan.toml"
                cfg_path.write_text(
                    DEMO_CONFIG.format(
                        site=DEMO_SITE,
                        mqtt_port=port,
                        pty=emu.path,
                        rbid=DEFAULT_RBID,
                        node=DEMO_NODE,
                    )
                )
                cfg = load(cfg_path)
                console.print(
                    f"[bold]chisan demo[/bold]: site {DEMO_SITE}, broker 127.0.0.1:{port}, "
                    f"meter on {emu.path}, ECHONET node {DEMO_NODE}, "
                    f"clock ×{speed:g} from {start:%Y-%m-%d %H:%M} JST"
                )
                backend = DemoBackend(port, DEMO_SITE, console, key=backend_key)
                backend_task = asyncio.create_task(backend.run())
                app = Gateway(cfg, clock).build()
                sup = Supervisor(app.components, clock)
                task = asyncio.create_task(sup.run())
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            _demo_dr(app, backend, clock, node, console), duration_s
                        )
                finally:
                    sup.stop()
                    await task
                    app.close()
                    backend_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await backend_task
                tel = {k: v for k, v in backend.telemetry.items() if "." in k}
                console.print(f"telemetry: {json.dumps(tel)[:300]}")
                console.print(
                    f"[green]demo finished[/green]: {len(backend.records)} signed slot records "
                    f"delivered and acknowledged; clock now {clock.now():%H:%M} JST"
                )
                return len(backend.records)


async def _demo_dr(
    app: Any, backend: DemoBackend, clock: Clock, node: Any, console: Console
) -> None:
    """Once the meter is fresh, the backend sends one DR command: 上げDR (charge the battery from
    the PV surplus) while the home exports, 下げDR (discharge for the house) while it imports."""
    while not (app.uplink.connected and backend.client is not None) or app.control.failsafe:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # polling the gateway's public state
    await asyncio.sleep(1.0)
    from gateway.readings import METER_POWER_W

    power = app.hub.latest(METER_POWER_W)
    exporting = power is not None and power.value is not None and power.value < 0
    kind, mode = ("battery_charge", 0x42) if exporting else ("battery_discharge", 0x43)
    await backend.send_command(clock, kind, 1500)
    for _ in range(100):
        await asyncio.sleep(0.1)
        if node.battery.actual == mode:
            console.print(
                f"[magenta]device[/magenta] simulated battery now "
                f"{'charging' if exporting else 'discharging'} {abs(node.battery.power_w):.0f} W,"
                f" SOC {node.battery.soc_pct:.1f} %"
            )
            break
    await asyncio.Event().wait()  # keep running until the demo's time is up


def main(duration_s: float, speed: float) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_demo(duration_s, speed))
    return 0
