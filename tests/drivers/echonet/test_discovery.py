"""Discovery against simulators: unicast, multicast, boot announcements, dead addresses."""

from __future__ import annotations

import asyncio

import pytest

from drivers.echonet.discovery import describe_object, discover, parse_instance_list
from drivers.echonet.frame import EOJ
from drivers.echonet.transport import EchonetTransport
from gateway.clock import ManualClock

from .conftest import SimFactory
from .netsim import GATEWAY, gateway_transport, next_address


async def test_unicast_discovery_builds_the_inventory(
    gateway: EchonetTransport, make_sim: SimFactory
) -> None:
    first = await make_sim(devices=("pv", "battery"))
    second = await make_sim(devices=("water_heater", "aircon"), maker_code=0x00000B)
    dead = next_address()
    result = await discover(gateway, hosts=[second.bind, first.bind, dead], multicast=False)
    assert [n.address for n in result.nodes] == [first.bind, second.bind]
    assert list(result.failures) == [dead]
    assert "no answer" in result.failures[dead]
    node = result.nodes[0]
    assert [str(o.eoj) for o in node.objects] == ["027901", "027D01"]
    battery = node.objects[1]
    assert battery.class_name == "storage battery"
    assert battery.maker_code == 0xFFFFFF and battery.maker_name == "maker 0xFFFFFF"
    assert battery.release == "J"
    assert battery.get_map is not None and {0xCF, 0xDA, 0xE4} <= battery.get_map
    assert battery.set_map is not None and 0xDA in battery.set_map
    assert battery.inf_map is not None and 0xCF in battery.inf_map
    assert node.identification is not None and node.identification.startswith("FEFFFFFF")
    other = result.nodes[1]
    assert other.maker_name == "Panasonic"
    assert [o.class_name for o in other.objects] == [
        "electric water heater",
        "home air conditioner",
    ]
    data = result.to_json()
    assert data["nodes"][0]["objects"][1] == {
        "eoj": "027D01",
        "class": "027D",
        "class_name": "storage battery",
        "maker_code": "FFFFFF",
        "maker": "maker 0xFFFFFF",
        "release": "J",
        "inf_map": ["80", "CF", "DA"],
        "set_map": ["80", "AA", "AB", "C1", "C2", "DA", "EB", "EC"],
        "get_map": data["nodes"][0]["objects"][1]["get_map"],
    }


async def test_discovery_survives_small_frames_and_refused_maps(
    gateway: EchonetTransport, make_sim: SimFactory
) -> None:
    sim = await make_sim(devices=("battery",))
    sim.faults.truncate_above = 2
    sim.faults.sna_epcs = {0x9D}
    result = await discover(gateway, hosts=[sim.bind], multicast=False)
    (obj,) = result.nodes[0].objects
    assert obj.inf_map is None and obj.get_map is not None and obj.release == "J"


async def test_multicast_discovery(make_sim: SimFactory, clock: ManualClock) -> None:
    async with gateway_transport(clock, multicast_interface=GATEWAY) as transport:
        if not transport.multicast_joined:
            pytest.skip("cannot join 224.0.23.0 on loopback here")
        sims = [await make_sim(devices=("battery",), multicast_interface=GATEWAY) for _ in range(2)]
        if not all(s.multicast_joined for s in sims):
            pytest.skip("simulators cannot join 224.0.23.0 on loopback here")
        result = await discover(transport, window_s=0.3)
        found = {n.address for n in result.nodes}
        if not found:
            pytest.skip("multicast is not delivered on loopback here")
        assert {s.bind for s in sims} <= found


async def test_boot_announcement_is_heard_during_discovery(
    make_sim: SimFactory, clock: ManualClock
) -> None:
    async with gateway_transport(clock) as transport:
        # Without multicast the node announces to the addresses it is told to (inf_targets).
        task = asyncio.create_task(discover(transport, multicast=True, window_s=0.3))
        await asyncio.sleep(0.05)
        sim = await make_sim(devices=("pv",), inf_targets=[GATEWAY])
        result = await task
    assert [n.address for n in result.nodes] == [sim.bind]
    assert [str(o.eoj) for o in result.nodes[0].objects] == ["027901"]


async def test_describe_object_of_a_silent_object_raises(
    gateway: EchonetTransport, make_sim: SimFactory
) -> None:
    from drivers.echonet.transport import EchonetTimeout

    sim = await make_sim(devices=("pv",))
    with pytest.raises(EchonetTimeout):
        await describe_object(gateway, sim.bind, EOJ.parse("027D01"))


def test_parse_instance_list() -> None:
    assert parse_instance_list(b"\x02\x02\x7d\x01\x02\x79\x01") == [
        EOJ.parse("027D01"),
        EOJ.parse("027901"),
    ]
    assert parse_instance_list(b"\x02\x02\x7d\x01") is None
    assert parse_instance_list(None) is None
