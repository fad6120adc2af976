"""Helpers for tests over real UDP on loopback: addresses, simulators, a driven ManualClock.

Every simulator gets its own 127.0.x.y address (from a process-wide counter, so no test reuses
another's socket address); the gateway side is always 127.0.0.1:3610.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from typing import Any

from drivers.echonet.sim import SimNode
from drivers.echonet.transport import EchonetTransport, TransportSettings

GATEWAY = "127.0.0.1"
_counter = itertools.count(10)


def next_address() -> str:
    n = next(_counter)
    return f"127.0.{n // 240}.{10 + n % 240}"


def gateway_transport(
    clock: Any, *, timeout_s: float = 0.25, retries: int = 2, max_properties: int = 10, **kw: Any
) -> EchonetTransport:
    settings = TransportSettings(
        bind=GATEWAY,
        multicast_interface=kw.pop("multicast_interface", None),
        timeout_s=timeout_s,
        retries=retries,
        max_properties=max_properties,
    )
    return EchonetTransport(settings, clock, **kw)


class SimThread:
    """A simulator on its own event loop in a thread, for synchronous (CLI) tests."""

    def __init__(self, address: str | None = None, **kwargs: Any) -> None:
        self.address = address or next_address()
        self.kwargs = kwargs
        self.node: SimNode | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> SimThread:
        self._thread.start()
        self.node = SimNode(self.address, **self.kwargs)
        asyncio.run_coroutine_threadsafe(self.node.start(), self._loop).result(5)
        return self

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the simulator's loop (its state is not thread-safe)."""

        async def inner() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(inner(), self._loop).result(5)

    def __exit__(self, *exc: object) -> None:
        assert self.node is not None
        asyncio.run_coroutine_threadsafe(self.node.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def addresses(n: int) -> Iterator[str]:
    for _ in range(n):
        yield next_address()
