"""Modbus links: one pymodbus client per TCP endpoint or RS-485 line, shared by its devices.

Many inverters accept a single TCP client, and an RS-485 line carries one frame at a time, so
every device on the same ``host:port`` or serial port goes through one :class:`ModbusLink`: one
client, one lock, requests strictly serialised, each addressed by its unit id. The lock is held
for at most one request's timeout, so a silent unit id delays its neighbours by that much and no
more. A link that cannot connect is backed off (capped, jittered) and fails requests at once
until its next attempt is due, instead of letting every device stall on connect timeouts.

:class:`Backoff` and :class:`DeviceHealth` are plain state machines fed the monotonic time: the
transport asks them whether a request may go out, and tells them how it went.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers.capabilities import DeviceError

__all__ = [
    "PARITIES",
    "Backoff",
    "Client",
    "DeviceHealth",
    "LinkPool",
    "LinkSettings",
    "ModbusBackedOff",
    "ModbusError",
    "ModbusLink",
    "ModbusRefused",
    "ModbusTimeout",
    "ModbusUnreachable",
    "Operation",
]

PARITIES: Final = ("N", "E", "O")

#: Names of the standard exception codes, for error messages an installer can act on.
_EXCEPTION_NAMES: Final = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target did not respond",
}


class ModbusError(DeviceError):
    """A Modbus device failed: unreachable, silent, refused, or sent nonsense."""


class ModbusUnreachable(ModbusError):
    """No connection to the device (or the serial line) could be made."""


class ModbusTimeout(ModbusError):
    """The device did not answer within ``timeout_s``."""


class ModbusRefused(ModbusError):
    """The device answered with a Modbus exception (illegal address, value, busy...)."""

    def __init__(self, device: str, message: str, code: int | None = None) -> None:
        super().__init__(device, message)
        self.code = code


class ModbusBackedOff(ModbusError):
    """The device kept failing and is left alone until its back-off ends; nothing was sent."""


# ------------------------------------------------------------------------------- state machines


@dataclass
class Backoff:
    """Capped exponential back-off with jitter: ``base_s * 2**n``, at most ``cap_s``, times a
    random factor in [0.5, 1] so devices that failed together do not retry together."""

    base_s: float = 5.0
    cap_s: float = 120.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    until: float = 0.0

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns the delay before the next attempt."""
        delay = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 30))
        delay *= 0.5 + 0.5 * self.rng.random()
        self.failures += 1
        self.until = now + delay
        return delay

    def reset(self) -> None:
        self.failures = 0
        self.until = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.until

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)


@dataclass
class DeviceHealth:
    """Whether a device answers: healthy, failing (retried every poll) or faulty (backed off).

    ``faulty_after`` consecutive failures make a device faulty; from then on each failure backs
    it off further and requests in between are refused without touching the link. The first
    answer (a Modbus exception is an answer too) makes it healthy again.
    """

    faulty_after: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    consecutive: int = 0
    faulty: bool = False
    since: float | None = None
    last_error: str | None = None
    on_change: Callable[[DeviceHealth], None] | None = None

    def ready(self, now: float) -> bool:
        return not self.faulty or self.backoff.ready(now)

    def failure(self, now: float, error: str) -> None:
        self.consecutive += 1
        self.last_error = error
        if self.consecutive >= self.faulty_after:
            self.backoff.failed(now)
            if not self.faulty:
                self.faulty = True
                self.since = now
                self._changed()

    def success(self, now: float) -> None:
        self.consecutive = 0
        self.backoff.reset()
        if self.faulty:
            self.faulty = False
            self.since = now
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)


# ----------------------------------------------------------------------------------------- link


@dataclass(frozen=True)
class LinkSettings:
    """A TCP endpoint or a serial line and how to talk on it."""

    host: str | None = None
    port: int = 502
    serial: str | None = None
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_s: float = 3.0
    reconnect_s: float = 1.0
    reconnect_max_s: float = 60.0

    @property
    def key(self) -> tuple[str, str, int]:
        """What makes two devices share a link: the same endpoint or the same serial port."""
        if self.host is not None:
            return ("tcp", self.host, self.port)
        return ("rtu", self.serial or "", 0)

    @property
    def where(self) -> str:
        if self.host is not None:
            return f"{self.host}:{self.port}"
        return f"{self.serial}@{self.baudrate}/{self.bytesize}{self.parity}{self.stopbits}"

    def line(self) -> tuple[int, str, int, int]:
        return (self.baudrate, self.parity, self.stopbits, self.bytesize)


Client = AsyncModbusTcpClient | AsyncModbusSerialClient
Operation = Callable[[Client], Awaitable[ModbusPDU]]


class ModbusLink:
    """One client and one lock for every device on an endpoint or a line."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if settings.host is None and settings.serial is None:
            raise ValueError("a Modbus link needs host or serial")
        if settings.parity not in PARITIES:
            raise ValueError(f"parity must be one of {', '.join(PARITIES)}")
        self.settings = settings
        self.monotonic = monotonic
        self.lock = asyncio.Lock()
        self.connect_backoff = Backoff(
            settings.reconnect_s, settings.reconnect_max_s, rng or random.Random()
        )
        self._client: Client | None = None
        self._users: set[object] = set()
        self.requests = 0
        self.connects = 0
        self.busy_s = 0.0
        """Total time the lock was held by requests (how loaded the link is)."""

    def __repr__(self) -> str:
        return f"ModbusLink({self.settings.where})"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def attach(self, user: object) -> None:
        self._users.add(user)

    async def detach(self, user: object) -> None:
        """A user is done; the last one out closes the connection (a later request reopens)."""
        self._users.discard(user)
        if not self._users:
            await self.close()

    def _make_client(self) -> Client:
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
            parity=s.parity,
            stopbits=s.stopbits,
            bytesize=s.bytesize,
            timeout=s.timeout_s,
            retries=0,
            reconnect_delay=0,
        )

    async def _connected(self, device: str) -> Client:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        now = self.monotonic()
        if not self.connect_backoff.ready(now):
            raise ModbusUnreachable(
                device,
                f"{self.settings.where} unreachable, next connection attempt in "
                f"{self.connect_backoff.remaining(now):.1f} s",
            )
        client = self._make_client()
        error = ""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            ok, error = False, f": {exc or type(exc).__name__}"
        if not ok:
            client.close()
            self.connect_backoff.failed(self.monotonic())
            raise ModbusUnreachable(device, f"cannot connect to {self.settings.where}{error}")
        self.connect_backoff.reset()
        self.connects += 1
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def execute(self, device: str, what: str, call: Operation) -> ModbusPDU:
        """Run one request alone on the link, bounded by the link's timeout.

        A broken connection is dropped and reopened by the next request.
        """
        timeout = self.settings.timeout_s
        async with self.lock:
            started = self.monotonic()
            try:
                client = await self._connected(device)
                self.requests += 1
                try:
                    # pymodbus gives up after ``timeout``; the guard covers a hung transport.
                    async with asyncio.timeout(timeout + 0.5):
                        response = await call(client)
                except TimeoutError:
                    self._drop()
                    raise ModbusTimeout(device, f"{what}: no answer within {timeout:g} s") from None
                except ConnectionException as exc:
                    self._drop()
                    raise ModbusUnreachable(device, f"{what}: connection lost ({exc})") from None
                except ModbusIOException:
                    # TCP: a late answer would be taken for the next request's, so start over
                    # on a fresh connection. RTU: the line stays open; frames carry the unit id.
                    if self.settings.host is not None or not client.connected:
                        self._drop()
                    raise ModbusTimeout(device, f"{what}: no answer within {timeout:g} s") from None
                except (ModbusException, OSError) as exc:
                    self._drop()
                    raise ModbusError(device, f"{what}: {exc}") from None
            finally:
                self.busy_s += self.monotonic() - started
        if response is None:
            raise ModbusError(device, f"{what}: no response")
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            name = _EXCEPTION_NAMES.get(code, "unknown exception")
            raise ModbusRefused(device, f"{what}: device refused (code {code}: {name})", code)
        return response

    async def close(self) -> None:
        async with self.lock:
            self._drop()


class LinkPool:
    """Hands out one :class:`ModbusLink` per endpoint or serial port."""

    def __init__(
        self, *, monotonic: Callable[[], float] = time.monotonic, rng: random.Random | None = None
    ) -> None:
        self.monotonic = monotonic
        self.rng = rng
        self.links: dict[tuple[str, str, int], ModbusLink] = {}

    def link(self, settings: LinkSettings) -> ModbusLink:
        """The link for ``settings``; a serial port opened at two speeds is an error."""
        existing = self.links.get(settings.key)
        if existing is not None:
            if existing.settings.line() != settings.line() and settings.serial is not None:
                raise ValueError(
                    f"{settings.serial} is already used as {existing.settings.where}, "
                    f"not {settings.where}: devices on one line share its settings"
                )
            return existing
        link = ModbusLink(settings, monotonic=self.monotonic, rng=self.rng)
        self.links[settings.key] = link
        return link

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()
