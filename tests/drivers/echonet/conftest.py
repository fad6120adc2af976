"""Fixtures for the ECHONET tests that use real sockets on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from drivers.echonet.sim import SimNode
from drivers.echonet.transport import EchonetTransport
from gateway.clock import ManualClock

from .netsim import gateway_transport, next_address

SimFactory = Callable[..., Awaitable[SimNode]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def gateway(clock: ManualClock) -> AsyncIterator[EchonetTransport]:
    transport = gateway_transport(clock)
    await transport.start()
    yield transport
    await transport.close()


@pytest.fixture
async def make_sim(clock: ManualClock) -> AsyncIterator[SimFactory]:
    nodes: list[SimNode] = []

    async def make(**kwargs: Any) -> SimNode:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("seed", 1)
        node = SimNode(kwargs.pop("address", None) or next_address(), **kwargs)
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.close()


@pytest.fixture
async def sim(make_sim: SimFactory) -> SimNode:
    return await make_sim(devices=("pv", "battery", "water_heater", "aircon"))
