"""Codecs shared by several device classes."""

from __future__ import annotations

from typing import Final

from .types import Choice, Int, Struct, uint

__all__ = [
    "ENERGY_KWH",
    "ENERGY_WH",
    "INTERCONNECTION",
    "PERCENT",
    "PERMISSION",
    "POWER_RANGE",
    "POWER_W",
    "watts16",
]

ENERGY_WH: Final = uint(4, 0, 999999999, unit="Wh")
ENERGY_KWH: Final = uint(4, 0, 999999999, unit="kWh", scale="0.001")
POWER_W: Final = uint(4, 0, 999999999, unit="W")
PERCENT: Final = uint(1, 0, 100, unit="%")
POWER_RANGE: Final = Struct((("min", POWER_W), ("max", POWER_W)), unit="W")
"""C8/C9: minimum and maximum (dis)charging power, 2 × uint32 W."""

INTERCONNECTION: Final = Choice(
    {0x00: "reverse_flow_ok", 0x01: "independent", 0x02: "reverse_flow_not_ok"}
)
"""Power-system interconnection: whether the unit may push power into the grid."""

PERMISSION: Final = Choice({0x41: "permitted", 0x42: "prohibited"})


def watts16() -> Int:
    return uint(2, 0, 65533, unit="W")
