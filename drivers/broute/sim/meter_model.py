"""A simulated low-voltage smart meter (0x0288): pure, driven by the time it is given.

The household draws a realistic daily profile (base load, morning and evening peaks, appliance
episodes) and a rooftop PV system follows a clear-sky curve, so the net power is import at night
and export around noon. The power is piecewise constant per minute and a deterministic function of
the minute, which makes everything reproducible from the seed and lets the model integrate exactly:

* live, :meth:`MeterModel.update` integrates from the last update to ``now`` and records the
  counters at every :00/:30 boundary it crosses (EA/EB, and the history E2/E4/EC read from them);
* backwards, boundaries before the model's start are derived from the starting counters minus the
  energy of each earlier slot, computed lazily only as far back as a history read asks. Past days
  are therefore consistent with the counters by construction, down to the wrap at 10^D7.

Properties are encoded with the ECHONET property codecs of ``drivers.echonet.properties.meter``,
the same ones the driver decodes with. Nothing here touches a clock, a socket or a thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from drivers.echonet.properties import PropertyError, unit_multiplier
from drivers.echonet.properties.meter import PROPERTIES as METER
from drivers.echonet.propmap import encode_property_map
from gateway.clock import JST

__all__ = ["MeterModel", "MeterModelConfig"]

SLOT_S: Final = 1800
_GETTABLE: Final = (
    0x80, 0x81, 0x82, 0x88, 0x8A, 0x9D, 0x9E, 0x9F,
    0xC0, 0xD3, 0xD7, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE7, 0xE8, 0xEA, 0xEB, 0xEC, 0xED,
)  # fmt: skip
_SETTABLE: Final = (0xE5, 0xED)
_ANNOUNCED: Final = (0x80, 0x81, 0x88, 0xEA, 0xEB)
_NODE_GETTABLE: Final = (0x80, 0x82, 0x83, 0x8A, 0x9D, 0x9E, 0x9F, 0xD3, 0xD4, 0xD6, 0xD7)


@dataclass(frozen=True)
class MeterModelConfig:
    """What kind of meter and household to simulate.

    ``coefficient`` None makes D3 absent (Get_SNA), as on most meters. ``digits`` is D7; 6 makes
    the wrap reachable in tests. ``import_kwh``/``export_kwh`` are the counters at the start.
    ``two_wire`` is single-phase two-wire (E8's T current is 0x7FFE). ``reverse`` False models
    a meter without reverse-flow measurement (E3, E4, EB refused). ``no_data`` lists EPCs to be
    answered with their "no data" sentinel. ``fixed_power_w`` pins E7 (and the integration) to
    one value, e.g. 0x0D0A to put CR LF into a binary ERXUDP.
    """

    coefficient: int | None = None
    unit_code: int = 0x01
    digits: int = 6
    import_kwh: float = 12345.6
    export_kwh: float = 7891.2
    two_wire: bool = False
    reverse: bool = True
    pv_peak_w: float = 4500.0
    base_load_w: float = 350.0
    fixed_power_w: int | None = None
    no_data: frozenset[int] = frozenset()
    route_b_id: bytes | None = field(
        default=bytes.fromhex("00000016") + b"SIMMETER0001"
    )  # 0x00, maker (3), 12 characters
    maker_code: int = 0x000016
    history_days: int = 99
    seed: int = 1


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


def _hash01(seed: int, n: int) -> float:
    """A reproducible pseudo-random number in [0, 1) for (seed, n)."""
    x = (n * 0x9E3779B1 + seed * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    x = (x * 0x297A2D39) & 0xFFFFFFFF
    x ^= x >> 15
    return x / 2**32


def _naive(when: datetime) -> datetime:
    return when.astimezone(JST).replace(tzinfo=None)


def _floor_slot(ts: float) -> int:
    return int(ts // SLOT_S) * SLOT_S


class MeterModel:
    """The meter's state; ``start`` is when its counters equal the configured ones."""

    def __init__(self, config: MeterModelConfig, start: datetime) -> None:
        self.config = config
        #: Power (W, + import) of simulated devices behind the meter, e.g. the simulated battery's
        #: D3, so that a discharge the gateway commands really shows on E7 and in the counters.
        #: It is live: it counts from ``start`` on, never in the history before the model started.
        self.extra_load: Callable[[], float] | None = None
        self._first_live_minute = int(start.timestamp() // 60)
        unit = unit_multiplier(config.unit_code)  # raises on an undefined code
        self.wh_per_count = float(unit * (config.coefficient or 1) * 1000)
        self.modulus = 10**config.digits
        self._t = start.timestamp()
        self._imp = config.import_kwh * 1000
        self._exp = config.export_kwh * 1000
        self._records: dict[int, tuple[float, float]] = {}
        first = _floor_slot(self._t)
        imp, exp = self._integrate(first, self._t)
        self._records[first] = (self._imp - imp, self._exp - exp)
        self._earliest = first
        self.history_day = 0
        self.history2: tuple[datetime, int] | None = None

    # --- the household --------------------------------------------------------------------------

    def power_at_minute(self, minute: int) -> float:
        """Net power (W, + import) during the minute starting at ``minute`` × 60 s (Unix)."""
        live = self.extra_load is not None and minute >= self._first_live_minute
        extra = self.extra_load() if live and self.extra_load is not None else 0.0
        return self._household(minute) + extra

    def _household(self, minute: int) -> float:
        cfg = self.config
        if cfg.fixed_power_w is not None:
            return float(cfg.fixed_power_w)
        local = minute + 9 * 60
        hour = (local % 1440) / 60
        demand = cfg.base_load_w
        demand += 900 * _bump(hour, 7.2, 0.7) + 1700 * _bump(hour, 19.5, 1.6)
        demand += 400 * _bump(hour, 12.3, 0.8)
        episode = _hash01(cfg.seed, minute // 7)
        if episode > 0.82:  # kettle, microwave, dryer: a few minutes at a time
            demand += 300 + 1200 * (episode - 0.82) / 0.18
        demand *= 0.9 + 0.2 * _hash01(cfg.seed + 1, minute)
        return demand - self.pv_at_minute(minute)

    def pv_at_minute(self, minute: int) -> float:
        """The rooftop PV's output (W) in that minute: a clear-sky curve, a little less on some
        days. Public so a simulated PV inverter can report the same power the meter sees."""
        cfg = self.config
        if cfg.fixed_power_w is not None:
            return 0.0
        local = minute + 9 * 60
        hour = (local % 1440) / 60
        day = local // 1440
        if not 6.0 < hour < 18.0:
            return 0.0
        clear = math.sin(math.pi * (hour - 6.0) / 12.0) ** 1.5
        return float(cfg.pv_peak_w * clear * (0.85 + 0.15 * _hash01(cfg.seed + 2, day)))

    def power_w(self, when: datetime) -> float:
        return self.power_at_minute(int(when.timestamp() // 60))

    def _integrate(self, a: float, b: float) -> tuple[float, float]:
        """Import and export Wh between two Unix times."""
        imp = exp = 0.0
        t = a
        while t < b:
            minute = int(t // 60)
            end = min(b, (minute + 1) * 60.0)
            energy = self.power_at_minute(minute) * (end - t) / 3600.0
            if energy > 0:
                imp += energy
            else:
                exp -= energy
            t = end
        return imp, exp

    # --- counters -------------------------------------------------------------------------------

    def update(self, now: datetime) -> list[datetime]:
        """Integrate up to ``now``; returns the boundaries crossed (aware, JST)."""
        target = now.timestamp()
        crossed: list[datetime] = []
        while self._t < target:
            boundary = _floor_slot(self._t) + SLOT_S
            end = min(target, float(boundary))
            imp, exp = self._integrate(self._t, end)
            self._imp += imp
            self._exp += exp
            self._t = end
            if end == boundary:
                self._records[boundary] = (self._imp, self._exp)
                crossed.append(datetime.fromtimestamp(boundary, JST))
        return crossed

    def raw(self, wh: float) -> int:
        count = math.floor(wh / self.wh_per_count + 1e-9)
        return int(count % self.modulus)

    @property
    def import_raw(self) -> int:
        return self.raw(self._imp)

    @property
    def export_raw(self) -> int:
        return self.raw(self._exp)

    def boundary_wh(self, at: datetime) -> tuple[float, float] | None:
        """Cumulative Wh at a boundary not in the future, or None."""
        ts = int(at.timestamp())
        if ts % SLOT_S or ts > self._t:
            return None
        while ts < self._earliest:
            earlier = self._earliest - SLOT_S
            imp, exp = self._integrate(earlier, self._earliest)
            later = self._records[self._earliest]
            self._records[earlier] = (later[0] - imp, later[1] - exp)
            self._earliest = earlier
        return self._records.get(ts)

    def boundary_raw(self, at: datetime) -> tuple[int | None, int | None]:
        got = self.boundary_wh(at)
        if got is None:
            return None, None
        return self.raw(got[0]), self.raw(got[1])

    def latest_boundary(self) -> datetime:
        return datetime.fromtimestamp(_floor_slot(self._t), JST)

    def slot_wh(self, start: datetime) -> tuple[float, float] | None:
        """Import and export Wh of the slot starting at ``start`` (for checking the driver)."""
        a = self.boundary_wh(start)
        b = self.boundary_wh(start + timedelta(seconds=SLOT_S))
        if a is None or b is None:
            return None
        return b[0] - a[0], b[1] - a[1]

    # --- properties -----------------------------------------------------------------------------

    def _counter(self, epc: int, raw: int | None) -> bytes:
        return METER[epc].encode(None if epc in self.config.no_data else raw)

    def _boundary_edt(self, epc: int, now: datetime) -> bytes:
        at = self.latest_boundary()
        imp, exp = self.boundary_raw(at)
        raw = imp if epc == 0xEA else exp
        if epc in self.config.no_data:
            raw = None
        return METER[epc].encode({"at": _naive(at), "raw": raw})

    def _day_edt(self, epc: int, now: datetime) -> bytes:
        day = now.astimezone(JST).date() - timedelta(days=self.history_day)
        values: list[int | None] = []
        for index in range(48):
            at = datetime(day.year, day.month, day.day, tzinfo=JST) + index * timedelta(
                seconds=SLOT_S
            )
            imp, exp = self.boundary_raw(at)
            value = imp if epc == 0xE2 else exp
            values.append(None if epc in self.config.no_data else value)
        return METER[epc].encode({"day": self.history_day, "values": values})

    def _history2_edt(self, now: datetime) -> bytes:
        if self.history2 is None:
            start = _naive(self.latest_boundary())
            count = 12
        else:
            start, count = self.history2
        aware = start.replace(tzinfo=JST)
        values = []
        for index in range(count):
            imp, exp = self.boundary_raw(aware - index * timedelta(seconds=SLOT_S))
            if 0xEC in self.config.no_data:
                imp = exp = None
            values.append({"forward": imp, "reverse": exp if self.config.reverse else None})
        return METER[0xEC].encode({"start": start, "values": values})

    def get(self, epc: int, now: datetime) -> bytes | None:
        """EDT of a 0x0288 property at ``now``; None = not available (answered with SNA)."""
        cfg = self.config
        self.update(now)
        if not cfg.reverse and epc in (0xE3, 0xE4, 0xEB):
            return None
        if epc == 0x80:
            return b"\x30"
        if epc == 0x81:
            return b"\x00"
        if epc == 0x82:
            return b"\x00\x00R\x00"
        if epc == 0x88:
            return b"\x42"
        if epc == 0x8A:
            return cfg.maker_code.to_bytes(3, "big")
        if epc == 0x9D:
            return encode_property_map(_ANNOUNCED)
        if epc == 0x9E:
            return encode_property_map(_SETTABLE)
        if epc == 0x9F:
            gettable = [e for e in _GETTABLE if e != 0xD3 or cfg.coefficient is not None]
            return encode_property_map(e for e in gettable if e != 0xC0 or cfg.route_b_id)
        if epc == 0xC0:
            return cfg.route_b_id
        if epc == 0xD3:
            return None if cfg.coefficient is None else METER[0xD3].encode(cfg.coefficient)
        if epc == 0xD7:
            return METER[0xD7].encode(cfg.digits)
        if epc == 0xE1:
            return bytes([cfg.unit_code])
        if epc == 0xE0:
            return self._counter(0xE0, self.import_raw)
        if epc == 0xE3:
            return self._counter(0xE3, self.export_raw)
        if epc == 0xE5:
            return bytes([self.history_day])
        if epc in (0xE2, 0xE4):
            return self._day_edt(epc, now)
        if epc == 0xE7:
            power = None if epc in cfg.no_data else round(self.power_w(now))
            return METER[0xE7].encode(power)
        if epc == 0xE8:
            return self._currents_edt(now)
        if epc in (0xEA, 0xEB):
            return self._boundary_edt(epc, now)
        if epc == 0xEC:
            return self._history2_edt(now)
        if epc == 0xED:
            if self.history2 is None:
                return b"\xff" * 7
            start, count = self.history2
            return METER[0xED].encode({"start": start, "count": count})
        return None

    def _currents_edt(self, now: datetime) -> bytes:
        if 0xE8 in self.config.no_data:
            return METER[0xE8].encode({"r": None, "t": None})
        power = self.power_w(now)
        clamp = 3276.5
        if self.config.two_wire:
            r = max(-clamp, min(clamp, round(power / 100.0, 1)))
            return METER[0xE8].encode({"r": r, "t": None})
        r = max(-clamp, min(clamp, round(power * 0.55 / 100.0, 1)))
        t = max(-clamp, min(clamp, round(power * 0.45 / 100.0, 1)))
        return METER[0xE8].encode({"r": r, "t": t})

    def set(self, epc: int, edt: bytes, now: datetime) -> bool:
        """Apply a Set; False = refused (SetC_SNA)."""
        try:
            if epc == 0xE5:
                value = METER[0xE5].decode(edt)
                if not isinstance(value, int) or value > self.config.history_days:
                    return False
                self.history_day = value
                return True
            if epc == 0xED:
                decoded = METER[0xED].decode(edt)
                if not isinstance(decoded, dict):
                    return False
                start, count = decoded["start"], decoded["count"]
                if not isinstance(start, datetime) or not isinstance(count, int):
                    return False
                if start.minute not in (0, 30):
                    return False
                oldest = _naive(now) - timedelta(days=self.config.history_days)
                if start < oldest:
                    return False
                self.history2 = (start, count)
                return True
        except PropertyError:
            return False
        return False

    def node_get(self, epc: int) -> bytes | None:
        """EDT of a node profile (0x0EF001) property."""
        if epc == 0x80:
            return b"\x30"
        if epc == 0x82:
            return b"\x01\x0d\x01\x00"
        if epc == 0x83:
            return b"\xfe" + self.config.maker_code.to_bytes(3, "big") + b"SIMMETER00001"
        if epc == 0x8A:
            return self.config.maker_code.to_bytes(3, "big")
        if epc == 0x9D:
            return encode_property_map((0x80, 0xD5))
        if epc == 0x9E:
            return encode_property_map(())
        if epc == 0x9F:
            return encode_property_map(_NODE_GETTABLE)
        if epc == 0xD3:
            return b"\x00\x00\x01"
        if epc == 0xD4:
            return b"\x00\x02"
        if epc in (0xD5, 0xD6):
            return b"\x01\x02\x88\x01"
        if epc == 0xD7:
            return b"\x01\x02\x88"
        return None
