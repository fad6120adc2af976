"""One device's view of its Modbus link: register reads and writes at its unit id.

The link (drivers/modbus/link.py) serialises requests and owns the connection; this module adds
what belongs to the device: its unit id, retries, and its health. A device that keeps failing is
marked faulty and backed off: its requests fail at once with :class:`ModbusBackedOff`, without
taking the link's lock, until the back-off ends, so a dead unit id cannot starve its neighbours.
pymodbus' own retry and reconnect loops are off; everything that goes wrong leaves as a
:class:`ModbusError`, a :class:`DeviceError` naming the device.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from pymodbus.pdu import ModbusPDU

from drivers.modbus.link import (
    Backoff,
    Client,
    DeviceHealth,
    LinkSettings,
    ModbusBackedOff,
    ModbusError,
    ModbusLink,
    ModbusRefused,
    ModbusTimeout,
    ModbusUnreachable,
    Operation,
)

if TYPE_CHECKING:
    from gateway.config import DeviceConfig

__all__ = [
    "MAX_READ",
    "MAX_WRITE",
    "ModbusBackedOff",
    "ModbusError",
    "ModbusRefused",
    "ModbusSettings",
    "ModbusTimeout",
    "ModbusTransport",
    "ModbusUnreachable",
    "RegisterFunction",
]

#: Protocol limits of function codes 0x03/0x04 and 0x10.
MAX_READ: Final = 125
MAX_WRITE: Final = 123

RegisterFunction = Literal["holding", "input"]
#: Exception codes 10 and 11: a Modbus gateway could not reach the device behind it.
GATEWAY_NO_TARGET: Final = frozenset({10, 11})


@dataclass(frozen=True)
class ModbusSettings:
    """Where a device is (TCP ``host:port`` or a serial RTU line), its unit id, and how hard to
    try: ``retries`` extra attempts after a timeout while the device is healthy, ``faulty_after``
    consecutive failures before it is backed off (``backoff_s`` doubling up to ``backoff_max_s``).
    """

    host: str | None = None
    port: int = 502
    serial: str | None = None
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    unit_id: int = 1
    timeout_s: float = 3.0
    retries: int = 0
    faulty_after: int = 3
    backoff_s: float = 5.0
    backoff_max_s: float = 120.0

    @classmethod
    def from_device(cls, device: DeviceConfig, *, timeout_s: float | None = None) -> ModbusSettings:
        return cls(
            host=device.host,
            port=device.port or 502,
            serial=device.serial,
            baudrate=device.baudrate,
            parity=device.parity,
            stopbits=device.stopbits,
            bytesize=device.bytesize,
            unit_id=device.unit_id,
            timeout_s=timeout_s if timeout_s is not None else device.timeout_s,
            retries=device.retries,
        )

    @property
    def link(self) -> LinkSettings:
        return LinkSettings(
            host=self.host,
            port=self.port,
            serial=self.serial,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            bytesize=self.bytesize,
            timeout_s=self.timeout_s,
        )

    @property
    def where(self) -> str:
        return f"{self.link.where} unit {self.unit_id}"


class ModbusTransport:
    """Register reads and writes for one device, over its own link or a shared one."""

    def __init__(
        self,
        device: str,
        settings: ModbusSettings,
        *,
        link: ModbusLink | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if settings.host is None and settings.serial is None:
            raise ValueError(f"{device}: a Modbus device needs host or serial")
        self.device = device
        self.settings = settings
        self.monotonic = monotonic
        self._own_link = link is None
        self.link = link or ModbusLink(settings.link, monotonic=monotonic, rng=rng)
        self.link.attach(self)
        self.health = DeviceHealth(
            faulty_after=settings.faulty_after,
            backoff=Backoff(settings.backoff_s, settings.backoff_max_s, rng or random.Random()),
        )
        self.requests = 0

    def __repr__(self) -> str:
        return f"ModbusTransport({self.device!r}, {self.settings.where})"

    @property
    def reconnects(self) -> int:
        """Connections opened on this device's link (shared links count every device's)."""
        return self.link.connects

    async def _request(self, what: str, call: Operation) -> ModbusPDU:
        now = self.monotonic()
        if not self.health.ready(now):
            raise ModbusBackedOff(
                self.device,
                f"{what}: not tried, device faulty after {self.health.consecutive} failures "
                f"(next try in {self.health.backoff.remaining(now):.1f} s; last: "
                f"{self.health.last_error})",
            )
        self.link.attach(self)
        attempts = 1 + (self.settings.retries if self.health.consecutive == 0 else 0)
        error: ModbusError | None = None
        for _ in range(attempts):
            self.requests += 1
            try:
                response = await self.link.execute(self.device, what, call)
            except ModbusRefused as exc:
                if exc.code in GATEWAY_NO_TARGET:
                    error = exc  # a TCP gateway answering for a device behind it that did not
                    break
                self.health.success(self.monotonic())  # it answered: alive, just unwilling
                raise
            except ModbusTimeout as exc:
                error = exc
                continue
            except ModbusError as exc:
                error = exc
                break
            self.health.success(self.monotonic())
            return response
        assert error is not None
        self.health.failure(self.monotonic(), str(error))
        raise error

    async def read(
        self, address: int, count: int, *, function: RegisterFunction = "holding"
    ) -> list[int]:
        """``count`` holding (or input) registers from ``address``, in protocol-sized requests."""
        if count <= 0 or address < 0 or address + count > 0x10000:
            raise ValueError(f"bad register range {address}+{count}")
        words: list[int] = []
        while len(words) < count:
            at = address + len(words)
            n = min(MAX_READ, count - len(words))
            response = await self._request(
                f"read {function} {at}+{n}", self._reader(at, n, function)
            )
            got = list(response.registers)
            if len(got) < n:
                raise ModbusError(self.device, f"read {at}+{n}: got {len(got)} registers")
            words.extend(got[:n])
        return words

    async def write(self, address: int, values: Sequence[int]) -> None:
        """Write holding registers with function 0x10 (one request per ``MAX_WRITE`` words)."""
        vals = list(values)
        for start in range(0, len(vals), MAX_WRITE):
            chunk = vals[start : start + MAX_WRITE]
            at = address + start
            await self._request(f"write {at}+{len(chunk)}", self._writer(at, chunk))

    def _reader(self, address: int, count: int, function: RegisterFunction) -> Operation:
        unit = self.settings.unit_id

        def op(client: Client) -> Awaitable[ModbusPDU]:
            if function == "input":
                return client.read_input_registers(address, count=count, device_id=unit)
            return client.read_holding_registers(address, count=count, device_id=unit)

        return op

    def _writer(self, address: int, values: list[int]) -> Operation:
        unit = self.settings.unit_id

        def op(client: Client) -> Awaitable[ModbusPDU]:
            return client.write_registers(address, values, device_id=unit)

        return op

    async def close(self) -> None:
        """Done with the link; a private link (or the last user of a shared one) closes it."""
        if self._own_link:
            await self.link.close()
        else:
            await self.link.detach(self)
