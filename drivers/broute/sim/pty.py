"""Run the module emulator on a pseudo-terminal, so any client opens it like a USB dongle.

The emulator owns the master side; the slave's path (``/dev/pts/N``) is what the driver, momonga
or ``chisan broute read --port`` opens. The slave is put in raw mode (no echo, no CR/LF
translation: binary ERXUDP must pass untouched) and the emulator keeps a slave descriptor open
itself, so a client closing and reopening the port never makes the master read fail with EIO.

:class:`PtyEmulator` runs in the caller's event loop; :class:`ThreadedEmulator` runs one in a
thread of its own, for blocking clients (momonga, the CLI under test, the benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import tty
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

from drivers.broute.sim.meter_model import MeterModel, MeterModelConfig
from drivers.broute.sim.module import ModuleConfig, ModuleEmulator
from gateway.clock import Clock, SystemClock

__all__ = ["PtyEmulator", "PtyPort", "ThreadedEmulator"]

T = TypeVar("T")
_CHUNK = 4096


class PtyPort:
    """A raw pseudo-terminal pair; non-blocking, buffered writes on the master side."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self._pending = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False

    def start(self, on_data: Callable[[bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data = os.read(self.master, _CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EIO while no slave is open: nothing to read
            if data:
                on_data(data)

        self._loop.add_reader(self.master, readable)

    def write(self, data: bytes) -> None:
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                n = os.write(self.master, self._pending[:_CHUNK])
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self._pending.clear()
                return
            if n == 0:
                if not self._writing and self._loop is not None:
                    self._writing = True
                    self._loop.add_writer(self.master, self._writable)
                return
            del self._pending[:n]
        if self._writing and self._loop is not None:
            self._writing = False
            self._loop.remove_writer(self.master)

    def _writable(self) -> None:
        self._flush()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.master)
            if self._writing:
                self._loop.remove_writer(self.master)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyEmulator:
    """The emulator on a pty, in the running loop::

    async with PtyEmulator(ModuleConfig(...), MeterModelConfig(...), clock) as emu:
        link = await ModuleLink.open(emu.path, clock=clock)
    """

    def __init__(
        self,
        module: ModuleConfig | None = None,
        meter: MeterModelConfig | None = None,
        clock: Clock | None = None,
        *,
        start: datetime | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.module_config = module or ModuleConfig()
        self.meter = MeterModel(meter or MeterModelConfig(), start or self.clock.now())
        self.port: PtyPort | None = None
        self.emulator: ModuleEmulator | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        assert self.port is not None, "start() the emulator first"
        return self.port.path

    @property
    def module(self) -> ModuleEmulator:
        assert self.emulator is not None, "start() the emulator first"
        return self.emulator

    async def start(self) -> PtyEmulator:
        self.port = PtyPort()
        self.emulator = ModuleEmulator(self.module_config, self.meter, self.clock, self.port.write)
        self.port.start(self.emulator.feed)
        self._task = asyncio.create_task(self.emulator.run(), name="broute-emulator")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.port is not None:
            self.port.close()

    async def __aenter__(self) -> PtyEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ThreadedEmulator:
    """A :class:`PtyEmulator` running in its own thread and event loop.

    ``call(fn)`` runs ``fn(emulator)`` in the emulator's thread (fault injection must not race
    its loop) and returns the result.
    """

    def __init__(
        self,
        module: ModuleConfig | None = None,
        meter: MeterModelConfig | None = None,
        clock: Clock | None = None,
        *,
        start: datetime | None = None,
    ) -> None:
        self.pty = PtyEmulator(module, meter, clock, start=start)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def path(self) -> str:
        return self.pty.path

    def start(self) -> ThreadedEmulator:
        self._thread = threading.Thread(target=self._main, name="broute-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("emulator thread did not start")
        if self._error is not None:
            raise RuntimeError("emulator thread failed") from self._error
        return self

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.pty.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.pty.stop()

        with contextlib.suppress(Exception):
            asyncio.run(body())

    def call(self, fn: Callable[[ModuleEmulator], T]) -> T:
        loop = self._loop
        assert loop is not None
        result: Future[T] = Future()

        def run() -> None:
            try:
                result.set_result(fn(self.pty.module))
            except BaseException as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout=10)

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> ThreadedEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
