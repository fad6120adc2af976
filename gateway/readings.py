"""The latest measurements, each with the time it was taken.

Drivers' adapters feed it; telemetry, the interlock and the demo read it. Keeping timestamps
beside values is what lets the interlock refuse stale meter data.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def update(self, key: str, value: Any, at: datetime, source: str = "") -> None:
        reading = Reading(value, at, source)
        self._latest[key] = reading
        for listener in list(self._listeners):
            listener(key, reading)

    def latest(self, key: str) -> Reading | None:
        return self._latest.get(key)

    def subscribe(self, listener: Callable[[str, Reading], None]) -> None:
        self._listeners.append(listener)

    def telemetry(self) -> dict[str, Any]:
        """The telemetry payload body: each known value with its timestamp."""
        out: dict[str, Any] = {}
        for key, reading in sorted(self._latest.items()):
            value = reading.value
            if isinstance(value, tuple):
                value = list(value)
            out[key] = {"value": value, "at": iso(reading.at)}
        return out
