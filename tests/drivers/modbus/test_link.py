"""The Modbus link layer against real pymodbus servers: RTU over a pseudo-terminal pair, TCP on
loopback. One link per line or endpoint, requests bounded by their timeout, and a device that
stops answering backed off and reported without stalling its neighbours."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from drivers.modbus.adapters import ModbusSetup, build_modbus
from drivers.modbus.link import DeviceHealth, LinkPool, LinkSettings
from drivers.modbus.sim import free_port
from drivers.modbus.transport import (
    ModbusBackedOff,
    ModbusRefused,
    ModbusSettings,
    ModbusTimeout,
    ModbusTransport,
    ModbusUnreachable,
)
from gateway.clock import ManualClock, SystemClock
from tests.drivers.modbus.mapsim import (
    BATTERY_REGISTERS,
    CHARGE_SP,
    MODE,
    PV_REGISTERS,
    MapSim,
    config_text,
    device_toml,
    load_text,
    tcp_server,
)
from tests.drivers.modbus.ptyserver import rtu_server

TIMEOUT_S = 0.25


def rtu(path: str, unit: int, **kw: Any) -> ModbusSettings:
    return ModbusSettings(serial=path, baudrate=19200, unit_id=unit, timeout_s=TIMEOUT_S, **kw)


# ------------------------------------------------------------------------------ RTU over a pty


async def test_rtu_reads_and_writes_two_units_on_one_line() -> None:
    clock = ManualClock()
    first, second = MapSim(clock, soc_pct=40), MapSim(clock, soc_pct=70)
    async with rtu_server(first.device(1), second.device(2)) as line:
        a = ModbusTransport("a", rtu(line.client_path, 1))
        b = ModbusTransport("b", rtu(line.client_path, 2), link=a.link)
        try:
            assert (await a.read(102, 1, function="input")) == [400]
            assert (await b.read(102, 1, function="input")) == [700]
            await b.write(CHARGE_SP, [1200])
            await b.write(MODE, [1])
            assert await b.read(MODE, 2) == [1, 1200]
            assert await a.read(MODE, 2) == [0, 0]  # the other unit is untouched
            assert second.power_w() == 1200.0 and first.power_w() == 0.0
            assert a.link.connects == 1 and line.bytes > 0
        finally:
            await a.close()
            await b.close()


async def test_rtu_exception_codes_are_refusals_with_their_code() -> None:
    sim = MapSim(ManualClock())
    async with rtu_server(sim.device(1)) as line:
        t = ModbusTransport("a", rtu(line.client_path, 1))
        try:
            with pytest.raises(ModbusRefused, match="illegal data address") as info:
                await t.read(5000, 2)
            assert info.value.code == 2
            with pytest.raises(ModbusRefused) as info:
                await t.write(210, [1])  # a rating: read-only on this device
            assert info.value.code == 2
            with pytest.raises(ModbusRefused, match="illegal data value") as info:
                await t.write(MODE, [9])
            assert info.value.code == 3
            assert not t.health.faulty and t.health.consecutive == 0  # refusals are answers
            assert await t.read(MODE, 1) == [0]
        finally:
            await t.close()


async def test_rtu_silent_unit_times_out_within_its_timeout_and_the_line_stays_usable() -> None:
    clock = ManualClock()
    good, silent = MapSim(clock), MapSim(clock)
    silent.mute()
    async with rtu_server(good.device(1), silent.device(7)) as line:
        a = ModbusTransport("good", rtu(line.client_path, 1))
        b = ModbusTransport("silent", rtu(line.client_path, 7, retries=1), link=a.link)
        try:
            started = time.monotonic()
            with pytest.raises(ModbusTimeout, match="silent: read holding 200"):
                await b.read(MODE, 1)
            took = time.monotonic() - started
            assert 2 * TIMEOUT_S * 0.9 <= took < 2 * TIMEOUT_S + 0.4  # one retry, each bounded
            assert await a.read(MODE, 1) == [0]
            assert a.link.connects == 1  # the serial port stayed open
        finally:
            await a.close()
            await b.close()


async def test_rtu_cut_line_is_a_timeout_then_recovers() -> None:
    sim = MapSim(ManualClock())
    async with rtu_server(sim.device(1)) as line:
        t = ModbusTransport("a", rtu(line.client_path, 1))
        try:
            line.cut = True
            with pytest.raises(ModbusTimeout):
                await t.read(MODE, 1)
            line.cut = False
            assert await t.read(MODE, 1) == [0]
        finally:
            await t.close()


async def test_missing_serial_port_is_unreachable(tmp_path: Path) -> None:
    t = ModbusTransport("gone", rtu(str(tmp_path / "ttyUSB9"), 1))
    with pytest.raises(ModbusUnreachable, match=r"cannot connect to .*ttyUSB9@19200/8N1"):
        await t.read(MODE, 1)
    await t.close()


# ------------------------------------------------------------------------------------ TCP link


async def test_devices_on_one_endpoint_share_one_connection() -> None:
    clock = ManualClock()
    a_sim, b_sim = MapSim(clock, soc_pct=10), MapSim(clock, soc_pct=90)
    async with tcp_server(a_sim.device(1), b_sim.device(2)) as served:
        pool = LinkPool()
        where = LinkSettings(host=served.host, port=served.port, timeout_s=1.0)
        link = pool.link(where)
        assert pool.link(LinkSettings(host=served.host, port=served.port)) is link
        a = ModbusTransport("a", ModbusSettings(host=served.host, port=served.port), link=link)
        b = ModbusTransport(
            "b", ModbusSettings(host=served.host, port=served.port, unit_id=2), link=link
        )
        reads = [t.read(102, 1, function="input") for _ in range(10) for t in (a, b)]
        results = await asyncio.gather(*reads)
        assert results == [[100], [900]] * 10
        assert served.connections == 1 and link.connects == 1 and link.requests == 20
        await a.close()
        assert link.connected  # b still uses it
        await b.close()
        assert not link.connected


def test_one_serial_port_cannot_run_at_two_speeds() -> None:
    pool = LinkPool()
    pool.link(LinkSettings(serial="/dev/ttyUSB1", baudrate=9600))
    with pytest.raises(ValueError, match="already used as /dev/ttyUSB1@9600/8N1"):
        pool.link(LinkSettings(serial="/dev/ttyUSB1", baudrate=19200))


async def test_unreachable_endpoint_is_backed_off_and_fails_fast() -> None:
    now = [0.0]
    settings = ModbusSettings(host="127.0.0.1", port=free_port(), timeout_s=0.5)
    t = ModbusTransport("nobody", settings, monotonic=lambda: now[0])
    with pytest.raises(ModbusUnreachable, match=r"cannot connect to 127\.0\.0\.1"):
        await t.read(0, 1)
    started = time.monotonic()
    with pytest.raises(ModbusUnreachable, match="next connection attempt in"):
        await t.read(0, 1)
    assert time.monotonic() - started < 0.05
    assert t.link.connect_backoff.failures == 1
    now[0] += 5.0  # past the link's back-off: a real attempt again
    with pytest.raises(ModbusUnreachable, match="cannot connect"):
        await t.read(0, 1)
    assert t.link.connect_backoff.failures == 2


async def test_gateway_without_its_target_is_a_failure_but_busy_is_an_answer() -> None:
    sim = MapSim(ManualClock())
    async with tcp_server(sim.device(1)) as served:
        settings = ModbusSettings(host=served.host, port=served.port, faulty_after=2)
        t = ModbusTransport("behind-gateway", settings)
        try:
            sim.refuse = ExcCodes.DEVICE_BUSY
            for _ in range(3):
                with pytest.raises(ModbusRefused, match="code 6: device busy"):
                    await t.read(MODE, 1)
            assert t.health.consecutive == 0 and not t.health.faulty
            sim.refuse = ExcCodes.GATEWAY_NO_RESPONSE
            for _ in range(2):
                with pytest.raises(ModbusRefused, match="code 11: gateway target did not respond"):
                    await t.read(MODE, 1)
            assert t.health.faulty
            with pytest.raises(ModbusBackedOff, match="not tried, device faulty after 2 failures"):
                await t.read(MODE, 1)
        finally:
            await t.close()


# ------------------------------------------------------------------------- health (pure parts)


def test_health_turns_faulty_backs_off_with_jitter_and_recovers() -> None:
    import random

    changes: list[bool] = []
    health = DeviceHealth(faulty_after=3)
    health.backoff.base_s, health.backoff.cap_s = 2.0, 10.0
    health.backoff.rng = random.Random(7)
    health.on_change = lambda h: changes.append(h.faulty)
    for t in (0.0, 1.0):
        health.failure(t, "timeout")
        assert not health.faulty and health.ready(t)
    health.failure(2.0, "timeout")
    assert health.faulty and changes == [True]
    delays = []
    for _ in range(6):
        assert not health.ready(health.backoff.until - 0.01)
        start = health.backoff.until
        health.failure(start, "timeout")
        delays.append(health.backoff.until - start)
    assert all(1.0 <= d <= 10.0 for d in delays)  # jittered [0.5, 1] x min(cap, 2 * 2^n)
    assert delays[-1] <= 10.0 and delays[-1] >= 5.0  # capped
    assert len(set(delays)) > 1
    health.success(100.0)
    assert not health.faulty and health.ready(100.0) and changes == [True, False]


# --------------------------------------------- a faulty device does not stall the others


def _setup(text: str, tmp_path: Path, **kw: Any) -> tuple[ModbusSetup, dict[str, list[float]]]:
    cfg = load_text(text, tmp_path)
    seen: dict[str, list[float]] = {}

    def on_reading(key: str, value: Any, at: datetime) -> None:
        seen.setdefault(key, []).append(time.monotonic())

    setup = build_modbus(
        cfg.devices,
        SystemClock(),
        on_reading,
        tuning={"faulty_after": 2, "backoff_s": 1.0, "backoff_max_s": 2.0},
        **kw,
    )
    return setup, seen


@contextlib.asynccontextmanager
async def running(setup: ModbusSetup) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(p.run()) for p in setup.pollers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(check: Callable[[], bool], limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _gaps(stamps: list[float], after: float) -> list[float]:
    later = [s for s in stamps if s >= after]
    return [b - a for a, b in itertools.pairwise(later)]


async def _faulty_beside_good(
    setup: ModbusSetup,
    seen: dict[str, list[float]],
    dead: MapSim,
    health: list[tuple[str, bool]],
    poll_s: float,
) -> None:
    async with running(setup):
        await until(lambda: setup.health()["dead"]["status"] == "faulty")
        assert ("dead", True) in health
        faulty_at = time.monotonic()
        await asyncio.sleep(2.0)
        # The good device kept its rhythm: each gap at most one poll plus one dead timeout, and
        # the dead one, tried once per back-off, took at most a few timeouts of the line.
        gaps = _gaps(seen["pv.power_w"], faulty_at)
        assert len(gaps) >= 0.5 * 2.0 / poll_s, gaps
        assert max(gaps) < poll_s + TIMEOUT_S + 0.3, gaps
        dead_adapter = setup.adapters["dead"]
        assert dead_adapter.transport.health.backoff.failures >= 1
        # While backed off the dead device is skipped: far fewer requests than polls.
        polls = setup.pollers[1]
        assert polls.failures > dead_adapter.transport.requests / 2
        state = setup.health()
        assert state["good"] == {"status": "ok"}
        assert state["dead"]["status"] == "faulty" and "no answer" in state["dead"]["error"]

        dead.mute(False)
        await until(lambda: setup.health()["dead"]["status"] == "ok", limit_s=4.0)
        assert health[-1] == ("dead", False)
        await until(lambda: len(seen.get("battery.soc_pct", [])) >= 2, limit_s=3.0)


async def test_silent_unit_on_a_shared_rtu_line_does_not_stall_the_good_one(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    good, dead = MapSim(clock), MapSim(clock)
    dead.mute()
    poll_s = 0.1
    async with rtu_server(good.device(1), dead.device(2)) as line:
        serial = f'serial = "{line.client_path}"\nbaudrate = 19200\ntimeout_s = {TIMEOUT_S}'
        text = config_text(
            device_toml("good", "pv", PV_REGISTERS, where=serial),
            device_toml("dead", "battery", BATTERY_REGISTERS, where=serial, unit_id=2),
        )
        health: list[tuple[str, bool]] = []
        setup, seen = _setup(text, tmp_path, on_health=lambda n, h: health.append((n, h.faulty)))
        for poller in setup.pollers:
            poller.poll_s = poll_s
        assert len(setup.pool.links) == 1
        await _faulty_beside_good(setup, seen, dead, health, poll_s)


async def test_dead_tcp_device_beside_a_good_one(tmp_path: Path) -> None:
    clock = ManualClock()
    good, dead = MapSim(clock), MapSim(clock)
    dead.mute()
    poll_s = 0.1
    async with tcp_server(good.device(1)) as g, tcp_server(dead.device(1)) as d:
        text = config_text(
            device_toml(
                "good", "pv", PV_REGISTERS,
                where=f'host = "{g.host}"\nport = {g.port}\ntimeout_s = {TIMEOUT_S}',
            ),
            device_toml(
                "dead", "battery", BATTERY_REGISTERS,
                where=f'host = "{d.host}"\nport = {d.port}\ntimeout_s = {TIMEOUT_S}',
            ),
        )  # fmt: skip
        health: list[tuple[str, bool]] = []
        setup, seen = _setup(text, tmp_path, on_health=lambda n, h: health.append((n, h.faulty)))
        for poller in setup.pollers:
            poller.poll_s = poll_s
        assert len(setup.pool.links) == 2
        await _faulty_beside_good(setup, seen, dead, health, poll_s)
