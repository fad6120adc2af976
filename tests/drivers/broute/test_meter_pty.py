"""MeterSession against the emulated meter on a pty: faults, scaling, history, notifications."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from fractions import Fraction

import pytest

from drivers.broute.errors import LinkError, MeterSilent, RequestTimeout
from drivers.broute.meter import (
    METER_EOJ,
    MeterScale,
    decode_counter,
    decode_currents,
    decode_power,
    is_reply,
    scale_from,
)
from drivers.broute.sim import Notify, PtyEmulator
from drivers.capabilities import Boundary
from drivers.echonet.frame import CONTROLLER, ESV, Frame, Property, encode, get_request, reply
from gateway.clock import JST
from gateway.slots import counter_delta

from .emulated import START, clock, eventually, joined_meter, meter, module

# --- pure ---------------------------------------------------------------------------------------


def test_scale_is_exact_integer_wh() -> None:
    scale = MeterScale(coefficient=10, unit_code=0x02, digits=6)  # 0.01 kWh × 10 = 100 Wh
    assert scale.wh_per_count == 100
    assert scale.wh(123456) == 12_345_600
    assert scale.modulus_wh == 100_000_000
    assert scale.kwh(123456) == 12345.6
    assert scale.wh(None) is None and scale.kwh(None) is None
    fine = MeterScale(coefficient=1, unit_code=0x04, digits=8)  # 0.1 Wh: floored, consistently
    assert fine.wh_per_count == Fraction(1, 10)
    assert fine.wh(15) == 1 and fine.modulus_wh == 10_000_000
    assert MeterScale(unit_code=0x0D, digits=1).modulus_wh == 100_000_000


def test_scale_from_defaults_absent_coefficient_to_one() -> None:
    scale, warnings = scale_from({0xD7: b"\x06", 0xE1: b"\x01"})
    assert scale == MeterScale(1, 0x01, 6) and not warnings
    scale, warnings = scale_from({0xD3: (5).to_bytes(4, "big"), 0xE1: b"\x03"})
    assert scale == MeterScale(5, 0x03, 8) and warnings == [
        "meter did not report D7 (effective digits); assuming 8"
    ]


def test_sentinels_decode_to_none() -> None:
    assert decode_power(bytes.fromhex("7FFFFFFE")) is None
    assert decode_power(bytes.fromhex("FFFFFB50")) == -1200
    assert decode_currents(bytes.fromhex("001F7FFE")) == (3.1, None)
    assert decode_currents(bytes.fromhex("FFE2 0014")) == (-3.0, 2.0)
    assert decode_counter(bytes.fromhex("FFFFFFFE")) is None
    assert decode_counter(bytes.fromhex("0001E240")) == 123456


def test_replies_match_on_tid_source_object_and_service() -> None:
    request = get_request(7, METER_EOJ, [0xE7])
    good = reply(request, ESV.GET_RES, [Property(0xE7, b"\x00\x00\x00\x01")])
    assert is_reply(request, good)
    assert not is_reply(request, good._replace(tid=8))
    assert not is_reply(request, good._replace(seoj=CONTROLLER))
    assert not is_reply(request, good._replace(esv=ESV.INF))
    assert is_reply(request, good._replace(esv=ESV.GET_SNA))


# --- over the pty -------------------------------------------------------------------------------


async def test_values_are_scaled_exactly() -> None:
    clk = clock()
    cfg = meter(coefficient=10, unit_code=0x02, import_kwh=12345.6, export_kwh=789.1)
    async with PtyEmulator(module(), cfg, clk) as emu:
        link, session = await joined_meter(emu, clk)
        assert session.scale == MeterScale(10, 0x02, 6)
        instant = await session.read_instant(energy=True)
        assert instant.energy is not None
        assert instant.energy.import_raw == emu.meter.import_raw
        assert instant.energy.import_wh == instant.energy.import_raw * 100
        assert instant.energy.import_kwh == pytest.approx(instant.energy.import_raw / 10)
        await link.close()


async def test_lost_responses_are_retried() -> None:
    clk = clock()
    async with PtyEmulator(module(lose=0.35, seed=7), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        session.retries = 6
        session.silent_after = 20
        for _ in range(8):
            assert (await session.read_instant()).power_w is not None
        assert emu.module.stats.lost > 0
        assert session.stats.timeouts >= emu.module.stats.lost - 1
        assert emu.module.stats.overlapping == 0  # one request at a time, even when retrying
        await link.close()


async def test_garbage_lines_are_ignored() -> None:
    clk = clock()
    async with PtyEmulator(module(garbage=0.3, seed=3, echo=True), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        for _ in range(5):
            await session.read_instant(energy=True)
        assert len(await session.read_history_recent(emu.meter.latest_boundary(), 6)) == 6
        assert emu.module.stats.garbage > 3 and link.unrecognised > 0
        await link.close()


async def test_event_29_mid_request_holds_sends_until_25() -> None:
    clk = clock()
    async with PtyEmulator(module(link_delay=0.03, reauth_frames=12), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        before = emu.module.stats.requests
        task = asyncio.create_task(session.read_instant())
        await eventually(lambda: emu.module.stats.requests > before, what="request at the meter")
        emu.module.trigger_reauth()  # the reply in flight is lost while PANA renews
        instant = await asyncio.wait_for(task, 10)
        assert instant.power_w is not None
        assert emu.module.stats.reauths == 1
        assert emu.module.stats.sends_while_held == 0
        assert session.stats.timeouts == 1
        assert not link.ended.is_set()
        await link.close()


async def test_duty_limit_holds_sends_until_released() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        emu.module.set_duty_limited(True)
        await asyncio.sleep(0.05)
        sent = emu.module.stats.sendto
        task = asyncio.create_task(session.read_instant())
        await asyncio.sleep(0.3)
        assert not task.done() and emu.module.stats.sendto == sent
        emu.module.set_duty_limited(False)
        assert (await asyncio.wait_for(task, 10)).power_w is not None
        assert emu.module.stats.sends_while_held == 0
        await link.close()


async def test_send_failure_event_21_01_is_retried() -> None:
    clk = clock()
    async with PtyEmulator(module(send_fail=0.5, seed=2), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        for _ in range(4):
            assert (await session.read_instant()).power_w is not None
        assert emu.module.stats.send_failures > 0
        assert emu.module.stats.sendto == 5 + emu.module.stats.send_failures  # start + 4 reads
        await link.close()


async def test_sentinels_over_the_wire() -> None:
    clk = clock()
    cfg = meter(no_data=frozenset({0xE7, 0xE0}), two_wire=True)
    async with PtyEmulator(module(), cfg, clk) as emu:
        link, session = await joined_meter(emu, clk)
        instant = await session.read_instant(energy=True)
        assert instant.power_w is None
        assert instant.currents_a is not None and instant.currents_a[1] is None
        assert instant.currents_a[0] is not None
        assert instant.energy is not None and instant.energy.import_kwh is None
        assert instant.energy.export_kwh is not None
        await link.close()


async def test_meter_without_reverse_measurement() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(reverse=False), clk) as emu:
        link, session = await joined_meter(emu, clk)
        instant = await session.read_instant(energy=True)
        assert instant.energy is not None and instant.energy.export_kwh is None
        boundary = await session.read_boundary()
        assert boundary is not None and boundary.import_wh is not None
        assert boundary.export_wh is None
        await link.close()


async def test_counter_wrap_in_history_and_live() -> None:
    clk = clock()
    # 1 Wh per count, 6 digits: the counter wraps at 1 000 000 Wh. It starts at 50 Wh, just past
    # the wrap, with a steady 3 kW import: the boundaries before the start are near 10^6.
    cfg = meter(digits=6, unit_code=0x03, import_kwh=0.05, fixed_power_w=3000)
    async with PtyEmulator(module(), cfg, clk) as emu:
        link, session = await joined_meter(emu, clk)
        latest = emu.meter.latest_boundary()
        history = await session.read_history_recent(latest, 4)
        assert [b.at for b in history] == [latest - i * timedelta(minutes=30) for i in (3, 2, 1, 0)]
        assert all(b.modulus_wh == 1_000_000 for b in history)
        assert history[-1].import_wh is not None and history[-1].import_wh > 990_000
        deltas = [
            counter_delta(a.import_wh, b.import_wh, b.modulus_wh)
            for a, b in itertools.pairwise(history)
        ]
        assert deltas == [1500, 1500, 1500]  # 3 kW for half an hour, wrap or not
        first = await session.read_instant(energy=True)
        assert first.energy is not None and first.energy.import_wh is not None
        assert first.energy.import_wh < 2000  # already wrapped
        await link.close()


async def test_live_wrap_between_two_reads() -> None:
    clk = clock()
    cfg = meter(digits=6, unit_code=0x03, import_kwh=999.99, fixed_power_w=7200)  # 2 Wh/s
    async with PtyEmulator(module(), cfg, clk) as emu:
        link, session = await joined_meter(emu, clk)
        before = await session.read_instant(energy=True)
        await clk.sleep(15)
        after = await session.read_instant(energy=True)
        assert before.energy is not None and after.energy is not None
        a, b = before.energy.import_wh, after.energy.import_wh
        assert a is not None and b is not None and b < a  # wrapped
        delta = counter_delta(a, b, session.scale.modulus_wh if session.scale else 0)
        assert delta is not None and 20 < delta < 200
        await link.close()


async def test_history_day_matches_the_meter() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(coefficient=None), clk) as emu:
        link, session = await joined_meter(emu, clk)
        yesterday = datetime(2026, 11, 26, tzinfo=JST)
        day = await session.read_history_day(1, yesterday)
        assert len(day) == 48
        assert day[0].at == yesterday and day[-1].at == yesterday + timedelta(hours=23, minutes=30)
        for b in day:
            imp, exp = emu.meter.boundary_raw(b.at)
            assert (b.import_wh, b.export_wh) == (imp * 100, exp * 100)  # type: ignore[operator]
        today = await session.read_history_day(0, datetime(2026, 11, 27, tzinfo=JST))
        assert today[-1].at == emu.meter.latest_boundary()  # later slots are 0xFFFFFFFE: left out
        assert len(today) == 21
        await link.close()


async def test_history_recent_matches_the_meter() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        end = emu.meter.latest_boundary() - timedelta(hours=1)
        got = await session.read_history_recent(end, 12)
        assert len(got) == 12 and got[-1].at == end and got[0].at == end - timedelta(hours=5.5)
        for b in got:
            imp, exp = emu.meter.boundary_raw(b.at)
            assert (b.import_wh, b.export_wh) == (imp * 100, exp * 100)  # type: ignore[operator]
        await link.close()


@pytest.mark.parametrize("notify", [Notify.INF, Notify.INFC])
async def test_boundary_notification_is_delivered(notify: Notify) -> None:
    clk = clock(START.replace(minute=29, second=45))
    seen: list[tuple[Boundary, bool]] = []
    async with PtyEmulator(module(notify=notify), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk, on_boundary=lambda b, c: seen.append((b, c)))
        await eventually(lambda: bool(seen), what="the meter's INF of EA/EB")
        boundary, complete = seen[0]
        assert complete and boundary.at == START.replace(minute=30)
        imp, exp = emu.meter.boundary_raw(boundary.at)
        assert (boundary.import_wh, boundary.export_wh) == (imp * 100, exp * 100)  # type: ignore[operator]
        if notify is Notify.INFC:
            await eventually(lambda: emu.module.stats.infc_responses == 1, what="INFC_Res")
            assert session.stats.infc_responses == 1
        else:
            assert emu.module.stats.inf_sent == 1 and session.stats.infc_responses == 0
        await link.close()


async def test_frames_from_others_and_stray_tids_are_ignored() -> None:
    clk = clock()
    async with PtyEmulator(module(link_delay=0.03), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        before = emu.module.stats.requests
        task = asyncio.create_task(session.read_instant())
        await eventually(lambda: emu.module.stats.requests > before, what="request at the meter")
        pending = session._pending
        assert pending is not None
        fake = reply(pending.request, ESV.GET_RES, [Property(0xE7, b"\x00\x00\x99\x99")])
        fake_payload = encode(fake)
        emu.module.inject(fake_payload, sender_mac="0011223344556677")  # another node
        emu.module.inject(fake_payload, secured=0)  # the meter's address, but plaintext
        stray = Frame(pending.request.tid ^ 0x55, METER_EOJ, CONTROLLER, ESV.GET_RES, fake.props)
        emu.module.inject(encode(stray))  # the meter, wrong TID
        instant = await asyncio.wait_for(task, 10)
        assert instant.power_w != 0x9999
        assert session.stats.stray_frames == 1
        await link.close()


async def test_silent_meter_is_declared_after_consecutive_timeouts() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        emu.module.config.meter_silent = True
        with pytest.raises(MeterSilent, match="3 requests in a row"):
            await session.read_instant()
        assert session.broken.is_set() and session.stats.timeouts == 3
        with pytest.raises(MeterSilent):
            await session.read_instant()  # a broken session fails at once
        await link.close()


async def test_a_single_timeout_is_not_silence() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        session.retries = 0
        session.silent_after = 2
        emu.module.config.meter_silent = True
        with pytest.raises(RequestTimeout):
            await session.read_instant()
        emu.module.config.meter_silent = False
        assert (await session.read_instant()).power_w is not None
        assert not session.broken.is_set()
        await link.close()


async def test_module_reset_breaks_the_session() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        emu.module.reset_module()
        with pytest.raises(LinkError):
            await session.read_instant()
        assert session.broken.is_set()
        assert session.stats.send_failures >= 1
        await link.close()


async def test_a_send_held_too_long_fails_once_without_counting_as_silence() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        session.hold_timeout_s = 4.0
        emu.module.set_duty_limited(True)
        attempts = session.stats.attempts
        with pytest.raises(RequestTimeout, match="transmit-time limit"):
            await session.read_instant()
        assert session.stats.attempts == attempts + 1 and not session.broken.is_set()
        assert link.session is not None and link.session.queued == 1  # one copy, not four
        emu.module.set_duty_limited(False)
        assert (await session.read_instant()).power_w is not None
        await link.close()
