"""BrouteMeter (component + capabilities) against the emulator on a pty."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from drivers.broute.adapter import (
    READING_CURRENTS,
    READING_EXPORT,
    READING_IMPORT,
    READING_POWER,
    BrouteMeter,
    BrouteSettings,
    LinkState,
    pan_from_json,
    pan_to_json,
)
from drivers.broute.dialect import Dialect
from drivers.broute.join import CachedPan, credentials_proof
from drivers.broute.sim import DEFAULT_PASSWORD, DEFAULT_RBID, Notify, PtyEmulator
from drivers.capabilities import (
    Boundary,
    DeviceError,
    EnergyCounters,
    IntervalMeter,
    PhaseCurrents,
    PowerMeter,
)
from gateway.config import BrouteConfig
from gateway.secrets import Secret

from .emulated import (
    START,
    PanStore,
    Readings,
    RecordingLog,
    adapter,
    clock,
    eventually,
    meter,
    module,
    settings,
    stop,
)


def test_implements_the_capabilities() -> None:
    meter_ = BrouteMeter(settings("/dev/null"), DEFAULT_PASSWORD, clock(), log=RecordingLog())
    for capability in (PowerMeter, PhaseCurrents, EnergyCounters, IntervalMeter):
        assert isinstance(meter_, capability)
    assert meter_.name == "meter"
    assert DEFAULT_PASSWORD not in repr(meter_)


async def test_calls_while_down_fail_at_once() -> None:
    meter_ = BrouteMeter(settings("/dev/ttyUSB9"), DEFAULT_PASSWORD, clock(), log=RecordingLog())
    started = time.monotonic()
    for call in (meter_.power_w, meter_.currents_a, meter_.import_kwh, meter_.boundary):
        with pytest.raises(DeviceError, match="B-route link down"):
            await call()
    with pytest.raises(DeviceError):
        await meter_.history_day(date(2026, 11, 26))
    assert time.monotonic() - started < 0.1


async def test_run_polls_and_serves_the_capabilities() -> None:
    clk = clock()
    readings = Readings()
    store = PanStore()
    async with PtyEmulator(module(), meter(two_wire=True), clk) as emu:
        meter_ = adapter(emu, clk, readings=readings, store=store)
        task = asyncio.create_task(meter_.run())
        want = {READING_POWER, READING_CURRENTS, READING_IMPORT, READING_EXPORT}
        await eventually(lambda: want <= readings.keys(), what="the first readings")
        assert meter_.state is LinkState.UP
        power = await meter_.power_w()
        assert isinstance(power.value, float) and power.at.tzinfo is not None
        r, t = (await meter_.currents_a()).value
        assert r is not None and t is None  # single-phase two-wire
        imp = await meter_.import_kwh()
        assert imp.value == pytest.approx(emu.meter.import_raw / 10)
        assert (await meter_.export_kwh()).value == pytest.approx(emu.meter.export_raw / 10)
        boundary = await meter_.boundary()
        assert boundary is not None and boundary.at == START.replace(minute=0)
        assert boundary.modulus_wh == 100_000_000
        day = await meter_.history_day(date(2026, 11, 25))
        assert len(day) == 48 and day[0].at.date() == date(2026, 11, 25)
        end = START.replace(minute=0)
        recent = await meter_.history_recent(end, 14)  # two ED/EC reads
        assert [b.at for b in recent] == [
            end - i * timedelta(minutes=30) for i in range(13, -1, -1)
        ]
        assert await meter_.history_day(date(2026, 11, 28)) == []
        with pytest.raises(DeviceError, match="99 days"):
            await meter_.history_day(date(2026, 1, 1))
        assert store.pan is not None and store.pan.channel == 0x21
        assert store.pan.proof == credentials_proof(DEFAULT_RBID, DEFAULT_PASSWORD)
        assert emu.module.stats.overlapping == 0
        await stop(task)
        assert emu.module.stats.commands[-1] == "SKTERM"
        assert meter_.state is LinkState.DOWN


async def test_rejoin_uses_the_cached_pan() -> None:
    clk = clock()
    store = PanStore()
    readings = Readings()
    async with PtyEmulator(module(), meter(), clk) as emu:
        first = adapter(emu, clk, store=store, readings=readings)
        task = asyncio.create_task(first.run())
        await eventually(lambda: first.state is LinkState.UP)
        await stop(task)
        assert emu.module.stats.scans == 1
        second = adapter(emu, clk, store=store)
        task = asyncio.create_task(second.run())
        await eventually(lambda: second.state is LinkState.UP)
        assert second.last_join is not None and second.last_join.used_cached_pan
        assert emu.module.stats.scans == 1 and emu.module.stats.joins == 2
        await stop(task)


async def test_wrong_password_is_reported_and_not_retried() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        meter_ = adapter(emu, clk, password="WRONGPASSWRD")
        task = asyncio.create_task(meter_.run())
        await eventually(lambda: meter_.state is LinkState.NEEDS_ATTENTION)
        assert "B-route ID or password rejected" in (meter_.down_reason or "")
        with pytest.raises(DeviceError, match="B-route ID or password rejected"):
            await meter_.power_w()
        await asyncio.sleep(0.5)  # 10 clock seconds: no second try (that waits an hour)
        assert emu.module.stats.joins == 1
        await stop(task)


async def test_later_event_24_rejoins_with_backoff() -> None:
    clk = clock()
    log = RecordingLog()
    async with PtyEmulator(module(), meter(), clk) as emu:
        meter_ = adapter(emu, clk, log=log)
        task = asyncio.create_task(meter_.run())
        await eventually(lambda: meter_.state is LinkState.UP)
        emu.module.config.password = "CHANGEDPASS1"  # from now on the meter refuses PANA
        emu.module.trigger_reauth(fail=True)  # EVENT 29, then EVENT 24
        # The cached PAN, then a scan, each answered EVENT 24; then SKJOIN once more.
        await eventually(
            lambda: "PANA failed (EVENT 24) 2 times" in (meter_.down_reason or ""),
            what="the rejoin given up as a weak link",
        )
        assert meter_.state is not LinkState.NEEDS_ATTENTION  # proven credentials: weak link
        retries = [kw["retry_in_s"] for lvl, ev, kw in log.records if ev.startswith("B-route link")]
        assert retries and retries[0] >= 1.5
        emu.module.config.password = DEFAULT_PASSWORD
        await eventually(lambda: meter_.state is LinkState.UP, within=15)
        assert meter_.joins == 2
        await stop(task)


async def test_silent_meter_rebuilds_the_session() -> None:
    clk = clock()
    readings = Readings()
    async with PtyEmulator(module(), meter(), clk) as emu:
        meter_ = adapter(emu, clk, readings=readings, poll_s=2.0)
        task = asyncio.create_task(meter_.run())
        await eventually(lambda: meter_.state is LinkState.UP)
        emu.module.config.meter_silent = True
        await eventually(lambda: meter_.state is not LinkState.UP, what="silence detected")
        assert "meter silent" in (meter_.down_reason or "")
        with pytest.raises(DeviceError):
            await meter_.power_w()
        emu.module.config.meter_silent = False
        await eventually(lambda: meter_.joins == 2, within=15, what="the rebuilt session")
        count = len(readings.items)
        await eventually(lambda: len(readings.items) > count, what="readings again")
        assert emu.module.stats.scans == 1  # the rebuild used the cached PAN
        await stop(task)


async def test_module_reset_is_recovered() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        meter_ = adapter(emu, clk, poll_s=2.0)
        task = asyncio.create_task(meter_.run())
        await eventually(lambda: meter_.state is LinkState.UP)
        emu.module.reset_module()
        await eventually(lambda: meter_.joins == 2, within=15, what="rejoin after the reset")
        assert emu.module.stats.commands.count("SKRESET") == 2
        assert (await meter_.power_w()).value is not None
        await stop(task)


async def test_periodic_reauthentication_does_not_disturb_polling() -> None:
    clk = clock()
    readings = Readings()
    async with PtyEmulator(module(reauth_s=4.0, link_delay=0.01), meter(), clk) as emu:
        meter_ = adapter(emu, clk, readings=readings, poll_s=1.0, min_interval_s=0.2)
        task = asyncio.create_task(meter_.run())
        await eventually(lambda: emu.module.stats.reauths >= 3, what="three re-auths")
        assert meter_.joins == 1 and meter_.state is LinkState.UP
        assert emu.module.stats.sends_while_held == 0
        assert len([k for k, _, _ in readings.items if k == READING_POWER]) >= 4
        await stop(task)


async def test_inf_of_ea_eb_reaches_an_async_callback() -> None:
    clk = clock(START.replace(minute=29, second=40))
    got: list[Boundary] = []

    async def on_boundary(b: Boundary) -> None:
        await asyncio.sleep(0)
        got.append(b)

    async with PtyEmulator(module(), meter(), clk) as emu:
        meter_ = adapter(emu, clk, on_boundary=on_boundary)
        task = asyncio.create_task(meter_.run())
        await eventually(lambda: bool(got), what="the boundary callback")
        assert got[0].at == START.replace(minute=30)
        assert got[0].import_wh is not None and got[0].export_wh is not None
        assert (await meter_.boundary()) == got[0]  # cached: no new request needed
        await stop(task)


async def test_inf_with_ea_alone_is_completed_by_a_read() -> None:
    clk = clock(START.replace(minute=29, second=40))
    got: list[Boundary] = []
    async with PtyEmulator(module(), meter(reverse=False), clk) as emu:
        meter_ = adapter(emu, clk, on_boundary=got.append)
        task = asyncio.create_task(meter_.run())
        await eventually(lambda: bool(got), what="the boundary callback")
        assert got[0].at == START.replace(minute=30) and got[0].export_wh is None
        await stop(task)


async def test_polls_ea_eb_after_each_boundary() -> None:
    clk = clock(START.replace(minute=29, second=30), factor=40)
    async with PtyEmulator(module(notify=Notify.NONE), meter(), clk) as emu:
        meter_ = adapter(emu, clk, boundary_delay_s=5.0)
        task = asyncio.create_task(meter_.run())
        await eventually(lambda: meter_.state is LinkState.UP)
        boundary = START.replace(minute=30)
        await eventually(
            lambda: meter_._boundary is not None and meter_._boundary.at == boundary,
            what="EA/EB read after :30",
        )
        assert clk.now() >= boundary + timedelta(seconds=5)
        await stop(task)


async def test_port_missing_is_retried_with_backoff() -> None:
    clk = clock()
    log = RecordingLog()
    meter_ = BrouteMeter(
        settings("/dev/ttyUSB9", backoff_initial_s=1.0),
        DEFAULT_PASSWORD,
        clk,
        log=log,
    )
    task = asyncio.create_task(meter_.run())
    await eventually(lambda: len([r for r in log.records if r[0] == "warning"]) >= 3)
    assert "no such port /dev/ttyUSB9" in (meter_.down_reason or "")
    delays = [kw["retry_in_s"] for lvl, ev, kw in log.records if lvl == "warning"]
    assert delays[1] > delays[0]
    await stop(task)


def test_cached_pan_json_round_trip() -> None:
    pan = CachedPan(0x21, 0x8888, "001c6400030c12a4", "0a1b2c3d")
    assert pan_from_json(json.loads(json.dumps(pan_to_json(pan)))) == pan
    assert pan_from_json({"channel": 33, "pan_id": 34952, "mac": "001C6400030C12A4"}) == (
        CachedPan(33, 0x8888, "001C6400030C12A4")
    )
    assert pan_from_json({"channel": 33}) is None
    assert pan_from_json({"channel": 33, "pan_id": 1, "mac": "xyz"}) is None
    assert pan_from_json(None) is None


def test_settings_from_the_config() -> None:
    cfg = BrouteConfig(
        port="/dev/ttyUSB0",
        id=DEFAULT_RBID,
        password_file=Path("broute-password"),
        dialect="bp35c0",
        poll_s=15.0,
        scan_durations=(7, 8),
    )
    s = BrouteSettings.from_config(cfg, energy_poll_s=120.0)
    assert s.dialect is Dialect.BP35C0 and s.poll_s == 15.0 and s.scan_durations == (7, 8)
    assert s.energy_poll_s == 120.0 and s.min_interval_s == cfg.min_interval_s
    meter_ = BrouteMeter(cfg, Secret(DEFAULT_PASSWORD), clock(), log=RecordingLog())
    assert meter_.settings.port == "/dev/ttyUSB0"
