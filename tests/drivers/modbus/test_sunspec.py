"""The SunSpec codec on hand-built register images: discovery, decoding, sentinels, fuzzing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.sunspec import (
    MARKER,
    InverterOffsets,
    NameplateOffsets,
    StorageOffsets,
    SunSpecError,
    decode_common,
    decode_inverter,
    decode_nameplate,
    decode_storage,
    encode_acc32,
    encode_int16,
    encode_scaled,
    encode_string,
    has_marker,
    header_at,
    parse_chain,
)


def common_words() -> list[int]:
    return [
        *encode_string("Acme Energy", 16),
        *encode_string("HX-10", 16),
        *encode_string("", 8),
        *encode_string("2.1", 8),
        *encode_string("SN123", 16),
        7,
        0,
    ]


def inverter_words(w: int = -1500, w_sf: int = 0, wh: int = 123_456, wh_sf: int = 0) -> list[int]:
    words = [0x8000] * InverterOffsets.LENGTH
    words[InverterOffsets.W] = encode_int16(w)
    words[InverterOffsets.W_SF] = encode_int16(w_sf)
    words[InverterOffsets.WH : InverterOffsets.WH + 2] = encode_acc32(wh)
    words[InverterOffsets.WH_SF] = encode_int16(wh_sf)
    words[InverterOffsets.ST] = 4
    return words


def storage_words(**points: int) -> list[int]:
    o = StorageOffsets
    words = [0xFFFF] * o.LENGTH
    defaults = {
        "WCHA_MAX": 5000,
        "STOR_CTL_MOD": 1,
        "CHA_STATE": 625,
        "CHA_ST": 4,
        "OUT_W_RTE": 0,
        "IN_W_RTE": 2500,
        "CHA_GRI_SET": 1,
        "WCHA_MAX_SF": 0,
        "CHA_STATE_SF": encode_int16(-1),
        "IN_OUT_W_RTE_SF": encode_int16(-2),
        "MIN_RSV_PCT_SF": 0,
        "MIN_RSV_PCT": 10,
    }
    defaults.update(points)
    for name, value in defaults.items():
        words[getattr(o, name)] = value
    return words


def image(*models: tuple[int, list[int]], base: int = 40000) -> list[int]:
    words = list(MARKER)
    for model_id, body in models:
        words += [model_id, len(body), *body]
    return [*words, 0xFFFF, 0]


def test_chain_is_walked_to_the_end_marker() -> None:
    words = image((1, common_words()), (103, inverter_words()), (124, storage_words()))
    chain = parse_chain(words, 40000)
    assert [(m.model_id, m.address, m.length) for m in chain] == [
        (1, 40004, 66),
        (103, 40072, 50),
        (124, 40124, 24),
    ]
    assert chain[0].end == 40070


def test_chain_errors() -> None:
    with pytest.raises(SunSpecError, match="marker"):
        parse_chain([0, 0, 1, 0], 0)
    truncated = image((1, common_words()))[:30]
    with pytest.raises(SunSpecError, match="truncated"):
        parse_chain(truncated, 0)
    with pytest.raises(SunSpecError, match="ID 0"):
        header_at(40002, [0, 10])
    with pytest.raises(SunSpecError, match="past 65535"):
        header_at(65530, [1, 66])
    assert header_at(40002, [0xFFFF, 0]) is None
    assert has_marker([0x5375, 0x6E53]) and not has_marker([0x5375, 0x6E54])


def test_common_model() -> None:
    common = decode_common(common_words())
    assert (common.manufacturer, common.model, common.serial) == ("Acme Energy", "HX-10", "SN123")
    assert common.options is None and common.version == "2.1" and common.device_address == 7
    assert decode_common(common_words()[:65]).serial == "SN123"  # the pad is optional


def test_inverter_scale_factors_and_sentinels() -> None:
    inv = decode_inverter(103, inverter_words(w=-1234, w_sf=-1, wh=98765, wh_sf=1))
    assert inv.w == pytest.approx(-123.4)
    assert inv.wh == 987650
    assert inv.status == "mppt" and inv.dc_w is None
    assert decode_inverter(101, inverter_words(w=0)).w == 0.0
    no_data = inverter_words()
    no_data[InverterOffsets.W] = 0x8000
    no_data[InverterOffsets.WH : InverterOffsets.WH + 2] = [0, 0]  # acc32 "not implemented"
    inv = decode_inverter(102, no_data)
    assert inv.w is None and inv.wh is None
    no_sf = inverter_words()
    no_sf[InverterOffsets.W_SF] = 0x8000
    assert decode_inverter(103, no_sf).w is None
    all_ones = inverter_words()
    all_ones[InverterOffsets.WH : InverterOffsets.WH + 2] = [0xFFFF, 0xFFFF]
    assert decode_inverter(103, all_ones).wh is None
    with pytest.raises(SunSpecError, match="not an inverter"):
        decode_inverter(124, inverter_words())
    bad_sf = inverter_words()
    bad_sf[InverterOffsets.W_SF] = encode_int16(11)
    with pytest.raises(SunSpecError, match="scale factor"):
        decode_inverter(103, bad_sf)


def test_storage_model() -> None:
    s = decode_storage(storage_words())
    assert s.w_cha_max == 5000 and s.stor_ctl_mod == 1
    assert s.cha_state_pct == pytest.approx(62.5)
    assert s.in_w_rte_pct == pytest.approx(25.0) and s.out_w_rte_pct == 0
    assert s.cha_st == "charging" and s.cha_gri_set == "grid" and s.min_rsv_pct == 10
    negative = decode_storage(storage_words(OUT_W_RTE=encode_int16(-5000)))
    assert negative.out_w_rte_pct == pytest.approx(-50.0)
    missing = decode_storage(
        storage_words(CHA_STATE=0xFFFF, IN_W_RTE=0x8000, STOR_CTL_MOD=0xFFFF, CHA_GRI_SET=0xFFFF)
    )
    assert missing.cha_state_pct is None and missing.in_w_rte_pct is None
    assert missing.stor_ctl_mod is None and missing.cha_gri_set is None
    no_sf = decode_storage(storage_words(CHA_STATE_SF=0x8000, IN_OUT_W_RTE_SF=0x8000))
    assert no_sf.cha_state_pct is None and no_sf.in_w_rte_pct is None
    assert no_sf.in_out_w_rte_sf is None


def test_nameplate_model() -> None:
    words = [0xFFFF] * NameplateOffsets.LENGTH
    words[NameplateOffsets.WHRTG] = 980
    words[NameplateOffsets.WHRTG_SF] = 1
    words[NameplateOffsets.MAX_CHA_RTE] = 5000
    words[NameplateOffsets.MAX_CHA_RTE_SF] = 0
    words[NameplateOffsets.MAX_DIS_CHA_RTE_SF] = 0
    words[NameplateOffsets.WRTG_SF] = 0x8000
    plate = decode_nameplate(words)
    assert plate.wh_rtg == 9800 and plate.max_cha_rte == 5000
    assert plate.max_dis_cha_rte is None and plate.w_rtg is None


def test_encoding_round_trips_and_limits() -> None:
    assert encode_scaled(20.0, -2, signed=True) == 2000
    assert encode_scaled(-50.0, -2, signed=True) == encode_int16(-5000)
    assert encode_scaled(62.5, -1) == 625
    with pytest.raises(SunSpecError):
        encode_scaled(400.0, -2, signed=True)
    with pytest.raises(SunSpecError):
        encode_scaled(6553.5, -1)  # would be the 0xFFFF "not implemented" code
    with pytest.raises(SunSpecError):
        encode_scaled(-1, 0)
    with pytest.raises(SunSpecError):
        encode_string("x" * 5, 2)
    with pytest.raises(SunSpecError):
        encode_int16(0x8000)
    with pytest.raises(SunSpecError):
        encode_acc32(-1)


def test_short_or_non_word_input_is_a_sunspec_error() -> None:
    with pytest.raises(SunSpecError, match="need 24"):
        decode_storage([0] * 23)
    with pytest.raises(SunSpecError, match="16-bit"):
        decode_storage([70000] * 24)
    with pytest.raises(SunSpecError, match="16-bit"):
        has_marker([True, 1])


# ---------------------------------------------------------------------------------- fuzzing

_DECODERS: list[Callable[[Sequence[int]], Any]] = [
    decode_common,
    decode_storage,
    decode_nameplate,
    lambda w: decode_inverter(103, w),
    lambda w: parse_chain(w, 40000),
    has_marker,
    lambda w: header_at(40002, w),
]

words_st = st.lists(
    st.one_of(
        st.integers(0, 0xFFFF),
        st.sampled_from([0, 0x8000, 0xFFFF, 0x7FFF, 0x5375, 0x6E53, 1, 124]),
    ),
    max_size=200,
)
junk_st = st.lists(
    st.one_of(st.integers(-(2**20), 2**20), st.booleans(), st.none(), st.text(max_size=2)),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(words=words_st)
def test_arbitrary_words_raise_only_sunspec_error(words: list[int]) -> None:
    for decode in _DECODERS:
        with contextlib.suppress(SunSpecError):
            decode(words)


@settings(max_examples=200, deadline=None)
@given(words=junk_st)
def test_arbitrary_junk_raises_only_sunspec_error(words: list[Any]) -> None:
    for decode in _DECODERS:
        with contextlib.suppress(SunSpecError):
            decode(words)


@settings(max_examples=200, deadline=None)
@given(
    models=st.lists(
        st.tuples(st.integers(1, 0xFFFE), st.lists(st.integers(0, 0xFFFF), max_size=30)),
        max_size=6,
    )
)
def test_well_formed_chains_parse(models: list[tuple[int, list[int]]]) -> None:
    chain = parse_chain(image(*models), 40000)
    assert [(m.model_id, m.length) for m in chain] == [(i, len(b)) for i, b in models]
