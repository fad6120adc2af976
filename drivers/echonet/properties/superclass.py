"""Device object super class (0x0000): properties every device object may have."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .spec import PropertySpec, prop, table
from .types import (
    Choice,
    Codec,
    Date,
    Decoded,
    PropertyError,
    PropertyMapCodec,
    Raw,
    Text,
    Time,
    uint,
)

__all__ = ["CLASS_ID", "ON_OFF", "PROPERTIES", "AppendixRelease"]

CLASS_ID: Final = 0x0000

ON_OFF: Final = Choice({0x30: "on", 0x31: "off"})
FAULT: Final = Choice({0x41: "fault", 0x42: "no_fault"})


class AppendixRelease(Codec):
    """0x82 of a device object: 0x00 0x00, the Appendix release letter in ASCII, a revision.

    The release decides which properties and codes a device may have, so it is decoded strictly.
    """

    @property
    def size_range(self) -> tuple[int, int]:
        return (4, 4)

    def decode(self, edt: bytes) -> dict[str, Decoded]:
        self._check_size(edt)
        if edt[:2] != b"\x00\x00":
            raise PropertyError(f"bytes 1-2 must be 0x0000, got 0x{edt[:2].hex().upper()}")
        letter = edt[2]
        if not 0x41 <= letter <= 0x5A:
            raise PropertyError(f"release byte 0x{letter:02X} is not an ASCII letter A-Z")
        return {"release": chr(letter), "revision": edt[3]}

    def encode(self, value: object) -> bytes:
        if isinstance(value, str):
            value = {"release": value, "revision": 0}
        if not isinstance(value, Mapping):
            raise PropertyError(f"expected a release letter, got {value!r}")
        release, revision = value.get("release"), value.get("revision", 0)
        if not (isinstance(release, str) and len(release) == 1 and "A" <= release <= "Z"):
            raise PropertyError(f"release must be one letter A-Z, got {release!r}")
        if type(revision) is not int or not 0 <= revision <= 0xFF:
            raise PropertyError(f"revision must be 0..255, got {revision!r}")
        return bytes((0, 0, ord(release), revision))


COMMON: Final = (
    prop(0x83, "identification_number", Raw(17, 17)),
    prop(0x88, "fault_status", FAULT),
    prop(0x8A, "maker_code", uint(3)),
    prop(0x8B, "business_facility_code", Raw(3, 3)),
    prop(0x8C, "product_code", Text(12)),
    prop(0x8D, "serial_number", Text(12)),
    prop(0x8E, "production_date", Date()),
    prop(0x9D, "inf_property_map", PropertyMapCodec()),
    prop(0x9E, "set_property_map", PropertyMapCodec()),
    prop(0x9F, "get_property_map", PropertyMapCodec()),
)
"""Shared with the node profile, which has the same layout for these."""

PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    CLASS_ID,
    (
        prop(0x80, "operation_status", ON_OFF, "GSI"),
        prop(0x81, "installation_location", Raw(1, 17), "GSI"),
        prop(0x82, "standard_version", AppendixRelease()),
        prop(0x84, "instantaneous_power", uint(2, 0, 65533, unit="W")),
        prop(0x85, "cumulative_energy", uint(4, 0, 999999999, unit="kWh", scale="0.001")),
        prop(0x8F, "power_saving", Choice({0x41: "saving", 0x42: "normal"}), "GSI"),
        prop(0x97, "current_time", Time(2), "GSI"),
        prop(0x98, "current_date", Date(), "GSI"),
        prop(0x99, "power_limit", uint(2, 0, 65533, unit="W"), "GSI"),
        *COMMON,
    ),
)
