"""SunSpec Modbus devices as capabilities: the same battery and PV interfaces as ECHONET.

Nothing register-shaped leaves this module: callers get watts, percent, Wh and
:class:`BatteryMode`, each as a :class:`Measured` stamped with the injected clock when the device
answered, and failures as :class:`ModbusError` (a :class:`DeviceError` naming the device).

Model 124 has no "charge at N W" command, only limits: StorCtl_Mod says which of InWRte (charge)
and OutWRte (discharge) is in force, both as percent of WChaMax. So charge(W) is "charge limit
on at W", discharge(W) "discharge limit on at W", standby both limits at 0 %, auto no limits.
Every command is confirmed by reading the registers back; a device that acknowledges but does
not take the values within ``confirm_timeout_s`` raises :class:`ModbusNotFollowing`.

SunSpec has no battery energy counters, so :class:`SunSpecBattery` integrates its own power
readings (every read of the inverter model feeds :class:`EnergyIntegrator`); the counters start
at 0 with the adapter and are as good as the poll rate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from drivers.capabilities import BatteryMode, BatteryRatings, Measured, ModeCommands
from drivers.modbus.discovery import Chain, walk_chain
from drivers.modbus.energy import EnergyIntegrator
from drivers.modbus.link import DeviceHealth, LinkPool
from drivers.modbus.mapped import MappedBattery, MappedDevice, MappedPv, MappedPvLimit
from drivers.modbus.models import MODELS, ModelDef
from drivers.modbus.sunspec import (
    BASE_ADDRESSES,
    INVERTER_MODELS,
    CommonModel,
    DecodedModel,
    InverterModel,
    ModelHeader,
    NameplateModel,
    StorageModel,
    StorageOffsets,
    StorCtl,
    SunSpecError,
    Value,
    decode_common,
    decode_inverter,
    decode_model,
    decode_nameplate,
    decode_storage,
    encode_point,
    encode_scaled,
)
from drivers.modbus.transport import (
    ModbusError,
    ModbusSettings,
    ModbusTransport,
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
    "PV_POWER_W",
    "HealthCallback",
    "MappedBattery",
    "MappedPv",
    "ModbusDevice",
    "ModbusNotFollowing",
    "ModbusPoller",
    "ModbusProtocolError",
    "ModbusSetpointError",
    "ModbusSetup",
    "ReadingCallback",
    "SunSpecBattery",
    "SunSpecDevice",
    "SunSpecPv",
    "adapter_for",
    "build_modbus",
]

_T = TypeVar("_T")

DEFAULT_REVERT_S: Final = 300
"""Ten times the control loop's default re-assert period: a command outlives a few lost
writes but not a dead gateway."""


class ModbusProtocolError(ModbusError):
    """The device answered, but not with a SunSpec image we can use."""


class ModbusSetpointError(ModbusError):
    """A setpoint the device cannot take (not positive, above WChaMax, no scale factor...)."""


class ModbusNotFollowing(ModbusError):
    """The device acknowledged a command but its registers did not read back as written."""


# --------------------------------------------------------------------------------------- base


class SunSpecDevice:
    """One SunSpec device behind a transport: discovery (once), model reads, decoding, and the
    read-before-write / confirm / restore discipline every control follows."""

    kind: ClassVar[str] = "device"
    required: ClassVar[tuple[tuple[int, ...], ...]] = ()
    """Each entry: at least one of these model IDs must be present."""

    def __init__(
        self,
        name: str,
        transport: ModbusTransport,
        clock: Clock,
        *,
        bases: Sequence[int] = BASE_ADDRESSES,
        confirm_timeout_s: float = 10.0,
        confirm_poll_s: float = 1.0,
        revert_s: int | None = DEFAULT_REVERT_S,
    ) -> None:
        self.name = name
        self.transport = transport
        self.clock = clock
        self.bases = tuple(bases)
        self.confirm_timeout_s = confirm_timeout_s
        self.confirm_poll_s = confirm_poll_s
        self.revert_s = revert_s or 0
        """Revert timer written with every command (0: none): if the gateway goes silent the
        device drops the command by itself. The control loop re-asserts well within it."""
        self.log = get_logger("chisan.modbus.device", device=name)
        self.chain: Chain | None = None
        self._models: dict[int, ModelHeader] | None = None
        self._discovery = asyncio.Lock()
        self._said: set[str] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.transport.settings.where})"

    def _once(self, message: str, **fields: Any) -> None:
        """Log a device problem the first time it is seen, not at every poll."""
        key = f"{message} {sorted(fields.items())}"
        if key not in self._said:
            self._said.add(key)
            self.log.warning(message, **fields)

    def _decode(self, decode: Callable[..., _T], *args: Any) -> _T:
        """Run a codec function; its :class:`SunSpecError` becomes this device's error."""
        try:
            return decode(*args)
        except SunSpecError as exc:
            self._once("SunSpec data not usable", error=str(exc))
            raise ModbusProtocolError(self.name, str(exc)) from None

    async def models(self) -> dict[int, ModelHeader]:
        """The usable models (first instance of each ID), discovered once and then cached."""
        async with self._discovery:
            if self._models is None:
                self._models = await self._discover()
                self.log.info("SunSpec models found", models=sorted(self._models))
            return self._models

    async def _discover(self) -> dict[int, ModelHeader]:
        try:
            chain = await walk_chain(self.transport.read, self.bases)
        except SunSpecError as exc:
            raise ModbusProtocolError(self.name, str(exc)) from None
        for note in chain.notes:
            self._once("SunSpec chain problem", problem=note)
        found = chain.usable
        for group in self.required:
            if not any(m in found for m in group):
                want = " or ".join(str(m) for m in group)
                raise ModbusProtocolError(
                    self.name, f"a SunSpec {self.kind} needs model {want}; found {sorted(found)}"
                )
        self.chain = chain
        return found

    async def read_model(self, model_id: int) -> tuple[list[int], datetime]:
        """The registers of one model and the (clock) time they were read."""
        header = (await self.models()).get(model_id)
        if header is None:
            raise ModbusProtocolError(self.name, f"device has no SunSpec model {model_id}")
        words = await self.transport.read(header.address, header.length)
        return words, self.clock.now()

    async def model(self, model_id: int) -> tuple[DecodedModel, datetime]:
        """One model decoded by its table."""
        words, at = await self.read_model(model_id)
        return self._decode(decode_model, model_id, words), at

    async def has(self, model_id: int) -> bool:
        return model_id in await self.models()

    async def common(self) -> CommonModel:
        words, _ = await self.read_model(1)
        return self._decode(decode_common, words)

    async def inverter_id(self) -> int:
        models = await self.models()
        for model_id in INVERTER_MODELS:
            if model_id in models:
                return model_id
        raise ModbusProtocolError(self.name, "device has no inverter model 101-103 or 111-113")

    async def inverter(self) -> tuple[InverterModel, datetime]:
        model_id = await self.inverter_id()
        words, at = await self.read_model(model_id)
        return self._decode(decode_inverter, model_id, words), at

    async def write_points(
        self, model_id: int, current: DecodedModel, values: Sequence[tuple[str, Value]]
    ) -> dict[str, list[int]]:
        """Write points in the given order (one request each: the order is the safety), with
        the scale factors just read in ``current``; returns the raw words written."""
        header = (await self.models())[model_id]
        definition = MODELS[model_id]
        written: dict[str, list[int]] = {}
        for name, value in values:
            point = definition.point(name)
            sf_raw = current.raw(point.sf) if point.sf is not None else None
            sf = sf_raw if isinstance(sf_raw, int) else None
            try:
                words = encode_point(point, value, sf)
            except SunSpecError as exc:
                raise ModbusSetpointError(self.name, str(exc)) from None
            await self.transport.write(header.address + point.offset, words)
            written[name] = words
        return written

    async def confirm(self, model_id: int, what: str, written: Mapping[str, list[int]]) -> None:
        """Read the model back until every written point holds what was written."""
        definition = MODELS[model_id]
        deadline = self.clock.monotonic() + self.confirm_timeout_s
        while True:
            words, _ = await self.read_model(model_id)
            wrong = {}
            for name, want in written.items():
                p = definition.point(name)
                got = words[p.offset : p.offset + p.size]
                if got != want:
                    wrong[name] = got
            if not wrong:
                return
            if self.clock.monotonic() >= deadline:
                raise ModbusNotFollowing(
                    self.name,
                    f"{what}: {', '.join(f'{k}={v}' for k, v in wrong.items())} after "
                    f"{self.confirm_timeout_s:g} s (wanted {dict(written)})",
                )
            await self.clock.sleep(self.confirm_poll_s)

    async def poll(self) -> dict[str, Measured[Any]]:
        raise NotImplementedError


def _raw_value(model: DecodedModel, definition: ModelDef, name: str) -> Value:
    """A point's value as the encoder takes it back (for restoring it exactly)."""
    point = definition.point(name)
    raw = model.raw(name)
    if point.sf is None or raw is None:
        return raw
    return model.get(name)


def _saved_values(
    current: DecodedModel, definition: ModelDef, names: Sequence[str]
) -> list[tuple[str, Value]]:
    """The points to write back at the end of a command; not-implemented ones are left alone
    (writing their sentinel would set them, e.g. a 65535 s timer)."""
    values = [(n, _raw_value(current, definition, n)) for n in names]
    return [(n, v) for n, v in values if v is not None]


def _restore_order(values: list[tuple[str, Value]]) -> list[tuple[str, Value]]:
    """Saved points are listed values first, enable last (the order a command writes them);
    a restore goes the other way, so the gateway's command ends with the first write."""
    return list(reversed(values))


@dataclass
class _Saved:
    """The device's control points as they were before the gateway's first command."""

    model_id: int
    values: list[tuple[str, Value]]


# ------------------------------------------------------------------------------------ battery


@dataclass(frozen=True)
class _Command:
    stor_ctl_mod: int
    rates: dict[int, int] = field(default_factory=dict)  # register offset -> raw word


_STORAGE_POINTS: Final = ("OutWRte", "InWRte", "InOutWRte_RvrtTms", "StorCtl_Mod")
_WSET_POINTS: Final = ("WSetMod", "WSet", "WSetRvrtTms", "WSetEna")


class SunSpecBattery(ModeCommands, SunSpecDevice):
    """A storage inverter: BatteryState/Info/Control/Counters.

    Controlled through model 704 (WSet, absolute watts) when the device has it, else model 124
    (StorCtl_Mod and InWRte/OutWRte, percent of WChaMax). Power comes from the AC side (an
    inverter model or 701) where W is + when the inverter delivers to AC: battery power (+
    charging / - discharging) is therefore -W. The first command saves the control points it
    will touch; :meth:`auto` writes them back, so an installer's own settings survive DR.
    """

    kind = "battery"
    required = ((124, 704), (*INVERTER_MODELS, 701), (124, 802, 713))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.energy = EnergyIntegrator()
        self._ratings: BatteryRatings | None = None
        self._saved: _Saved | None = None

    async def uses_wset(self) -> bool:
        """Whether commands go through model 704 (absolute watts) rather than 124."""
        models = await self.models()
        return 704 in models and (802 in models or 713 in models or 124 not in models)

    async def storage(self) -> tuple[StorageModel, datetime]:
        words, at = await self.read_model(124)
        return self._decode(decode_storage, words), at

    def _battery_power(self, ac_w: float | None) -> float | None:
        power = None if ac_w is None else -ac_w
        if power is not None:
            self.energy.feed(power, self.clock.monotonic())
        return power

    async def _ac_w(self) -> tuple[float | None, datetime]:
        models = await self.models()
        if any(m in models for m in INVERTER_MODELS):
            inverter, at = await self.inverter()
            return inverter.w, at
        ac, at = await self.model(701)
        value = ac.number("W")
        return (None if value is None else float(value)), at

    async def _soc(self) -> tuple[float | None, datetime]:
        models = await self.models()
        for model_id, point in ((802, "SoC"), (713, "SoC")):
            if model_id in models:
                m, at = await self.model(model_id)
                value = m.number(point)
                return (None if value is None else float(value)), at
        storage, at = await self.storage()
        return storage.cha_state_pct, at

    @staticmethod
    def mode_of(storage: StorageModel) -> BatteryMode | None:
        mod = storage.stor_ctl_mod
        if mod is None:
            return None
        if mod == 0:
            return BatteryMode.AUTO
        if mod == StorCtl.CHARGE:
            return BatteryMode.CHARGE
        if mod == StorCtl.DISCHARGE:
            return BatteryMode.DISCHARGE
        if mod == StorCtl.CHARGE | StorCtl.DISCHARGE and not (
            storage.in_w_rte_pct or storage.out_w_rte_pct
        ):
            return BatteryMode.STANDBY
        return BatteryMode.OTHER

    @staticmethod
    def mode_of_wset(controls: DecodedModel) -> BatteryMode | None:
        ena = controls.get("WSetEna")
        if ena is None:
            return None
        if ena == 0:
            return BatteryMode.AUTO
        if controls.get("WSetMod") == 1:
            wset = controls.number("WSet")
        else:
            wset = controls.number("WSetPct")
        if wset is None:
            return BatteryMode.OTHER
        if wset > 0:
            return BatteryMode.DISCHARGE
        if wset < 0:
            return BatteryMode.CHARGE
        return BatteryMode.STANDBY

    async def _mode(self) -> tuple[BatteryMode | None, datetime]:
        if await self.uses_wset():
            controls, at = await self.model(704)
            return self.mode_of_wset(controls), at
        storage, at = await self.storage()
        return self.mode_of(storage), at

    # BatteryState
    async def soc_pct(self) -> Measured[float | None]:
        soc, at = await self._soc()
        return Measured(soc, at)

    async def power_w(self) -> Measured[float | None]:
        ac_w, at = await self._ac_w()
        return Measured(self._battery_power(ac_w), at)

    async def mode(self) -> Measured[BatteryMode | None]:
        mode, at = await self._mode()
        return Measured(mode, at)

    # BatteryInfo
    async def ratings(self) -> BatteryRatings:
        if self._ratings is None:
            self._ratings = await self._read_ratings()
        return self._ratings

    async def _read_ratings(self) -> BatteryRatings:
        models = await self.models()
        max_charge: float | int | None = None
        max_discharge: float | int | None = None
        capacity: float | int | None = None
        if 802 in models:
            battery, _ = await self.model(802)
            max_charge = battery.number("WChaRteMax")
            max_discharge = battery.number("WDisChaRteMax")
            capacity = battery.number("WHRtg")
        if capacity is None and 713 in models:
            capacity = (await self.model(713))[0].number("WHRtg")
        if 124 in models:
            storage, _ = await self.storage()
            max_charge = max_charge or storage.w_cha_max
            max_discharge = max_discharge or storage.w_cha_max  # OutWRte: % of WChaMax too
        if 120 in models:
            words, _ = await self.read_model(120)
            nameplate: NameplateModel = self._decode(decode_nameplate, words)
            max_charge = nameplate.max_cha_rte or max_charge
            max_discharge = nameplate.max_dis_cha_rte or max_discharge
            capacity = capacity or nameplate.wh_rtg
        return BatteryRatings(
            max_charge_w=None if max_charge is None else int(max_charge),
            max_discharge_w=None if max_discharge is None else int(max_discharge),
            capacity_wh=None if capacity is None else int(capacity),
        )

    # BatteryCounters
    async def charged_wh(self) -> Measured[int | None]:
        _, at = await self.power_w_sample()
        return Measured(self.energy.charged_wh, at)

    async def discharged_wh(self) -> Measured[int | None]:
        _, at = await self.power_w_sample()
        return Measured(self.energy.discharged_wh, at)

    async def power_w_sample(self) -> tuple[float | None, datetime]:
        """Read the power (which brings the integrated counters up to now)."""
        measured = await self.power_w()
        return measured.value, measured.at

    # BatteryControl (charge, discharge and standby come from ModeCommands)
    async def auto(self) -> None:
        """End the gateway's command: the control points go back to what they were before it."""
        model_id = 704 if await self.uses_wset() else 124
        current, _ = await self.model(model_id)
        saved = self._saved
        if saved is None or saved.model_id != model_id:
            # Nothing of ours in force: hand control to the device without touching its limits.
            off = ("WSetEna", 0) if model_id == 704 else ("StorCtl_Mod", 0)
            values: list[tuple[str, Value]] = [off]
        else:
            values = _restore_order(saved.values)
        written = await self.write_points(model_id, current, values)
        self._saved = None
        self.log.info("battery mode set", mode=BatteryMode.AUTO.value, restored=dict(values))
        await self.confirm(model_id, BatteryMode.AUTO.value, written)

    def _save(self, model_id: int, current: DecodedModel, names: Sequence[str]) -> None:
        if self._saved is None or self._saved.model_id != model_id:
            d = MODELS[model_id]
            self._saved = _Saved(model_id, _saved_values(current, d, names))

    def _check_watts(self, mode: BatteryMode, watts: int | None) -> None:
        if watts is not None and (isinstance(watts, bool) or int(watts) != watts or watts <= 0):
            raise ModbusSetpointError(self.name, f"{mode.value} needs watts > 0, got {watts!r}")

    async def _run(self, mode: BatteryMode, watts: int | None) -> None:
        self._check_watts(mode, watts)
        if await self.uses_wset():
            await self._run_wset(mode, watts)
            return
        words, _ = await self.read_model(124)
        current = self._decode(decode_model, 124, words)
        storage = self._decode(decode_storage, words)
        command = self._command(mode, watts, storage)
        self._save(124, current, _STORAGE_POINTS)
        o = StorageOffsets
        values: list[tuple[str, Value]] = []
        # Rates and the revert timer first, then StorCtl_Mod: the device never acts on a stale
        # rate. Only the rate the command concerns is written; the other keeps its value.
        if o.OUT_W_RTE in command.rates:
            values.append(("OutWRte", _pct(command.rates[o.OUT_W_RTE], current)))
        if o.IN_W_RTE in command.rates:
            values.append(("InWRte", _pct(command.rates[o.IN_W_RTE], current)))
        if self.revert_s and current.raw("InOutWRte_RvrtTms") is not None:
            values.append(("InOutWRte_RvrtTms", self.revert_s))
        values.append(("StorCtl_Mod", command.stor_ctl_mod))
        written = await self.write_points(124, current, values)
        self.log.info("battery mode set", mode=mode.value, watts=watts)
        await self.confirm(124, mode.value, written)
        self.log.info("battery confirmed", mode=mode.value)

    async def _run_wset(self, mode: BatteryMode, watts: int | None) -> None:
        current, _ = await self.model(704)
        ratings = await self.ratings()
        target = 0
        top: int | None = None
        if mode is BatteryMode.CHARGE:
            assert watts is not None
            top = ratings.max_charge_w
            target = -watts
        elif mode is BatteryMode.DISCHARGE:
            assert watts is not None
            top = ratings.max_discharge_w
            target = watts
        if watts is not None and top is not None and watts > top:
            raise ModbusSetpointError(
                self.name, f"{mode.value} {watts} W is above the device's rating {top} W"
            )
        self._save(704, current, _WSET_POINTS)
        values: list[tuple[str, Value]] = [("WSetMod", 1), ("WSet", target)]
        if self.revert_s and current.raw("WSetRvrtTms") is not None:
            values.append(("WSetRvrtTms", self.revert_s))
        values.append(("WSetEna", 1))
        written = await self.write_points(704, current, values)
        self.log.info("battery mode set", mode=mode.value, watts=watts, wset=target)
        await self.confirm(704, mode.value, written)

    def _command(self, mode: BatteryMode, watts: int | None, storage: StorageModel) -> _Command:
        o = StorageOffsets
        if mode is BatteryMode.AUTO:
            return _Command(0)
        if mode is BatteryMode.STANDBY:
            return _Command(StorCtl.CHARGE | StorCtl.DISCHARGE, {o.OUT_W_RTE: 0, o.IN_W_RTE: 0})
        assert watts is not None
        top, sf = storage.w_cha_max, storage.in_out_w_rte_sf
        if not top or sf is None:
            raise ModbusSetpointError(
                self.name, "the device does not publish WChaMax/InOutWRte_SF: no power setpoint"
            )
        if watts > top:
            raise ModbusSetpointError(
                self.name, f"{mode.value} {watts} W is above the device's WChaMax {top:g} W"
            )
        try:
            raw = encode_scaled(100.0 * watts / top, sf, signed=True)
        except SunSpecError as exc:
            raise ModbusSetpointError(self.name, str(exc)) from None
        if mode is BatteryMode.CHARGE:
            return _Command(StorCtl.CHARGE, {o.IN_W_RTE: raw})
        return _Command(StorCtl.DISCHARGE, {o.OUT_W_RTE: raw})

    async def poll(self) -> dict[str, Measured[Any]]:
        models = await self.models()
        storage: StorageModel | None = None
        if 124 in models:  # one read serves SOC, mode and charge source
            storage, at = await self.storage()
        if storage is not None and not (802 in models or 713 in models):
            soc = storage.cha_state_pct
        else:
            soc, at = await self._soc()
        ac_w, _ = await self._ac_w()
        power = self._battery_power(ac_w)
        if storage is not None and not await self.uses_wset():
            mode = self.mode_of(storage)
        else:
            mode, _ = await self._mode()
        ratings = await self.ratings()
        remaining = None
        if soc is not None and ratings.capacity_wh:
            remaining = round(ratings.capacity_wh * soc / 100)
        readings: dict[str, Measured[Any]] = {
            BATTERY_SOC_PCT: Measured(soc, at),
            BATTERY_POWER_W: Measured(power, at),
            BATTERY_MODE: Measured(mode.value if mode else None, at),
            BATTERY_REMAINING_WH: Measured(remaining, at),
            BATTERY_CHARGED_WH: Measured(self.energy.charged_wh, at),
            BATTERY_DISCHARGED_WH: Measured(self.energy.discharged_wh, at),
        }
        if storage is not None:
            readings["battery.charge_source"] = Measured(storage.cha_gri_set, at)
        return readings


def _pct(raw: int, current: DecodedModel) -> float:
    """A rate word back to percent at the device's scale factor (for :meth:`write_points`)."""
    sf = current.raw("InOutWRte_SF")
    value = raw - 0x10000 if raw & 0x8000 else raw
    return float(value) * 10.0 ** (sf if isinstance(sf, int) else 0)


# ----------------------------------------------------------------------------------------- PV

_LIMIT_POINTS: Final = {
    123: ("WMaxLimPct", "WMaxLimPct_RvrtTms", "WMaxLim_Ena"),
    704: ("WMaxLimPct", "WMaxLimPctRvrtTms", "WMaxLimPctEna"),
}


class SunSpecPv(SunSpecDevice):
    """A PV inverter (models 101-103 or 111-113): PvState, and PvLimit through model 123
    (WMaxLimPct) or 704 when it has one.

    A DR limit never loosens a limit the installer set (the tighter one wins) and ending it
    (``None``) writes back the limit points as they were before the first command.
    """

    kind = "pv"
    required = (INVERTER_MODELS,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saved: _Saved | None = None

    async def generation_w(self) -> Measured[float | None]:
        inverter, at = await self.inverter()
        return Measured(inverter.w, at)

    async def generated_wh(self) -> Measured[int | None]:
        inverter, at = await self.inverter()
        return Measured(inverter.wh, at)

    async def limit_model(self) -> int | None:
        models = await self.models()
        return next((m for m in (123, 704) if m in models), None)

    async def rated_w(self) -> float | None:
        """WMax (121 or 702) if set, else the nameplate WRtg (120) or WMaxRtg (702)."""
        models = await self.models()
        for model_id, names in ((121, ("WMax",)), (702, ("WMax", "WMaxRtg")), (120, ("WRtg",))):
            if model_id in models:
                m, _ = await self.model(model_id)
                for name in names:
                    value = m.number(name)
                    if value:
                        return float(value)
        return None

    async def limits(self) -> Measured[tuple[float | None, float | None]]:
        """The output limit in force (percent, watts); 100 % when none is enabled."""
        model_id = await self.limit_model()
        if model_id is None:
            raise ModbusProtocolError(self.name, "device has no model 123 or 704: no PV limit")
        pct_name, _, ena_name = _LIMIT_POINTS[model_id]
        m, at = await self.model(model_id)
        pct = m.number(pct_name) if m.get(ena_name) == 1 else 100.0
        rated = await self.rated_w()
        watts = None if pct is None or rated is None else round(rated * pct / 100.0)
        return Measured((None if pct is None else float(pct), watts), at)

    async def limit_pct(self, pct: int | None) -> None:
        """Curtail to ``pct`` % of WMax; None ends the gateway's limit (restores the previous)."""
        if pct is not None and (isinstance(pct, bool) or not 0 <= pct <= 100):
            raise ModbusSetpointError(self.name, f"limit must be 0..100 %, got {pct!r}")
        await self._limit(None if pct is None else float(pct))

    async def limit_w(self, watts: int | None) -> None:
        """Curtail to ``watts`` (as a percent of WMax: SunSpec limits are relative)."""
        if watts is None:
            await self._limit(None)
            return
        if isinstance(watts, bool) or watts < 0:
            raise ModbusSetpointError(self.name, f"limit must be >= 0 W, got {watts!r}")
        rated = await self.rated_w()
        if not rated:
            raise ModbusSetpointError(self.name, "the device publishes no WMax/WRtg: no W limit")
        await self._limit(min(100.0, 100.0 * watts / rated))

    async def _limit(self, pct: float | None) -> None:
        model_id = await self.limit_model()
        if model_id is None:
            raise ModbusProtocolError(self.name, "device has no model 123 or 704: no PV limit")
        pct_name, rvrt_name, ena_name = _LIMIT_POINTS[model_id]
        current, _ = await self.model(model_id)
        if pct is None:
            if self._saved is None:
                return  # no limit of ours in force: the installer's settings stay as they are
            saved = _restore_order(self._saved.values)
            written = await self.write_points(model_id, current, saved)
            self._saved = None
            self.log.info("PV limit ended", restored=dict(saved))
            await self.confirm(model_id, "PV limit restore", written)
            return
        if self._saved is None:
            d = MODELS[model_id]
            names = (pct_name, rvrt_name, ena_name)
            self._saved = _Saved(model_id, _saved_values(current, d, names))
        installer = dict(self._saved.values)
        if installer.get(ena_name) == 1:
            theirs = installer.get(pct_name)
            if isinstance(theirs, int | float) and theirs < pct:
                self._once("PV limit kept at the installer's", installer_pct=theirs, asked=pct)
                pct = float(theirs)
        values: list[tuple[str, Value]] = [(pct_name, pct)]
        if self.revert_s and current.raw(rvrt_name) is not None:
            values.append((rvrt_name, self.revert_s))
        values.append((ena_name, 1))
        written = await self.write_points(model_id, current, values)
        self.log.info("PV limit set", model=model_id, pct=pct)
        await self.confirm(model_id, f"PV limit {pct:g} %", written)

    async def poll(self) -> dict[str, Measured[Any]]:
        inverter, at = await self.inverter()
        readings: dict[str, Measured[Any]] = {
            PV_POWER_W: Measured(inverter.w, at),
            PV_GENERATED_WH: Measured(inverter.wh, at),
            "pv.status": Measured(inverter.status, at),
        }
        if await self.limit_model() is not None:
            pct, watts = (await self.limits()).value
            readings[PV_LIMIT_PCT] = Measured(pct, at)
            readings[PV_LIMIT_W] = Measured(watts, at)
        return readings


# ----------------------------------------------------------------------------- the daemon side

_ADAPTERS: Final[dict[str, type[SunSpecDevice]]] = {
    "battery": SunSpecBattery,
    "pv": SunSpecPv,
}
_MAPPED: Final[dict[str, type[MappedDevice]]] = {
    "battery": MappedBattery,
    "pv": MappedPv,
}

ModbusDevice = SunSpecDevice | MappedDevice
HealthCallback = Callable[[str, DeviceHealth], None]


def adapter_for(
    device: DeviceConfig,
    clock: Clock,
    *,
    timeout_s: float | None = None,
    pool: LinkPool | None = None,
    tuning: Mapping[str, Any] | None = None,
    **options: Any,
) -> ModbusDevice:
    """The adapter for a ``protocol = "modbus"`` device: SunSpec or register map.

    With a ``pool``, devices on the same endpoint or serial line share its link; without, the
    adapter gets a link of its own. ``tuning`` overrides :class:`ModbusSettings` fields (the
    health thresholds: ``faulty_after``, ``backoff_s``, ``backoff_max_s``).
    """
    settings = ModbusSettings.from_device(device, timeout_s=timeout_s)
    if tuning:
        settings = replace(settings, **tuning)
    if device.sunspec:
        cls: type[ModbusDevice] | None = _ADAPTERS.get(device.kind)
    elif device.registers:
        cls = _MAPPED.get(device.kind)
        if cls is MappedPv and {"pv_limit_pct", "pv_limit_w"} & {
            r.meaning for r in device.registers
        }:
            cls = MappedPvLimit
    else:
        raise ValueError(f"{device.name}: a Modbus device needs sunspec = true or registers")
    if cls is None:
        raise ValueError(f"{device.name}: no Modbus adapter for a {device.kind}")
    link = pool.link(settings.link) if pool is not None else None
    transport = ModbusTransport(device.name, settings, link=link, monotonic=clock.monotonic)
    if issubclass(cls, MappedDevice):
        return cls(device.name, transport, clock, device.registers, **options)
    return cls(device.name, transport, clock, **options)


class ModbusPoller(DevicePoller):
    """The device's poller; it releases the device's link when stopped.

    A faulty device's transport refuses requests at once while it is backed off, so its poller
    keeps its rhythm without ever waiting on the link its neighbours use.
    """

    failures_of = (ModbusError,)

    def __init__(
        self, device: ModbusDevice, clock: Clock, on_reading: ReadingCallback, poll_s: float = 10.0
    ) -> None:
        super().__init__(device, clock, on_reading, poll_s)
        self.device: ModbusDevice = device

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            with contextlib.suppress(Exception):
                await self.device.transport.close()


@dataclass
class ModbusSetup:
    """What :func:`build_modbus` made: an adapter and a poller per device, and what it skipped."""

    adapters: dict[str, ModbusDevice]
    pollers: list[ModbusPoller]
    skipped: dict[str, str]
    pool: LinkPool = field(default_factory=LinkPool)

    @property
    def components(self) -> list[Any]:
        """Supervisor components: one poller per device (links are shared through ``pool``)."""
        return list(self.pollers)

    def health(self) -> dict[str, dict[str, Any]]:
        """Per device: ``ok`` or ``faulty``, with the consecutive failures and the last error."""
        out: dict[str, dict[str, Any]] = {}
        for name, adapter in self.adapters.items():
            h = adapter.transport.health
            entry: dict[str, Any] = {"status": "faulty" if h.faulty else "ok"}
            if h.faulty:
                entry["failures"] = h.consecutive
                entry["error"] = h.last_error
            out[name] = entry
        return out


def build_modbus(
    devices: Iterable[DeviceConfig],
    clock: Clock,
    on_reading: ReadingCallback,
    *,
    on_health: HealthCallback | None = None,
    tuning: Mapping[str, Any] | None = None,
    **options: Any,
) -> ModbusSetup:
    """Adapters and pollers for every enabled Modbus device, sharing one link per endpoint or
    serial line; unsupported ones are skipped (and named in ``skipped``) rather than stopping
    the daemon. ``on_health(name, health)`` hears when a device turns faulty or recovers."""
    adapters: dict[str, ModbusDevice] = {}
    pollers: list[ModbusPoller] = []
    skipped: dict[str, str] = {}
    pool = LinkPool(monotonic=clock.monotonic)
    log = get_logger("chisan.modbus")
    for device in devices:
        if device.protocol != "modbus" or not device.enabled:
            continue
        try:
            adapter = adapter_for(device, clock, pool=pool, tuning=tuning, **options)
        except ValueError as exc:
            skipped[device.name] = str(exc)
            log.warning("modbus device ignored", device=device.name, reason=str(exc))
            continue
        health = adapter.transport.health
        health.on_change = _reporter(device.name, on_health, log)
        adapters[device.name] = adapter
        pollers.append(ModbusPoller(adapter, clock, on_reading, device.poll_s))
    return ModbusSetup(adapters, pollers, skipped, pool)


def _reporter(
    name: str, on_health: HealthCallback | None, log: Any
) -> Callable[[DeviceHealth], None]:
    def changed(health: DeviceHealth) -> None:
        if health.faulty:
            log.warning(
                "modbus device faulty, backing off",
                device=name,
                failures=health.consecutive,
                error=health.last_error,
            )
        else:
            log.info("modbus device answers again", device=name)
        if on_health is not None:
            on_health(name, health)

    return changed
