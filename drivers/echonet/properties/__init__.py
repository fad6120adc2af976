"""Typed property codecs for the ECHONET classes the gateway uses.

``spec_for(class_id, epc)`` finds how to read and write a property; ``decode_value`` turns an
EDT into a :class:`Value` for logs, telemetry and the discovery table. Malformed EDTs raise
:class:`PropertyError`; sentinel codes ("no data", "not set") decode to ``None``.
"""

from __future__ import annotations

from .meter import (
    Boundary,
    DayHistory,
    History2,
    counter_delta,
    energy_kwh,
    energy_wh,
    history_deltas,
    parse_boundary,
    parse_day_history,
    parse_history2,
    slot_energy_wh,
    unit_multiplier,
)
from .registry import (
    CLASS_NAMES,
    CLASS_TABLES,
    MAKER_NAMES,
    class_name,
    decode_value,
    encode_value,
    maker_name,
    spec_for,
)
from .spec import JSON, Access, PropertySpec, Value, to_json
from .types import Codec, Decoded, PropertyError

__all__ = [
    "CLASS_NAMES",
    "CLASS_TABLES",
    "JSON",
    "MAKER_NAMES",
    "Access",
    "Boundary",
    "Codec",
    "DayHistory",
    "Decoded",
    "History2",
    "PropertyError",
    "PropertySpec",
    "Value",
    "class_name",
    "counter_delta",
    "decode_value",
    "encode_value",
    "energy_kwh",
    "energy_wh",
    "history_deltas",
    "maker_name",
    "parse_boundary",
    "parse_day_history",
    "parse_history2",
    "slot_energy_wh",
    "spec_for",
    "to_json",
    "unit_multiplier",
]
