"""Generic Modbus register maps: what a non-SunSpec device's registers mean, and their codec.

An installer describes each register in the TOML config (``[[device.registers]]``): its
``meaning`` from a closed set, where it is (``address``, ``function``), how it is encoded
(``type``, ``word_order``, ``scale``) and in which ``unit`` the scaled value is. Everything here
is pure: the tables the config validator checks against, and the functions that turn register
words into watts, watt-hours and percent (and back, for setpoints). No I/O, no pymodbus.

Value = raw × scale, in ``unit``; the adapters work in W, Wh and % and convert from the unit
(kW, kWh, MWh are accepted), so a register in 0.1 kWh is ``scale = 0.1, unit = "kWh"``.
Rated values a device does not publish can be given as a constant ``value`` instead of an
``address`` (capacity and maximum rates only).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "FUNCTIONS",
    "MEANINGS",
    "MODES",
    "TYPES",
    "UNITS",
    "WORD_ORDERS",
    "Meaning",
    "RegisterMapError",
    "RegisterSpec",
    "decode",
    "encode",
    "missing_meanings",
    "overlaps",
    "read_plan",
]

FUNCTIONS: Final = ("holding", "input")
WORD_ORDERS: Final = ("big", "little")
#: Register type -> (words, struct format of the big-endian value, signed/float).
TYPES: Final[dict[str, tuple[int, str]]] = {
    "u16": (1, ">H"),
    "s16": (1, ">h"),
    "u32": (2, ">I"),
    "s32": (2, ">i"),
    "f32": (2, ">f"),
}
#: Per dimension: accepted units and their factor to the adapters' unit (W, Wh, %).
UNITS: Final[dict[str, dict[str, float]]] = {
    "power": {"W": 1.0, "kW": 1000.0},
    "energy": {"Wh": 1.0, "kWh": 1000.0, "MWh": 1_000_000.0},
    "percent": {"%": 1.0},
    "mode": {"": 1.0},
}
#: Battery modes a ``mode`` register's ``values`` table maps to device codes.
MODES: Final = ("auto", "charge", "discharge", "standby")


class RegisterMapError(ValueError):
    """A value that does not fit its register (out of range, not finite, unknown mode)."""


@dataclass(frozen=True)
class Meaning:
    """What a register is: its dimension, default unit, which kinds use it, and whether the
    gateway writes it (then it must be a holding register)."""

    dimension: str
    unit: str
    kinds: tuple[str, ...]
    write: bool = False
    constant_ok: bool = False
    signed: bool = False
    doc: str = ""


MEANINGS: Final[dict[str, Meaning]] = {
    "power_w": Meaning(
        "power", "W", ("battery", "pv"), signed=True,
        doc="battery: + charging / - discharging; pv: AC generation",
    ),
    "soc_pct": Meaning("percent", "%", ("battery",), doc="state of charge"),
    "energy_kwh": Meaning("energy", "kWh", ("pv",), doc="pv: lifetime generated energy"),
    "charged_kwh": Meaning("energy", "kWh", ("battery",), doc="lifetime charged energy"),
    "discharged_kwh": Meaning("energy", "kWh", ("battery",), doc="lifetime discharged energy"),
    "capacity_kwh": Meaning("energy", "kWh", ("battery",), constant_ok=True, doc="usable capacity"),
    "max_charge_w": Meaning("power", "W", ("battery",), constant_ok=True, doc="rated charge power"),
    "max_discharge_w": Meaning(
        "power", "W", ("battery",), constant_ok=True, doc="rated discharge power"
    ),
    "mode": Meaning(
        "mode", "", ("battery",), write=True, doc="operating mode; codes in `values`"
    ),
    "charge_setpoint_w": Meaning("power", "W", ("battery",), write=True, doc="charge power"),
    "discharge_setpoint_w": Meaning(
        "power", "W", ("battery",), write=True, doc="discharge power"
    ),
    "setpoint_w": Meaning(
        "power", "W", ("battery",), write=True, signed=True,
        doc="one signed setpoint: + charge / - discharge",
    ),
    "rated_w": Meaning("power", "W", ("pv",), constant_ok=True, doc="rated AC output"),
    "pv_limit_pct": Meaning("percent", "%", ("pv",), write=True, doc="output limit, % of rated"),
    "pv_limit_w": Meaning("power", "W", ("pv",), write=True, doc="output limit in watts"),
}  # fmt: skip

#: Per kind: groups of meanings; each group is satisfied when all its meanings are present, and
#: each entry of the tuple is a set of alternatives (one group must be complete).
REQUIRED: Final[dict[str, tuple[tuple[tuple[str, ...], ...], ...]]] = {
    "battery": (
        (("power_w",),),
        (("soc_pct",),),
        (("mode",),),
        (("charge_setpoint_w", "discharge_setpoint_w"), ("setpoint_w",)),
    ),
    "pv": ((("power_w",),),),
}


@dataclass(frozen=True)
class RegisterSpec:
    """One register of a map, as validated by the config loader."""

    meaning: str
    address: int | None = None
    function: str = "holding"
    type: str = "u16"
    word_order: str = "big"
    scale: float = 1.0
    unit: str = ""
    values: Mapping[str, int] = field(default_factory=dict)
    value: float | None = None
    """A constant instead of a register (rated values a device does not publish)."""

    @property
    def words(self) -> int:
        return TYPES[self.type][0]

    @property
    def end(self) -> int:
        return (self.address or 0) + self.words

    @property
    def factor(self) -> float:
        """From the scaled value in ``unit`` to W, Wh or %."""
        meaning = MEANINGS[self.meaning]
        return UNITS[meaning.dimension].get(self.unit or meaning.unit, 1.0)


def _to_raw_bytes(spec: RegisterSpec, words: Sequence[int]) -> bytes:
    ordered = list(words) if spec.word_order == "big" else list(reversed(words))
    return b"".join(int(w & 0xFFFF).to_bytes(2, "big") for w in ordered)


def decode(spec: RegisterSpec, words: Sequence[int]) -> float | None:
    """Register words to the adapters' unit (W, Wh, %), or the raw code of a mode register.

    ``None`` for a float that is not a number (what devices send for "no data")."""
    if spec.value is not None:
        return spec.value * spec.factor
    if len(words) != spec.words:
        raise RegisterMapError(f"{spec.meaning}: expected {spec.words} words, got {len(words)}")
    (raw,) = struct.unpack(TYPES[spec.type][1], _to_raw_bytes(spec, words))
    if spec.meaning == "mode":
        return float(raw)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None
    return float(raw) * spec.scale * spec.factor


def encode(spec: RegisterSpec, value: float) -> list[int]:
    """A value in W, Wh or % (a mode's code as is) to the register words that hold it."""
    raw: float = value if spec.meaning == "mode" else value / spec.factor / spec.scale
    fmt = TYPES[spec.type][1]
    if spec.type != "f32":
        number = round(raw)
        bits = 8 * struct.calcsize(fmt)
        lo, hi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if fmt[1].islower() else (0, 2**bits - 1)
        )
        if not lo <= number <= hi:
            raise RegisterMapError(
                f"{spec.meaning}: {value:g} does not fit a {spec.type} register "
                f"(raw {number}, scale {spec.scale:g})"
            )
        data = struct.pack(fmt, number)
    else:
        if not math.isfinite(raw):
            raise RegisterMapError(f"{spec.meaning}: {value!r} is not a finite number")
        data = struct.pack(fmt, raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if spec.word_order == "big" else list(reversed(words))


def overlaps(specs: Sequence[RegisterSpec]) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of registers of the same function sharing an address."""
    found: list[tuple[int, int]] = []
    for j, b in enumerate(specs):
        if b.address is None:
            continue
        for i, a in enumerate(specs[:j]):
            if a.address is None or a.function != b.function:
                continue
            if a.address < b.end and b.address < a.end:
                found.append((i, j))
                break
    return found


def missing_meanings(kind: str, meanings: Iterable[str]) -> list[str]:
    """Human descriptions of what a ``kind`` needs and the map lacks (empty: complete)."""
    have = set(meanings)
    out: list[str] = []
    for group in REQUIRED.get(kind, ()):
        if any(all(m in have for m in option) for option in group):
            continue
        out.append(" or ".join(" + ".join(option) for option in group))
    limits = have & {"pv_limit_pct", "pv_limit_w"}
    if kind == "pv" and len(limits) == 1 and "rated_w" not in have:
        out.append(f"rated_w (to convert limits for {limits.pop()})")
    return out


def read_plan(specs: Iterable[RegisterSpec], max_words: int = 125) -> list[list[RegisterSpec]]:
    """Registers grouped into as few reads as possible: same function and back to back.

    Gaps are never bridged: many devices refuse a read that touches an unmapped address.
    """
    wanted = sorted(
        (s for s in specs if s.address is not None), key=lambda s: (s.function, s.address or 0)
    )
    plan: list[list[RegisterSpec]] = []
    for spec in wanted:
        last = plan[-1] if plan else None
        if (
            last is not None
            and last[-1].function == spec.function
            and spec.address == max(s.end for s in last)
            and spec.end - (last[0].address or 0) <= max_words
        ):
            last.append(spec)
        else:
            plan.append([spec])
    return plan
