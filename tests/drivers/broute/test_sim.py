"""The simulated meter (pure) and the module emulator's command handling (without a pty)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from drivers.broute.dialect import Dialect
from drivers.broute.join import link_local_from_mac
from drivers.broute.meter import METER_EOJ
from drivers.broute.parser import Event, Fail, LineParser, Ok, RxUdp, SkEvent
from drivers.broute.session import build_sendto
from drivers.broute.sim import MeterModel, MeterModelConfig, ModuleConfig, ModuleEmulator
from drivers.echonet.frame import ESV, decode, encode, get_request, set_request
from drivers.echonet.properties import (
    parse_boundary,
    parse_day_history,
    parse_history2,
)
from gateway.clock import JST, ManualClock

T0 = datetime(2026, 11, 27, 10, 17, tzinfo=JST)


def model(**kw: object) -> MeterModel:
    return MeterModel(MeterModelConfig(**kw), T0)  # type: ignore[arg-type]


# --- meter model --------------------------------------------------------------------------------


def test_household_imports_at_night_and_exports_at_noon() -> None:
    m = model()
    night = m.power_w(T0.replace(hour=2))
    noon = m.power_w(T0.replace(hour=12))
    evening = m.power_w(T0.replace(hour=19, minute=30))
    assert night > 0 and noon < 0 and evening > 1000


def test_counters_integrate_the_power_and_record_boundaries() -> None:
    m = model(unit_code=0x03)  # 1 Wh per count
    start = m.import_raw
    crossed = m.update(T0 + timedelta(hours=2))
    assert crossed == [T0.replace(minute=30) + timedelta(minutes=30 * i) for i in range(4)]
    assert m.import_raw != start or m.export_raw != 0
    # the counters at the boundaries are what EA/EB and the history return
    a = m.boundary_wh(T0.replace(minute=30))
    b = m.boundary_wh(T0.replace(hour=11, minute=0))
    assert a is not None and b is not None and b[0] >= a[0] and b[1] >= a[1]


def test_history_before_the_start_is_consistent_with_the_counters() -> None:
    m = model(unit_code=0x03, digits=8, import_kwh=5000.0)
    slots = [T0.replace(minute=0) - timedelta(minutes=30 * i) for i in range(96)]
    values = [m.boundary_wh(s) for s in slots]
    assert all(v is not None for v in values)
    for later, earlier, at in zip(values, values[1:], slots[1:], strict=False):
        assert later is not None and earlier is not None
        energy = m.slot_wh(at)
        assert energy is not None
        assert later[0] - earlier[0] == pytest.approx(energy[0])
    assert m.boundary_wh(T0 + timedelta(hours=1)) is None  # the future is unknown


def test_properties_and_sentinels() -> None:
    m = model(coefficient=None, two_wire=True, no_data=frozenset({0xE0}))
    assert m.get(0xD3, T0) is None  # D3 absent → SNA
    assert m.get(0xE0, T0) == bytes.fromhex("FFFFFFFE")
    e8 = m.get(0xE8, T0)
    assert e8 is not None and e8[2:] == bytes.fromhex("7FFE")
    ea = m.get(0xEA, T0)
    assert ea is not None and parse_boundary(ea).at == datetime(2026, 11, 27, 10, 0)
    assert m.get(0xEB, T0) is not None
    assert model(reverse=False).get(0xEB, T0) is None


def test_history_properties() -> None:
    m = model()
    assert m.set(0xE5, b"\x01", T0)
    day = parse_day_history(m.get(0xE2, T0) or b"")
    assert day.day == 1 and None not in day.values
    assert not m.set(0xE5, bytes([100]), T0)
    today = m.set(0xE5, b"\x00", T0) and parse_day_history(m.get(0xE2, T0) or b"")
    assert today and today.values[20] is not None and today.values[21] is None
    start = datetime(2026, 11, 27, 9, 30)
    assert m.set(0xED, start.year.to_bytes(2, "big") + bytes([11, 27, 9, 30, 3]), T0)
    history = parse_history2(m.get(0xEC, T0) or b"")
    assert history.start == start and len(history.values) == 3
    assert not m.set(0xED, start.year.to_bytes(2, "big") + bytes([11, 27, 9, 17, 3]), T0)


def test_counter_wraps_at_ten_to_the_digits() -> None:
    m = model(unit_code=0x03, digits=6, import_kwh=999.99, fixed_power_w=3600)
    assert m.import_raw == 999_990
    m.update(T0 + timedelta(seconds=20))
    assert m.import_raw == 10  # 20 Wh later


# --- module emulator without a pty --------------------------------------------------------------


class Host:
    """Writes commands into the emulator and parses what it prints, as the driver would."""

    def __init__(self, dialect: Dialect, **kw: object) -> None:
        self.clock = ManualClock(T0)
        self.parser = LineParser()
        self.events: list[Event] = []
        config = ModuleConfig(dialect=dialect, link_delay=0.0, link_jitter=0.0, **kw)  # type: ignore[arg-type]
        self.emu = ModuleEmulator(config, MeterModel(MeterModelConfig(), T0), self.clock, self.out)
        self.task = asyncio.create_task(self.emu.run())

    def out(self, data: bytes) -> None:
        self.events += self.parser.feed(data)

    async def send(self, data: bytes) -> list[Event]:
        start = len(self.events)
        self.parser.command_sent(data)
        self.emu.feed(data)
        for _ in range(20):
            await asyncio.sleep(0)
        return self.events[start:]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def joined_host(dialect: Dialect, **kw: object) -> Host:
    host = Host(dialect, echo=False, **kw)
    cfg = host.emu.config
    for command in (
        f"SKSETPWD C {cfg.password}",
        f"SKSETRBID {cfg.rbid}",
        "SKSREG S2 21",
        "SKSREG S3 8888",
        f"SKJOIN {link_local_from_mac(cfg.meter_mac)}",
    ):
        await host.send(command.encode() + b"\r\n")
    await asyncio.sleep(0.01)
    assert any(isinstance(e, SkEvent) and e.code == 0x25 for e in host.events)
    return host


@pytest.mark.parametrize("dialect", [Dialect.BP35A1, Dialect.BP35C0])
async def test_binary_payload_with_crlf_is_read_by_length(dialect: Dialect) -> None:
    host = await joined_host(dialect, hex_data=False)
    ipv6 = host.emu.meter_ipv6
    # TID 0x0D0A puts CR LF inside the SKSENDTO data and inside the binary ERXUDP answer
    request = encode(get_request(0x0D0A, METER_EOJ, [0xE7]))
    await host.send(build_sendto(dialect, ipv6, request))
    await asyncio.sleep(0.01)
    events = host.events
    rx = [e for e in events if isinstance(e, RxUdp) and e.rport == 0x0E1A]
    reply = decode(rx[-1].data)
    assert reply.tid == 0x0D0A and reply.esv is ESV.GET_RES and not rx[-1].hex_mode
    assert any(isinstance(e, SkEvent) and e.code == 0x21 and e.param == 0 for e in events)
    await host.close()


async def test_wrong_forms_answer_fail_er05() -> None:
    host = await joined_host(Dialect.BP35A1)
    events = await host.send(b"SKSCAN 2 FFFFFFFF 6 0\r\n")
    assert Fail("ER05") in events
    payload = encode(get_request(1, METER_EOJ, [0xE7]))
    events = await host.send(build_sendto(Dialect.BP35C0, host.emu.meter_ipv6, payload))
    assert Fail("ER05") in events
    await host.close()


async def test_sendto_without_a_session_fails_er10() -> None:
    host = Host(Dialect.BP35A1, echo=False)
    payload = encode(get_request(1, METER_EOJ, [0xE7]))
    events = await host.send(build_sendto(Dialect.BP35A1, host.emu.meter_ipv6, payload))
    assert Fail("ER10") in events
    await host.close()


async def test_set_requests_answer_set_res_or_sna() -> None:
    host = await joined_host(Dialect.BP35A1)
    ipv6 = host.emu.meter_ipv6
    ok = encode(set_request(5, METER_EOJ, {0xE5: b"\x02"}))
    await host.send(build_sendto(Dialect.BP35A1, ipv6, ok))
    bad = encode(set_request(6, METER_EOJ, {0xE5: b"\xc8"}))
    await host.send(build_sendto(Dialect.BP35A1, ipv6, bad))
    await asyncio.sleep(0.01)
    replies = [decode(e.data) for e in host.events if isinstance(e, RxUdp) and e.rport == 0x0E1A]
    by_tid = {r.tid: r.esv for r in replies}
    assert by_tid[5] is ESV.SET_RES and by_tid[6] is ESV.SETC_SNA
    assert host.emu.meter.history_day == 2
    await host.close()


async def test_echo_and_ropt_forms() -> None:
    host = Host(Dialect.BP35C0, echo=True)
    events = await host.send(b"ROPT\r")  # momonga ends ROPT with a bare CR
    assert Ok("01") in events
    events = await host.send(b"SKSREG SFE 0\r\n")
    assert Ok() in events
    events = await host.send(b"SKVER\r\n")
    assert not any(type(e).__name__ == "Echo" for e in events)
    events = await host.send(b"SKBOGUS\r\n")
    assert Fail("ER04") in events
    await host.close()
