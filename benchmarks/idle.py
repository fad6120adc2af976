"""The daemon at rest: start → READY time, then resident memory and CPU over an idle minute.

``chisan run`` runs as a real child process, exactly as systemd starts it (``NOTIFY_SOCKET`` set,
config from a file), against a simulated home served by this process: the B-route meter emulator
on a pseudo-terminal, an ECHONET node with a battery and a PV inverter on a loopback address, a
SunSpec inverter on a real pymodbus server, and a private mosquitto with a backend that
acknowledges slot records. Only the daemon's own process is measured (``/proc/<pid>``): RSS
sampled every second (mean and peak), CPU as user+system ticks over the idle window.

    .venv/bin/python benchmarks/idle.py [--seconds 60] [--starts 3]

Goals (issue contract): RSS under 40 MB, CPU under 1 % of one core; start → READY reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from benchmarks._report import Row, add_json_option, emit  # noqa: E402
from drivers.broute.sim import (  # noqa: E402
    DEFAULT_PASSWORD,
    DEFAULT_RBID,
    MeterModelConfig,
    ModuleConfig,
    PtyEmulator,
)
from drivers.echonet.sim import SimNode  # noqa: E402
from drivers.modbus.sim import ModbusSim  # noqa: E402
from drivers.modbus.simdevices import SimPvInverter  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from tests.support.backend import FakeBackend  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

SITE = "bench-idle"
NODE = "127.0.9.20"
CONFIG = """
[site]
id = "{site}"
fit = false

[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
telemetry_s = 60

[broute]
port = "{pty}"
dialect = "auto"
id = "{rbid}"
password_file = "broute-password"
poll_s = 10

[echonet]
bind = "127.0.0.1"
multicast_interface = "127.0.0.1"

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
name = "inverter"
kind = "pv"
protocol = "modbus"
host = "127.0.0.1"
port = {modbus_port}
unit_id = 1
sunspec = true
poll_s = 10

[commands]
public_key_file = "backend.pub.pem"

[store]
path = "chisan.db"

[control]
socket = "control.sock"

[log]
level = "warning"
"""

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Sample:
    ready_s: float
    rss_mean_mb: float
    rss_peak_mb: float
    cpu_pct: float
    #: The last sample's RSS split: anonymous (Python heap) and file-backed (code, libraries).
    anon_mb: float = 0.0
    file_mb: float = 0.0


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)


def _rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6


def _rss_split(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kb = {k: int(fields[k].split()[0]) for k in ("RssAnon", "RssFile", "RssShmem")}
    return kb["RssAnon"] / 1000, (kb["RssFile"] + kb["RssShmem"]) / 1000


@contextlib.asynccontextmanager
async def home(folder: Path) -> AsyncIterator[Path]:
    """The simulated home and a broker with an acknowledging backend; yields the config path."""
    clock = SystemClock()
    (folder / "broute-password").write_text(DEFAULT_PASSWORD)
    (folder / "broute-password").chmod(0o600)
    (folder / "backend.pub.pem").write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    broker = Mosquitto(folder / "broker")
    broker.start()
    try:
        module = ModuleConfig(link_delay=0.003, link_jitter=0.0, scan_scale=0.02)
        node = SimNode(NODE, devices=("battery", "pv"), clock=clock)
        async with (
            PtyEmulator(module, MeterModelConfig(), clock) as emu,
            node,
            ModbusSim(clock, [SimPvInverter(clock, unit_id=1)]) as inverter,
            FakeBackend(broker.port),
        ):
            cfg = folder / "chisan.toml"
            cfg.write_text(
                CONFIG.format(
                    site=SITE,
                    mqtt_port=broker.port,
                    pty=emu.path,
                    rbid=DEFAULT_RBID,
                    node=NODE,
                    modbus_port=inverter.port,
                )
            )
            yield cfg
    finally:
        broker.stop()


async def measure(cfg: Path, seconds: float) -> Sample:
    notify_path = cfg.parent / "notify.sock"
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    chisan = REPO / ".venv" / "bin" / "chisan"
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        str(chisan),
        "run",
        "-c",
        str(cfg),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(30):
            while True:
                msg = (await loop.sock_recv(notify, 4096)).decode()
                if "READY=1" in msg:
                    break
        ready = time.perf_counter() - t0
        # Let the first joins, discovery and polls settle: "idle" is the steady state after them.
        await asyncio.sleep(min(15.0, seconds / 4))
        rss: list[float] = []
        c0, w0 = _cpu_ticks(proc.pid), time.perf_counter()
        end = w0 + seconds
        while time.perf_counter() < end:
            rss.append(_rss_mb(proc.pid))
            await asyncio.sleep(1.0)
        cpu = (_cpu_ticks(proc.pid) - c0) / TICKS / (time.perf_counter() - w0) * 100
        if proc.returncode is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode} while idle")
        return Sample(ready, statistics.mean(rss), max(rss), cpu, *_rss_split(proc.pid))
    finally:
        if proc.returncode is None:
            proc.terminate()
            _, err = await proc.communicate()
            if proc.returncode not in (0, -15):
                print(err.decode()[-2000:], file=sys.stderr)
        notify.close()


async def run(seconds: float, starts: int, folder: Path) -> list[Sample]:
    samples: list[Sample] = []
    async with home(folder) as cfg:
        for i in range(starts):
            # Only the first start measures the idle minute; the others time start → READY.
            samples.append(await measure(cfg, seconds if i == 0 else 2.0))
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle window measured")
    parser.add_argument("--starts", type=int, default=3, help="daemon starts timed")
    add_json_option(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        samples = asyncio.run(run(args.seconds, args.starts, Path(tmp)))
    idle = samples[0]
    ready = statistics.median(s.ready_s for s in samples)
    print(
        f"start → READY  median {ready:.2f} s over {len(samples)} starts "
        f"({', '.join(f'{s.ready_s:.2f}' for s in samples)})"
    )
    print(
        f"idle {args.seconds:g} s   RSS mean {idle.rss_mean_mb:.1f} MB, peak "
        f"{idle.rss_peak_mb:.1f} MB (goal < 40 MB)   CPU {idle.cpu_pct:.2f} % of one core "
        "(goal < 1 %)"
    )
    print(
        f"RSS at the end: {idle.anon_mb:.1f} MB anonymous (heap), {idle.file_mb:.1f} MB "
        "file-backed (interpreter, extension modules, shared libraries)"
    )
    emit(
        args.json_out,
        [
            Row("idle", "start → READY", ready, "s"),
            Row(
                "idle",
                f"RSS peak, idle {args.seconds:g} s",
                idle.rss_peak_mb,
                "MB",
                goal="< 40 MB",
                met=idle.rss_peak_mb < 40,
            ),
            Row(
                "idle",
                f"CPU, idle {args.seconds:g} s",
                idle.cpu_pct,
                "% of one core",
                goal="< 1 %",
                met=idle.cpu_pct < 1,
            ),
        ],
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
