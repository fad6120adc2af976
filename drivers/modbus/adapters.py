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

from drivers.capabilities import BatteryMode, BatteryRatings, Measured
from drivers.modbus.energy import EnergyIntegrator
from drivers.modbus.link import DeviceHealth, LinkPool
from drivers.modbus.mapped import MappedBattery, MappedDevice, MappedPv, MappedPvLimit
from drivers.modbus.sunspec import (
    BASE_ADDRESSES,
    INVERTER_MODELS,
    CommonModel,
    InverterModel,
    ModelHeader,
    NameplateModel,
    StorageModel,
    StorageOffsets,
    StorCtl,
    SunSpecError,
    decode_common,
    decode_inverter,
    decode_nameplate,
    decode_storage,
    encode_scaled,
    has_marker,
    header_at,
)
from drivers.modbus.transport import (
    ModbusError,
    ModbusRefused,
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


class ModbusProtocolError(ModbusError):
    """The device answered, but not with a SunSpec image we can use."""


class ModbusSetpointError(ModbusError):
    """A setpoint the device cannot take (not positive, above WChaMax, no scale factor...)."""


class ModbusNotFollowing(ModbusError):
    """The device acknowledged a command but its registers did not read back as written."""


# --------------------------------------------------------------------------------------- base


class SunSpecDevice:
    """One SunSpec device behind a transport: discovery (once), model reads, decoding."""

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
    ) -> None:
        self.name = name
        self.transport = transport
        self.clock = clock
        self.bases = tuple(bases)
        self.confirm_timeout_s = confirm_timeout_s
        self.confirm_poll_s = confirm_poll_s
        self.log = get_logger("chisan.modbus.device", device=name)
        self._models: dict[int, ModelHeader] | None = None
        self._discovery = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.transport.settings.where})"

    def _decode(self, decode: Callable[..., _T], *args: Any) -> _T:
        """Run a codec function; its :class:`SunSpecError` becomes this device's error."""
        try:
            return decode(*args)
        except SunSpecError as exc:
            raise ModbusProtocolError(self.name, str(exc)) from None

    async def models(self) -> dict[int, ModelHeader]:
        """The model chain (first instance of each ID), discovered once and then cached."""
        async with self._discovery:
            if self._models is None:
                self._models = await self._discover()
                self.log.info("SunSpec models found", models=sorted(self._models))
            return self._models

    async def _discover(self) -> dict[int, ModelHeader]:
        base = await self._find_base()
        found: dict[int, ModelHeader] = {}
        address = base + 2
        for _ in range(64):
            words = await self.transport.read(address, 2)
            header = self._decode(header_at, address, words)
            if header is None:
                break
            found.setdefault(header.model_id, header)
            address = header.end
        else:
            raise ModbusProtocolError(self.name, "SunSpec model chain does not end")
        for group in self.required:
            if not any(m in found for m in group):
                want = " or ".join(str(m) for m in group)
                raise ModbusProtocolError(
                    self.name, f"a SunSpec {self.kind} needs model {want}; found {sorted(found)}"
                )
        return found

    async def _find_base(self) -> int:
        for base in self.bases:
            try:
                words = await self.transport.read(base, 2)
            except ModbusRefused:
                continue  # illegal address: not this base
            if self._decode(has_marker, words):
                return base
        raise ModbusProtocolError(
            self.name, f"no SunS marker at {', '.join(str(b) for b in self.bases)}"
        )

    async def read_model(self, model_id: int) -> tuple[list[int], datetime]:
        """The registers of one model and the (clock) time they were read."""
        header = (await self.models()).get(model_id)
        if header is None:
            raise ModbusProtocolError(self.name, f"device has no SunSpec model {model_id}")
        words = await self.transport.read(header.address, header.length)
        return words, self.clock.now()

    async def common(self) -> CommonModel:
        words, _ = await self.read_model(1)
        return self._decode(decode_common, words)

    async def inverter_id(self) -> int:
        models = await self.models()
        for model_id in INVERTER_MODELS:
            if model_id in models:
                return model_id
        raise ModbusProtocolError(self.name, "device has no inverter model 101-103")

    async def inverter(self) -> tuple[InverterModel, datetime]:
        model_id = await self.inverter_id()
        words, at = await self.read_model(model_id)
        return self._decode(decode_inverter, model_id, words), at

    async def poll(self) -> dict[str, Measured[Any]]:
        raise NotImplementedError


# ------------------------------------------------------------------------------------ battery


@dataclass(frozen=True)
class _Command:
    stor_ctl_mod: int
    rates: dict[int, int] = field(default_factory=dict)  # register offset -> raw word


class SunSpecBattery(SunSpecDevice):
    """Model 124 storage plus an inverter model: BatteryState/Info/Control/Counters.

    Power comes from the inverter model of an AC-coupled battery inverter, where W is + when the
    inverter delivers to AC: battery power (+ charging / - discharging) is therefore -W.
    """

    kind = "battery"
    required = ((124,), INVERTER_MODELS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.energy = EnergyIntegrator()
        self._ratings: BatteryRatings | None = None

    async def storage(self) -> tuple[StorageModel, datetime]:
        words, at = await self.read_model(124)
        return self._decode(decode_storage, words), at

    def _battery_power(self, inverter: InverterModel) -> float | None:
        power = None if inverter.w is None else -inverter.w
        if power is not None:
            self.energy.feed(power, self.clock.monotonic())
        return power

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

    # BatteryState
    async def soc_pct(self) -> Measured[float | None]:
        storage, at = await self.storage()
        return Measured(storage.cha_state_pct, at)

    async def power_w(self) -> Measured[float | None]:
        inverter, at = await self.inverter()
        return Measured(self._battery_power(inverter), at)

    async def mode(self) -> Measured[BatteryMode | None]:
        storage, at = await self.storage()
        return Measured(self.mode_of(storage), at)

    # BatteryInfo
    async def ratings(self) -> BatteryRatings:
        if self._ratings is None:
            storage, _ = await self.storage()
            nameplate: NameplateModel | None = None
            if 120 in await self.models():
                words, _ = await self.read_model(120)
                nameplate = self._decode(decode_nameplate, words)
            max_charge = storage.w_cha_max
            max_discharge = storage.w_cha_max  # OutWRte is a percent of WChaMax too
            capacity = None
            if nameplate is not None:
                max_charge = nameplate.max_cha_rte or max_charge
                max_discharge = nameplate.max_dis_cha_rte or max_discharge
                capacity = nameplate.wh_rtg
            self._ratings = BatteryRatings(
                max_charge_w=None if max_charge is None else int(max_charge),
                max_discharge_w=None if max_discharge is None else int(max_discharge),
                capacity_wh=None if capacity is None else int(capacity),
            )
        return self._ratings

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

    # BatteryControl
    async def charge(self, watts: int) -> None:
        await self._run(BatteryMode.CHARGE, watts)

    async def discharge(self, watts: int) -> None:
        await self._run(BatteryMode.DISCHARGE, watts)

    async def standby(self) -> None:
        await self._run(BatteryMode.STANDBY, None)

    async def auto(self) -> None:
        await self._run(BatteryMode.AUTO, None)

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

    async def _run(self, mode: BatteryMode, watts: int | None) -> None:
        if watts is not None and (isinstance(watts, bool) or int(watts) != watts or watts <= 0):
            raise ModbusSetpointError(self.name, f"{mode.value} needs watts > 0, got {watts!r}")
        storage, _ = await self.storage()
        command = self._command(mode, watts, storage)
        base = (await self.models())[124].address
        # Rates first, then StorCtl_Mod: the device never acts on a stale rate.
        if command.rates:
            first = min(command.rates)
            last = max(command.rates)
            current = {
                StorageOffsets.OUT_W_RTE: storage.raw_out_w_rte,
                StorageOffsets.IN_W_RTE: storage.raw_in_w_rte,
            }
            words = [command.rates.get(k, current.get(k, 0)) for k in range(first, last + 1)]
            await self.transport.write(base + first, words)
        await self.transport.write(base + StorageOffsets.STOR_CTL_MOD, [command.stor_ctl_mod])
        self.log.info("battery mode set", mode=mode.value, watts=watts)
        await self._confirm(mode, command)
        self.log.info("battery confirmed", mode=mode.value)

    async def _confirm(self, mode: BatteryMode, command: _Command) -> None:
        deadline = self.clock.monotonic() + self.confirm_timeout_s
        while True:
            storage, _ = await self.storage()
            raw = {
                StorageOffsets.OUT_W_RTE: storage.raw_out_w_rte,
                StorageOffsets.IN_W_RTE: storage.raw_in_w_rte,
            }
            if storage.stor_ctl_mod == command.stor_ctl_mod and all(
                raw[k] == v for k, v in command.rates.items()
            ):
                return
            if self.clock.monotonic() >= deadline:
                raise ModbusNotFollowing(
                    self.name,
                    f"{mode.value}: StorCtl_Mod={storage.stor_ctl_mod} InWRte={raw[11]} "
                    f"OutWRte={raw[10]} after {self.confirm_timeout_s:g} s "
                    f"(wanted StorCtl_Mod={command.stor_ctl_mod} {command.rates})",
                )
            await self.clock.sleep(self.confirm_poll_s)

    async def poll(self) -> dict[str, Measured[Any]]:
        storage, at = await self.storage()
        inverter, _ = await self.inverter()
        power = self._battery_power(inverter)
        mode = self.mode_of(storage)
        ratings = await self.ratings()
        remaining = None
        if storage.cha_state_pct is not None and ratings.capacity_wh:
            remaining = round(ratings.capacity_wh * storage.cha_state_pct / 100)
        return {
            BATTERY_SOC_PCT: Measured(storage.cha_state_pct, at),
            BATTERY_POWER_W: Measured(power, at),
            BATTERY_MODE: Measured(mode.value if mode else None, at),
            BATTERY_REMAINING_WH: Measured(remaining, at),
            BATTERY_CHARGED_WH: Measured(self.energy.charged_wh, at),
            BATTERY_DISCHARGED_WH: Measured(self.energy.discharged_wh, at),
            "battery.charge_source": Measured(storage.cha_gri_set, at),
        }


# ----------------------------------------------------------------------------------------- PV


class SunSpecPv(SunSpecDevice):
    """A PV inverter (models 101-103): PvState. Curtailment (model 123) is not implemented."""

    kind = "pv"
    required = (INVERTER_MODELS,)

    async def generation_w(self) -> Measured[float | None]:
        inverter, at = await self.inverter()
        return Measured(inverter.w, at)

    async def generated_wh(self) -> Measured[int | None]:
        inverter, at = await self.inverter()
        return Measured(inverter.wh, at)

    async def poll(self) -> dict[str, Measured[Any]]:
        inverter, at = await self.inverter()
        return {
            PV_POWER_W: Measured(inverter.w, at),
            PV_GENERATED_WH: Measured(inverter.wh, at),
            "pv.status": Measured(inverter.status, at),
        }


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
