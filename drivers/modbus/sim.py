"""Simulated SunSpec devices served by a real pymodbus server: TCP on loopback, or RTU on a pty.

The adapters, the CLI and third-party SunSpec clients are tested against the same library stack
the gateway uses in the field (pymodbus framing, exception responses, connection loss), not a
mock. One server hosts several units (one Modbus unit ID per device, like an RS-485 line or a
gateway in front of several inverters); their images and physics are in :mod:`.simdevices`.

Faults, switched at run time: :meth:`ModbusSim.stall` (no answer: requests hang),
``exception_code`` (every request answered with that Modbus exception), ``single_client`` (a
second TCP connection is closed at once, as many inverters do), and per unit ``follow = False``
(writes acknowledged but not carried out).

RTU runs on a pair of pseudo-terminals joined back to back, a null-modem cable in software: the
server opens one end, and :attr:`ModbusSim.rtu_path` is the other end for the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final, Self, cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.loopback import free_port
from drivers.modbus.simdevices import (
    SimBatteryInverter,
    SimPvInverter,
    SimUnit,
    WriteRefused,
)
from gateway.clock import Clock

__all__ = ["ModbusSim", "SunSpecSim", "free_port", "home_units"]

_WRITE_CODES: Final = frozenset({6, 16, 23})


class _TcpServer(ModbusTcpServer):
    """pymodbus' TCP server, able to turn away a second client."""

    single_client = False

    def handle_new_connection(self) -> Any:
        protocol = super().handle_new_connection()
        if self.single_client and len(self.active_connections) > 1:
            accept = protocol.connection_made

            def refuse(transport: asyncio.BaseTransport) -> None:
                accept(transport)
                transport.close()

            setattr(protocol, "connection_made", refuse)  # noqa: B010
        return protocol


class _NullModem:
    """Two raw ptys whose masters copy to each other: a serial cable between their slaves."""

    def __init__(self) -> None:
        from drivers.broute.sim.pty import PtyPort

        self.server_end = PtyPort()
        self.client_end = PtyPort()

    def start(self) -> None:
        self.server_end.start(self.client_end.write)
        self.client_end.start(self.server_end.write)

    def close(self) -> None:
        self.server_end.close()
        self.client_end.close()


class ModbusSim:
    """Units served on ``host:port`` (TCP) or on a pty (``rtu=True``); ``async with`` runs it."""

    def __init__(
        self,
        clock: Clock,
        units: Sequence[SimUnit],
        *,
        base: int = 40000,
        host: str = "127.0.0.1",
        port: int | None = None,
        rtu: bool = False,
    ) -> None:
        if not units or len({u.unit_id for u in units}) != len(units):
            raise ValueError("a simulator needs units with distinct unit IDs")
        self.clock = clock
        self.units = {u.unit_id: u for u in units}
        self.base = base
        self.host = host
        self.rtu = rtu
        self.port = 0 if rtu else (port if port is not None else free_port(host))
        self.stalled = False
        self.exception_code: int | None = None
        self.single_client = False
        self.requests = 0
        self._stall_release = asyncio.Event()
        self._server: Any = None
        self._modem: _NullModem | None = None

    @property
    def rtu_path(self) -> str:
        """The serial device a client opens (RTU mode, once started)."""
        if self._modem is None:
            raise RuntimeError("the simulator is not running in RTU mode")
        return self._modem.client_end.path

    def unit(self, unit_id: int = 1) -> SimUnit:
        return self.units[unit_id]

    def _action_for(self, unit: SimUnit) -> Any:
        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            self.requests += 1
            if self.stalled:
                await self._stall_release.wait()
            if self.exception_code is not None:
                return ExcCodes(self.exception_code)
            unit.advance()  # physics up to now, under the old settings
            if function_code in _WRITE_CODES and set_values is not None:
                words = [int(v) for v in set_values]
                try:
                    unit.write(address - self.base, words)
                except WriteRefused as exc:
                    return ExcCodes(exc.code)
                # pymodbus stores set_values after this hook: make it store what the unit kept.
                at = address - self.base
                cast(list[int], set_values)[:] = unit.image.words[at : at + len(words)]
            registers[:] = unit.image.words
            return None

        return action

    # ---------------------------------------------------------------------------- lifetime

    async def start(self) -> None:
        devices = [
            SimDevice(
                id=unit.unit_id,
                simdata=SimData(
                    self.base, values=list(unit.image.words), datatype=DataType.REGISTERS
                ),
                action=self._action_for(unit),
            )
            for unit in self.units.values()
        ]
        if self.rtu:
            self._modem = _NullModem()
            self._modem.start()
            self._server = ModbusSerialServer(
                devices, framer=FramerType.RTU, port=self._modem.server_end.path, baudrate=19200
            )
        else:
            server = _TcpServer(devices, address=(self.host, self.port))
            server.single_client = self.single_client
            self._server = server
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        self._stall_release.set()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None
        if self._modem is not None:
            self._modem.close()
            self._modem = None

    def refuse_second_client(self, on: bool = True) -> None:
        self.single_client = on
        if isinstance(self._server, _TcpServer):
            self._server.single_client = on

    def stall(self, on: bool = True) -> None:
        """Stop (or resume) answering: requests hang until released."""
        self.stalled = on
        if on:
            self._stall_release.clear()
        else:
            self._stall_release.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class SunSpecSim(ModbusSim):
    """One storage inverter (unit 1 unless told): the tests' and the contract's battery."""

    def __init__(
        self,
        clock: Clock,
        *,
        base: int = 40000,
        unit_id: int = 1,
        host: str = "127.0.0.1",
        port: int | None = None,
        variant: str = "124",
        **battery: Any,
    ) -> None:
        self.battery = SimBatteryInverter(clock, variant=variant, unit_id=unit_id, **battery)
        super().__init__(clock, [self.battery], base=base, host=host, port=port)
        self.unit_id = unit_id


def home_units(
    clock: Clock, *, battery_variant: str = "124", pv_unit: int = 1, battery_unit: int = 2
) -> list[SimUnit]:
    """The simulated home of ``chisan sim modbus``: a PV inverter and a storage inverter."""
    return [
        SimPvInverter(clock, unit_id=pv_unit),
        SimBatteryInverter(clock, variant=battery_variant, unit_id=battery_unit),
    ]
