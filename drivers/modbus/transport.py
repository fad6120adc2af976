"""The thin asyncio shell around pymodbus: one link per device, one request at a time.

A Modbus TCP gateway or an RS-485 line misbehaves when two requests overlap, so every request
takes the device's lock. pymodbus' own retry and reconnect loops are switched off: a failed
request drops the connection and the next request reconnects, which keeps each call bounded by
``timeout_s`` and lets the poller (not the library) decide when to try again. Everything that
goes wrong leaves this module as a :class:`ModbusError`, a :class:`DeviceError` naming the device.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers.capabilities import DeviceError

if TYPE_CHECKING:
    from gateway.config import DeviceConfig

__all__ = [
    "MAX_READ",
    "MAX_WRITE",
    "ModbusError",
    "ModbusRefused",
    "ModbusSettings",
    "ModbusTimeout",
    "ModbusTransport",
    "ModbusUnreachable",
]

#: Protocol limits of function codes 0x03 and 0x10.
MAX_READ: Final = 125
MAX_WRITE: Final = 123


class ModbusError(DeviceError):
    """A Modbus device failed: unreachable, silent, refused, or sent nonsense."""


class ModbusUnreachable(ModbusError):
    """No connection to the device (or the serial line) could be made."""


class ModbusTimeout(ModbusError):
    """The device did not answer within ``timeout_s``."""


class ModbusRefused(ModbusError):
    """The device answered with a Modbus exception (illegal address, value, busy...)."""


@dataclass(frozen=True)
class ModbusSettings:
    """Where a device is: TCP ``host:port`` or a serial RTU line, and its unit ID."""

    host: str | None = None
    port: int = 502
    serial: str | None = None
    baudrate: int = 9600
    unit_id: int = 1
    timeout_s: float = 3.0

    @classmethod
    def from_device(cls, device: DeviceConfig, *, timeout_s: float = 3.0) -> ModbusSettings:
        return cls(
            host=device.host,
            port=device.port or 502,
            serial=device.serial,
            baudrate=device.baudrate,
            unit_id=device.unit_id,
            timeout_s=timeout_s,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.host else f"{self.serial}@{self.baudrate}"


_Client = AsyncModbusTcpClient | AsyncModbusSerialClient
_Operation = Callable[[_Client], Awaitable[ModbusPDU]]


class ModbusTransport:
    """Holding-register reads and writes for one device, serialised and bounded in time."""

    def __init__(self, device: str, settings: ModbusSettings) -> None:
        if settings.host is None and settings.serial is None:
            raise ValueError(f"{device}: a Modbus device needs host or serial")
        self.device = device
        self.settings = settings
        self._lock = asyncio.Lock()
        self._client: _Client | None = None
        self.requests = 0
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"ModbusTransport({self.device!r}, {self.settings.where})"

    def _make_client(self) -> _Client:
        s = self.settings
        if s.host is not None:
            return AsyncModbusTcpClient(
                s.host, port=s.port, timeout=s.timeout_s, retries=0, reconnect_delay=0
            )
        assert s.serial is not None
        return AsyncModbusSerialClient(
            s.serial,
            framer=FramerType.RTU,
            baudrate=s.baudrate,
            timeout=s.timeout_s,
            retries=0,
            reconnect_delay=0,
        )

    async def _connected(self) -> _Client:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = self._make_client()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            raise ModbusUnreachable(
                self.device, f"cannot connect to {self.settings.where}: {exc}"
            ) from None
        if not ok:
            client.close()
            raise ModbusUnreachable(self.device, f"cannot connect to {self.settings.where}")
        self.reconnects += 1
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _request(self, what: str, call: _Operation) -> ModbusPDU:
        """Run one request under the lock; on anything but a clean answer, drop the link."""
        async with self._lock:
            client = await self._connected()
            self.requests += 1
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    response = await call(client)
            except TimeoutError:
                self._drop()
                raise ModbusTimeout(
                    self.device, f"{what}: no answer within {self.settings.timeout_s} s"
                ) from None
            except (ModbusException, OSError) as exc:
                self._drop()
                raise ModbusError(self.device, f"{what}: {exc}") from None
            if response is None or response.isError():
                raise ModbusRefused(self.device, f"{what}: device refused ({response})")
            return response

    async def read(self, address: int, count: int) -> list[int]:
        """``count`` holding registers from ``address`` (split into protocol-sized requests)."""
        if count <= 0 or address < 0 or address + count > 0x10000:
            raise ValueError(f"bad register range {address}+{count}")
        words: list[int] = []
        while len(words) < count:
            at = address + len(words)
            n = min(MAX_READ, count - len(words))
            response = await self._request(f"read {at}+{n}", self._reader(at, n))
            got = list(response.registers)
            if len(got) < n:
                raise ModbusError(self.device, f"read {at}+{n}: got {len(got)} registers")
            words.extend(got[:n])
        return words

    async def write(self, address: int, values: Sequence[int]) -> None:
        """Write registers with function 0x10 (one request per ``MAX_WRITE`` words)."""
        vals = list(values)
        for start in range(0, len(vals), MAX_WRITE):
            chunk = vals[start : start + MAX_WRITE]
            at = address + start
            await self._request(f"write {at}+{len(chunk)}", self._writer(at, chunk))

    def _reader(self, address: int, count: int) -> _Operation:
        unit = self.settings.unit_id

        def op(client: _Client) -> Awaitable[ModbusPDU]:
            return client.read_holding_registers(address, count=count, device_id=unit)

        return op

    def _writer(self, address: int, values: list[int]) -> _Operation:
        unit = self.settings.unit_id

        def op(client: _Client) -> Awaitable[ModbusPDU]:
            return client.write_registers(address, values, device_id=unit)

        return op

    async def close(self) -> None:
        async with self._lock:
            self._drop()
