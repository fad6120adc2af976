"""Battery energy counters from power samples, for devices (SunSpec model 124) that keep none.

Sample-and-hold, not trapezoid: a battery's power changes in steps when it is commanded, and
holding the previous sample until the next one is exact for steps, where averaging the two
would smear a step over the whole gap between polls.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EnergyIntegrator"]


@dataclass
class EnergyIntegrator:
    """Charged and discharged Wh since the adapter started (+ charging / - discharging power)."""

    charged: float = 0.0
    discharged: float = 0.0
    _last_w: float | None = None
    _last_t: float | None = None

    def feed(self, power_w: float, monotonic_s: float) -> None:
        if self._last_w is not None and self._last_t is not None:
            dt = monotonic_s - self._last_t
            if dt > 0:
                energy = self._last_w * dt / 3600.0
                if energy > 0:
                    self.charged += energy
                else:
                    self.discharged -= energy
        if self._last_t is None or monotonic_s >= self._last_t:
            self._last_w, self._last_t = power_w, monotonic_s

    @property
    def charged_wh(self) -> int:
        return round(self.charged)

    @property
    def discharged_wh(self) -> int:
        return round(self.discharged)
