"""DR command latency on loopback: publish at the backend → Set at the simulated battery, and
→ the ``started`` acknowledgement back at the backend. 1,000 signed commands, one at a time.

The gateway runs its real uplink, command manager, interlock, control loop, ECHONET transport and
battery adapter (with read-back confirmation of CF) against the simulated ECHONET node and a
private mosquitto. The meter's readings are fed to the readings hub directly (the B-route is
out of scope here: it is polled, not on the command path). Goal: p99 under 20 ms.

    .venv/bin/python benchmarks/command_latency.py [--commands 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiomqtt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from benchmarks._report import Row, add_json_option, emit  # noqa: E402
from drivers.echonet.sim import SimNode  # noqa: E402
from gateway import logs  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.config import load  # noqa: E402
from gateway.readings import METER_CURRENTS_A, METER_POWER_W  # noqa: E402
from gateway.slots import SLOT, slot_start  # noqa: E402
from gateway.supervisor import Supervisor  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

SITE = "bench-0001"
NODE = "127.0.0.91"
CONFIG = """
[site]
id = "{site}"
fit = false
[mqtt]
url = "mqtt://127.0.0.1:{port}"
[echonet]
bind = "127.0.0.1"
multicast_interface = "127.0.0.1"
[[device]]
name = "battery"
kind = "battery"
protocol = "echonet"
host = "{node}"
eoj = "027D01"
poll_s = 5
[limits]
min_dwell_s = 0
failsafe_hysteresis_s = 0
[commands]
public_key_file = "{pem}"
[store]
path = "chisan.db"
[control]
socket = "control.sock"
[log]
level = "warning"
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(n: int, folder: Path) -> tuple[list[float], list[float]]:
    key = Ed25519PrivateKey.generate()
    pem = folder / "backend.pub.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    broker = Mosquitto(folder / "broker")
    broker.start()
    clock = SystemClock()
    node = SimNode(NODE, devices=("battery",), clock=clock, soc_pct=60, mode_delay_s=0)
    set_at: list[float] = []
    node.set_listeners.append(
        lambda rec: set_at.append(time.perf_counter()) if rec.epc == 0xDA else None
    )
    (folder / "chisan.toml").write_text(
        CONFIG.format(site=SITE, port=broker.port, node=NODE, pem=pem)
    )
    cfg = load(folder / "chisan.toml")
    try:
        async with node:
            app = Gateway(cfg, clock).build()
            sup = Supervisor(app.components, clock)
            sup_task = asyncio.create_task(sup.run())

            async def meter() -> None:  # fresh meter data keeps the interlock out of fail-safe
                while True:
                    app.hub.update(METER_POWER_W, 800.0, clock.now(), "bench")
                    app.hub.update(METER_CURRENTS_A, (6.0, 5.0), clock.now(), "bench")
                    await asyncio.sleep(0.5)

            meter_task = asyncio.create_task(meter())
            started: dict[str, float] = {}
            got = asyncio.Event()
            to_set: list[float] = []
            to_ack: list[float] = []
            nodelay = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
            async with aiomqtt.Client("127.0.0.1", broker.port, socket_options=nodelay) as backend:
                await backend.subscribe(f"chisan/v1/{SITE}/cmd/ack", qos=1)

                async def acks() -> None:
                    async for message in backend.messages:
                        doc = json.loads(message.payload)  # type: ignore[arg-type]
                        if doc.get("status") == "started":
                            started[doc["id"]] = time.perf_counter()
                            got.set()
                        elif doc.get("status") in ("rejected", "aborted"):
                            print("unexpected ack:", doc)
                            got.set()

                ack_task = asyncio.create_task(acks())
                while not app.uplink.connected or app.control.failsafe:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                for i in range(n):
                    start = slot_start(clock.now())
                    doc: dict[str, Any] = {
                        "id": f"c{i}",
                        "rev": 1,
                        "issued_at": clock.now().replace(microsecond=0).isoformat(),
                        "kind": "battery_discharge" if i % 2 else "battery_charge",
                        "start": start.isoformat(),
                        "end": (start + SLOT).isoformat(),
                        "power_w": 1000,
                        "priority": min(1000, i),
                        "status": "active",
                        "nonce": f"bench-nonce-{i:06d}",
                    }
                    if i % 2:
                        doc["allow_export"] = False
                    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
                    doc["sig"] = base64.b64encode(key.sign(body.encode())).decode()
                    payload = json.dumps(doc)
                    sets_before = len(set_at)
                    got.clear()
                    t0 = time.perf_counter()
                    await backend.publish(f"chisan/v1/{SITE}/cmd", payload, qos=1)
                    await asyncio.wait_for(got.wait(), 10)
                    if f"c{i}" in started and len(set_at) > sets_before:
                        to_set.append(set_at[sets_before] - t0)
                        to_ack.append(started[f"c{i}"] - t0)
                ack_task.cancel()
            meter_task.cancel()
            sup.stop()
            await sup_task
            app.close()
    finally:
        broker.stop()
    return to_set, to_ack


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=1000)
    add_json_option(parser)
    args = parser.parse_args()
    logs.configure("error", "console")
    with tempfile.TemporaryDirectory() as tmp:
        to_set, to_ack = asyncio.run(run(args.commands, Path(tmp)))
    print(f"{len(to_ack)} of {args.commands} commands started (mode alternating charge/discharge)")
    for name, values in (("publish → Set at device", to_set), ("publish → started ack", to_ack)):
        ms = [v * 1000 for v in values]
        print(
            f"{name:<26} p50 {statistics.median(ms):6.2f} ms   p99 {pct(ms, 99):6.2f} ms   "
            f"max {max(ms):6.2f} ms"
        )
    print("goal: p99 < 20 ms on loopback")
    rows = []
    for name, values in (("publish → Set at device", to_set), ("publish → started ack", to_ack)):
        ms = [v * 1000 for v in values]
        rows.append(Row("command_latency", f"{name}, p50", statistics.median(ms), "ms"))
        p99 = pct(ms, 99)
        rows.append(Row("command_latency", f"{name}, p99", p99, "ms", goal="< 20 ms", met=p99 < 20))
    emit(args.json_out, rows)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
