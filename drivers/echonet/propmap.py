"""Property maps (EPC 0x9D INF, 0x9E Set, 0x9F Get map).

Byte 0 is the number N of properties. Below 16 the EPCs follow as a list; from 16 on a 16-byte
bitmap follows in which EPC ``x`` is bit ``(x >> 4) - 8`` of byte ``1 + (x & 0x0F)``. The bitmap
is transposed with respect to what one would guess (the low nibble picks the byte), which is
why several implementations get it wrong; the tests cover every EPC both ways.

Decoding is strict: a map whose count disagrees with its content is reported, because a wrong
map would make the driver poll properties the device does not have (or skip ones it has).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = [
    "MAX_LIST_FORM",
    "PropertyMapError",
    "decode_property_map",
    "encode_property_map",
]

MAX_LIST_FORM: Final = 15
"""Largest count written as a plain list; 16 and more use the bitmap."""

_BITMAP_LEN: Final = 16
_FIRST_EPC: Final = 0x80


class PropertyMapError(ValueError):
    """The EDT is not a valid property map."""


def decode_property_map(edt: bytes) -> frozenset[int]:
    """EPCs listed in a 0x9D/0x9E/0x9F EDT."""
    if not edt:
        raise PropertyMapError("property map is empty (needs at least the count byte)")
    count = edt[0]
    if count <= MAX_LIST_FORM:
        if len(edt) != 1 + count:
            raise PropertyMapError(
                f"list-form property map: count {count} needs {1 + count} bytes, got {len(edt)}"
            )
        epcs = frozenset(edt[1:])
        if len(epcs) != count:
            raise PropertyMapError(f"list-form property map repeats an EPC: {edt[1:].hex()}")
        low = [epc for epc in epcs if epc < _FIRST_EPC]
        if low:
            raise PropertyMapError(f"EPC 0x{min(low):02X} is outside 0x80-0xFF")
        return epcs
    if len(edt) != 1 + _BITMAP_LEN:
        raise PropertyMapError(
            f"bitmap property map (count {count}) needs 17 bytes, got {len(edt)}"
        )
    epcs = frozenset(
        ((bit + 8) << 4) | low_nibble
        for low_nibble, byte in enumerate(edt[1:])
        if byte
        for bit in range(8)
        if byte >> bit & 1
    )
    if len(epcs) != count:
        raise PropertyMapError(f"bitmap property map: count {count} but {len(epcs)} bits are set")
    return epcs


def encode_property_map(epcs: Iterable[int]) -> bytes:
    """EDT for a set of EPCs, in list form below 16 entries and bitmap form from 16 on."""
    given = set(epcs)
    for epc in given:
        if type(epc) is not int or not _FIRST_EPC <= epc <= 0xFF:
            raise PropertyMapError(f"EPC must be 0x80-0xFF, got {epc!r}")
    unique = sorted(given)
    if len(unique) <= MAX_LIST_FORM:
        return bytes((len(unique), *unique))
    bitmap = bytearray(_BITMAP_LEN)
    for epc in unique:
        bitmap[epc & 0x0F] |= 1 << ((epc >> 4) - 8)
    return bytes((len(unique),)) + bytes(bitmap)
