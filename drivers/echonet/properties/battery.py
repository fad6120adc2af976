"""Storage battery (0x027D).

DA is the mode the controller *asks* for; CF is what the battery is actually doing. Commands are
confirmed on CF and on the sign of D3 (+ charging, − discharging), never on DA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .common import (
    ENERGY_KWH,
    ENERGY_WH,
    INTERCONNECTION,
    PERCENT,
    PERMISSION,
    POWER_RANGE,
    POWER_W,
)
from .spec import PropertySpec, prop, table
from .types import Choice, sint, uint

__all__ = ["CLASS_ID", "MODES", "PROPERTIES"]

CLASS_ID: Final = 0x027D

MODES: Final = Choice(
    {
        0x40: "other",
        0x41: "rapid_charge",
        0x42: "charge",
        0x43: "discharge",
        0x44: "standby",
        0x45: "test",
        0x46: "auto",
        0x48: "restart",
        0x49: "recalculation",
    }
)

_AMOUNT_SETTING: Final = uint(4, 1, 999999999, unit="Wh", none={0x00000000: "noSetting"})
_AMPS: Final = uint(2, 0, 65533, unit="A", scale="0.1")

PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    CLASS_ID,
    (
        prop(0xA0, "ac_effective_charge_capacity", ENERGY_WH),
        prop(0xA1, "ac_effective_discharge_capacity", ENERGY_WH),
        prop(0xA2, "ac_chargeable_capacity", ENERGY_WH),
        prop(0xA3, "ac_dischargeable_capacity", ENERGY_WH),
        prop(0xA4, "ac_chargeable_energy", ENERGY_WH),
        prop(0xA5, "ac_dischargeable_energy", ENERGY_WH),
        prop(0xA6, "ac_charge_upper_limit", PERCENT, "GSI"),
        prop(0xA7, "ac_discharge_lower_limit", PERCENT, "GSI"),
        prop(0xA8, "ac_cumulative_charge", ENERGY_KWH),
        prop(0xA9, "ac_cumulative_discharge", ENERGY_KWH),
        prop(0xAA, "ac_charge_amount_setting", _AMOUNT_SETTING, "GSI"),
        prop(0xAB, "ac_discharge_amount_setting", _AMOUNT_SETTING, "GSI"),
        prop(
            0xC1,
            "charge_method",
            Choice(
                {
                    0x00: "other",
                    0x01: "max_power",
                    0x02: "surplus",
                    0x03: "designated_power",
                    0x04: "designated_current",
                }
            ),
            "GSI",
        ),
        prop(
            0xC2,
            "discharge_method",
            Choice(
                {
                    0x00: "other",
                    0x01: "max_power",
                    0x02: "load_following",
                    0x03: "designated_power",
                    0x04: "designated_current",
                }
            ),
            "GSI",
        ),
        prop(0xC7, "ac_rated_energy", ENERGY_WH),
        prop(0xC8, "charge_power_range", POWER_RANGE),
        prop(0xC9, "discharge_power_range", POWER_RANGE),
        prop(0xCC, "reinterconnection_permission", PERMISSION, "GSI"),
        prop(0xCD, "operation_permission", PERMISSION, "GSI"),
        prop(0xCE, "independent_operation_permission", PERMISSION, "GSI"),
        prop(0xCF, "actual_mode", MODES),
        prop(0xD0, "rated_energy", ENERGY_WH),
        prop(0xD1, "rated_capacity", uint(2, 0, 32766, unit="Ah", scale="0.1")),
        prop(0xD2, "rated_voltage", uint(2, 0, 32766, unit="V")),
        prop(0xD3, "instantaneous_power", sint(4, -999999999, 999999999, unit="W")),
        prop(0xD4, "instantaneous_current", sint(2, -32767, 32766, unit="A", scale="0.1")),
        prop(0xD5, "instantaneous_voltage", sint(2, -32767, 32766, unit="V")),
        prop(0xD6, "cumulative_discharge", ENERGY_KWH),
        prop(0xD8, "cumulative_charge", ENERGY_KWH),
        prop(0xDA, "operation_mode", MODES, "GSI"),
        prop(0xDB, "interconnection", INTERCONNECTION),
        prop(0xE2, "remaining_energy", ENERGY_WH),
        prop(0xE3, "remaining_capacity", uint(2, 0, 32766, unit="Ah", scale="0.1")),
        prop(0xE4, "state_of_charge", PERCENT),
        prop(0xE5, "health", PERCENT),
        prop(
            0xE6,
            "battery_type",
            Choice(
                {
                    0x00: "unknown",
                    0x01: "lead",
                    0x02: "ni_mh",
                    0x03: "ni_cd",
                    0x04: "lithium_ion",
                    0x05: "zinc",
                    0x06: "alkaline",
                }
            ),
        ),
        prop(0xEB, "charge_power_setting", POWER_W, "GSI"),
        prop(0xEC, "discharge_power_setting", POWER_W, "GSI"),
        prop(0xED, "charge_current_setting", _AMPS, "GSI"),
        prop(0xEE, "discharge_current_setting", _AMPS, "GSI"),
    ),
)
