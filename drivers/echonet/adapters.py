"""ECHONET devices as capabilities: what the rest of the gateway sees of batteries, PV and loads.

Nothing protocol-shaped leaves this module: callers get watts, percent, Wh and
:class:`~drivers.capabilities.BatteryMode`, each as a :class:`Measured` stamped with the injected
clock at the moment the device answered, and failures as :class:`EchonetError` (a
:class:`DeviceError` naming the device).

Commands follow the device's own sequence and are confirmed on what the device *does*, not on
what it was told: a battery is commanded through DA but confirmed on CF and on the sign of D3, a
PV limit is read back. A device that does not follow within ``confirm_timeout_s`` raises
:class:`EchonetNotFollowing`, so control can report the failure instead of assuming success.

:class:`EchonetPoller` is the daemon component per device (named after it): it reads the key
values every ``poll_s`` and on every INF the device sends, and reports them as
``on_reading(key, value, at)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from drivers.capabilities import BatteryMode, BatteryRatings, Measured, ModeCommands
from drivers.echonet.frame import EOJ
from drivers.echonet.properties import PropertyError, spec_for
from drivers.echonet.properties.types import Decoded, Int
from drivers.echonet.propmap import PropertyMapError, decode_property_map
from drivers.echonet.transport import (
    EchonetError,
    EchonetProtocolError,
    EchonetRefused,
    EchonetTransport,
    GetResult,
    Notification,
)
from drivers.poller import DevicePoller
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
    PV_SOLD_WH,
    ReadingCallback,
)
from gateway.clock import Clock
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.config import DeviceConfig

__all__ = [
    "BATTERY_CHARGED_WH",
    "BATTERY_DISCHARGED_WH",
    "BATTERY_MODE",
    "BATTERY_POWER_W",
    "BATTERY_REMAINING_WH",
    "BATTERY_SOC_PCT",
    "PV_GENERATED_WH",
    "PV_LIMIT_PCT",
    "PV_LIMIT_W",
    "PV_POWER_W",
    "PV_SOLD_WH",
    "EchonetAircon",
    "EchonetBattery",
    "EchonetDevice",
    "EchonetEvCharger",
    "EchonetNotFollowing",
    "EchonetPoller",
    "EchonetPv",
    "EchonetSetpointError",
    "EchonetSetup",
    "EchonetV2h",
    "EchonetWaterHeater",
    "ReadingCallback",
    "adapter_for",
    "build_echonet",
]

_T = TypeVar("_T")


class EchonetNotFollowing(EchonetError):
    """The device accepted a command but did not carry it out within the confirmation time."""


class EchonetSetpointError(EchonetError):
    """A setpoint the device cannot take (outside its ratings, nothing left to charge...)."""


_MODE_NAMES: Final = {m.value: m for m in BatteryMode}


def _mode(name: Decoded) -> BatteryMode | None:
    if name is None:
        return None
    return _MODE_NAMES.get(str(name), BatteryMode.OTHER)


# ------------------------------------------------------------------------------------- base


class EchonetDevice:
    """One ECHONET object seen through the shared transport; subclasses add capabilities."""

    kind: ClassVar[str] = "device"
    class_ids: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        name: str,
        host: str,
        eoj: EOJ | str,
        transport: EchonetTransport,
        clock: Clock,
        *,
        confirm_timeout_s: float = 30.0,
        confirm_poll_s: float = 1.0,
    ) -> None:
        self.name = name
        self.host = host
        self.eoj = eoj if isinstance(eoj, EOJ) else EOJ.parse(eoj)
        if self.class_ids and self.eoj.class_id not in self.class_ids:
            want = " or ".join(f"{c:04X}" for c in self.class_ids)
            raise ValueError(f"{name}: a {self.kind} has class {want}, not {self.eoj}")
        self.transport = transport
        self.clock = clock
        self.confirm_timeout_s = confirm_timeout_s
        self.confirm_poll_s = confirm_poll_s
        self.log = get_logger("chisan.echonet.device", device=name)
        self._get_map: frozenset[int] | None = None
        self._set_map: frozenset[int] | None = None
        self._maps_read = False
        self._quirks_logged: set[int] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.host}, {self.eoj})"

    # ------------------------------------------------------------------------------ reading

    async def read(self, epcs: Iterable[int]) -> GetResult:
        """Raw EDTs of the readable EPCs; refusals of properties the map lists are logged once."""
        result = await self.transport.get(self.host, self.eoj, epcs, device=self.name)
        for epc in result.missing:
            if epc not in self._quirks_logged and (self._get_map is None or epc in self._get_map):
                self._quirks_logged.add(epc)
                self.log.info("device refused a property", epc=f"{epc:02X}")
        return result

    def decode(self, epc: int, edt: bytes | None) -> Decoded:
        """Typed value of an EDT (None for a missing EDT or a "no data" code)."""
        if edt is None:
            return None
        spec = spec_for(self.eoj.class_id, epc)
        if spec is None:
            return edt
        try:
            return spec.decode(edt)
        except PropertyError as exc:
            raise EchonetProtocolError(self.name, str(exc)) from None

    def number(self, epc: int, edt: bytes | None) -> float | None:
        value = self.decode(epc, edt)
        return float(value) if isinstance(value, int | float) else None

    def watt_hours(self, epc: int, edt: bytes | None) -> int | None:
        """Exact integer Wh from an energy property (kWh × 0.001 or Wh), None for no data."""
        spec = spec_for(self.eoj.class_id, epc)
        if edt is None or spec is None or not isinstance(spec.codec, Int):
            return None
        try:
            raw = spec.codec.decode_raw(edt)
        except PropertyError as exc:
            raise EchonetProtocolError(self.name, str(exc)) from None
        if raw is None:
            return None
        if spec.codec.unit == "kWh":
            return int(raw * spec.codec.scale * 1000)
        return int(raw * spec.codec.scale)

    def mode_of(self, epc: int, edt: bytes | None) -> BatteryMode | None:
        """A battery or EV operation mode (CF, DA, E1...), None for no data."""
        return _mode(self.decode(epc, edt))

    async def measure(self, epc: int, convert: Callable[[int, bytes | None], _T]) -> Measured[_T]:
        """One EPC read and converted (``decode``, ``number``, ``watt_hours``, ``mode_of``)."""
        result = await self.read([epc])
        return Measured(convert(epc, result.get(epc)), result.at)

    async def value(self, epc: int) -> Measured[Decoded]:
        return await self.measure(epc, self.decode)

    async def maps(self) -> tuple[frozenset[int] | None, frozenset[int] | None]:
        """(Get map, Set map) read once; None where the device would not say."""
        if not self._maps_read:
            result = await self.read([0x9F, 0x9E])
            self._get_map = self._decode_map(result.get(0x9F))
            self._set_map = self._decode_map(result.get(0x9E))
            self._maps_read = True
        return self._get_map, self._set_map

    def _decode_map(self, edt: bytes | None) -> frozenset[int] | None:
        if edt is None:
            return None
        try:
            return decode_property_map(edt)
        except PropertyMapError as exc:
            self.log.warning("unreadable property map", error=str(exc))
            return None

    async def can_get(self, epc: int) -> bool:
        get_map, _ = await self.maps()
        return get_map is None or epc in get_map

    async def can_set(self, epc: int) -> bool:
        _, set_map = await self.maps()
        return set_map is None or epc in set_map

    # ------------------------------------------------------------------------------ writing

    async def write(self, props: Sequence[tuple[int, object]]) -> datetime:
        """SetC values (typed, or raw bytes); any refusal raises :class:`EchonetRefused`."""
        encoded: list[tuple[int, bytes]] = []
        for epc, value in props:
            if isinstance(value, bytes):
                encoded.append((epc, value))
                continue
            spec = spec_for(self.eoj.class_id, epc)
            if spec is None:
                raise EchonetSetpointError(self.name, f"no specification for EPC 0x{epc:02X}")
            try:
                encoded.append((epc, spec.encode(value)))
            except PropertyError as exc:
                raise EchonetSetpointError(self.name, str(exc)) from None
        result = await self.transport.set(self.host, self.eoj, encoded, device=self.name)
        if result.refused:
            names = ", ".join(f"0x{e:02X}" for e in result.refused)
            raise EchonetRefused(self.name, f"device refused to set {names}", result.refused)
        return result.at

    async def confirm(
        self, what: str, epcs: Sequence[int], done: Callable[[GetResult], bool]
    ) -> GetResult:
        """Read ``epcs`` until ``done`` holds, or raise after ``confirm_timeout_s`` (clock time)."""
        deadline = self.clock.monotonic() + self.confirm_timeout_s
        while True:
            result = await self.read(epcs)
            if done(result):
                return result
            if self.clock.monotonic() >= deadline:
                state = ", ".join(
                    f"{e:02X}={self.decode(e, result.get(e))!r}" for e in epcs if e in result
                )
                raise EchonetNotFollowing(
                    self.name,
                    f"{what}: not done after {self.confirm_timeout_s:g} s ({state or 'no data'})",
                )
            await self.clock.sleep(self.confirm_poll_s)

    # --------------------------------------------------------------------------- polling

    async def poll(self) -> dict[str, Measured[Any]]:
        """The key readings of this device (reading key → measured value)."""
        return {}


# ---------------------------------------------------------------------------------- battery


class EchonetBattery(ModeCommands, EchonetDevice):
    """Storage battery 0x027D: BatteryState, BatteryInfo, BatteryControl, BatteryCounters."""

    kind = "battery"
    class_ids = (0x027D,)

    _MODE_CODES: ClassVar[Mapping[BatteryMode, int]] = {
        BatteryMode.CHARGE: 0x42,
        BatteryMode.DISCHARGE: 0x43,
        BatteryMode.STANDBY: 0x44,
        BatteryMode.AUTO: 0x46,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ratings: BatteryRatings | None = None

    async def _soc_epcs(self) -> list[int]:
        get_map, _ = await self.maps()
        if get_map is None or 0xE4 in get_map:
            return [0xE4, 0xE2]
        return [0xE2, 0xD0, 0xC7, 0xA0]

    def _soc(self, result: GetResult) -> float | None:
        pct = self.number(0xE4, result.get(0xE4))
        if pct is not None:
            return pct
        remaining = self.number(0xE2, result.get(0xE2))
        for epc in (0xD0, 0xC7, 0xA0):
            capacity = self.number(epc, result.get(epc))
            if remaining is not None and capacity:
                return round(100.0 * remaining / capacity, 1)
        return None

    # BatteryState
    async def soc_pct(self) -> Measured[float | None]:
        epcs = await self._soc_epcs()
        result = await self.read(epcs)
        if 0xE4 not in result and 0xE2 in result and not {0xD0, 0xC7, 0xA0} & set(epcs):
            result = await self.read([0xE2, 0xD0, 0xC7, 0xA0])
        return Measured(self._soc(result), result.at)

    async def power_w(self) -> Measured[float | None]:
        return await self.measure(0xD3, self.number)

    async def mode(self) -> Measured[BatteryMode | None]:
        return await self.measure(0xCF, self.mode_of)

    async def mode_setting(self) -> Measured[BatteryMode | None]:
        return await self.measure(0xDA, self.mode_of)

    async def remaining_wh(self) -> Measured[int | None]:
        return await self.measure(0xE2, self.watt_hours)

    # BatteryInfo
    async def ratings(self) -> BatteryRatings:
        if self._ratings is None:
            result = await self.read([0xC8, 0xC9, 0xD0, 0xC7, 0xDB])
            charge = self.decode(0xC8, result.get(0xC8))
            discharge = self.decode(0xC9, result.get(0xC9))
            capacity = self.watt_hours(0xD0, result.get(0xD0)) or self.watt_hours(
                0xC7, result.get(0xC7)
            )
            flow = self.decode(0xDB, result.get(0xDB))
            self._ratings = BatteryRatings(
                max_charge_w=_field(charge, "max"),
                max_discharge_w=_field(discharge, "max"),
                min_charge_w=_field(charge, "min"),
                min_discharge_w=_field(discharge, "min"),
                capacity_wh=capacity,
                reverse_flow_ok=None if flow is None else flow == "reverse_flow_ok",
            )
        return self._ratings

    # BatteryCounters
    async def charged_wh(self) -> Measured[int | None]:
        return await self._counter(0xA8, 0xD8)

    async def discharged_wh(self) -> Measured[int | None]:
        return await self._counter(0xA9, 0xD6)

    async def _counter(self, ac: int, dc: int) -> Measured[int | None]:
        result = await self.read([ac, dc])
        value = self.watt_hours(ac, result.get(ac))
        if value is None:
            value = self.watt_hours(dc, result.get(dc))
        return Measured(value, result.at)

    # BatteryControl (the verbs come from ModeCommands)
    async def _run(self, mode: BatteryMode, watts: int | None) -> None:
        """The AIF-style sequence: check, amount, method and power, mode, confirm on CF/D3."""
        if watts is not None and (isinstance(watts, bool) or int(watts) != watts or watts <= 0):
            raise EchonetSetpointError(self.name, f"{mode.value} needs watts > 0, got {watts!r}")
        await self.maps()
        state = await self.read([0xDB, 0xC8, 0xC9, 0xA4, 0xA5, 0xE4])
        if mode is BatteryMode.CHARGE or mode is BatteryMode.DISCHARGE:
            assert watts is not None
            charging = mode is BatteryMode.CHARGE
            rng_epc, amount_epc, energy_epc = (0xC8, 0xAA, 0xA4) if charging else (0xC9, 0xAB, 0xA5)
            method_epc, power_epc = (0xC1, 0xEB) if charging else (0xC2, 0xEC)
            rng = self.decode(rng_epc, state.get(rng_epc))
            low, high = _field(rng, "min"), _field(rng, "max")
            if high is not None and watts > high:
                raise EchonetSetpointError(
                    self.name, f"{mode.value} {watts} W is above the device's maximum {high} W"
                )
            if low is not None and watts < low:
                raise EchonetSetpointError(
                    self.name, f"{mode.value} {watts} W is below the device's minimum {low} W"
                )
            energy = self.watt_hours(energy_epc, state.get(energy_epc))
            if energy == 0:
                why = "full" if charging else "empty"
                raise EchonetSetpointError(
                    self.name, f"cannot {mode.value}: the battery is {why} (0x{energy_epc:02X}=0)"
                )
            if energy is not None and await self.can_set(amount_epc):
                # The battery keeps moving between the read of A4/A5 and this Set, and a device
                # refuses an amount above what it can take *now*: leave a minute's worth.
                headroom = -(-watts // 60)
                amount = max(1, min(energy, 999_999_999) - headroom)
                await self.write([(amount_epc, amount)])
            if await self.can_set(method_epc) and await self.can_set(power_epc):
                await self.write([(method_epc, "designated_power"), (power_epc, watts)])
        await self.write([(0xDA, self._MODE_CODES[mode])])
        self.log.info("battery mode set", mode=mode.value, watts=watts)

        def done(result: GetResult) -> bool:
            actual = _mode(self.decode(0xCF, result.get(0xCF)))
            if actual is not mode:
                return False
            power = self.number(0xD3, result.get(0xD3))
            if power is None:
                return True
            if mode is BatteryMode.CHARGE:
                return power > 0
            if mode is BatteryMode.DISCHARGE:
                return power < 0
            return True

        await self.confirm(f"{mode.value} (DA=0x{self._MODE_CODES[mode]:02X})", [0xCF, 0xD3], done)
        self.log.info("battery confirmed", mode=mode.value)

    async def poll(self) -> dict[str, Measured[Any]]:
        epcs = [*await self._soc_epcs(), 0xD3, 0xCF, 0xA8, 0xA9, 0xD8, 0xD6]
        r = await self.read(epcs)
        mode = _mode(self.decode(0xCF, r.get(0xCF)))
        charged = self.watt_hours(0xA8, r.get(0xA8))
        discharged = self.watt_hours(0xA9, r.get(0xA9))
        return {
            BATTERY_SOC_PCT: Measured(self._soc(r), r.at),
            BATTERY_POWER_W: Measured(self.number(0xD3, r.get(0xD3)), r.at),
            BATTERY_MODE: Measured(mode.value if mode else None, r.at),
            BATTERY_REMAINING_WH: Measured(self.watt_hours(0xE2, r.get(0xE2)), r.at),
            BATTERY_CHARGED_WH: Measured(
                charged if charged is not None else self.watt_hours(0xD8, r.get(0xD8)), r.at
            ),
            BATTERY_DISCHARGED_WH: Measured(
                discharged if discharged is not None else self.watt_hours(0xD6, r.get(0xD6)),
                r.at,
            ),
        }


def _field(value: Decoded, name: str) -> int | None:
    if isinstance(value, dict):
        item = value.get(name)
        if isinstance(item, int):
            return item
    return None


# --------------------------------------------------------------------------------------- PV


class EchonetPv(EchonetDevice):
    """Household PV 0x0279: PvState, PvLimit (A0 %, A1 W, read back)."""

    kind = "pv"
    class_ids = (0x0279,)

    async def generation_w(self) -> Measured[float | None]:
        return await self.measure(0xE0, self.number)

    async def generated_wh(self) -> Measured[int | None]:
        return await self.measure(0xE1, self.watt_hours)

    async def sold_wh(self) -> Measured[int | None]:
        return await self.measure(0xE3, self.watt_hours)

    async def fit_contract(self) -> Measured[str | None]:
        """C1: "fit", "non_fit" or "not_set" (the FIT rule's confirmation)."""
        result = await self.read([0xC1])
        value = self.decode(0xC1, result.get(0xC1))
        return Measured(value if isinstance(value, str) else None, result.at)

    async def rated_w(self) -> float | None:
        """E8, the rated output (how a limit in W is shared between several inverters)."""
        result = await self.read([0xE8])
        value = self.number(0xE8, result.get(0xE8))
        return None if value is None else float(value)

    async def limits(self) -> Measured[tuple[int | None, int | None]]:
        """Current output limits (A0 %, A1 W)."""
        result = await self.read([0xA0, 0xA1])
        pct = self.number(0xA0, result.get(0xA0))
        watts = self.number(0xA1, result.get(0xA1))
        return Measured(
            (None if pct is None else int(pct), None if watts is None else int(watts)), result.at
        )

    async def limit_pct(self, pct: int | None) -> None:
        """Curtail to ``pct`` % of rated output; None lifts the limit (100 %)."""
        value = 100 if pct is None else pct
        if isinstance(value, bool) or not 0 <= value <= 100:
            raise EchonetSetpointError(self.name, f"limit must be 0..100 %, got {pct!r}")
        await self._set_and_check(0xA0, value)

    async def limit_w(self, watts: int | None) -> None:
        """Curtail to ``watts``; None lifts the limit (back to the rated output)."""
        if watts is None:
            rated = await self.read([0xE8])
            value = self.number(0xE8, rated.get(0xE8))
            watts = int(value) if value is not None else 65533
        if isinstance(watts, bool) or not 0 <= watts <= 65533:
            raise EchonetSetpointError(self.name, f"limit must be 0..65533 W, got {watts!r}")
        await self._set_and_check(0xA1, watts)

    async def _set_and_check(self, epc: int, value: int) -> None:
        await self.write([(epc, value)])
        await self.confirm(
            f"output limit 0x{epc:02X}={value}",
            [epc],
            lambda r: self.number(epc, r.get(epc)) == value,
        )
        self.log.info("PV limit set", epc=f"{epc:02X}", value=value)

    async def poll(self) -> dict[str, Measured[Any]]:
        r = await self.read([0xE0, 0xE1, 0xE3, 0xA0, 0xA1])
        return {
            PV_POWER_W: Measured(self.number(0xE0, r.get(0xE0)), r.at),
            PV_GENERATED_WH: Measured(self.watt_hours(0xE1, r.get(0xE1)), r.at),
            PV_SOLD_WH: Measured(self.watt_hours(0xE3, r.get(0xE3)), r.at),
            PV_LIMIT_PCT: Measured(self.number(0xA0, r.get(0xA0)), r.at),
            PV_LIMIT_W: Measured(self.number(0xA1, r.get(0xA1)), r.at),
        }


# ------------------------------------------------------------------------------ water heater


class EchonetWaterHeater(EchonetDevice):
    """Electric water heater 0x026B: WaterHeaterControl (the up-DR lever)."""

    kind = "water_heater"
    class_ids = (0x026B,)

    async def start_heating(self) -> None:
        await self._automatic("manual_heating")

    async def stop_heating(self) -> None:
        await self._automatic("manual_stop")

    async def auto(self) -> None:
        """Hand heating back to the unit's own schedule (after a DR event)."""
        await self._automatic("auto")

    async def _automatic(self, setting: str) -> None:
        await self.write([(0xB0, setting)])
        # A full tank ends manual heating at once (B0 back to auto), which is not a failure.
        accepted = {setting, "auto"} if setting == "manual_heating" else {setting}
        await self.confirm(
            f"heating {setting}", [0xB0], lambda r: self.decode(0xB0, r.get(0xB0)) in accepted
        )
        self.log.info("water heater set", automatic_heating=setting)

    async def heating(self) -> Measured[bool | None]:
        result = await self.read([0xB2])
        value = self.decode(0xB2, result.get(0xB2))
        return Measured(None if value is None else value == "heating", result.at)

    async def daytime_reheating(self, permitted: bool) -> None:
        await self.write([(0xC0, "permitted" if permitted else "not_permitted")])

    async def poll(self) -> dict[str, Measured[Any]]:
        r = await self.read([0xB0, 0xB2, 0xE1])
        status = self.decode(0xB2, r.get(0xB2))
        return {
            "water_heater.heating": Measured(None if status is None else status == "heating", r.at),
            "water_heater.setting": Measured(self.decode(0xB0, r.get(0xB0)), r.at),
            "water_heater.remaining_l": Measured(self.number(0xE1, r.get(0xE1)), r.at),
        }


# ---------------------------------------------------------------------------------- aircon


class EchonetAircon(EchonetDevice):
    """Home air conditioner 0x0130: AirconSaving (the down-DR lever)."""

    kind = "aircon"
    class_ids = (0x0130,)

    async def power_saving(self, on: bool) -> None:
        setting = "saving" if on else "normal"
        await self.write([(0x8F, setting)])
        await self.confirm(
            f"power saving {setting}", [0x8F], lambda r: self.decode(0x8F, r.get(0x8F)) == setting
        )
        self.log.info("aircon power saving", on=on)

    async def saving(self) -> Measured[bool | None]:
        result = await self.read([0x8F])
        value = self.decode(0x8F, result.get(0x8F))
        return Measured(None if value is None else value == "saving", result.at)

    async def set_temperature(self, celsius: int) -> None:
        await self.write([(0xB3, celsius)])

    async def power_w(self) -> Measured[float | None]:
        return await self.measure(0x84, self.number)

    async def poll(self) -> dict[str, Measured[Any]]:
        r = await self.read([0x80, 0x8F, 0xB3, 0x84])
        saving = self.decode(0x8F, r.get(0x8F))
        return {
            "aircon.on": Measured(self.decode(0x80, r.get(0x80)) == "on", r.at),
            "aircon.power_saving": Measured(None if saving is None else saving == "saving", r.at),
            "aircon.target_c": Measured(self.number(0xB3, r.get(0xB3)), r.at),
            "aircon.power_w": Measured(self.number(0x84, r.get(0x84)), r.at),
        }


# -------------------------------------------------------------------------------------- EV


class EchonetV2h(EchonetDevice):
    """EV charger/discharger (V2H) 0x027E: a battery on wheels, when a car is plugged in."""

    kind = "ev"
    class_ids = (0x027E,)

    _CODES: ClassVar[Mapping[BatteryMode, int]] = {
        BatteryMode.CHARGE: 0x42,
        BatteryMode.DISCHARGE: 0x43,
        BatteryMode.STANDBY: 0x44,
        BatteryMode.AUTO: 0x49,
    }

    async def soc_pct(self) -> Measured[float | None]:
        return await self.measure(0xE4, self.number)

    async def power_w(self) -> Measured[float | None]:
        return await self.measure(0xD3, self.number)

    async def mode(self) -> Measured[BatteryMode | None]:
        result = await self.read([0xE1, 0xDA])
        name = self.decode(0xE1, result.get(0xE1))
        if name is None:
            name = self.decode(0xDA, result.get(0xDA))
            if name == "automatic" or name == "auto":
                return Measured(BatteryMode.AUTO, result.at)
        return Measured(_mode(name), result.at)

    async def vehicle(self) -> Measured[str | None]:
        """C7: not_connected, connected, chargeable, dischargeable..."""
        result = await self.read([0xC7])
        value = self.decode(0xC7, result.get(0xC7))
        return Measured(value if isinstance(value, str) else None, result.at)

    async def charge(self, watts: int) -> None:
        await self._run(BatteryMode.CHARGE, 0xEB, watts)

    async def discharge(self, watts: int) -> None:
        await self._run(BatteryMode.DISCHARGE, 0xEC, watts)

    async def standby(self) -> None:
        await self._run(BatteryMode.STANDBY, None, None)

    async def auto(self) -> None:
        await self._run(BatteryMode.AUTO, None, None)

    async def _run(self, mode: BatteryMode, power_epc: int | None, watts: int | None) -> None:
        if power_epc is not None and watts is not None and await self.can_set(power_epc):
            await self.write([(power_epc, watts)])
        code = self._CODES[mode]
        await self.write([(0xDA, code)])

        def done(result: GetResult) -> bool:
            if 0xE1 in result and mode is not BatteryMode.AUTO:
                return _mode(self.decode(0xE1, result.get(0xE1))) is mode
            return result.get(0xDA) == bytes((code,))

        await self.confirm(f"EV {mode.value}", [0xE1, 0xDA], done)

    async def poll(self) -> dict[str, Measured[Any]]:
        r = await self.read([0xE4, 0xD3, 0xE1, 0xC7])
        mode = _mode(self.decode(0xE1, r.get(0xE1)))
        return {
            "ev.soc_pct": Measured(self.number(0xE4, r.get(0xE4)), r.at),
            "ev.power_w": Measured(self.number(0xD3, r.get(0xD3)), r.at),
            "ev.mode": Measured(mode.value if mode else None, r.at),
            "ev.vehicle": Measured(self.decode(0xC7, r.get(0xC7)), r.at),
        }


class EchonetEvCharger(EchonetDevice):
    """EV charger 0x02A1: charge or stand by; it cannot discharge."""

    kind = "ev"
    class_ids = (0x02A1,)

    async def soc_pct(self) -> Measured[float | None]:
        return await self.measure(0xE4, self.number)

    async def power_w(self) -> Measured[float | None]:
        return await self.measure(0xD3, self.number)

    async def mode(self) -> Measured[BatteryMode | None]:
        return await self.measure(0xDA, self.mode_of)

    async def charge(self, watts: int) -> None:
        if await self.can_set(0xEB):
            await self.write([(0xEB, watts)])
        await self._mode(0x42)

    async def standby(self) -> None:
        await self._mode(0x44)

    async def _mode(self, code: int) -> None:
        await self.write([(0xDA, code)])
        await self.confirm(
            f"EV charger DA=0x{code:02X}", [0xDA], lambda r: r.get(0xDA) == bytes((code,))
        )

    async def poll(self) -> dict[str, Measured[Any]]:
        r = await self.read([0xE4, 0xD3, 0xDA])
        mode = _mode(self.decode(0xDA, r.get(0xDA)))
        return {
            "ev.soc_pct": Measured(self.number(0xE4, r.get(0xE4)), r.at),
            "ev.power_w": Measured(self.number(0xD3, r.get(0xD3)), r.at),
            "ev.mode": Measured(mode.value if mode else None, r.at),
        }


# ----------------------------------------------------------------------------- the daemon side

_ADAPTERS: Final[Mapping[int, type[EchonetDevice]]] = {
    0x027D: EchonetBattery,
    0x0279: EchonetPv,
    0x026B: EchonetWaterHeater,
    0x0130: EchonetAircon,
    0x027E: EchonetV2h,
    0x02A1: EchonetEvCharger,
}


def adapter_for(
    device: DeviceConfig, transport: EchonetTransport, clock: Clock, **options: Any
) -> EchonetDevice:
    """The adapter for a ``[[device]]`` with ``protocol = "echonet"`` (chosen by its EOJ class)."""
    if device.host is None or device.eoj is None:
        raise ValueError(f"{device.name}: an ECHONET device needs host and eoj")
    eoj = EOJ.parse(device.eoj)
    cls = _ADAPTERS.get(eoj.class_id)
    if cls is None:
        raise ValueError(f"{device.name}: no adapter for ECHONET class {eoj.class_id:04X}")
    return cls(device.name, device.host, eoj, transport, clock, **options)


class EchonetPoller(DevicePoller):
    """The device's poller, which also polls at once when the device announces a change (INF)."""

    failures_of = (EchonetError,)

    def __init__(
        self,
        device: EchonetDevice,
        clock: Clock,
        on_reading: ReadingCallback,
        poll_s: float = 10.0,
    ) -> None:
        super().__init__(device, clock, on_reading, poll_s)
        self.device: EchonetDevice = device

    def _heard(self, note: Notification) -> None:
        self.wake()

    async def run(self) -> None:
        unsubscribe = self.device.transport.subscribe(
            self._heard, host=self.device.host, eoj=self.device.eoj
        )
        try:
            await super().run()
        finally:
            unsubscribe()


@dataclass
class EchonetSetup:
    """What :func:`build_echonet` made: the transport, an adapter and a poller per device."""

    transport: EchonetTransport
    adapters: dict[str, EchonetDevice]
    pollers: list[EchonetPoller]

    @property
    def components(self) -> list[Any]:
        """Supervisor components: the transport (``echonet``) and one poller per device."""
        return [self.transport, *self.pollers]


def build_echonet(
    devices: Iterable[DeviceConfig],
    transport: EchonetTransport,
    clock: Clock,
    on_reading: ReadingCallback,
    **options: Any,
) -> EchonetSetup:
    """Adapters and pollers for every enabled ECHONET device of the config."""
    adapters: dict[str, EchonetDevice] = {}
    pollers: list[EchonetPoller] = []
    for device in devices:
        if device.protocol != "echonet" or not device.enabled:
            continue
        adapter = adapter_for(device, transport, clock, **options)
        adapters[device.name] = adapter
        pollers.append(EchonetPoller(adapter, clock, on_reading, device.poll_s))
    return EchonetSetup(transport, adapters, pollers)
