"""A fleet's MQTT load on one broker: N simulated gateways and a backend, from one process.

Each simulated gateway speaks the gateway's contract (docs/mqtt-api.md) with its own client id:
a last will and a retained ``state`` on connect, subscriptions to its own ``slot/ack`` and
``cmd``, one settlement record (QoS 1) per slot boundary, telemetry (QoS 0), and a ``cmd/ack``
for every command. The backend consumes through a shared subscription
(``$share/backend/chisan/v1/+/slot``) with several consumers, as a backend scaled out behind a
clustered broker would, and acknowledges every record on the gateway's own ``slot/ack``.

Phases, each timed:

1. **connect**: all N gateways connect (at most ``--concurrency`` handshakes in flight);
2. **boundary**: every gateway publishes its slot record at once (a slot boundary: the worst
   case, all homes read their meters together); time until every record is acknowledged, and
   each record's publish → ack latency;
3. **telemetry**: every gateway publishes one telemetry message; backend receive rate;
4. **commands**: the backend sends one command to every gateway; cmd → ``received`` ack latency;
5. **storm**: the broker is killed (SIGKILL) and restarted; the gateways reconnect with the
   uplink's own backoff (``gateway.uplink.reconnect_delay``) or, as the peer, the same
   exponential backoff without jitter. The
   peak reconnect rate (per 100 ms) and the time until all are back are reported.

    .venv/bin/python benchmarks/fleet.py [--gateways 1000 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import Row, add_json_option, emit  # noqa: E402
from benchmarks.mqttlite import Client, MqttLiteError, Will  # noqa: E402
from gateway.uplink import reconnect_delay  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

PREFIX = "chisan/v1"
CONSUMERS = 4
KEEPALIVE = 60
FAILURES = (MqttLiteError, OSError, TimeoutError)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # a lost connection while acking is the storm phase's business


def fire(coro: Coroutine[Any, Any, None]) -> None:
    """Run a QoS 1 publish from a message callback without waiting for its PUBACK."""
    asyncio.ensure_future(coro).add_done_callback(_retrieve)


@dataclass
class Sim:
    """One simulated gateway: its connection, and the events its test phases wait for."""

    site: str
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    slot_sent: float = 0.0
    slot_rtt: float | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    client: Client | None = None

    @property
    def topic(self) -> str:
        return f"{PREFIX}/{self.site}"


class Fleet:
    def __init__(self, port: int, n: int, concurrency: int) -> None:
        self.port = port
        self.sims = [Sim(f"fleet-{i:05d}") for i in range(n)]
        self.gate = asyncio.Semaphore(concurrency)
        self.tasks: list[asyncio.Task[None]] = []
        self.cmd_rtt: list[float] = []
        self.cmd_sent: dict[str, float] = {}
        self.cmd_done = asyncio.Event()
        self.telemetry_seen = 0
        self.telemetry_done = asyncio.Event()
        self.backoff: Callable[[int], float] = lambda _failures: 0.0
        self.stop = asyncio.Event()
        #: When each reconnection attempt is due (a TCP connect offered to the broker).
        self.attempts: list[float] = []
        self.backends: list[Client] = []

    # ------------------------------------------------------------------ gateway side

    def _gateway_message(self, sim: Sim, topic: str, payload: bytes) -> None:
        if topic.endswith("/slot/ack"):
            sim.slot_rtt = time.perf_counter() - sim.slot_sent
            sim.acked.set()
        elif sim.client is not None:
            doc = json.loads(payload)
            ack = {"id": doc["id"], "rev": doc["rev"], "status": "received"}
            fire(sim.client.publish(f"{sim.topic}/cmd/ack", json.dumps(ack).encode(), 1))

    async def gateway(self, sim: Sim) -> None:
        failures = 0
        will = Will(f"{sim.topic}/state", b'{"online":false}', qos=1, retain=True)
        while not self.stop.is_set():
            try:
                async with self.gate:
                    client = await Client.connect(
                        "127.0.0.1",
                        self.port,
                        sim.site,
                        will=will,
                        keepalive=KEEPALIVE,
                        on_message=functools.partial(self._gateway_message, sim),
                    )
                try:
                    await client.publish(f"{sim.topic}/state", b'{"online":true}', 1, retain=True)
                    await client.subscribe(f"{sim.topic}/slot/ack", 1)
                    await client.subscribe(f"{sim.topic}/cmd", 1)
                    failures = 0
                    sim.client = client
                    sim.connected.set()
                    await client.closed
                finally:
                    sim.client = None
                    sim.connected.clear()
                    client.close()
            except FAILURES:
                failures += 1
            delay = self.backoff(max(failures, 1))
            # The time the next attempt is due, as independent gateways would make it: the
            # simulator's own event loop, busy with thousands of handshakes, must not be what
            # shapes the storm.
            self.attempts.append(time.perf_counter() + delay)
            await asyncio.sleep(delay)

    async def pinger(self) -> None:
        """Keepalive for every live connection (one task for the fleet, not one each)."""
        while True:
            await asyncio.sleep(KEEPALIVE / 3)
            for sim in self.sims:
                if sim.client is not None:
                    with contextlib.suppress(MqttLiteError):
                        sim.client.ping()

    # ------------------------------------------------------------------ backend side

    def _backend_message(self, k: int, topic: str, payload: bytes) -> None:
        site = topic.split("/")[2]
        if topic.endswith("/slot"):
            doc = json.loads(payload)
            ack = json.dumps({"seq": doc["seq"]}).encode()
            fire(self.backends[k].publish(f"{PREFIX}/{site}/slot/ack", ack, 1))
        elif topic.endswith("/telemetry"):
            self.telemetry_seen += 1
            if self.telemetry_seen == len(self.sims):
                self.telemetry_done.set()
        elif topic.endswith("/cmd/ack") and site in self.cmd_sent:
            self.cmd_rtt.append(time.perf_counter() - self.cmd_sent.pop(site))
            if not self.cmd_sent:
                self.cmd_done.set()

    async def start_backend(self) -> None:
        for k in range(CONSUMERS):
            client = await Client.connect(
                "127.0.0.1",
                self.port,
                f"backend-{k}",
                on_message=functools.partial(self._backend_message, k),
            )
            self.backends.append(client)
            await client.subscribe(f"$share/backend/{PREFIX}/+/slot", 1)
            await client.subscribe(f"$share/backend/{PREFIX}/+/telemetry", 0)
            await client.subscribe(f"$share/backend/{PREFIX}/+/cmd/ack", 1)

    # ------------------------------------------------------------------ phases

    async def connect_all(self) -> float:
        t0 = time.perf_counter()
        self.tasks = [asyncio.create_task(self.gateway(s)) for s in self.sims]
        self.tasks.append(asyncio.create_task(self.pinger()))
        await asyncio.gather(*(s.connected.wait() for s in self.sims))
        return time.perf_counter() - t0

    async def boundary(self) -> tuple[float, list[float]]:
        t0 = time.perf_counter()

        async def one(i: int, sim: Sim) -> None:
            assert sim.client is not None
            record = {"site": sim.site, "seq": 1, "slot_start": "2026-11-27T12:00:00+09:00"}
            record |= {"import_wh": 120 + i % 300, "export_wh": i % 700, "rev": 1}
            sim.slot_sent = time.perf_counter()
            await sim.client.publish(f"{sim.topic}/slot", json.dumps(record).encode(), 1)

        await asyncio.gather(*(one(i, s) for i, s in enumerate(self.sims)))
        await asyncio.gather(*(s.acked.wait() for s in self.sims))
        return time.perf_counter() - t0, [s.slot_rtt or 0.0 for s in self.sims]

    async def telemetry(self) -> float:
        t0 = time.perf_counter()
        body = json.dumps(
            {"meter_w": 812, "pv_w": 2310, "battery_w": -1500, "soc_pct": 64}
        ).encode()
        for sim in self.sims:
            assert sim.client is not None
            await sim.client.publish(f"{sim.topic}/telemetry", body, 0)
        await asyncio.wait_for(self.telemetry_done.wait(), 120)
        return time.perf_counter() - t0

    async def commands(self) -> float:
        sender = await Client.connect("127.0.0.1", self.port, "backend-cmd")
        t0 = time.perf_counter()
        sends = []
        for i, sim in enumerate(self.sims):
            cmd = {"id": f"dr-{i}", "rev": 1, "kind": "battery_discharge", "power_w": 1500}
            self.cmd_sent[sim.site] = time.perf_counter()
            sends.append(sender.publish(f"{sim.topic}/cmd", json.dumps(cmd).encode(), 1))
        await asyncio.gather(*sends)
        await asyncio.wait_for(self.cmd_done.wait(), 120)
        sender.close()
        return time.perf_counter() - t0

    async def storm(self, broker: Mosquitto, jitter: bool) -> tuple[float, float, int]:
        """Kill the broker, restart it after half a second.

        Returns the seconds from the restart until every gateway is back, the peak rate of
        connection attempts offered to the broker once it is up (per 100 ms, scaled to /s), and
        the number of attempts the whole outage cost.
        """
        if jitter:
            self.backoff = lambda f: reconnect_delay(f, 1.0, 300.0)
        else:  # the same exponential backoff without its jitter
            self.backoff = lambda f: min(300.0, 1.0 * 2 ** min(f, 20))
        # Real gateways do not queue behind each other: no handshake limit in this phase.
        self.gate = asyncio.Semaphore(len(self.sims))
        self.attempts.clear()
        broker.kill9()
        async with asyncio.timeout(60):
            while any(s.connected.is_set() for s in self.sims):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        # In a thread: a blocked event loop would release every expired backoff timer at once.
        await asyncio.to_thread(broker.start)
        t1 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in self.sims)), 300)
        done = time.perf_counter() - t1
        bins = collections.Counter(int((t - t1) * 10) for t in self.attempts if t >= t1)
        return done, max(bins.values()) * 10.0, len(self.attempts)


async def run(n: int, concurrency: int, folder: Path) -> list[Row]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 1000)), hard))
    broker = Mosquitto(folder / "broker")
    broker.start()
    fleet = Fleet(broker.port, n, concurrency)
    rows: list[Row] = []
    label = f"{n:,} gateways"
    try:
        await fleet.start_backend()

        connect = await fleet.connect_all()
        print(f"[{label}] connect: {connect:.2f} s ({n / connect:,.0f} connects/s)")
        rows.append(Row("fleet", f"{label}: connect all", connect, "s"))

        total, rtts = await fleet.boundary()
        ms = [r * 1000 for r in rtts]
        print(
            f"[{label}] boundary: all {n} records acked in {total:.2f} s; publish → ack p50 "
            f"{statistics.median(ms):.0f} ms, p99 {pct(ms, 99):.0f} ms"
        )
        rows.append(Row("fleet", f"{label}: boundary, all records acked", total, "s"))
        rows.append(Row("fleet", f"{label}: slot publish → ack p99", pct(ms, 99), "ms"))

        tele = await fleet.telemetry()
        print(f"[{label}] telemetry: {n} messages in {tele:.2f} s ({n / tele:,.0f}/s)")
        rows.append(Row("fleet", f"{label}: telemetry received", n / tele, "msgs/s"))

        cmd_total = await fleet.commands()
        cms = [r * 1000 for r in fleet.cmd_rtt]
        print(
            f"[{label}] commands: {n} round trips in {cmd_total:.2f} s; cmd → ack p50 "
            f"{statistics.median(cms):.0f} ms, p99 {pct(cms, 99):.0f} ms"
        )
        rows.append(Row("fleet", f"{label}: command round trip p99", pct(cms, 99), "ms"))

        together, peak_together, tries_together = await fleet.storm(broker, jitter=False)
        spread, peak_spread, tries_spread = await fleet.storm(broker, jitter=True)
        print(
            f"[{label}] storm, backoff without jitter: all back {together:.2f} s after the "
            f"restart, peak {peak_together:,.0f} attempts/s, {tries_together:,} attempts in all"
        )
        print(
            f"[{label}] storm, the uplink's jittered backoff: all back in {spread:.2f} s, peak "
            f"{peak_spread:,.0f} attempts/s ({peak_together / peak_spread:.1f}× lower), "
            f"{tries_spread:,} attempts in all"
        )
        rows.append(Row("fleet", f"{label}: all back after broker restart", spread, "s"))
        rows.append(
            Row(
                "fleet",
                f"{label}: reconnect storm, peak attempts/s",
                peak_spread,
                "attempts/s",
                peer="backoff without jitter",
                peer_value=peak_together,
                ratio=peak_together / peak_spread,
            )
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"[{label}] simulator peak RSS {rss:.0f} MB")
    finally:
        fleet.stop.set()
        for task in fleet.tasks:
            task.cancel()
        await asyncio.gather(*fleet.tasks, return_exceptions=True)
        for client in fleet.backends:
            client.close()
        broker.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight")
    add_json_option(parser)
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for n in args.gateways:
        with tempfile.TemporaryDirectory() as tmp:
            rows += asyncio.run(run(n, args.concurrency, Path(tmp)))
    emit(args.json_out, rows)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
