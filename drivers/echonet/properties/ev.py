"""Electric vehicle charger/discharger (V2H, 0x027E) and EV charger (0x02A1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .common import ENERGY_KWH, ENERGY_WH, INTERCONNECTION, PERCENT, POWER_RANGE, POWER_W
from .spec import PropertySpec, prop, table
from .types import Choice, sint

__all__ = ["CHARGER_CLASS_ID", "CHARGER_PROPERTIES", "V2H_CLASS_ID", "V2H_PROPERTIES"]

V2H_CLASS_ID: Final = 0x027E
CHARGER_CLASS_ID: Final = 0x02A1

V2H_PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    V2H_CLASS_ID,
    (
        prop(0xC0, "dischargeable_capacity", ENERGY_WH),
        prop(0xC2, "remaining_dischargeable_energy", ENERGY_WH),
        prop(0xC4, "remaining_dischargeable_percent", PERCENT),
        prop(0xC5, "rated_charge_power", POWER_W),
        prop(0xC6, "rated_discharge_power", POWER_W),
        prop(
            0xC7,
            "vehicle_status",
            Choice(
                {
                    0x30: "not_connected",
                    0x40: "connected",
                    0x41: "chargeable",
                    0x42: "dischargeable",
                    0x43: "chargeable_dischargeable",
                    0x44: "unknown",
                    0xFF: "undefined",
                }
            ),
        ),
        prop(0xC8, "charge_power_range", POWER_RANGE),
        prop(0xC9, "discharge_power_range", POWER_RANGE),
        prop(0xCE, "chargeable_capacity", ENERGY_WH),
        prop(0xCF, "remaining_chargeable_capacity", ENERGY_WH),
        prop(0xD0, "used_capacity", ENERGY_WH),
        prop(0xD3, "instantaneous_power", sint(4, -999999999, 999999999, unit="W")),
        prop(0xD6, "cumulative_discharge", ENERGY_KWH),
        prop(0xD8, "cumulative_charge", ENERGY_KWH),
        prop(
            0xDA,
            "operation_mode",
            Choice(
                {
                    0x40: "other",
                    0x42: "charge",
                    0x43: "discharge",
                    0x44: "standby",
                    0x46: "charge_discharge",
                    0x47: "idle",
                    0x48: "preparation",
                    0x49: "auto",
                }
            ),
            "GSI",
        ),
        prop(0xDB, "interconnection", INTERCONNECTION),
        prop(
            0xE1,
            "actual_mode",
            Choice(
                {
                    0x40: "other",
                    0x42: "charge",
                    0x43: "discharge",
                    0x44: "standby",
                    0x47: "idle",
                    0x48: "preparation",
                }
            ),
        ),
        prop(0xE2, "remaining_energy", ENERGY_WH),
        prop(0xE4, "state_of_charge", PERCENT),
        prop(0xE7, "charge_amount_setting", ENERGY_WH, "GSI"),
        prop(0xEA, "discharge_amount_setting", ENERGY_WH, "GSI"),
        prop(0xEB, "charge_power_setting", POWER_W, "GSI"),
        prop(0xEC, "discharge_power_setting", POWER_W, "GSI"),
    ),
)

CHARGER_PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    CHARGER_CLASS_ID,
    (
        prop(0xC5, "rated_charge_power", POWER_W),
        prop(
            0xC7,
            "charge_status",
            Choice(
                {
                    0x30: "not_connected",
                    0x40: "not_chargeable",
                    0x41: "chargeable",
                    0x44: "unknown",
                    0xFF: "undefined",
                }
            ),
        ),
        prop(0xC8, "charge_power_range", POWER_RANGE),
        prop(0xCE, "chargeable_capacity", ENERGY_WH),
        prop(0xCF, "remaining_chargeable_capacity", ENERGY_WH),
        prop(0xD0, "used_capacity", ENERGY_WH),
        # Unlike the V2H class, a charger's power is unsigned: it cannot discharge.
        prop(0xD3, "instantaneous_power", POWER_W),
        prop(0xD8, "cumulative_charge", ENERGY_KWH),
        prop(
            0xDA,
            "operation_mode",
            Choice({0x40: "other", 0x42: "charge", 0x44: "standby", 0x47: "idle"}),
            "GSI",
        ),
        prop(0xE2, "remaining_energy", ENERGY_WH),
        prop(0xE4, "state_of_charge", PERCENT),
        prop(0xE7, "charge_amount_setting", ENERGY_WH, "GSI"),
        prop(0xEB, "charge_power_setting", POWER_W, "GSI"),
    ),
)
