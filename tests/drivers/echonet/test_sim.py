"""The simulated node: profile, maps, services, physics and the set log, seen over UDP."""

from __future__ import annotations

import asyncio

import pytest

from drivers.echonet.frame import EOJ, ESV, NODE_PROFILE, Frame, Property, decode, encode
from drivers.echonet.properties import decode_value
from drivers.echonet.propmap import decode_property_map
from drivers.echonet.sim import SimNode
from drivers.echonet.transport import EchonetTransport
from gateway.clock import ManualClock

from .conftest import SimFactory
from .netsim import GATEWAY

BATTERY = EOJ.parse("027D01")
PV = EOJ.parse("027901")
HEATER = EOJ.parse("026B01")
AIRCON = EOJ.parse("013001")


async def test_node_profile(gateway: EchonetTransport, sim: SimNode) -> None:
    epcs = [0x80, 0x82, 0x83, 0x8A, 0x9D, 0x9E, 0x9F, 0xD3, 0xD4, 0xD6, 0xD7]
    result = await gateway.get(sim.bind, NODE_PROFILE, epcs)
    assert result.missing == ()
    v = {e: decode_value(0x0EF0, e, result.values[e]).value for e in epcs}
    assert v[0x80] == "on"
    assert v[0xD3] == 4
    assert v[0xD4] == 5  # four device classes + the node profile
    assert v[0xD6] == ["027901", "027D01", "026B01", "013001"]
    assert v[0xD7] == ["0279", "027D", "026B", "0130"]
    assert v[0x8A] == 0xFFFFFF
    assert result.values[0x83][:4] == b"\xfe\xff\xff\xff" and len(result.values[0x83]) == 17
    assert v[0x82] == {"major": 1, "minor": 13, "message_formats": 1, "reserved": 0}
    assert set(v[0x9F]) >= {0x80, 0x82, 0x83, 0x8A, 0x9D, 0x9E, 0x9F, 0xD3, 0xD4, 0xD6, 0xD7}


async def test_battery_maps_use_the_bitmap_form(gateway: EchonetTransport, sim: SimNode) -> None:
    result = await gateway.get(sim.bind, BATTERY, [0x9D, 0x9E, 0x9F, 0x82])
    get_map = result.values[0x9F]
    assert get_map[0] >= 16 and len(get_map) == 17  # bitmap form
    epcs = decode_property_map(get_map)
    assert {0xCF, 0xDA, 0xD3, 0xE4, 0xE2, 0xC8, 0xC9, 0xDB, 0xA4, 0xA5, 0xA8, 0xA9} <= epcs
    assert decode_property_map(result.values[0x9E]) == {
        0x80, 0xAA, 0xAB, 0xC1, 0xC2, 0xDA, 0xEB, 0xEC
    }  # fmt: skip
    assert {0x80, 0xCF, 0xDA} <= decode_property_map(result.values[0x9D])
    assert decode_value(0x027D, 0x82, result.values[0x82]).value == {
        "release": "J",
        "revision": 1,
    }
    # Every listed EPC is really readable.
    every = await gateway.get(sim.bind, BATTERY, sorted(epcs))
    assert every.missing == ()


async def test_out_of_range_and_unknown_sets_are_refused(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    cases = {
        0xDA: b"\x45",  # test mode: not settable here
        0xEB: (50).to_bytes(4, "big"),  # below C8 min
        0xEC: (3001).to_bytes(4, "big"),  # above C9 max
        0xAA: (999_999).to_bytes(4, "big"),  # above A4
        0xE4: b"\x10",  # read-only
        0xF5: b"\x00",  # unknown
        0xC1: b"\x03\x00",  # wrong size
    }
    result = await gateway.set(sim.bind, BATTERY, cases)
    assert result.accepted == ()
    assert set(result.refused) == set(cases)
    assert sim.set_log == []


async def test_seti_setget_and_unknown_objects(gateway: EchonetTransport, sim: SimNode) -> None:
    # SetI: silence on success, SetI_SNA on refusal.
    ok = Frame(1, EOJ.CONTROLLER, BATTERY, ESV.SETI, (Property(0xDA, b"\x44"),))
    await gateway.send(sim.bind, ok)
    await asyncio.sleep(0.05)
    assert sim.battery.setting == 0x44
    refused = await gateway.request(
        sim.bind,
        lambda tid: Frame(tid, EOJ.CONTROLLER, BATTERY, ESV.SETI, (Property(0xE4, b"\x01"),)),
    )
    assert refused.esv is ESV.SETI_SNA
    # SetGet: both blocks answered.
    answer = await gateway.request(
        sim.bind,
        lambda tid: Frame(
            tid, EOJ.CONTROLLER, BATTERY, ESV.SETGET, (Property(0xDA, b"\x46"),), (Property(0xDA),)
        ),
    )
    assert answer.esv is ESV.SETGET_RES
    assert answer.props == (Property(0xDA),)
    assert answer.get_props == (Property(0xDA, b"\x46"),)
    # An object the node does not have: the request is discarded (as the spec says).
    before = sim.stats.requests
    await gateway.send(
        sim.bind, Frame(9, EOJ.CONTROLLER, EOJ.parse("028801"), ESV.GET, (Property(0xE7),))
    )
    await asyncio.sleep(0.05)
    assert sim.stats.requests == before


async def test_set_log_records_time_source_and_value(
    gateway: EchonetTransport, sim: SimNode, clock: ManualClock
) -> None:
    await gateway.set(sim.bind, BATTERY, {0xDA: b"\x42"})
    clock.advance(60)
    await gateway.set(sim.bind, PV, {0xA0: b"\x32"})
    first, second = sim.set_log
    assert (first.eoj, first.epc, first.edt, first.source) == (BATTERY, 0xDA, b"\x42", GATEWAY)
    assert first.esv is ESV.SETC
    assert (second.eoj, second.epc, second.edt) == (PV, 0xA0, b"\x32")
    assert (second.at - first.at).total_seconds() == 60
    assert second.monotonic - first.monotonic == 60
    assert sim.sets(0xA0) == [second]
    assert sim.sets(eoj=BATTERY) == [first]
    heard = []
    sim.set_listeners.append(heard.append)
    await gateway.set(sim.bind, HEATER, {0xB0: b"\x42"})
    assert [r.epc for r in heard] == [0xB0]


async def test_battery_mode_lags_and_soc_integrates_power(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",), soc_pct=50, mode_delay_s=5)
    battery = sim.battery
    await gateway.set(sim.bind, BATTERY, {0xC1: b"\x03", 0xEB: (2000).to_bytes(4, "big")})
    await gateway.set(sim.bind, BATTERY, {0xDA: b"\x42"})
    clock.advance(4)
    assert (await gateway.get(sim.bind, BATTERY, [0xCF])).values[0xCF] == b"\x46"
    clock.advance(1)
    r = await gateway.get(sim.bind, BATTERY, [0xCF, 0xD3, 0xE2])
    assert r.values[0xCF] == b"\x42"
    assert int.from_bytes(r.values[0xD3], "big", signed=True) == 2000
    clock.advance(3600)  # one hour at 2 kW
    sim.update()
    assert battery.energy_wh == pytest.approx(4900 + 2000)
    assert battery.charged_wh == pytest.approx(2000)
    clock.advance(36000)  # long enough to fill up: charging stops at 100 %
    sim.update()
    assert battery.soc_pct == 100 and battery.power_w == 0
    await gateway.set(sim.bind, BATTERY, {0xDA: b"\x43"})
    clock.advance(5 + 3600 * 2)
    sim.update()
    assert battery.energy_wh == pytest.approx(9800 - 2 * 3000)  # default discharge: max power
    clock.advance(3600 * 10)
    sim.update()
    assert battery.energy_wh == 0 and battery.power_w == 0  # stops at empty
    r = await gateway.get(sim.bind, BATTERY, [0xE4, 0xD3, 0xA5])
    assert r.values == {0xE4: b"\x00", 0xD3: bytes(4), 0xA5: bytes(4)}


async def test_battery_honours_the_amount_setting(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("battery",), soc_pct=50, mode_delay_s=0)
    await gateway.set(sim.bind, BATTERY, {0xAB: (500).to_bytes(4, "big"), 0xDA: b"\x43"})
    clock.advance(3600)
    sim.update()
    assert sim.battery.discharged_wh == pytest.approx(500)
    assert sim.battery.power_w == 0


async def test_no_reverse_flow_option(gateway: EchonetTransport, make_sim: SimFactory) -> None:
    sim = await make_sim(devices=("battery",), reverse_flow=False)
    assert (await gateway.get(sim.bind, BATTERY, [0xDB])).values[0xDB] == b"\x02"


async def test_pv_follows_the_sun_and_its_limit(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("pv",))
    noon = clock.now().replace(hour=12)
    clock.set(noon)
    r = await gateway.get(sim.bind, PV, [0xE0, 0xE8, 0xD1, 0xC1])
    assert int.from_bytes(r.values[0xE0], "big") == round(4500 * 0.85)
    assert r.values[0xD1] == b"\x44" and r.values[0xC1] == b"\x42"
    await gateway.set(sim.bind, PV, {0xA0: b"\x32"})  # 50 %
    r = await gateway.get(sim.bind, PV, [0xE0, 0xA0, 0xD1])
    assert int.from_bytes(r.values[0xE0], "big") == 2250
    assert r.values[0xD1] == b"\x41"  # restraining
    await gateway.set(sim.bind, PV, {0xA1: (1000).to_bytes(2, "big")})
    r = await gateway.get(sim.bind, PV, [0xE0, 0xE1])
    assert int.from_bytes(r.values[0xE0], "big") == 1000
    before = int.from_bytes(r.values[0xE1], "big")
    clock.advance(3600)
    after = int.from_bytes((await gateway.get(sim.bind, PV, [0xE1])).values[0xE1], "big")
    assert after - before == pytest.approx(1000, abs=1)  # 0.001 kWh units = Wh
    clock.set(noon.replace(hour=22))
    assert (await gateway.get(sim.bind, PV, [0xE0])).values[0xE0] == b"\x00\x00"
    refused = await gateway.set(sim.bind, PV, {0xA0: b"\x65"})  # 101 %
    assert refused.refused == (0xA0,)


async def test_water_heater_heats_when_told_until_full(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("water_heater",))
    assert (await gateway.get(sim.bind, HEATER, [0xB2])).values[0xB2] == b"\x42"
    await gateway.set(sim.bind, HEATER, {0xB0: b"\x42"})
    assert (await gateway.get(sim.bind, HEATER, [0xB2])).values[0xB2] == b"\x41"
    clock.advance(3600)
    r = await gateway.get(sim.bind, HEATER, [0xE1, 0xB2])
    assert int.from_bytes(r.values[0xE1], "big") == 320
    clock.advance(3 * 3600)
    r = await gateway.get(sim.bind, HEATER, [0xE1, 0xB2, 0xB0])
    assert r.values == {0xE1: (460).to_bytes(2, "big"), 0xB2: b"\x42", 0xB0: b"\x41"}


async def test_aircon_power_saving(
    gateway: EchonetTransport, make_sim: SimFactory, clock: ManualClock
) -> None:
    sim = await make_sim(devices=("aircon",))
    normal = int.from_bytes((await gateway.get(sim.bind, AIRCON, [0x84])).values[0x84], "big")
    await gateway.set(sim.bind, AIRCON, {0x8F: b"\x41"})
    saving = int.from_bytes((await gateway.get(sim.bind, AIRCON, [0x84])).values[0x84], "big")
    assert saving == pytest.approx(normal * 0.7, abs=1)
    assert (await gateway.set(sim.bind, AIRCON, {0xB3: b"\x0a"})).refused == (0xB3,)


async def test_multicast_requests_and_boot_announcement(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    from .netsim import gateway_transport

    async with gateway_transport(clock, multicast_interface=GATEWAY) as transport:
        if not transport.multicast_joined:
            pytest.skip("this machine cannot join 224.0.23.0 on loopback")
        heard = []
        transport.subscribe(heard.append, eoj=NODE_PROFILE)
        sim = await make_sim(devices=("battery",), multicast_interface=GATEWAY)
        if not sim.multicast_joined:
            pytest.skip("the simulator cannot join 224.0.23.0 on loopback")
        await asyncio.sleep(0.05)
        boots = [n for n in heard if n.host == sim.bind]
        if not boots:
            pytest.skip("multicast is not looped back on this machine")
        assert boots[0].props[0xD5] == b"\x01\x02\x7d\x01"
        answers = await transport.multicast_get(NODE_PROFILE, [0xD6], 0.2)
        assert (sim.bind, b"\x01\x02\x7d\x01") in [
            (host, frame.props[0].edt) for host, frame in answers
        ]


def test_bad_device_kind() -> None:
    with pytest.raises(ValueError, match="devices must be some of"):
        SimNode("127.0.0.250", devices=("fridge",))


async def test_garbage_does_not_hurt_the_simulator(gateway: EchonetTransport, sim: SimNode) -> None:
    raw = encode(Frame(1, EOJ.CONTROLLER, BATTERY, ESV.GET, (Property(0xE4),)))
    for junk in (b"\x10\x81", raw[:-1], raw + b"\x00"):
        gateway._sendto(junk, sim.bind)
    await asyncio.sleep(0.05)
    assert sim.stats.malformed == 3
    assert decode(raw).props == (Property(0xE4),)
    assert (await gateway.get(sim.bind, BATTERY, [0xE4])).values == {0xE4: b"\x32"}
