"""The UDP transport against the simulator over real loopback sockets, fault by fault."""

from __future__ import annotations

import asyncio
import time

import pytest

from drivers.capabilities import DeviceError
from drivers.echonet.frame import EOJ, ESV, NODE_PROFILE, Frame, Property, encode
from drivers.echonet.sim import SimNode
from drivers.echonet.transport import (
    EchonetError,
    EchonetTimeout,
    EchonetTransport,
    Notification,
)
from gateway.clock import ManualClock

from .conftest import SimFactory
from .netsim import GATEWAY, gateway_transport

BATTERY = EOJ.parse("027D01")
PV = EOJ.parse("027901")
MANY = [0x80, 0x82, 0x8A, 0xA4, 0xA5, 0xC8, 0xC9, 0xCF, 0xD3, 0xDA, 0xDB, 0xE2, 0xE4]


async def test_get_and_set_over_udp(gateway: EchonetTransport, sim: SimNode) -> None:
    result = await gateway.get(sim.bind, BATTERY, [0xE4, 0xDA, 0xCF])
    assert result.values == {0xE4: b"\x32", 0xDA: b"\x46", 0xCF: b"\x46"}
    assert result.missing == ()
    assert result.at == gateway.clock.now()

    done = await gateway.set(sim.bind, BATTERY, {0xDA: b"\x44"})
    assert done.ok and done.accepted == (0xDA,)
    assert sim.battery.setting == 0x44


async def test_get_sna_partial_answer_keeps_the_readable_values(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    sim.faults.sna_epcs = {0xD3}
    result = await gateway.get(sim.bind, BATTERY, [0xE4, 0xD3, 0x77])
    assert result.values == {0xE4: b"\x32"}
    assert result.missing == (0xD3, 0x77)
    assert result.get(0xD3) is None


async def test_setc_reports_each_epc(gateway: EchonetTransport, sim: SimNode) -> None:
    result = await gateway.set(
        sim.bind, BATTERY, [(0xDA, b"\x42"), (0xEB, (99999).to_bytes(4, "big")), (0xE4, b"\x10")]
    )
    assert result.accepted == (0xDA,)
    assert result.refused == (0xEB, 0xE4)
    assert not result.ok
    assert [r.epc for r in sim.set_log] == [0xDA]
    assert [r.epc for r in sim.refused_sets] == [0xEB, 0xE4]


async def test_dropped_request_is_retried(gateway: EchonetTransport, sim: SimNode) -> None:
    sim.faults.drop_pct = 100
    asyncio.get_running_loop().call_later(0.1, setattr, sim.faults, "drop_pct", 0.0)
    result = await gateway.get(sim.bind, BATTERY, [0xE4])
    assert result.values == {0xE4: b"\x32"}
    assert gateway.stats.retries >= 1
    assert sim.stats.dropped >= 1


async def test_random_drops_are_survived(make_sim: SimFactory, clock: ManualClock) -> None:
    sim = await make_sim(devices=("battery",))
    sim.faults.drop_pct = 30
    async with gateway_transport(clock, timeout_s=0.05, retries=6) as transport:
        for _ in range(10):
            result = await transport.get(sim.bind, BATTERY, [0xE4, 0xDA])
            assert result.values == {0xE4: b"\x32", 0xDA: b"\x46"}
    assert sim.stats.dropped > 0


async def test_delay_beyond_timeout_raises_a_device_error(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    sim.faults.delay_s = 0.9  # beyond all three attempts (same TID: a late answer would count)
    started = time.monotonic()
    with pytest.raises(EchonetTimeout) as caught:
        await gateway.get(sim.bind, BATTERY, [0xE4], device="battery")
    assert 0.7 <= time.monotonic() - started < 0.9  # 3 attempts of 0.25 s
    assert isinstance(caught.value, DeviceError)
    assert caught.value.device == "battery"
    assert "no answer after 3 attempts" in str(caught.value)
    # Late answers to the abandoned TID are not taken for the next request's answer.
    sim.faults.delay_s = 0.0
    await asyncio.sleep(0.3)
    result = await gateway.get(sim.bind, BATTERY, [0xDA])
    assert result.values == {0xDA: b"\x46"}
    assert gateway.stats.unmatched >= 1


async def test_delay_within_timeout_is_just_slow(gateway: EchonetTransport, sim: SimNode) -> None:
    sim.faults.delay_s = 0.1
    result = await gateway.get(sim.bind, BATTERY, [0xE4])
    assert result.values == {0xE4: b"\x32"}
    assert gateway.stats.timeouts == 0


async def test_one_request_in_flight_per_device(gateway: EchonetTransport, sim: SimNode) -> None:
    sim.faults.delay_s = 0.05
    started = time.monotonic()
    results = await asyncio.gather(*(gateway.get(sim.bind, BATTERY, [0xE4]) for _ in range(5)))
    assert all(r.values == {0xE4: b"\x32"} for r in results)
    assert time.monotonic() - started >= 0.25  # serialised: 5 × 50 ms


async def test_truncated_replies_teach_the_batch_size(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    sim.faults.truncate_above = 3
    result = await gateway.get(sim.bind, BATTERY, MANY)
    assert set(result.values) == set(MANY)
    assert gateway.batch_size(sim.bind) <= 3
    assert gateway.stats.splits >= 1
    assert gateway.stats.malformed >= 1  # the cut-off replies were counted
    learned = gateway.batch_size(sim.bind)
    splits = gateway.stats.splits
    again = await gateway.get(sim.bind, BATTERY, MANY)
    assert again.values == result.values
    assert gateway.stats.splits == splits  # no relearning
    assert gateway.batch_size(sim.bind) == learned


async def test_ignored_large_frames_teach_the_batch_size(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    sim.faults.max_props = 4
    result = await gateway.get(sim.bind, BATTERY, MANY[:10])
    assert set(result.values) == set(MANY[:10])
    assert gateway.batch_size(sim.bind) <= 4
    assert sim.stats.oversize >= 1
    timeouts = gateway.stats.timeouts
    await gateway.get(sim.bind, BATTERY, MANY)
    assert gateway.stats.timeouts == timeouts


async def test_refused_large_frames_teach_the_batch_size(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    sim.faults.max_props = 4
    sim.faults.refuse_mode = "sna"
    result = await gateway.get(sim.bind, BATTERY, MANY[:10])
    assert set(result.values) == set(MANY[:10])
    assert gateway.batch_size(sim.bind) <= 4
    assert gateway.stats.timeouts == 0


async def test_all_refused_small_gets_do_not_shrink_the_batch(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    result = await gateway.get(sim.bind, BATTERY, [0x70, 0x71, 0x72, 0x73])
    assert result.values == {}
    assert result.missing == (0x70, 0x71, 0x72, 0x73)
    assert gateway.batch_size(sim.bind) == 10


async def test_batched_sets_are_split_too(gateway: EchonetTransport, sim: SimNode) -> None:
    sim.faults.max_props = 1
    result = await gateway.set(sim.bind, BATTERY, {0xDA: b"\x44", 0xC1: b"\x03"})
    assert result.accepted == (0xDA, 0xC1)
    assert gateway.batch_size(sim.bind) == 1


async def test_dead_device_costs_retries_plus_one_timeouts(gateway: EchonetTransport) -> None:
    started = time.monotonic()
    with pytest.raises(EchonetTimeout):
        await gateway.get("127.0.0.254", BATTERY, MANY)
    assert time.monotonic() - started < 1.2
    assert gateway.stats.timeouts == 3


async def test_malformed_datagrams_are_counted_and_logged_rarely(
    gateway: EchonetTransport, sim: SimNode, clock: ManualClock
) -> None:
    for junk in (b"\x10", b"\x00", b"\x10\x81\x00", b"garbage" * 3, b"\x10\x81" + bytes(20)):
        sim.send_raw(GATEWAY, junk)
    await asyncio.sleep(0.1)
    assert gateway.stats.malformed == 5
    assert gateway.stats.malformed_by_source == {sim.bind: 5}
    assert gateway.stats.malformed_logged == 1
    clock.advance(10)
    sim.send_raw(GATEWAY, b"junk")
    await asyncio.sleep(0.05)
    assert gateway.stats.malformed_logged == 2
    # ... and the transport still works.
    assert (await gateway.get(sim.bind, BATTERY, [0xE4])).values == {0xE4: b"\x32"}


async def test_replies_are_matched_on_address_and_tid(
    gateway: EchonetTransport, make_sim: SimFactory
) -> None:
    real = await make_sim(devices=("battery",))
    forger = await make_sim(devices=("battery",))
    real.faults.delay_s = 0.1
    task = asyncio.create_task(gateway.get(real.bind, BATTERY, [0xE4]))
    await asyncio.sleep(0.03)
    tid = gateway._tid  # the request in flight
    forged = Frame(tid, BATTERY, EOJ.CONTROLLER, ESV.GET_RES, (Property(0xE4, b"\x63"),))
    forger.send_raw(GATEWAY, encode(forged))
    result = await task
    assert result.values == {0xE4: b"\x32"}
    assert gateway.stats.unmatched == 1


async def test_infc_is_answered_and_delivered(gateway: EchonetTransport, sim: SimNode) -> None:
    heard: list[Notification] = []
    gateway.subscribe(heard.append, host=sim.bind, eoj=BATTERY)
    assert await sim.send_infc(GATEWAY, BATTERY, [0xCF])
    assert sim.stats.infc_res == 1
    assert gateway.stats.infc_answered == 1
    assert [(n.esv, dict(n.props)) for n in heard] == [(ESV.INFC, {0xCF: b"\x46"})]


async def test_state_changes_are_announced_to_subscribers(
    gateway: EchonetTransport, sim: SimNode, clock: ManualClock
) -> None:
    wildcard: list[Notification] = []
    battery: list[Notification] = []
    other: list[Notification] = []
    gateway.subscribe(wildcard.append)
    gateway.subscribe(battery.append, host=sim.bind, eoj=BATTERY)
    gateway.subscribe(other.append, host="127.0.0.253")
    await gateway.set(sim.bind, BATTERY, {0xDA: b"\x44"})
    await asyncio.sleep(0.05)
    assert [dict(n.props) for n in battery] == [{0xDA: b"\x44"}]
    clock.advance(3)  # CF follows DA after 2 s; the node's tick notices and announces
    for _ in range(20):
        await asyncio.sleep(0.01)
        if len(battery) == 2:
            break
    assert [dict(n.props) for n in battery][1] == {0xCF: b"\x44"}
    assert battery[1].at == clock.now()
    assert len(wildcard) == 2
    assert other == []


async def test_inf_request_is_answered_by_an_inf(gateway: EchonetTransport, sim: SimNode) -> None:
    frame = await gateway.inf_request(sim.bind, BATTERY, [0xCF])
    assert frame.esv is ESV.INF
    assert frame.props == (Property(0xCF, b"\x46"),)


async def test_requests_to_our_node_profile_are_answered(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    # The simulator plays controller here: devices do ask who the controller node is.
    received: list[Frame] = []
    real = sim._on_datagram

    def spy(data: bytes, addr: tuple[str, int]) -> None:
        from drivers.echonet.frame import decode

        frame = decode(data)
        if frame.esv is ESV.GET_RES:
            received.append(frame)
        real(data, addr)

    sim._on_datagram = spy  # type: ignore[method-assign]
    request = Frame(7, NODE_PROFILE, NODE_PROFILE, ESV.GET, (Property(0xD6),))
    sim.send_raw(GATEWAY, encode(request))
    for _ in range(20):
        await asyncio.sleep(0.01)
        if received:
            break
    assert received[0].props == (Property(0xD6, b"\x01\x05\xff\x01"),)


async def test_listener_errors_do_not_break_the_transport(
    gateway: EchonetTransport, sim: SimNode
) -> None:
    def broken(note: Notification) -> None:
        raise RuntimeError("bug in a listener")

    gateway.subscribe(broken)
    assert await sim.send_infc(GATEWAY, BATTERY, [0x80])
    assert (await gateway.get(sim.bind, BATTERY, [0xE4])).values == {0xE4: b"\x32"}


async def test_bind_failure_is_a_clear_error(clock: ManualClock) -> None:
    async with gateway_transport(clock):
        second = gateway_transport(clock)
        with pytest.raises(EchonetError, match=r"cannot bind UDP 127\.0\.0\.1:3610"):
            await second.start()


async def test_unsubscribe(gateway: EchonetTransport, sim: SimNode) -> None:
    heard: list[Notification] = []
    unsubscribe = gateway.subscribe(heard.append)
    unsubscribe()
    unsubscribe()
    assert await sim.send_infc(GATEWAY, PV, [0x80])
    assert heard == []


async def test_failing_to_join_multicast_is_not_fatal(clock: ManualClock, sim: SimNode) -> None:
    # 192.0.2.77 (TEST-NET-1) is no address of this machine: the join fails, unicast still works.
    async with gateway_transport(clock, multicast_interface="192.0.2.77") as transport:
        assert not transport.multicast_joined
        assert (await transport.get(sim.bind, BATTERY, [0xE4])).values == {0xE4: b"\x32"}
