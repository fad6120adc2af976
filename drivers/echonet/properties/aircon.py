"""Home air conditioner (0x0130), the down-DR lever; 0x84/0x85 come from the super class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .spec import PropertySpec, prop, table
from .superclass import ON_OFF
from .types import Choice, sint, uint

__all__ = ["CLASS_ID", "PROPERTIES"]

CLASS_ID: Final = 0x0130

_UNMEASURABLE_T: Final = {0x7E: "unmeasurable"}

PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    CLASS_ID,
    (
        prop(0x80, "operation_status", ON_OFF, "GSI"),
        prop(0x8F, "power_saving", Choice({0x41: "saving", 0x42: "normal"}), "GSI"),
        prop(
            0xB0,
            "operation_mode",
            Choice(
                {
                    0x40: "other",
                    0x41: "auto",
                    0x42: "cooling",
                    0x43: "heating",
                    0x44: "dehumidification",
                    0x45: "circulation",
                }
            ),
            "GSI",
        ),
        prop(
            0xB3, "target_temperature", uint(1, 0, 50, unit="°C", none={0xFD: "undefined"}), "GSI"
        ),
        prop(0xB9, "current_consumption", uint(2, 0, 65533, unit="A", scale="0.1")),
        prop(0xBA, "humidity", uint(1, 0, 100, unit="%", none={0xFD: "unmeasurable"})),
        prop(0xBB, "room_temperature", sint(1, -127, 125, unit="°C", none=_UNMEASURABLE_T)),
        prop(0xBE, "outdoor_temperature", sint(1, -127, 125, unit="°C", none=_UNMEASURABLE_T)),
    ),
)
