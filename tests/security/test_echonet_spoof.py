"""Only the configured device, as the configured object, can change what the gateway believes.

ECHONET Lite has no authentication: anything on the LAN can send a frame. The gateway's defence is
that an answer counts only from the node it asked (matched on address and TID), only from the
object it asked, and that an unsolicited INF carries no values at all: it only makes the poller
ask the configured device again. Real UDP on loopback; the spoofer sends from 127.0.8.99, the
confused or forged object from the device's own address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from drivers.capabilities import BatteryMode
from drivers.echonet.adapters import EchonetBattery, EchonetPoller
from drivers.echonet.frame import EOJ, ESV, Frame, Property, decode, encode
from drivers.echonet.sim import SimNode
from drivers.echonet.transport import EchonetTransport, TransportSettings
from drivers.readings import BATTERY_MODE, BATTERY_SOC_PCT
from gateway.clock import SystemClock
from tests.support.home import until

GATEWAY = "127.0.8.10"
DEVICE = "127.0.8.11"
SIM_DEVICE = "127.0.8.12"
SPOOFER = "127.0.8.99"
PORT = 3610
BATTERY = EOJ.parse("027D01")
PV = EOJ.parse("027901")
CONTROLLER = EOJ.parse("05FF01")
TRUE_SOC, LIE_SOC = 60, 5


@contextlib.contextmanager
def udp(address: str, port: int = 0) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    try:
        yield sock
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def gateway_transport() -> AsyncIterator[EchonetTransport]:
    settings = TransportSettings(bind=GATEWAY, multicast_interface=None, timeout_s=1.0, retries=1)
    transport = EchonetTransport(settings, SystemClock())
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


def answer(request: Frame, seoj: EOJ, soc: int) -> bytes:
    props = tuple(Property(p.epc, bytes([soc]) if p.epc == 0xE4 else b"") for p in request.props)
    esv = ESV.GET_RES if all(p.edt for p in props) else ESV.GET_SNA
    return encode(Frame(request.tid, seoj, request.seoj, esv, props))


async def test_answers_from_another_address_or_object_are_ignored() -> None:
    """A device that is asked once gets a forged answer from elsewhere, and answers wrong
    objects first: only its own object's answer is taken."""
    loop = asyncio.get_running_loop()
    with udp(DEVICE, PORT) as device, udp(SPOOFER, PORT) as spoofer, udp(DEVICE) as same_host:
        device.setblocking(False)
        requests: list[Frame] = []

        async def play_device() -> None:
            while True:
                data, source = await loop.sock_recvfrom(device, 2048)
                request = decode(data)
                requests.append(request)
                if request.esv is not ESV.GET or request.deoj != BATTERY:
                    continue
                # A forger elsewhere on the LAN sees the request and answers first...
                spoofer.sendto(answer(request, BATTERY, LIE_SOC), source)
                # ...and so do other objects (and a forger) on the device's own address.
                for wrong in (PV, BATTERY.with_instance(2), CONTROLLER):
                    same_host.sendto(answer(request, wrong, LIE_SOC), source)
                await asyncio.sleep(0.05)
                device.sendto(answer(request, BATTERY, TRUE_SOC), source)

        async with gateway_transport() as transport:
            task = asyncio.create_task(play_device())
            try:
                battery = EchonetBattery("battery", DEVICE, "027D01", transport, SystemClock())
                for _ in range(3):
                    assert (await battery.soc_pct()).value == TRUE_SOC
            finally:
                task.cancel()
            gets = [r for r in requests if r.esv is ESV.GET and r.deoj == BATTERY]
            assert len(gets) >= 3
            assert transport.stats.wrong_object == 3 * len(gets)


async def test_a_spoofed_inf_changes_no_reading_and_wakes_no_poller() -> None:
    clock = SystemClock()
    readings: list[tuple[str, Any, datetime]] = []
    async with (
        SimNode(SIM_DEVICE, devices=("battery",), clock=clock, soc_pct=TRUE_SOC, seed=1),
        gateway_transport() as transport,
    ):
        battery = EchonetBattery("battery", SIM_DEVICE, "027D01", transport, clock)
        poller = EchonetPoller(battery, clock, lambda *r: readings.append(r), poll_s=3600)
        task = asyncio.create_task(poller.run())
        try:
            await until(lambda: poller.polls >= 1, 10)
            polls = poller.polls
            lies = [
                Property(0xE4, bytes([LIE_SOC])),  # remaining capacity 3 (SOC)
                Property(0xDA, b"\x42"),  # operation mode setting: charging
                Property(0xCF, b"\x42"),  # working operation status: charging
                Property(0x80, b"\x31"),  # operation status: off
            ]
            inf = Frame(1, BATTERY, CONTROLLER, ESV.INF, tuple(lies))
            infc = inf._replace(tid=2, esv=ESV.INFC)
            wrong_object = inf._replace(tid=3, seoj=PV)
            with udp(SPOOFER, PORT) as spoofer, udp(SIM_DEVICE) as same_host:
                for frame in (inf, infc):
                    spoofer.sendto(encode(frame), (GATEWAY, PORT))
                same_host.sendto(encode(wrong_object), (GATEWAY, PORT))
                await until(lambda: transport.stats.notifications >= 3, 5)
                await asyncio.sleep(0.5)
                assert poller.polls == polls  # no poll was triggered, no value was taken
                # The same INF from the configured device and object makes it poll again: the
                # values still come from asking the device, which tells the truth.
                same_host.sendto(encode(inf._replace(tid=4)), (GATEWAY, PORT))
                await until(lambda: poller.polls > polls, 5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    socs = [v for k, v, _ in readings if k == BATTERY_SOC_PCT]
    assert len(socs) == polls + 1 and all(v == TRUE_SOC for v in socs), socs
    modes = [v for k, v, _ in readings if k == BATTERY_MODE]
    assert modes and set(modes) == {BatteryMode.AUTO}, modes


async def test_a_request_to_every_instance_takes_an_answer_from_one_of_them() -> None:
    """DEOJ instance 0 addresses all instances of the class: 027D01 may answer, 027901 not."""
    loop = asyncio.get_running_loop()
    with udp(DEVICE, PORT) as device, udp(DEVICE) as same_host:
        device.setblocking(False)

        async def play_device() -> None:
            while True:
                data, source = await loop.sock_recvfrom(device, 2048)
                request = decode(data)
                same_host.sendto(answer(request, PV, LIE_SOC), source)
                device.sendto(answer(request, BATTERY, TRUE_SOC), source)

        async with gateway_transport() as transport:
            task = asyncio.create_task(play_device())
            try:
                result = await transport.get(DEVICE, BATTERY.with_instance(0), [0xE4])
            finally:
                task.cancel()
            assert result.get(0xE4) == bytes([TRUE_SOC])
            assert transport.stats.wrong_object == 1
