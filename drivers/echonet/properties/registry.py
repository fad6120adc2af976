"""Lookup across the class tables: which spec decodes EPC x of class y."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from . import aircon, battery, ev, meter, node_profile, pv, superclass, water_heater
from .spec import PropertySpec, Value, to_json
from .types import PropertyError

__all__ = [
    "CLASS_NAMES",
    "CLASS_TABLES",
    "MAKER_NAMES",
    "class_name",
    "decode_value",
    "encode_value",
    "maker_name",
    "spec_for",
]

CLASS_TABLES: Final[Mapping[int, Mapping[int, PropertySpec]]] = {
    superclass.CLASS_ID: superclass.PROPERTIES,
    node_profile.CLASS_ID: node_profile.PROPERTIES,
    meter.CLASS_ID: meter.PROPERTIES,
    pv.CLASS_ID: pv.PROPERTIES,
    battery.CLASS_ID: battery.PROPERTIES,
    ev.V2H_CLASS_ID: ev.V2H_PROPERTIES,
    ev.CHARGER_CLASS_ID: ev.CHARGER_PROPERTIES,
    water_heater.CLASS_ID: water_heater.PROPERTIES,
    aircon.CLASS_ID: aircon.PROPERTIES,
}
"""Own properties of each class we decode; lookups fall back to the super class."""

CLASS_NAMES: Final[Mapping[int, str]] = {
    0x0011: "temperature sensor",
    0x0012: "humidity sensor",
    0x0022: "electric energy sensor",
    0x0023: "current value sensor",
    0x0130: "home air conditioner",
    0x0133: "ventilation fan",
    0x0135: "air cleaner",
    0x026B: "electric water heater",
    0x026F: "electric lock",
    0x0272: "instantaneous water heater",
    0x0279: "household solar power generation",
    0x027C: "fuel cell",
    0x027D: "storage battery",
    0x027E: "electric vehicle charger/discharger",
    0x0280: "electric energy meter",
    0x0281: "water flow meter",
    0x0282: "gas meter",
    0x0287: "power distribution board metering",
    0x0288: "low-voltage smart electric energy meter",
    0x028A: "high-voltage smart electric energy meter",
    0x0290: "general lighting",
    0x0291: "single function lighting",
    0x02A1: "electric vehicle charger",
    0x02A3: "lighting system",
    0x02A5: "multiple input PCS",
    0x03B7: "refrigerator",
    0x05FF: "controller",
    0x0EF0: "node profile",
}

MAKER_NAMES: Final[Mapping[int, str]] = {
    0x000001: "Hitachi",
    0x000005: "Sharp",
    0x000006: "Mitsubishi Electric",
    0x000008: "Daikin",
    0x00000B: "Panasonic",
    0x000016: "Toshiba",
}
"""Only codes we are sure of; anything else is shown as hex."""


def spec_for(class_id: int, epc: int) -> PropertySpec | None:
    """The spec for ``epc`` of ``class_id``: the class's own, else the super class's.

    The node profile does not inherit the device super class; it has its own complete table.
    """
    own = CLASS_TABLES.get(class_id)
    if own is not None and epc in own:
        return own[epc]
    if class_id == node_profile.CLASS_ID:
        return None
    return superclass.PROPERTIES.get(epc)


def class_name(class_id: int) -> str:
    return CLASS_NAMES.get(class_id, f"class 0x{class_id:04X}")


def maker_name(code: int) -> str:
    return MAKER_NAMES.get(code, f"maker 0x{code:06X}")


def decode_value(class_id: int, epc: int, edt: bytes) -> Value:
    """Decode for display and telemetry; unknown (e.g. vendor 0xF0-0xFF) EPCs stay raw hex.

    Raises :class:`~.types.PropertyError` if a known property's EDT is malformed.
    """
    raw = bytes(edt).hex().upper()
    spec = spec_for(class_id, epc)
    if spec is None:
        return Value(epc, f"0x{epc:02X}", raw, raw, "")
    return Value(epc, spec.name, raw, to_json(spec.decode(edt)), spec.unit, spec.state(edt))


def encode_value(class_id: int, epc: int, value: object) -> bytes:
    """EDT for a Set; refuses EPCs we have no spec for rather than guess a layout."""
    spec = spec_for(class_id, epc)
    if spec is None:
        raise PropertyError("no specification known", class_id=class_id, epc=epc)
    return spec.encode(value)
