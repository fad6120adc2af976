"""B-route driver timings on the module emulator, side by side with momonga.

Run: .venv/bin/python benchmarks/broute.py [--link-delay S] [--scan-scale F] [--rejoins N]
                                           [--cycles N]

Everything runs over a real pseudo-terminal against ``drivers.broute.sim`` (the emulator runs in a
thread of its own with the real clock). What the numbers include and what they do not:

* **Radio.** Every radio frame (a SKSENDTO transmission, a reply from the meter, each PANA message)
  costs ``--link-delay`` ± 25 % real seconds; the default 0.1 s is in the middle of the 50-150 ms
  per frame seen on 920 MHz B-route links. A request/reply round trip is therefore two frames.
  PANA (SKJOIN → EVENT 25) is modelled as 12 frames (~1.2 s); real meters take 10-40 s because
  they answer PANA slowly, which this does not try to reproduce: it is the same for both joins.
* **Scan.** A real SKSCAN of duration D takes 9.6 ms × (2^D + 1) × 28 channels (D6 ≈ 17.5 s).
  The emulator scales scans by ``--scan-scale`` (default 0.1) to keep the run short; the table
  shows the measured time and the time extrapolated to a real-length scan (measured + the part
  of the scan time that was scaled away).
* **Rejoin** = open the port, SKRESET, SKVER/SKINFO, echo off, ROPT, credentials, (scan), SKLL64,
  S2/S3, SKJOIN until EVENT 25: what the daemon does after a broken session.
* **Reading cycle** = instantaneous power and currents (E7, E8) and both cumulative counters (E0,
  E3). The driver asks for all four in one multi-property Get; momonga's getters ask one property
  each (its ``request_to_get`` can batch too; that column is shown as well). The driver's
  ``min_interval_s`` pacing between requests is set to 0 here so that only the exchange itself is
  timed (in service it spaces requests by 2 s, as does momonga by its own design).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from benchmarks._report import Row, add_json_option, emit
from drivers.broute.dialect import Dialect, scan_seconds
from drivers.broute.join import CachedPan, JoinConfig
from drivers.broute.meter import MeterSession
from drivers.broute.sim import (
    DEFAULT_PASSWORD,
    DEFAULT_RBID,
    MeterModelConfig,
    ModuleConfig,
    ThreadedEmulator,
)
from drivers.broute.transport import ModuleLink, SessionParams
from gateway.clock import SystemClock

SCAN_DURATION = 6
PANA_FRAMES = 12


def emulator(link_delay: float, scan_scale: float) -> ThreadedEmulator:
    config = ModuleConfig(
        dialect=Dialect.BP35A1,
        link_delay=link_delay,
        link_jitter=link_delay / 4,
        scan_scale=scan_scale,
        join_frames=PANA_FRAMES,
        seed=42,
    )
    return ThreadedEmulator(config, MeterModelConfig(coefficient=None), SystemClock())


def quiet_logs() -> None:
    from gateway import logs

    logs.configure("error", "console", stream=sys.stderr)


# --- (a) rejoin -----------------------------------------------------------------------------------


async def _join_once(path: str, cached: CachedPan | None) -> tuple[float, bool]:
    clock = SystemClock()
    started = time.perf_counter()
    link = await ModuleLink.open(path, clock=clock)
    try:
        config = JoinConfig(
            DEFAULT_RBID,
            DEFAULT_PASSWORD,
            cached_pan=cached,
            credentials_proven=True,
            reset=True,
            scan_durations=(SCAN_DURATION,),
        )
        result = await link.join(config, SessionParams())
        elapsed = time.perf_counter() - started
    finally:
        await link.terminate(3.0)
        await link.close()
    return elapsed, result.used_cached_pan


def bench_rejoin(link_delay: float, scan_scale: float, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"cached PAN": [], "full scan": []}
    with emulator(link_delay, scan_scale) as emu:
        cached = CachedPan(0x21, 0x8888, "001C6400030C12A4")
        for _ in range(rounds):
            seconds, used = asyncio.run(_join_once(emu.path, cached))
            assert used
            out["cached PAN"].append(seconds)
            seconds, used = asyncio.run(_join_once(emu.path, None))
            assert not used
            out["full scan"].append(seconds)
    return out


# --- (b) reading cycle ----------------------------------------------------------------------------


async def _ours(path: str, cycles: int) -> list[float]:
    clock = SystemClock()
    link = await ModuleLink.open(path, clock=clock)
    times: list[float] = []
    try:
        await link.join(JoinConfig(DEFAULT_RBID, DEFAULT_PASSWORD), SessionParams())
        session = MeterSession(link, clock, min_interval_s=0.0, timeout_s=10.0)
        await session.start()
        for _ in range(cycles):
            started = time.perf_counter()
            instant = await session.read_instant(energy=True)
            times.append(time.perf_counter() - started)
            assert instant.power_w is not None and instant.energy is not None
    finally:
        await link.terminate(3.0)
        await link.close()
    return times


def _time(cycles: int, once: Callable[[], Any]) -> list[float]:
    times = []
    for _ in range(cycles):
        started = time.perf_counter()
        once()
        times.append(time.perf_counter() - started)
    return times


def bench_cycle(link_delay: float, scan_scale: float, cycles: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    with emulator(link_delay, scan_scale) as emu:
        out["chisan (one Get)"] = asyncio.run(_ours(emu.path, cycles))
    try:
        import momonga
        from momonga.momonga_echonet_enum import EchonetPropertyCode as Epc
    except ImportError:
        print("momonga is not installed (pip install momonga==0.7.*): its columns are skipped")
        return out
    with emulator(link_delay, scan_scale) as emu:
        client = momonga.Momonga(DEFAULT_RBID, DEFAULT_PASSWORD, emu.path)
        client.internal_xmit_interval = 0  # its fixed 5 s pauses while opening
        with client:

            def getters() -> None:
                client.get_instantaneous_power()
                client.get_instantaneous_current()
                client.get_measured_cumulative_energy()
                client.get_measured_cumulative_energy(reverse=True)

            def batched() -> None:
                client.request_to_get(
                    {
                        Epc.instantaneous_power,
                        Epc.instantaneous_current,
                        Epc.measured_cumulative_energy,
                        Epc.measured_cumulative_energy_reversed,
                    }
                )

            out["momonga (4 getters)"] = _time(cycles, getters)
            out["momonga request_to_get"] = _time(cycles, batched)
    return out


# --- report ---------------------------------------------------------------------------------------


def summary(times: list[float]) -> str:
    return (
        f"median {statistics.median(times):6.3f} s   min {min(times):6.3f}   "
        f"max {max(times):6.3f}   (n={len(times)})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link-delay", type=float, default=0.1, help="seconds per radio frame")
    parser.add_argument("--scan-scale", type=float, default=0.1, help="scan time factor")
    parser.add_argument("--rejoins", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=10)
    add_json_option(parser)
    args = parser.parse_args(argv)
    quiet_logs()
    began = time.perf_counter()
    print(
        f"link delay {args.link_delay * 1000:.0f} ms ± 25 % per radio frame, PANA {PANA_FRAMES} "
        f"frames, SKSCAN duration {SCAN_DURATION} scaled ×{args.scan_scale:g} "
        f"(real {scan_seconds(SCAN_DURATION):.1f} s)\n"
    )

    rejoin = bench_rejoin(args.link_delay, args.scan_scale, args.rejoins)
    cached = statistics.median(rejoin["cached PAN"])
    scanned = statistics.median(rejoin["full scan"])
    scaled_away = scan_seconds(SCAN_DURATION) * (1 - args.scan_scale)
    print("(a) rejoin after a broken session")
    print(f"  cached PAN            {summary(rejoin['cached PAN'])}")
    print(f"  full scan (measured)  {summary(rejoin['full scan'])}")
    print(f"  full scan (real-length scan, extrapolated) median {scanned + scaled_away:6.3f} s")
    print(
        f"  cached PAN is {scanned / cached:.1f}× faster as measured, "
        f"{(scanned + scaled_away) / cached:.1f}× with a real-length D{SCAN_DURATION} scan\n"
    )

    cycle = bench_cycle(args.link_delay, args.scan_scale, args.cycles)
    ours = statistics.median(cycle["chisan (one Get)"])
    print("(b) one reading cycle: E7 + E8 + E0 + E3")
    for name, times in cycle.items():
        ratio = statistics.median(times) / ours
        print(f"  {name:24s} {summary(times)}   ×{ratio:.2f} of chisan")
    print(f"\ntotal run time {time.perf_counter() - began:.1f} s")
    rows = [
        Row(
            "broute",
            "rejoin, cached PAN",
            cached,
            "s",
            peer="full real-length scan",
            peer_value=scanned + scaled_away,
            ratio=(scanned + scaled_away) / cached,
        )
    ]
    peers = {k: statistics.median(v) for k, v in cycle.items() if k != "chisan (one Get)"}
    for peer, theirs in peers.items():
        rows.append(
            Row("broute", "reading cycle E7+E8+E0+E3", ours, "s", peer, theirs, theirs / ours)
        )
    if not peers:
        rows.append(Row("broute", "reading cycle E7+E8+E0+E3", ours, "s"))
    emit(args.json_out, rows)


if __name__ == "__main__":
    main()
