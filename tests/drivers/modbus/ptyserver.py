"""A serial line for RTU tests: two pseudo-terminals joined back to back, with a real pymodbus
RTU server on one end.

Each side opens a pty slave by its path, as it would open /dev/ttyUSB0; the bridge copies bytes
between the two masters in the event loop (a null-modem cable, no socat needed). ``cut`` drops
everything in both directions, like a pulled RS-485 cable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator
from typing import Any

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimDevice


class PtyBridge:
    """Two ptys whose masters are joined: what one slave's user writes, the other's reads."""

    def __init__(self) -> None:
        self._masters: list[int] = []
        self._slaves: list[int] = []
        self.paths: list[str] = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._masters.append(master)
            self._slaves.append(slave)  # kept open: a master reads EIO once no slave is open
            self.paths.append(os.ttyname(slave))
        self.cut = False
        self.bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def server_path(self) -> str:
        return self.paths[0]

    @property
    def client_path(self) -> str:
        return self.paths[1]

    def _copy(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, OSError):
            return
        if data and not self.cut:
            self.bytes += len(data)
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(dst, data)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        a, b = self._masters
        self._loop.add_reader(a, self._copy, a, b)
        self._loop.add_reader(b, self._copy, b, a)

    def close(self) -> None:
        if self._loop is not None:
            for fd in self._masters:
                self._loop.remove_reader(fd)
            self._loop = None
        for fd in (*self._masters, *self._slaves):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._masters, self._slaves = [], []


@contextlib.asynccontextmanager
async def rtu_server(
    *devices: SimDevice, baudrate: int = 19200, **options: Any
) -> AsyncIterator[PtyBridge]:
    """A pymodbus RTU server on one end of a fresh pty pair serving ``devices`` (unit ids not
    served stay silent, like absent devices on a line); yields the bridge (client_path...)."""
    bridge = PtyBridge()
    bridge.start()
    server = ModbusSerialServer(
        list(devices),
        framer=FramerType.RTU,
        port=bridge.server_path,
        baudrate=baudrate,
        ignore_missing_devices=True,
        **options,
    )
    await server.serve_forever(background=True)
    try:
        yield bridge
    finally:
        with contextlib.suppress(Exception):
            await server.shutdown()  # type: ignore[no-untyped-call]
        bridge.close()
