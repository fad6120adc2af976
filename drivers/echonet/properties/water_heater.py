"""Electric water heater (0x026B); EcoCute heat-pump heaters use this class (up-DR lever)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .spec import PropertySpec, prop, table
from .types import Choice, uint

__all__ = ["CLASS_ID", "PROPERTIES"]

CLASS_ID: Final = 0x026B

_SHIFT_1: Final = {code: f"{code:02d}:00" for code in range(9, 18)}
_LITRES: Final = uint(2, 0, 65533, unit="L")

PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    CLASS_ID,
    (
        prop(
            0xB0,
            "automatic_heating",
            Choice({0x41: "auto", 0x42: "manual_heating", 0x43: "manual_stop"}),
            "GSI",
        ),
        prop(0xB2, "heating_status", Choice({0x41: "heating", 0x42: "not_heating"})),
        prop(
            0xB3, "target_temperature", uint(1, 0, 100, unit="°C", none={0xFD: "undefined"}), "GSI"
        ),
        prop(
            0xC0,
            "daytime_reheating_permission",
            Choice({0x41: "permitted", 0x42: "not_permitted"}),
            "GSI",
        ),
        prop(0xC1, "tank_temperature", uint(1, 0, 100, unit="°C")),
        prop(0xC3, "hot_water_supply_status", Choice({0x41: "supplying", 0x42: "not_supplying"})),
        prop(
            0xC7,
            "energy_shift_participation",
            Choice({0x01: "participating", 0x00: "not_participating"}),
            "GSI",
        ),
        prop(0xC9, "energy_shift_count", uint(1, 1, 2)),
        # Hour codes 0x09..0x11 stand for 09:00..17:00 (shift 2 starts at 10:00); 0 clears.
        prop(0xCA, "heating_shift_time_1", Choice({**_SHIFT_1, 0x00: "cleared"}), "GSI"),
        prop(
            0xCD,
            "heating_shift_time_2",
            Choice({**{c: n for c, n in _SHIFT_1.items() if c >= 0x0A}, 0x00: "cleared"}),
            "GSI",
        ),
        prop(0xE1, "remaining_hot_water", _LITRES),
        prop(0xE2, "tank_capacity", _LITRES),
        prop(0xE3, "automatic_bath", Choice({0x41: "on", 0x42: "off"}), "GSI"),
    ),
)
