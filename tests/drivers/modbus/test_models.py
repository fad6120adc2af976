"""The SunSpec model tables against pysunspec2's published model definitions, and the
table-driven codec on every model the gateway knows."""

from __future__ import annotations

import contextlib
import json
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.models import MODELS, PointType
from drivers.modbus.sunspec import (
    InverterOffsets,
    NameplateOffsets,
    StorageOffsets,
    SunSpecError,
    Value,
    decode_inverter,
    decode_model,
    encode_int16,
    encode_model,
    model_problem,
)

LISTED = [1, 101, 102, 103, 111, 112, 113, 120, 121, 122, 123, 124, 160, 701, 702, 704, 713, 802]


def published(model_id: int) -> dict[str, Any]:
    path = files("sunspec2") / "models" / "json" / f"model_{model_id}.json"
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data["group"]


def _points(group: dict[str, Any], skip_header: bool) -> list[tuple[Any, ...]]:
    rows = []
    offset = 0
    for p in group["points"]:
        if skip_header and p["name"] in ("ID", "L"):
            continue
        units = (p.get("units") or "").strip() or None
        rows.append(
            (p["name"], p["type"], p["size"], offset, p.get("sf"), units, p.get("access") == "RW")
        )
        offset += p["size"]
    return rows


def test_every_listed_model_has_a_table() -> None:
    assert sorted(MODELS) == LISTED


@pytest.mark.parametrize("model_id", LISTED)
def test_table_matches_pysunspec2(model_id: int) -> None:
    ref = published(model_id)
    ours = MODELS[model_id]
    assert (ours.name, ours.label) == (ref["name"], ref["label"])
    mine = [(p.name, p.type.value, p.size, p.offset, p.sf, p.units, p.rw) for p in ours.points]
    assert mine == _points(ref, skip_header=True)
    ref_groups = ref.get("groups", [])
    assert [g.name for g in ours.groups] == [g["name"] for g in ref_groups]
    for group, ref_group in zip(ours.groups, ref_groups, strict=True):
        count = ref_group.get("count")
        assert group.count == (None if count is None else 0)
        got = [(p.name, p.type.value, p.size, p.offset, p.sf, p.units, p.rw) for p in group.points]
        assert got == _points(ref_group, skip_header=False)


def test_hand_written_offsets_match_the_tables() -> None:
    inverter, plate, storage = MODELS[103], MODELS[120], MODELS[124]
    assert (
        inverter.offset("W"),
        inverter.offset("W_SF"),
    ) == (InverterOffsets.W, InverterOffsets.W_SF)
    assert (
        inverter.offset("WH"),
        inverter.offset("WH_SF"),
    ) == (InverterOffsets.WH, InverterOffsets.WH_SF)
    assert (
        inverter.offset("DCW"),
        inverter.offset("St"),
    ) == (InverterOffsets.DCW, InverterOffsets.ST)
    assert inverter.fixed_length == InverterOffsets.LENGTH
    assert plate.offset("WHRtg") == NameplateOffsets.WHRTG and NameplateOffsets.LENGTH == 26
    assert plate.offset("MaxDisChaRte_SF") == NameplateOffsets.MAX_DIS_CHA_RTE_SF
    for name, point in [
        ("WCHA_MAX", "WChaMax"),
        ("STOR_CTL_MOD", "StorCtl_Mod"),
        ("OUT_W_RTE", "OutWRte"),
        ("IN_W_RTE", "InWRte"),
        ("CHA_STATE", "ChaState"),
        ("IN_OUT_W_RTE_SF", "InOutWRte_SF"),
    ]:
        assert getattr(StorageOffsets, name) == storage.offset(point)


# --------------------------------------------------------------------------------- decoding


def _sample(model_id: int, sf: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A value for every point: scale factors ``sf``, numbers that survive the round trip."""
    d = MODELS[model_id]

    def block(points: Any, prefix: str = "") -> dict[str, Any]:
        values: dict[str, Any] = {}
        for i, p in enumerate(points):
            if p.type is PointType.PAD:
                continue
            if p.type is PointType.SUNSSF:
                values[prefix + p.name] = sf
            elif p.type is PointType.STRING:
                values[prefix + p.name] = f"{p.name[:6]}-{i}"
            elif p.type is PointType.FLOAT32:
                values[prefix + p.name] = 1.5 * (i + 1)
            elif p.type is PointType.INT16 or p.type is PointType.INT32:
                values[prefix + p.name] = -(i + 3) * 10.0**sf if p.sf else -(i + 3)
            else:
                values[prefix + p.name] = (i + 3) * 10.0**sf if p.sf else i + 3
        return values

    values = block(d.points)
    for g in d.groups:
        if g.count is None:
            values.update(block(g.points, f"{g.name}."))
    blocks = [block(d.repeating.points) for _ in range(2)] if d.repeating else []
    return values, blocks


@pytest.mark.parametrize("sf", [-2, 0, 1])
@pytest.mark.parametrize("model_id", LISTED)
def test_every_model_round_trips_with_scale_factors(model_id: int, sf: int) -> None:
    values, blocks = _sample(model_id, sf)
    words = encode_model(model_id, values, blocks)
    d = MODELS[model_id]
    assert len(words) == d.fixed_length + len(blocks) * (d.repeating.length if d.repeating else 0)
    decoded = decode_model(model_id, words)
    assert decoded.name == d.name
    for name, value in values.items():
        got = decoded[name]
        if isinstance(value, float):
            assert got == pytest.approx(value), name
        else:
            assert got == value, name
    assert len(decoded.blocks) == len(blocks)
    for got_block, want in zip(decoded.blocks, blocks, strict=True):
        assert {k: v.value for k, v in got_block.items()} == pytest.approx(want)


@pytest.mark.parametrize("model_id", LISTED)
def test_every_model_not_implemented_reads_none(model_id: int) -> None:
    d = MODELS[model_id]
    blocks: list[dict[str, Value]] = [{}] if d.repeating else []
    decoded = decode_model(model_id, encode_model(model_id, {}, blocks))
    assert all(p.value is None for p in decoded.points.values())
    assert all(p.value is None for b in decoded.blocks for p in b.values())
    # With scale factors but no values the sentinels still win over scaling.
    sfs = {p.name: -1 for p in d.points if p.type is PointType.SUNSSF}
    decoded = decode_model(model_id, encode_model(model_id, sfs, blocks))
    assert all(p.value is None for n, p in decoded.points.items() if n not in sfs)


def test_scale_factor_missing_means_no_value() -> None:
    words = encode_model(124, {"WChaMax": 5000, "WChaMax_SF": 0})
    words[MODELS[124].offset("WChaMax_SF")] = 0x8000
    assert decode_model(124, words)["WChaMax"] is None


def test_units_and_hand_built_words() -> None:
    # Model 123: WMaxLimPct 55.5 % at SF -1, revert timer 600 s, enabled.
    d = MODELS[123]
    words = [0xFFFF] * d.fixed_length
    words[d.offset("WMaxLimPct")] = 555
    words[d.offset("WMaxLimPct_SF")] = encode_int16(-1)
    words[d.offset("WMaxLimPct_RvrtTms")] = 600
    words[d.offset("WMaxLim_Ena")] = 1
    m = decode_model(123, words)
    assert m["WMaxLimPct"] == pytest.approx(55.5) and m.points["WMaxLimPct"].units == "% WMax"
    assert m["WMaxLimPct_RvrtTms"] == 600 and m["WMaxLim_Ena"] == 1
    assert m["Conn"] is None  # 0xFFFF enum: not implemented
    # Model 111: float32, NaN = not implemented.
    d = MODELS[111]
    words = [0x7FC0, 0] * (d.fixed_length // 2)
    w = d.offset("W")
    words[w : w + 2] = [0x4540, 0x0000]  # 3072.0
    words[d.offset("St")] = 4
    words[d.offset("St") + 1] = 0
    inv = decode_inverter(111, words)
    assert inv.w == 3072.0 and inv.wh is None and inv.status == "mppt"
    # Model 704: int32 WSet, signed, scaled, and a once-only group point.
    d = MODELS[704]
    words = encode_model(704, {"WSet": -2500, "WSet_SF": 0, "PF_SF": -2, "PFWInj.PF": 0.95})
    m = decode_model(704, words)
    assert m["WSet"] == -2500 and m["PFWInj.PF"] == pytest.approx(0.95)
    at = d.offset("WSet")
    assert words[at : at + 2] == [0xFFFF, 0xF63C]


def test_model_160_repeating_modules() -> None:
    values = {"DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0, "DCWH_SF": 0, "N": 2}
    modules: list[dict[str, Value]] = [
        {"ID": 1, "IDStr": "string A", "DCA": 8.25, "DCV": 350.5, "DCW": 2890, "DCWH": 10_000},
        {"ID": 2, "IDStr": "string B", "DCA": 0, "DCV": 12.0, "DCW": 0},
    ]
    words = encode_model(160, values, modules)
    m = decode_model(160, words)
    assert m["N"] == 2 and len(m.blocks) == 2
    assert m.blocks[0]["DCA"].value == pytest.approx(8.25)
    assert m.blocks[0]["DCV"].units == "V" and m.blocks[0]["DCWH"].value == 10_000
    assert m.blocks[1]["IDStr"].value == "string B" and m.blocks[1]["DCWH"].value is None
    assert model_problem(160, len(words)) is None
    assert "not whole module blocks" in (model_problem(160, len(words) - 1) or "")
    with pytest.raises(SunSpecError, match="module"):
        decode_model(160, words[:-1])


def test_broken_and_unknown_models() -> None:
    assert model_problem(1, 65) is None and model_problem(1, 66) is None
    assert "needs 65" in (model_problem(1, 64) or "")
    assert model_problem(124, 24) is None and model_problem(124, 30) is None  # newer, longer
    assert model_problem(64000, 3) is None  # unknown: nothing to check
    with pytest.raises(SunSpecError, match="not known"):
        decode_model(64000, [0, 0, 0])
    with pytest.raises(SunSpecError, match="needs"):
        decode_model(103, [0] * 20)


def test_encoder_refuses_what_would_not_read_back() -> None:
    with pytest.raises(SunSpecError, match="no point"):
        encode_model(124, {"Nope": 1})
    with pytest.raises(SunSpecError, match="no scale factor"):
        encode_model(124, {"WChaMax": 5000})
    with pytest.raises(SunSpecError, match="not implemented"):
        encode_model(124, {"WChaMax": 0xFFFF, "WChaMax_SF": 0})
    with pytest.raises(SunSpecError, match="fit"):
        encode_model(124, {"WChaMax": -1, "WChaMax_SF": 0})
    with pytest.raises(SunSpecError, match="scale factor"):
        encode_model(124, {"WChaMax_SF": 11})
    with pytest.raises(SunSpecError, match="text"):
        encode_model(1, {"Mn": 5})
    with pytest.raises(SunSpecError, match="not a number"):
        encode_model(1, {"DA": "x"})


words_st = st.lists(
    st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 0x8000, 0xFFFF, 0x7FC0, 0x000B, 0xFFF5])),
    max_size=170,
)


@settings(max_examples=150, deadline=None)
@given(model_id=st.sampled_from(LISTED), words=words_st)
def test_arbitrary_words_raise_only_sunspec_error(model_id: int, words: list[int]) -> None:
    with contextlib.suppress(SunSpecError):
        decode_model(model_id, words)


@settings(max_examples=60, deadline=None)
@given(
    model_id=st.sampled_from(LISTED),
    junk=st.lists(st.one_of(st.integers(-5, 2**17), st.none(), st.booleans()), max_size=80),
)
def test_arbitrary_junk_raises_only_sunspec_error(model_id: int, junk: list[Any]) -> None:
    with contextlib.suppress(SunSpecError):
        decode_model(model_id, junk)
