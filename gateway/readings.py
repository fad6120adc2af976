"""The latest measurements, each with the time it was taken.

Drivers' adapters feed it; telemetry, the interlock and the demo read it. Keeping timestamps
beside values is what lets the interlock refuse stale meter data.

A home may have several devices of one kind (a rooftop PV on ECHONET Lite and a second array on a
SunSpec inverter). Keys declared with :meth:`ReadingsHub.sum_over` then hold the *sum* over the
named devices, dated by the OLDEST of the readings summed (a sum is never fresher than its
stalest part), and ``None`` (unknown, never a partial sum) while any part is unknown or has not
reported yet. Each device's own reading stays available from :meth:`ReadingsHub.by_device`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers.readings import (
    BATTERY_MODE,
    BATTERY_POWER_W,
    BATTERY_SOC_PCT,
    METER_CURRENTS_A,
    METER_EXPORT_KWH,
    METER_IMPORT_KWH,
    METER_POWER_W,
    PV_POWER_W,
)
from gateway.slots import iso

__all__ = [
    "BATTERY_MODE",
    "BATTERY_POWER_W",
    "BATTERY_SOC_PCT",
    "METER_CURRENTS_A",
    "METER_EXPORT_KWH",
    "METER_IMPORT_KWH",
    "METER_POWER_W",
    "PV_POWER_W",
    "Reading",
    "ReadingsHub",
]


@dataclass(frozen=True)
class Reading:
    value: Any
    at: datetime
    source: str


class ReadingsHub:
    """Latest value per key; subscribers hear about updates (the fail-safe watches the meter)."""

    def __init__(self) -> None:
        self._latest: dict[str, Reading] = {}
        self._listeners: list[Callable[[str, Reading], None]] = []
        self._parts: dict[str, tuple[str, ...]] = {}
        self._by_device: dict[str, dict[str, Reading]] = {}
        self._device_listeners: list[Callable[[str, str, Reading], None]] = []

    def sum_over(self, key: str, devices: Iterable[str]) -> None:
        """From now on ``key`` is the sum of these devices' readings of it."""
        names = tuple(dict.fromkeys(devices))
        if not names:
            raise ValueError(f"a sum of {key} needs at least one device")
        self._parts[key] = names

    def update(
        self, key: str, value: Any, at: datetime, source: str = "", device: str | None = None
    ) -> None:
        reading = Reading(value, at, source)
        if device is not None:
            self._by_device.setdefault(key, {})[device] = reading
            for heard in list(self._device_listeners):
                heard(key, device, reading)
        parts = self._parts.get(key)
        if parts is not None:
            if device not in parts:
                return  # not a part of the sum: only its own reading is kept
            reading = self._sum(key, parts)
        self._latest[key] = reading
        for listener in list(self._listeners):
            listener(key, reading)

    def _sum(self, key: str, parts: tuple[str, ...]) -> Reading:
        readings = self._by_device.get(key, {})
        summed = [readings[name] for name in parts if name in readings]
        at = min(r.at for r in summed)
        values = [r.value for r in summed]
        if len(summed) == len(parts) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            return Reading(sum(values), at, "sum")
        return Reading(None, at, "sum")  # a part unknown or silent so far: so is the whole

    def latest(self, key: str) -> Reading | None:
        return self._latest.get(key)

    def by_device(self, key: str) -> dict[str, Reading]:
        """Each device's own latest reading of ``key`` (those reported with a device name)."""
        return dict(self._by_device.get(key, {}))

    def subscribe(self, listener: Callable[[str, Reading], None]) -> None:
        self._listeners.append(listener)

    def subscribe_devices(self, listener: Callable[[str, str, Reading], None]) -> None:
        """Hear each device's own readings: ``listener(key, device name, reading)``."""
        self._device_listeners.append(listener)

    def telemetry(self) -> dict[str, Any]:
        """The telemetry payload body: each known value with its timestamp."""
        out: dict[str, Any] = {}
        for key, reading in sorted(self._latest.items()):
            value = reading.value
            if isinstance(value, tuple):
                value = list(value)
            out[key] = {"value": value, "at": iso(reading.at)}
        return out
