"""The names of the readings every adapter reports, whatever protocol it speaks.

Drivers report values through a ``ReadingCallback(key, value, at)``; the gateway's readings hub,
telemetry and the interlock look them up by these keys. One list, so an ECHONET battery, a Modbus
battery and the B-route meter cannot drift apart in what they call the same quantity.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

ReadingCallback = Callable[[str, Any, datetime], None]

METER_POWER_W: Final = "meter.power_w"
METER_CURRENTS_A: Final = "meter.currents_a"
METER_IMPORT_KWH: Final = "meter.import_kwh"
METER_EXPORT_KWH: Final = "meter.export_kwh"
BATTERY_SOC_PCT: Final = "battery.soc_pct"
BATTERY_POWER_W: Final = "battery.power_w"
BATTERY_MODE: Final = "battery.mode"
BATTERY_REMAINING_WH: Final = "battery.remaining_wh"
BATTERY_CHARGED_WH: Final = "battery.charged_wh"
BATTERY_DISCHARGED_WH: Final = "battery.discharged_wh"
PV_POWER_W: Final = "pv.power_w"
PV_GENERATED_WH: Final = "pv.generated_wh"
PV_SOLD_WH: Final = "pv.sold_wh"
PV_LIMIT_PCT: Final = "pv.limit_pct"
PV_LIMIT_W: Final = "pv.limit_w"
