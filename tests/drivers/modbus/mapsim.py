"""A non-SunSpec hybrid inverter (battery + PV) with a vendor register map, for pymodbus servers.

The map is the one in ``MAP_TOML``, which tests feed through the real config loader, so the
adapter under test reads exactly what an installer would have written. Input registers carry
measurements (power s32, SOC in 0.1 %, energy counters u32 in 0.01 kWh with the low word
first); holding registers carry the mode, the setpoints (discharge in 10 W steps) and the
ratings. Physics follow the SunSpec simulator's: power follows mode and setpoint at once, SOC
and counters integrate it over the injected clock at every request, power stops at 0/100 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.sim import free_port
from gateway.clock import Clock
from gateway.config import Config, load

MODE_AUTO, MODE_CHARGE, MODE_DISCHARGE, MODE_STANDBY = 0, 1, 2, 3

#: Input registers.
PV_POWER: Final = 90
PV_ENERGY: Final = 92
POWER: Final = 100
SOC: Final = 102
CHARGED: Final = 104
DISCHARGED: Final = 106
INPUT_BASE, INPUT_SIZE = 90, 20
#: Holding registers.
MODE: Final = 200
CHARGE_SP: Final = 201
DISCHARGE_SP: Final = 202
PV_LIMIT: Final = 203
MAX_CHARGE: Final = 210
MAX_DISCHARGE: Final = 211
HOLDING_BASE, HOLDING_SIZE = 200, 12
WRITABLE: Final = frozenset({MODE, CHARGE_SP, DISCHARGE_SP, PV_LIMIT})

BATTERY_REGISTERS: Final = """
[[device.registers]]
meaning = "power_w"
address = 100
function = "input"
type = "s32"
unit = "W"

[[device.registers]]
meaning = "soc_pct"
address = 102
function = "input"
scale = 0.1
unit = "%"

[[device.registers]]
meaning = "charged_kwh"
address = 104
function = "input"
type = "u32"
word_order = "little"
scale = 0.01
unit = "kWh"

[[device.registers]]
meaning = "discharged_kwh"
address = 106
function = "input"
type = "u32"
word_order = "little"
scale = 0.01

[[device.registers]]
meaning = "mode"
address = 200
values = { auto = 0, charge = 1, discharge = 2, standby = 3 }

[[device.registers]]
meaning = "charge_setpoint_w"
address = 201

[[device.registers]]
meaning = "discharge_setpoint_w"
address = 202
scale = 10

[[device.registers]]
meaning = "max_charge_w"
address = 210

[[device.registers]]
meaning = "max_discharge_w"
address = 211

[[device.registers]]
meaning = "capacity_kwh"
value = 9.8
"""

PV_LIMIT_REGISTERS: Final = """
[[device.registers]]
meaning = "pv_limit_pct"
address = 203

[[device.registers]]
meaning = "rated_w"
value = 4.0
unit = "kW"
"""

PV_REGISTERS: Final = """
[[device.registers]]
meaning = "power_w"
address = 90
function = "input"
unit = "W"

[[device.registers]]
meaning = "energy_kwh"
address = 92
function = "input"
type = "f32"
"""


def words32(value: int, *, signed: bool = False, little: bool = False) -> list[int]:
    raw = struct.pack(">i" if signed else ">I", value)
    words = [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]
    return words[::-1] if little else words


def f32(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]


class MapSim:
    """The device model; :meth:`device` gives the pymodbus SimDevice serving it at a unit id."""

    def __init__(
        self,
        clock: Clock,
        *,
        soc_pct: float = 50.0,
        capacity_wh: int = 9800,
        max_w: int = 5000,
        pv_w: int = 1800,
    ) -> None:
        self.clock = clock
        self.soc_pct = float(soc_pct)
        self.capacity_wh = capacity_wh
        self.max_w = max_w
        self.pv_w = pv_w
        self.pv_rated_w = 4000
        self.pv_wh = 1_234_000.0
        self.charged_wh = 0.0
        self.discharged_wh = 0.0
        self.holding = [0] * HOLDING_SIZE
        self.holding[PV_LIMIT - HOLDING_BASE] = 100
        self.holding[MAX_CHARGE - HOLDING_BASE] = max_w
        self.holding[MAX_DISCHARGE - HOLDING_BASE] = max_w
        #: Set: requests are never answered (a device that is off or has the wrong unit id).
        self.muted = False
        self._unanswered: set[asyncio.Future[None]] = set()
        #: False: writes are acknowledged but not carried out.
        self.follow = True
        #: Set: every request is answered with this exception code.
        self.refuse: ExcCodes | None = None
        self.requests = 0
        self._last = clock.monotonic()

    def reg(self, address: int) -> int:
        return self.holding[address - HOLDING_BASE]

    def power_w(self) -> float:
        mode = self.reg(MODE)
        if mode == MODE_CHARGE:
            p = float(self.reg(CHARGE_SP))
        elif mode == MODE_DISCHARGE:
            p = -10.0 * self.reg(DISCHARGE_SP)
        else:
            p = 0.0
        if (p > 0 and self.soc_pct >= 100.0) or (p < 0 and self.soc_pct <= 0.0):
            return 0.0
        return p

    def pv_output_w(self) -> float:
        """PV output under the limit register (percent of ``pv_rated_w``)."""
        return min(float(self.pv_w), self.pv_rated_w * self.reg(PV_LIMIT) / 100)

    def advance(self) -> None:
        now = self.clock.monotonic()
        dt, self._last = max(0.0, now - self._last), now
        self.pv_wh += self.pv_output_w() * dt / 3600.0
        p = self.power_w()
        if dt and p:
            energy = p * dt / 3600.0
            room = (100.0 - self.soc_pct if p > 0 else self.soc_pct) * self.capacity_wh / 100.0
            energy = max(-room, min(room, energy))
            self.soc_pct += 100.0 * energy / self.capacity_wh
            if energy > 0:
                self.charged_wh += energy
            else:
                self.discharged_wh -= energy

    def inputs(self) -> list[int]:
        regs = [0] * INPUT_SIZE
        at = INPUT_BASE
        regs[PV_POWER - at] = round(self.pv_output_w())
        regs[PV_ENERGY - at : PV_ENERGY - at + 2] = f32(self.pv_wh / 1000.0)
        regs[POWER - at : POWER - at + 2] = words32(round(self.power_w()), signed=True)
        regs[SOC - at] = round(self.soc_pct * 10)
        regs[CHARGED - at : CHARGED - at + 2] = words32(round(self.charged_wh / 10), little=True)
        regs[DISCHARGED - at : DISCHARGED - at + 2] = words32(
            round(self.discharged_wh / 10), little=True
        )
        return regs

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        if self.muted:
            # Wait until unmuted, then vanish without an answer: cancelling this task ends the
            # server's request handler before it replies (as a device that missed the frame).
            waiter = asyncio.get_running_loop().create_future()
            self._unanswered.add(waiter)
            await waiter
        if self.refuse is not None:
            return self.refuse
        self.advance()
        if set_values is not None:
            for k, value in enumerate(set_values):
                if address + k not in WRITABLE:
                    return ExcCodes.ILLEGAL_ADDRESS
                if address + k == MODE and int(value) > MODE_STANDBY:
                    return ExcCodes.ILLEGAL_VALUE
                if address + k == PV_LIMIT and int(value) > 100:
                    return ExcCodes.ILLEGAL_VALUE
            for k, value in enumerate(set_values):
                if self.follow:
                    self.holding[address + k - HOLDING_BASE] = int(value)
                else:
                    set_values[k] = self.holding[address + k - HOLDING_BASE]  # type: ignore[call-overload]
        image = self.inputs() if function_code == 4 else self.holding
        registers[: len(image)] = image
        return None

    def mute(self, on: bool = True) -> None:
        """Stop (or resume) answering; requests sent while muted are never answered."""
        self.muted = on
        if not on:
            for waiter in self._unanswered:
                waiter.cancel()
            self._unanswered.clear()

    def device(self, unit_id: int) -> SimDevice:
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(
            id=unit_id,
            simdata=(
                bits,
                list(bits),
                [SimData(HOLDING_BASE, values=list(self.holding), datatype=DataType.REGISTERS)],
                [SimData(INPUT_BASE, values=self.inputs(), datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )


@dataclass
class Served:
    host: str
    port: int
    server: ModbusTcpServer

    @property
    def connections(self) -> int:
        """TCP clients connected right now."""
        return len(self.server.active_connections)


@contextlib.asynccontextmanager
async def tcp_server(*devices: SimDevice, **options: Any) -> AsyncIterator[Served]:
    """A real pymodbus TCP server on loopback serving ``devices``."""
    host, port = "127.0.0.1", free_port()
    server = ModbusTcpServer(list(devices), address=(host, port), **options)
    await server.serve_forever(background=True)
    try:
        yield Served(host, port, server)
    finally:
        with contextlib.suppress(Exception):
            await server.shutdown()  # type: ignore[no-untyped-call]


def device_toml(
    name: str, kind: str, registers: str, *, where: str, unit_id: int = 1, extra: str = ""
) -> str:
    """One ``[[device]]`` with a register map, as an installer would write it."""
    return (
        f'[[device]]\nname = "{name}"\nkind = "{kind}"\nprotocol = "modbus"\n{where}\n'
        f"unit_id = {unit_id}\n{extra}\n{registers}\n"
    )


def config_text(*devices: str) -> str:
    return '[site]\nid = "site-1"\nfit = false\n[mqtt]\nurl = "mqtt://127.0.0.1"\n' + "".join(
        devices
    )


def load_text(text: str, folder: Path) -> Config:
    """Validate ``text`` with the real config loader (as ``chisan check-config`` would)."""
    path = folder / "chisan.toml"
    path.write_text(text, encoding="utf-8")
    return load(path)
