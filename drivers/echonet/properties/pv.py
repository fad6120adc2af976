"""Household solar power generation (0x0279)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .common import ENERGY_KWH, PERCENT, watts16
from .spec import PropertySpec, prop, table
from .types import Choice, uint

__all__ = ["CLASS_ID", "PROPERTIES"]

CLASS_ID: Final = 0x0279

_NOT_SET: Final = {0xFFFF: "noSetting"}

PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    CLASS_ID,
    (
        prop(0xA0, "output_limit_percent", PERCENT, "GSI"),
        prop(0xA1, "output_limit_watts", watts16(), "GSI"),
        prop(0xA2, "surplus_purchase_control", Choice({0x41: "on", 0x42: "off"}), "GSI"),
        prop(0xB4, "upper_limit_clip", uint(2, 0, 65533, unit="W", none=_NOT_SET)),
        prop(0xC1, "contract_type", Choice({0x41: "fit", 0x42: "non_fit", 0x43: "not_set"}), "GSI"),
        prop(
            0xC2,
            "self_consumption_type",
            Choice(
                {0x41: "with_self_consumption", 0x42: "without_self_consumption", 0x43: "unknown"}
            ),
        ),
        prop(0xC3, "approved_capacity", uint(2, 0, 65533, unit="W", none=_NOT_SET)),
        prop(
            0xD0,
            "interconnection",
            Choice(
                {
                    0x00: "reverse_flow_ok",
                    0x01: "independent",
                    0x02: "reverse_flow_not_ok",
                    0x03: "unknown",
                }
            ),
        ),
        prop(
            0xD1,
            "output_restraint_status",
            Choice(
                {
                    0x41: "output_control",
                    0x42: "except_control",
                    0x43: "reason_unknown",
                    0x44: "not_restraining",
                    0x45: "unknown",
                }
            ),
        ),
        prop(0xE0, "instantaneous_generation", watts16()),
        prop(0xE1, "cumulative_generation", ENERGY_KWH),
        prop(0xE3, "cumulative_sold", ENERGY_KWH),
        prop(0xE5, "generation_limit_percent", PERCENT, "GSI"),
        prop(0xE6, "generation_limit_watts", watts16(), "GSI"),
        prop(0xE7, "sold_power_limit", watts16(), "GSI"),
        prop(0xE8, "rated_power", uint(2, 0, 65533, unit="W", none=_NOT_SET), "GSI"),
        prop(0xE9, "rated_power_independent", watts16(), "GSI"),
    ),
)
