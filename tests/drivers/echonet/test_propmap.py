from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.echonet.propmap import (
    MAX_LIST_FORM,
    PropertyMapError,
    decode_property_map,
    encode_property_map,
)

from .strategies import EXAMPLES

ALL_EPCS = range(0x80, 0x100)


def bit_position(epc: int) -> tuple[int, int]:
    """(byte index in the EDT, bit) where the bitmap form keeps ``epc``."""
    return 1 + (epc & 0x0F), (epc >> 4) - 8


def filler(excluding: int, count: int) -> list[int]:
    return [epc for epc in ALL_EPCS if epc != excluding][:count]


@pytest.mark.parametrize("epc", ALL_EPCS, ids=lambda e: f"{e:02X}")
def test_every_epc_in_list_form(epc: int) -> None:
    edt = encode_property_map([epc])
    assert edt == bytes((1, epc))
    assert decode_property_map(edt) == {epc}


@pytest.mark.parametrize("epc", ALL_EPCS, ids=lambda e: f"{e:02X}")
def test_every_epc_in_bitmap_form(epc: int) -> None:
    # Written by hand from the rule, not by the encoder, so both directions are checked.
    others = filler(epc, 15)
    edt = bytearray(17)
    edt[0] = 16
    for member in [epc, *others]:
        byte, bit = bit_position(member)
        edt[byte] |= 1 << bit
    assert decode_property_map(bytes(edt)) == {epc, *others}
    assert encode_property_map([epc, *others]) == bytes(edt)
    # Moving exactly that bit to a spare EPC's bit removes exactly that EPC.
    spare = next(e for e in ALL_EPCS if e not in {epc, *others})
    byte, bit = bit_position(epc)
    edt[byte] &= ~(1 << bit) & 0xFF
    byte, bit = bit_position(spare)
    edt[byte] |= 1 << bit
    assert decode_property_map(bytes(edt)) == {spare, *others}


def test_bitmap_layout_examples() -> None:
    # 0x80 is bit 0 of byte 1; 0xFF is bit 7 of byte 16; 0x9F is bit 1 of byte 16.
    assert bit_position(0x80) == (1, 0)
    assert bit_position(0xFF) == (16, 7)
    assert bit_position(0x9F) == (16, 1)
    full = encode_property_map(ALL_EPCS)
    assert full == bytes((0x80,)) + b"\xff" * 16
    assert decode_property_map(full) == set(ALL_EPCS)


def test_typical_get_map_in_bitmap_form() -> None:
    epcs = {0x80, 0x81, 0x82, 0x83, 0x88, 0x8A, 0x8C, 0x8D, 0x9D, 0x9E, 0x9F}
    epcs |= {0xD3, 0xD7, 0xE0, 0xE1, 0xE7, 0xE8, 0xEA}
    edt = encode_property_map(epcs)
    assert edt[0] == len(epcs) == 18 and len(edt) == 17
    # Byte 1 holds the EPCs ending in 0: 0x80 (bit 0) and 0xE0 (bit 6).
    assert edt[1] == 0b0100_0001
    assert decode_property_map(edt) == epcs


def test_switch_between_forms() -> None:
    fifteen = list(range(0x80, 0x80 + MAX_LIST_FORM))
    assert len(encode_property_map(fifteen)) == 16
    assert len(encode_property_map([*fifteen, 0xF0])) == 17
    assert encode_property_map([]) == b"\x00"
    assert decode_property_map(b"\x00") == frozenset()


def test_encode_sorts_and_deduplicates() -> None:
    assert encode_property_map([0x9F, 0x80, 0x9F]) == bytes((2, 0x80, 0x9F))


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.frozensets(st.integers(0x80, 0xFF)))
def test_roundtrip_any_set(epcs: frozenset[int]) -> None:
    edt = encode_property_map(epcs)
    assert decode_property_map(edt) == epcs
    assert len(edt) == (1 + len(epcs) if len(epcs) <= MAX_LIST_FORM else 17)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=20))
def test_decode_random_only_raises_property_map_error(edt: bytes) -> None:
    try:
        epcs = decode_property_map(edt)
    except PropertyMapError:
        return
    assert decode_property_map(encode_property_map(epcs)) == epcs
    if edt[0] > MAX_LIST_FORM:
        assert encode_property_map(epcs) == edt  # the bitmap form is canonical


@pytest.mark.parametrize(
    ("edt", "text"),
    [
        (b"", "empty"),
        (bytes((2, 0x80)), "needs 3 bytes"),
        (bytes((1, 0x80, 0x81)), "needs 2 bytes"),
        (bytes((2, 0x80, 0x80)), "repeats"),
        (bytes((1, 0x7F)), "outside 0x80-0xFF"),
        (bytes((16,)) + b"\xff" * 15, "needs 17 bytes"),
        (bytes((16,)) + b"\xff" * 16, "count 16 but 128 bits"),
        (bytes((20,)) + b"\x00" * 16, "count 20 but 0 bits"),
    ],
)
def test_decode_errors(edt: bytes, text: str) -> None:
    with pytest.raises(PropertyMapError, match=text):
        decode_property_map(edt)


@pytest.mark.parametrize("bad", [0x7F, 0x100, -1])
def test_encode_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(PropertyMapError, match="0x80-0xFF"):
        encode_property_map([0x80, bad])
