"""A simulated SunSpec storage inverter served by a real pymodbus TCP server on loopback.

The adapters are tested against the same library stack they use in the field (pymodbus framing,
exception responses, connection loss), not a mock. The register image is built with the codec's
``encode_*`` helpers, so the simulator speaks SunSpec from the other side of the same module.

Models: 1 (common), 120 (nameplate: capacity), 103 (three-phase inverter: AC power and lifetime
AC energy), 124 (storage controls). Physics are deliberately simple: the battery power follows
StorCtl_Mod and InWRte/OutWRte (percent of WChaMax) at once, SOC integrates that power over the
injected clock (evaluated lazily at every request, so a jumped ManualClock moves it), and power
stops at 0 % and 100 %. As an AC-coupled inverter, W is + when the battery discharges into AC.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Final, cast

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.sunspec import (
    MARKER,
    InverterOffsets,
    NameplateOffsets,
    StorageOffsets,
    StorCtl,
    encode_acc32,
    encode_int16,
    encode_string,
)
from gateway.clock import Clock

__all__ = ["SimLayout", "SunSpecSim", "free_port"]

_WRITE_CODES: Final = frozenset({6, 16, 23})


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for the simulator, or for "unreachable" tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class SimLayout:
    """Where each model's points start, relative to the base address (after its ID and L)."""

    common: int = 4
    nameplate: int = 72
    inverter: int = 100
    storage: int = 152
    end: int = 176
    size: int = 178


class SunSpecSim:
    """A SunSpec battery inverter on ``127.0.0.1:<port>``; ``async with`` starts and stops it."""

    def __init__(
        self,
        clock: Clock,
        *,
        base: int = 40000,
        unit_id: int = 1,
        host: str = "127.0.0.1",
        port: int | None = None,
        soc_pct: float = 50.0,
        capacity_wh: int = 9800,
        w_cha_max: int = 5000,
        lifetime_wh: int = 1_234_000,
    ) -> None:
        self.clock = clock
        self.base = base
        self.unit_id = unit_id
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.soc_pct = float(soc_pct)
        self.capacity_wh = capacity_wh
        self.w_cha_max = w_cha_max
        self.charged_wh = 0.0
        self.discharged_wh = 0.0
        self.lifetime_wh = float(lifetime_wh)
        self.auto_power_w = 0.0
        #: False: writes are acknowledged but not carried out (a device ignoring commands).
        self.follow = True
        #: Set: every request hangs (a device that stopped answering).
        self.stalled = False
        self.requests = 0
        self.layout = SimLayout()
        self._last = clock.monotonic()
        self._regs = self._image()
        self._publish(self._regs)
        self._registers: list[int] | None = None
        self._server: ModbusTcpServer | None = None
        self._stall_release = asyncio.Event()

    # ------------------------------------------------------------------------------ image

    def _image(self) -> list[int]:
        lay = self.layout
        regs = [0] * lay.size
        regs[0:2] = MARKER
        regs[2:4] = [1, 66]
        common = [
            *encode_string("Chisan Sim", 16),
            *encode_string("SIM-BAT-1", 16),
            *encode_string("", 8),
            *encode_string("1.0.0", 8),
            *encode_string("SIM0001", 16),
            self.unit_id,
            0,
        ]
        regs[lay.common : lay.common + 66] = common
        regs[lay.nameplate - 2 : lay.nameplate] = [120, NameplateOffsets.LENGTH]
        n = lay.nameplate
        regs[n : n + NameplateOffsets.LENGTH] = [0xFFFF] * NameplateOffsets.LENGTH
        regs[n] = 82  # DERTyp: PV + storage
        regs[n + NameplateOffsets.WRTG] = self.w_cha_max
        regs[n + NameplateOffsets.WRTG_SF] = 0
        regs[n + NameplateOffsets.WHRTG] = self.capacity_wh // 10
        regs[n + NameplateOffsets.WHRTG_SF] = 1
        regs[n + NameplateOffsets.MAX_CHA_RTE] = self.w_cha_max
        regs[n + NameplateOffsets.MAX_CHA_RTE_SF] = 0
        regs[n + NameplateOffsets.MAX_DIS_CHA_RTE] = self.w_cha_max
        regs[n + NameplateOffsets.MAX_DIS_CHA_RTE_SF] = 0
        for sf in (4, 9, 11, 16, 20):  # the other scale factors: 0
            regs[n + sf] = 0
        regs[lay.inverter - 2 : lay.inverter] = [103, InverterOffsets.LENGTH]
        i = lay.inverter
        regs[i : i + InverterOffsets.LENGTH] = [0x8000] * InverterOffsets.LENGTH
        regs[i + InverterOffsets.W_SF] = 0
        regs[i + InverterOffsets.WH_SF] = 0
        regs[i + InverterOffsets.ST_VND] = 0
        for k in range(38, 50):  # event bitfields: none
            regs[i + k] = 0
        regs[lay.storage - 2 : lay.storage] = [124, StorageOffsets.LENGTH]
        s = lay.storage
        regs[s : s + StorageOffsets.LENGTH] = [0xFFFF] * StorageOffsets.LENGTH
        regs[s + StorageOffsets.WCHA_MAX] = self.w_cha_max
        regs[s + StorageOffsets.STOR_CTL_MOD] = 0
        regs[s + StorageOffsets.MIN_RSV_PCT] = 0
        regs[s + StorageOffsets.OUT_W_RTE] = 0
        regs[s + StorageOffsets.IN_W_RTE] = 0
        regs[s + StorageOffsets.CHA_GRI_SET] = 1
        regs[s + StorageOffsets.WCHA_MAX_SF] = 0
        regs[s + StorageOffsets.MIN_RSV_PCT_SF] = 0
        regs[s + StorageOffsets.CHA_STATE_SF] = encode_int16(-1)
        regs[s + StorageOffsets.IN_OUT_W_RTE_SF] = encode_int16(-2)
        for sf in (17, 18, 21, 22):
            regs[s + sf] = 0x8000
        regs[lay.end : lay.end + 2] = [0xFFFF, 0]
        return regs

    def _st(self, name: int) -> int:
        return self._regs[self.layout.storage + name]

    def _pct(self, raw: int) -> float:
        value = raw - 0x10000 if raw & 0x8000 else raw
        return max(0.0, value / 100.0)  # InOutWRte_SF = -2; negative rates are not simulated

    # ----------------------------------------------------------------------------- physics

    def setpoint_w(self) -> float:
        """The battery power the controls ask for (+ charging / - discharging)."""
        mod = self._st(StorageOffsets.STOR_CTL_MOD)
        charge = self.w_cha_max * self._pct(self._st(StorageOffsets.IN_W_RTE)) / 100
        discharge = self.w_cha_max * self._pct(self._st(StorageOffsets.OUT_W_RTE)) / 100
        if mod == 0:
            return self.auto_power_w
        if mod == StorCtl.CHARGE:
            return charge
        if mod == StorCtl.DISCHARGE:
            return -discharge
        return 0.0  # both limits: hold

    def power_w(self) -> float:
        p = self.setpoint_w()
        if (p > 0 and self.soc_pct >= 100.0) or (p < 0 and self.soc_pct <= 0.0):
            return 0.0
        return p

    def _advance(self) -> None:
        now = self.clock.monotonic()
        dt, self._last = max(0.0, now - self._last), now
        p = self.power_w()
        if dt and p:
            energy = p * dt / 3600.0
            room = (100.0 - self.soc_pct if p > 0 else self.soc_pct) * self.capacity_wh / 100.0
            energy = max(-room, min(room, energy))
            self.soc_pct = min(100.0, max(0.0, self.soc_pct + 100.0 * energy / self.capacity_wh))
            if energy > 0:
                self.charged_wh += energy
            else:
                self.discharged_wh -= energy
                self.lifetime_wh -= energy
        self._publish(self._regs)

    def _publish(self, regs: list[int]) -> None:
        lay = self.layout
        p = self.power_w()
        i, s = lay.inverter, lay.storage
        regs[i + InverterOffsets.W] = encode_int16(round(-p))
        regs[i + InverterOffsets.WH : i + InverterOffsets.WH + 2] = encode_acc32(
            int(self.lifetime_wh)
        )
        regs[i + InverterOffsets.ST] = 4 if p else 8
        regs[s + StorageOffsets.CHA_STATE] = round(self.soc_pct * 10)
        if p > 0:
            cha_st = 4
        elif p < 0:
            cha_st = 3
        elif self.soc_pct >= 100.0:
            cha_st = 5
        elif self.soc_pct <= 0.0:
            cha_st = 2
        else:
            cha_st = 6
        regs[s + StorageOffsets.CHA_ST] = cha_st

    # ---------------------------------------------------------------------------- requests

    def _writable(self) -> frozenset[int]:
        s = self.base + self.layout.storage
        return frozenset(
            s + o
            for o in (
                StorageOffsets.WCHA_MAX,
                StorageOffsets.STOR_CTL_MOD,
                StorageOffsets.MIN_RSV_PCT,
                StorageOffsets.OUT_W_RTE,
                StorageOffsets.IN_W_RTE,
                StorageOffsets.CHA_GRI_SET,
            )
        )

    async def _action(
        self,
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
        self._advance()  # physics up to now, under the old settings
        if function_code in _WRITE_CODES and set_values is not None:
            writable = self._writable()
            for k, value in enumerate(set_values):
                at = address + k
                if at not in writable:
                    return ExcCodes.ILLEGAL_ADDRESS
                offset = at - self.base - self.layout.storage
                if offset == StorageOffsets.STOR_CTL_MOD and int(value) > 3:
                    return ExcCodes.ILLEGAL_VALUE
                if offset in (StorageOffsets.IN_W_RTE, StorageOffsets.OUT_W_RTE):
                    pct = (int(value) - 0x10000 if int(value) & 0x8000 else int(value)) / 100
                    if not -100.0 <= pct <= 100.0:
                        return ExcCodes.ILLEGAL_VALUE
            for k, value in enumerate(set_values):
                at = address + k - self.base
                if self.follow:
                    self._regs[at] = int(value)
                else:
                    cast(list[int], set_values)[k] = self._regs[at]  # acknowledged, ignored
            self._publish(self._regs)
        # The runtime then serves (or overwrites with set_values) the shared register list.
        registers[:] = self._regs
        return None

    # ---------------------------------------------------------------------------- lifetime

    async def start(self) -> None:
        device = SimDevice(
            id=self.unit_id,
            simdata=SimData(self.base, values=list(self._regs), datatype=DataType.REGISTERS),
            action=self._action,
        )
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        self._stall_release.set()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    def stall(self, on: bool = True) -> None:
        """Stop (or resume) answering: requests hang until released."""
        self.stalled = on
        if on:
            self._stall_release.clear()
        else:
            self._stall_release.set()

    async def __aenter__(self) -> SunSpecSim:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
