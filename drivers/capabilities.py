"""Capabilities: the small interfaces device adapters implement and the gateway core composes.

The core never asks "is this an ECHONET battery?"; it asks "can this thing tell me its SOC?" An
ECHONET storage battery and a Modbus hybrid inverter implement the same protocols and pass the
same contract tests (tests/drivers/test_capabilities_contract.py). Every value is returned with the
time it was measured, so the interlock can refuse stale data. ``None`` means the device said "no
data" (a sentinel), never zero.

Sign conventions, everywhere: meter power is + import / - export; battery power is + charging /
- discharging.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Generic, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


class DeviceError(Exception):
    """A device did not answer, refused, or answered nonsense. Carries the device name."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"{device}: {message}")


@dataclass(frozen=True)
class Measured(Generic[T]):
    """A value with the wall time (JST) it was measured at."""

    value: T
    at: datetime


class BatteryMode(StrEnum):
    CHARGE = "charge"
    RAPID_CHARGE = "rapid_charge"
    DISCHARGE = "discharge"
    STANDBY = "standby"
    AUTO = "auto"
    OTHER = "other"


@dataclass(frozen=True)
class Boundary:
    """Cumulative energy at a 30-minute boundary, in exact integer Wh.

    ``modulus_wh`` is where the counter wraps (10^digits × unit), so the core computes slot energy
    without knowing the meter's coefficient or unit. ``None`` = the meter had no data.
    """

    at: datetime
    import_wh: int | None
    export_wh: int | None
    modulus_wh: int


@dataclass(frozen=True)
class BatteryRatings:
    """What bounds any setpoint: device ratings and capability (rule 7 of the interlock)."""

    max_charge_w: int | None
    max_discharge_w: int | None
    min_charge_w: int | None = None
    min_discharge_w: int | None = None
    capacity_wh: int | None = None
    reverse_flow_ok: bool | None = None


@runtime_checkable
class PowerMeter(Protocol):
    async def power_w(self) -> Measured[float | None]: ...


@runtime_checkable
class PhaseCurrents(Protocol):
    async def currents_a(self) -> Measured[tuple[float | None, float | None]]: ...


@runtime_checkable
class EnergyCounters(Protocol):
    async def import_kwh(self) -> Measured[float | None]: ...

    async def export_kwh(self) -> Measured[float | None]: ...


@runtime_checkable
class IntervalMeter(Protocol):
    """The settlement source: boundary readings and the meter's own history."""

    async def boundary(self) -> Boundary | None: ...

    async def history_day(self, day: date) -> list[Boundary]: ...

    async def history_recent(self, end: datetime, count: int) -> list[Boundary]: ...


@runtime_checkable
class BatteryState(Protocol):
    async def soc_pct(self) -> Measured[float | None]: ...

    async def power_w(self) -> Measured[float | None]: ...

    async def mode(self) -> Measured[BatteryMode | None]: ...


@runtime_checkable
class BatteryInfo(Protocol):
    async def ratings(self) -> BatteryRatings: ...


@runtime_checkable
class BatteryControl(Protocol):
    """Setpoints in W; the adapter follows the device's own sequence and confirms by read-back."""

    async def charge(self, watts: int) -> None: ...

    async def discharge(self, watts: int) -> None: ...

    async def standby(self) -> None: ...

    async def auto(self) -> None: ...


class ModeCommands:
    """BatteryControl as one command path: every verb becomes ``_run(mode, watts)``.

    Each battery adapter validates, sends and confirms a mode change in its own protocol's
    sequence; inheriting the four verbs from here keeps the verb → (mode, watts) mapping in one
    place for all of them.
    """

    async def _run(self, mode: BatteryMode, watts: int | None) -> None:
        raise NotImplementedError

    async def charge(self, watts: int) -> None:
        await self._run(BatteryMode.CHARGE, watts)

    async def discharge(self, watts: int) -> None:
        await self._run(BatteryMode.DISCHARGE, watts)

    async def standby(self) -> None:
        await self._run(BatteryMode.STANDBY, None)

    async def auto(self) -> None:
        await self._run(BatteryMode.AUTO, None)


@runtime_checkable
class BatteryCounters(Protocol):
    async def charged_wh(self) -> Measured[int | None]: ...

    async def discharged_wh(self) -> Measured[int | None]: ...


@runtime_checkable
class PvState(Protocol):
    async def generation_w(self) -> Measured[float | None]: ...

    async def generated_wh(self) -> Measured[int | None]: ...


@runtime_checkable
class PvLimit(Protocol):
    async def limit_pct(self, pct: int | None) -> None: ...

    async def limit_w(self, watts: int | None) -> None: ...


@runtime_checkable
class WaterHeaterControl(Protocol):
    async def start_heating(self) -> None: ...

    async def stop_heating(self) -> None: ...

    async def heating(self) -> Measured[bool | None]: ...


@runtime_checkable
class AirconSaving(Protocol):
    async def power_saving(self, on: bool) -> None: ...


__all__ = [
    "AirconSaving",
    "BatteryControl",
    "BatteryCounters",
    "BatteryInfo",
    "BatteryMode",
    "BatteryRatings",
    "BatteryState",
    "Boundary",
    "DeviceError",
    "EnergyCounters",
    "IntervalMeter",
    "Measured",
    "PhaseCurrents",
    "PowerMeter",
    "PvLimit",
    "PvState",
    "WaterHeaterControl",
]
