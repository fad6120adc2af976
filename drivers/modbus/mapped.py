"""Register-map Modbus devices as capabilities: the same Battery and PV interfaces as ECHONET.

The installer's ``[[device.registers]]`` say where each quantity lives (drivers/modbus/
registermap.py); these adapters read them (back-to-back registers in one request), convert to
W, Wh and %, and drive the mode and setpoint registers for battery commands. A command writes
the setpoint first and the mode last, so the device never runs a new mode on a stale setpoint,
then reads both back until they hold what was written (``confirm_timeout_s``).

A battery without energy counter registers gets counters integrated from its power readings
(:class:`EnergyIntegrator`, as for SunSpec): they start at 0 with the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from drivers.capabilities import BatteryMode, BatteryRatings, Measured, ModeCommands
from drivers.modbus.energy import EnergyIntegrator
from drivers.modbus.registermap import (
    MEANINGS,
    RegisterMapError,
    RegisterSpec,
    decode,
    encode,
    missing_meanings,
    read_plan,
)
from drivers.modbus.transport import ModbusError, ModbusTransport, RegisterFunction
from drivers.readings import (
    BATTERY_CHARGED_WH,
    BATTERY_DISCHARGED_WH,
    BATTERY_MODE,
    BATTERY_POWER_W,
    BATTERY_REMAINING_WH,
    BATTERY_SOC_PCT,
    PV_GENERATED_WH,
    PV_LIMIT_PCT,
    PV_LIMIT_W,
    PV_POWER_W,
)
from gateway.clock import Clock
from gateway.logs import get_logger

__all__ = [
    "MappedBattery",
    "MappedDevice",
    "MappedNotFollowing",
    "MappedPv",
    "MappedPvLimit",
    "MappedSetpointError",
]


class MappedSetpointError(ModbusError):
    """A setpoint the device cannot take (not positive, above its rating, out of range)."""


class MappedNotFollowing(ModbusError):
    """The device acknowledged a command but its registers did not read back as written."""


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


class MappedDevice:
    """One register-map device behind a transport."""

    kind: ClassVar[str] = "device"

    def __init__(
        self,
        name: str,
        transport: ModbusTransport,
        clock: Clock,
        registers: Sequence[RegisterSpec],
        *,
        confirm_timeout_s: float = 10.0,
        confirm_poll_s: float = 1.0,
    ) -> None:
        missing = missing_meanings(self.kind, (r.meaning for r in registers))
        if missing:
            raise ValueError(f"{name}: a {self.kind} register map needs {'; '.join(missing)}")
        self.name = name
        self.transport = transport
        self.clock = clock
        self.map = {r.meaning: r for r in registers}
        self.confirm_timeout_s = confirm_timeout_s
        self.confirm_poll_s = confirm_poll_s
        self.log = get_logger("chisan.modbus.device", device=name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.transport.settings.where})"

    async def read(self, *meanings: str) -> tuple[dict[str, float | None], datetime]:
        """The named quantities (None where the map has no such register), one request per run
        of back-to-back registers, and the (clock) time they were read."""
        specs = [self.map[m] for m in meanings if m in self.map]
        values: dict[str, float | None] = dict.fromkeys(meanings)
        for spec in specs:
            if spec.value is not None:
                values[spec.meaning] = decode(spec, [])
        for group in read_plan(specs):
            start = group[0].address or 0
            count = max(s.end for s in group) - start
            function: RegisterFunction = "input" if group[0].function == "input" else "holding"
            words = await self.transport.read(start, count, function=function)
            for spec in group:
                offset = (spec.address or 0) - start
                values[spec.meaning] = decode(spec, words[offset : offset + spec.words])
        return values, self.clock.now()

    async def one(self, meaning: str) -> Measured[float | None]:
        values, at = await self.read(meaning)
        return Measured(values[meaning], at)

    async def write(self, meaning: str, value: float) -> list[int]:
        """Write one quantity (W, %, or a mode code); returns the words written."""
        spec = self.map[meaning]
        try:
            words = encode(spec, value)
        except RegisterMapError as exc:
            raise MappedSetpointError(self.name, str(exc)) from None
        assert spec.address is not None and MEANINGS[meaning].write
        await self.transport.write(spec.address, words)
        return words

    async def poll(self) -> dict[str, Measured[Any]]:
        raise NotImplementedError


class MappedBattery(ModeCommands, MappedDevice):
    """BatteryState/Info/Control/Counters from a register map."""

    kind = "battery"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.energy = EnergyIntegrator()
        self.codes = dict(self.map["mode"].values)
        self.modes = {code: BatteryMode(mode) for mode, code in self.codes.items()}

    def _power(self, value: float | None) -> float | None:
        if value is not None:
            self.energy.feed(value, self.clock.monotonic())
        return value

    def _mode(self, code: float | None) -> BatteryMode | None:
        return None if code is None else self.modes.get(int(code), BatteryMode.OTHER)

    # BatteryState
    async def soc_pct(self) -> Measured[float | None]:
        return await self.one("soc_pct")

    async def power_w(self) -> Measured[float | None]:
        measured = await self.one("power_w")
        return Measured(self._power(measured.value), measured.at)

    async def mode(self) -> Measured[BatteryMode | None]:
        measured = await self.one("mode")
        return Measured(self._mode(measured.value), measured.at)

    # BatteryInfo
    async def ratings(self) -> BatteryRatings:
        values, _ = await self.read("max_charge_w", "max_discharge_w", "capacity_kwh")
        return BatteryRatings(
            max_charge_w=_whole(values["max_charge_w"]),
            max_discharge_w=_whole(values["max_discharge_w"]),
            capacity_wh=_whole(values["capacity_kwh"]),
        )

    # BatteryCounters
    async def _counter(self, meaning: str) -> Measured[int | None]:
        if meaning in self.map:
            measured = await self.one(meaning)
            return Measured(_whole(measured.value), measured.at)
        power = await self.power_w()  # brings the integrated counters up to now
        integrated = (
            self.energy.charged_wh if meaning == "charged_kwh" else self.energy.discharged_wh
        )
        return Measured(integrated, power.at)

    async def charged_wh(self) -> Measured[int | None]:
        return await self._counter("charged_kwh")

    async def discharged_wh(self) -> Measured[int | None]:
        return await self._counter("discharged_kwh")

    # BatteryControl (the verbs come from ModeCommands)
    async def _run(self, mode: BatteryMode, watts: int | None) -> None:
        written: dict[str, list[int]] = {}
        if watts is not None:
            if isinstance(watts, bool) or int(watts) != watts or watts <= 0:
                raise MappedSetpointError(self.name, f"{mode.value} needs watts > 0, got {watts!r}")
            ratings = await self.ratings()
            top = ratings.max_charge_w if mode is BatteryMode.CHARGE else ratings.max_discharge_w
            if top is not None and watts > top:
                raise MappedSetpointError(
                    self.name, f"{mode.value} {watts} W is above the device's rating {top} W"
                )
            if "setpoint_w" in self.map:
                signed = watts if mode is BatteryMode.CHARGE else -watts
                written["setpoint_w"] = await self.write("setpoint_w", signed)
            else:
                meaning = (
                    "charge_setpoint_w" if mode is BatteryMode.CHARGE else "discharge_setpoint_w"
                )
                written[meaning] = await self.write(meaning, watts)
        written["mode"] = await self.write("mode", self.codes[mode.value])
        self.log.info("battery mode set", mode=mode.value, watts=watts)
        await self._confirm(mode, written)
        self.log.info("battery confirmed", mode=mode.value)

    async def _confirm(self, mode: BatteryMode, written: dict[str, list[int]]) -> None:
        deadline = self.clock.monotonic() + self.confirm_timeout_s
        while True:
            found: dict[str, list[int]] = {}
            for meaning in written:
                spec = self.map[meaning]
                assert spec.address is not None
                found[meaning] = await self.transport.read(spec.address, spec.words)
            if found == written:
                return
            if self.clock.monotonic() >= deadline:
                raise MappedNotFollowing(
                    self.name,
                    f"{mode.value}: registers read {found} after {self.confirm_timeout_s:g} s "
                    f"(wanted {written})",
                )
            await self.clock.sleep(self.confirm_poll_s)

    async def poll(self) -> dict[str, Measured[Any]]:
        values, at = await self.read(
            "power_w", "soc_pct", "mode", "charged_kwh", "discharged_kwh", "capacity_kwh"
        )
        power = self._power(values["power_w"])
        mode = self._mode(values["mode"])
        soc, capacity = values["soc_pct"], values["capacity_kwh"]
        charged, discharged = values["charged_kwh"], values["discharged_kwh"]
        return {
            BATTERY_SOC_PCT: Measured(soc, at),
            BATTERY_POWER_W: Measured(power, at),
            BATTERY_MODE: Measured(mode.value if mode else None, at),
            BATTERY_REMAINING_WH: Measured(
                None if soc is None or not capacity else round(capacity * soc / 100), at
            ),
            BATTERY_CHARGED_WH: Measured(
                _whole(charged) if "charged_kwh" in self.map else self.energy.charged_wh, at
            ),
            BATTERY_DISCHARGED_WH: Measured(
                _whole(discharged) if "discharged_kwh" in self.map else self.energy.discharged_wh,
                at,
            ),
        }


class MappedPv(MappedDevice):
    """PvState from a register map (power, and lifetime energy when mapped)."""

    kind = "pv"

    async def generation_w(self) -> Measured[float | None]:
        return await self.one("power_w")

    async def generated_wh(self) -> Measured[int | None]:
        measured = await self.one("energy_kwh")
        return Measured(_whole(measured.value), measured.at)

    async def poll(self) -> dict[str, Measured[Any]]:
        values, at = await self.read("power_w", "energy_kwh")
        return {
            PV_POWER_W: Measured(values["power_w"], at),
            PV_GENERATED_WH: Measured(_whole(values["energy_kwh"]), at),
        }


class MappedPvLimit(MappedPv):
    """A PV inverter whose map has an output limit register: PvState and PvLimit.

    Either register serves both commands when ``rated_w`` converts between percent and watts;
    lifting a limit writes 100 % (or the rated output). Confirmed by reading the register back.
    """

    async def limit_pct(self, pct: int | None) -> None:
        value = 100 if pct is None else pct
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise MappedSetpointError(self.name, f"limit must be 0..100 %, got {pct!r}")
        if "pv_limit_pct" in self.map:
            await self._set_and_check("pv_limit_pct", value)
        else:
            await self._set_and_check("pv_limit_w", value * await self._rated("percent") / 100)

    async def limit_w(self, watts: int | None) -> None:
        if watts is not None and (
            isinstance(watts, bool) or not isinstance(watts, int | float) or watts < 0
        ):
            raise MappedSetpointError(self.name, f"limit must be >= 0 W, got {watts!r}")
        if "pv_limit_w" in self.map:
            value = watts if watts is not None else await self._rated("watts")
            await self._set_and_check("pv_limit_w", value)
        else:
            rated = await self._rated("watts")
            pct = 100.0 if watts is None else min(100.0, 100.0 * watts / rated)
            await self._set_and_check("pv_limit_pct", pct)

    async def rated_w(self) -> float | None:
        """The mapped rated output, if the map has one."""
        if "rated_w" not in self.map:
            return None
        values, _ = await self.read("rated_w")
        rated = values["rated_w"]
        return float(rated) if rated else None

    async def _rated(self, what: str) -> float:
        values, _ = await self.read("rated_w")
        rated = values["rated_w"]
        if not rated:
            raise MappedSetpointError(
                self.name, f"a limit in {what} needs rated_w in the register map"
            )
        return rated

    async def _set_and_check(self, meaning: str, value: float) -> None:
        written = await self.write(meaning, value)
        spec = self.map[meaning]
        assert spec.address is not None
        deadline = self.clock.monotonic() + self.confirm_timeout_s
        while (found := await self.transport.read(spec.address, spec.words)) != written:
            if self.clock.monotonic() >= deadline:
                raise MappedNotFollowing(
                    self.name, f"{meaning}: register reads {found} (wanted {written})"
                )
            await self.clock.sleep(self.confirm_poll_s)
        self.log.info("PV limit set", meaning=meaning, value=value)

    async def poll(self) -> dict[str, Measured[Any]]:
        values, at = await self.read("power_w", "energy_kwh", "pv_limit_pct", "pv_limit_w")
        return {
            PV_POWER_W: Measured(values["power_w"], at),
            PV_GENERATED_WH: Measured(_whole(values["energy_kwh"]), at),
            PV_LIMIT_PCT: Measured(values["pv_limit_pct"], at),
            PV_LIMIT_W: Measured(values["pv_limit_w"], at),
        }
