"""Low-voltage smart electric energy meter (0x0288), read over the B-route.

Besides the table this module holds what settlement needs exactly: typed readers for the
boundary (EA/EB) and history (E2/E4, EC) properties, the exact raw count -> Wh conversion
(raw × D3 coefficient × E1 unit, in Fractions, never floats) and counter wrap at 10^D7.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from typing import Final, NamedTuple

from .spec import PropertySpec, prop, table
from .types import (
    Array,
    Codec,
    DateTime,
    Decoded,
    NumericChoice,
    PropertyError,
    Raw,
    Struct,
    sint,
    uint,
)

__all__ = [
    "CLASS_ID",
    "HALF_HOUR",
    "PROPERTIES",
    "SLOTS_PER_DAY",
    "Boundary",
    "DayHistory",
    "History2",
    "History2Codec",
    "counter_delta",
    "energy_kwh",
    "energy_wh",
    "history_deltas",
    "parse_boundary",
    "parse_day_history",
    "parse_history2",
    "slot_energy_wh",
    "unit_multiplier",
]

CLASS_ID: Final = 0x0288
SLOTS_PER_DAY: Final = 48
HALF_HOUR: Final = timedelta(minutes=30)
NO_DATA: Final = 0xFFFFFFFE
COUNTER_MAX: Final = 99_999_999
HISTORY2_MAX_SLOTS: Final = 12

_COUNTER: Final = uint(4, 0, COUNTER_MAX, unit="count", none={NO_DATA: "noData"})
_UNIT_CODES: Final[Mapping[int, Decimal]] = {
    0x00: Decimal("1"),
    0x01: Decimal("0.1"),
    0x02: Decimal("0.01"),
    0x03: Decimal("0.001"),
    0x04: Decimal("0.0001"),
    0x0A: Decimal("10"),
    0x0B: Decimal("100"),
    0x0C: Decimal("1000"),
    0x0D: Decimal("10000"),
}
_BOUNDARY: Final = Struct((("at", DateTime(7)), ("raw", _COUNTER)), unit="count")
_DAY_HISTORY: Final = Struct(
    (
        ("day", uint(2, 0, 99, none={0x00FF: "defaultValue"})),
        ("values", Array(_COUNTER, SLOTS_PER_DAY)),
    ),
    unit="count",
)
_HISTORY2_START: Final = Struct((("start", DateTime(6)), ("count", uint(1, 1, 12))))


class History2Codec(Codec):
    """EC: ED's 7 bytes (start YYYYMMDDhhmm, count) then count × (forward, reverse) uint32."""

    unit = "count"

    @property
    def size_range(self) -> tuple[int, int]:
        return (7 + 8, 7 + 8 * HISTORY2_MAX_SLOTS)

    def decode(self, edt: bytes) -> dict[str, Decoded]:
        self._check_size(edt)
        head = _HISTORY2_START.decode(edt[:7])
        count = edt[6]
        if len(edt) != 7 + 8 * count:
            raise PropertyError(f"count {count} needs {7 + 8 * count} bytes, got {len(edt)}")
        pairs: list[Decoded] = [
            {
                "forward": _COUNTER.decode(edt[i : i + 4]),
                "reverse": _COUNTER.decode(edt[i + 4 : i + 8]),
            }
            for i in range(7, len(edt), 8)
        ]
        return {"start": head["start"], "values": pairs}

    def encode(self, value: object) -> bytes:
        if not isinstance(value, Mapping) or set(value) != {"start", "values"}:
            raise PropertyError("expected {'start': datetime, 'values': [{forward, reverse}...]}")
        values = value["values"]
        if not isinstance(values, list | tuple):
            raise PropertyError("values must be a list")
        head = _HISTORY2_START.encode({"start": value["start"], "count": len(values)})
        body = b"".join(
            _COUNTER.encode(item["forward"]) + _COUNTER.encode(item["reverse"])
            if isinstance(item, Mapping)
            else b""
            for item in values
        )
        if len(body) != 8 * len(values):
            raise PropertyError("each value must be {'forward': int|None, 'reverse': int|None}")
        return head + body


PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    CLASS_ID,
    (
        prop(0xC0, "route_b_id", Raw(16, 16)),
        prop(
            0xD0,
            "one_minute_energy",
            Struct((("at", DateTime(7)), ("forward", _COUNTER), ("reverse", _COUNTER)), "count"),
        ),
        prop(0xD3, "coefficient", uint(4, 0, 999999)),
        prop(0xD7, "effective_digits", uint(1, 1, 8, unit="digits")),
        prop(0xE0, "cumulative_forward", _COUNTER),
        prop(0xE1, "energy_unit", NumericChoice(_UNIT_CODES, unit="kWh")),
        prop(0xE2, "history_forward", _DAY_HISTORY),
        prop(0xE3, "cumulative_reverse", _COUNTER),
        prop(0xE4, "history_reverse", _DAY_HISTORY),
        prop(0xE5, "history_day", uint(1, 0, 99, none={0xFF: "defaultValue"}), "GSI"),
        prop(
            0xE7,
            "instantaneous_power",
            sint(4, -2147483647, 2147483645, unit="W", none={0x7FFFFFFE: "noData"}),
        ),
        prop(
            0xE8,
            "instantaneous_currents",
            Struct(
                tuple(
                    (phase, sint(2, -32767, 32765, unit="A", scale="0.1", none={0x7FFE: "noData"}))
                    for phase in ("r", "t")
                ),
                unit="A",
            ),
        ),
        prop(0xEA, "boundary_forward", _BOUNDARY),
        prop(0xEB, "boundary_reverse", _BOUNDARY),
        prop(0xEC, "history2", History2Codec()),
        prop(0xED, "history2_start", _HISTORY2_START, "GSI"),
    ),
)


# ------------------------------------------------------------------------------- typed readers


class Boundary(NamedTuple):
    """EA/EB: the cumulative count at the last 30-minute boundary (None: the meter has none)."""

    at: datetime
    raw: int | None


class DayHistory(NamedTuple):
    """E2/E4: 48 half-hourly cumulative counts of one day (00:00 ... 23:30)."""

    day: int | None
    values: list[int | None]


@dataclass(frozen=True)
class History2:
    """EC: up to 12 (forward, reverse) pairs, newest first, stepping back 30 minutes."""

    start: datetime
    values: list[tuple[int | None, int | None]]

    @property
    def times(self) -> list[datetime]:
        return [self.start - i * HALF_HOUR for i in range(len(self.values))]


def parse_boundary(edt: bytes) -> Boundary:
    decoded = _BOUNDARY.decode(edt)
    at = decoded["at"]
    if not isinstance(at, datetime):
        raise PropertyError("boundary reading carries no date-time (all 0xFF)")
    raw = decoded["raw"]
    return Boundary(at, raw if isinstance(raw, int) else None)


def parse_day_history(edt: bytes) -> DayHistory:
    decoded = _DAY_HISTORY.decode(edt)
    day, values = decoded["day"], decoded["values"]
    assert isinstance(values, list)
    return DayHistory(
        day if isinstance(day, int) else None,
        [value if isinstance(value, int) else None for value in values],
    )


def parse_history2(edt: bytes) -> History2:
    decoded = History2Codec().decode(edt)
    start, values = decoded["start"], decoded["values"]
    if not isinstance(start, datetime):
        raise PropertyError("history 2 carries no start date-time (all 0xFF)")
    assert isinstance(values, list)
    pairs: list[tuple[int | None, int | None]] = []
    for item in values:
        assert isinstance(item, dict)
        forward, reverse = item["forward"], item["reverse"]
        pairs.append(
            (
                forward if isinstance(forward, int) else None,
                reverse if isinstance(reverse, int) else None,
            )
        )
    return History2(start, pairs)


# ---------------------------------------------------------------------------------- arithmetic


def unit_multiplier(unit_code: int) -> Fraction:
    """kWh per count step for an E1 code (0x01 -> 1/10)."""
    try:
        return Fraction(_UNIT_CODES[unit_code])
    except KeyError:
        raise PropertyError(f"E1 unit code 0x{unit_code:02X} is not defined") from None


def energy_kwh(raw: int, *, unit_code: int, coefficient: int | None = None) -> Fraction:
    """Exact kWh for a raw count: raw × D3 coefficient (absent = 1) × E1 unit."""
    if type(raw) is not int or raw < 0:
        raise PropertyError(f"raw count must be a non-negative int, got {raw!r}")
    factor = 1 if coefficient is None else coefficient
    if type(factor) is not int or factor < 0:
        raise PropertyError(f"coefficient must be a non-negative int, got {coefficient!r}")
    return raw * factor * unit_multiplier(unit_code)


def energy_wh(raw: int, *, unit_code: int, coefficient: int | None = None) -> int:
    """Exact integer Wh for a raw count.

    Every unit from 0.001 kWh up gives whole Wh. With 0.0001 kWh a count may be a fraction of a
    Wh; rather than round money silently this raises, and such callers use :func:`energy_kwh`.
    """
    wh: Fraction = energy_kwh(raw, unit_code=unit_code, coefficient=coefficient) * 1000
    if wh.denominator != 1:
        raise PropertyError(f"{raw} counts are {wh} Wh, not a whole number; use energy_kwh")
    return wh.numerator


def counter_delta(previous: int, current: int, digits: int) -> int:
    """Counts between two readings of a counter that wraps to 0 at 10^digits (D7).

    A smaller current reading is taken as one wrap; the caller must read often enough that
    the counter cannot wrap twice (at 8 digits that is years).
    """
    if type(digits) is not int or not 1 <= digits <= 8:
        raise PropertyError(f"effective digits (D7) must be 1..8, got {digits!r}")
    modulus: int = 10**digits
    for name, value in (("previous", previous), ("current", current)):
        if type(value) is not int or not 0 <= value < modulus:
            raise PropertyError(f"{name} reading {value!r} outside 0..{modulus - 1}")
    return (current - previous) % modulus


def slot_energy_wh(
    previous: int,
    current: int,
    *,
    digits: int,
    unit_code: int,
    coefficient: int | None = None,
) -> int:
    """Wh between two boundary readings (EA/EB or consecutive history items)."""
    return energy_wh(
        counter_delta(previous, current, digits), unit_code=unit_code, coefficient=coefficient
    )


def history_deltas(values: Sequence[int | None], digits: int) -> list[int | None]:
    """Counts per slot between consecutive items; None where either end is missing."""
    return [
        None if a is None or b is None else counter_delta(a, b, digits) for a, b in pairwise(values)
    ]
