from __future__ import annotations

import pickle
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.echonet import frame as frame_module
from drivers.echonet.frame import (
    CONTROLLER,
    EHD,
    EOJ,
    ESV,
    NODE_PROFILE,
    DecodeError,
    EncodeError,
    Frame,
    Property,
    decode,
    encode,
    get_request,
    inf_request,
    infc_response,
    reply,
    set_request,
    setget_request,
)

from .strategies import EXAMPLES, FUZZ_EXAMPLES, LONG_TIMEOUT, SLOW, frames, properties

METER = EOJ.parse("028801")
BATTERY = EOJ.parse("027D01")


def hexframe(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# ------------------------------------------------------------------------------------------ EOJ


def test_eoj_parse_and_format() -> None:
    eoj = EOJ.parse("027D01")
    assert eoj == EOJ(0x02, 0x7D, 0x01)
    assert str(eoj) == "027D01"
    assert eoj.class_id == 0x027D
    assert eoj.to_bytes() == b"\x02\x7d\x01"
    assert EOJ.parse("0x027d01") == eoj
    assert EOJ.from_bytes(b"\x02\x7d\x01") == eoj
    assert EOJ.of(0x027D, 2) == EOJ(0x02, 0x7D, 0x02)
    assert eoj.with_instance(3) == EOJ(0x02, 0x7D, 0x03)


def test_eoj_constants() -> None:
    assert str(NODE_PROFILE) == "0EF001" and NODE_PROFILE.is_node_profile
    assert str(CONTROLLER) == "05FF01" and not CONTROLLER.is_node_profile
    assert EOJ.NODE_PROFILE is NODE_PROFILE
    assert EOJ.CONTROLLER is CONTROLLER


@pytest.mark.parametrize("text", ["", "027D", "027D0101", "XYZ123", "0x12"])
def test_eoj_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="6 hex digits"):
        EOJ.parse(text)


@pytest.mark.parametrize("args", [(256, 0, 0), (0, -1, 0), (0, 0, 300)])
def test_eoj_rejects_out_of_range(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match=re.escape("0..255")):
        EOJ(*args)


def test_eoj_from_bytes_needs_three() -> None:
    with pytest.raises(ValueError, match="3 bytes"):
        EOJ.from_bytes(b"\x02\x7d")


# ------------------------------------------------------------------------------------------ ESV

ESV_FACTS = [
    # esv, request, response, sna, two blocks, expected responses, answers
    (ESV.SETI, True, False, False, False, (ESV.SETI_SNA,), None),
    (ESV.SETC, True, False, False, False, (ESV.SET_RES, ESV.SETC_SNA), None),
    (ESV.GET, True, False, False, False, (ESV.GET_RES, ESV.GET_SNA), None),
    (ESV.INF_REQ, True, False, False, False, (ESV.INF, ESV.INF_SNA), None),
    (ESV.SETGET, True, False, False, True, (ESV.SETGET_RES, ESV.SETGET_SNA), None),
    (ESV.SET_RES, False, True, False, False, (), ESV.SETC),
    (ESV.GET_RES, False, True, False, False, (), ESV.GET),
    (ESV.INF, False, True, False, False, (), ESV.INF_REQ),
    (ESV.INFC, False, True, False, False, (ESV.INFC_RES,), None),
    (ESV.INFC_RES, False, True, False, False, (), ESV.INFC),
    (ESV.SETGET_RES, False, True, False, True, (), ESV.SETGET),
    (ESV.SETI_SNA, False, False, True, False, (), ESV.SETI),
    (ESV.SETC_SNA, False, False, True, False, (), ESV.SETC),
    (ESV.GET_SNA, False, False, True, False, (), ESV.GET),
    (ESV.INF_SNA, False, False, True, False, (), ESV.INF_REQ),
    (ESV.SETGET_SNA, False, False, True, True, (), ESV.SETGET),
]


def test_esv_codes() -> None:
    assert {e.name: e.value for e in ESV} == {
        "SETI": 0x60,
        "SETC": 0x61,
        "GET": 0x62,
        "INF_REQ": 0x63,
        "SETGET": 0x6E,
        "SET_RES": 0x71,
        "GET_RES": 0x72,
        "INF": 0x73,
        "INFC": 0x74,
        "INFC_RES": 0x7A,
        "SETGET_RES": 0x7E,
        "SETI_SNA": 0x50,
        "SETC_SNA": 0x51,
        "GET_SNA": 0x52,
        "INF_SNA": 0x53,
        "SETGET_SNA": 0x5E,
    }


@pytest.mark.parametrize(
    ("esv", "request_", "response", "sna", "two", "expected", "answers"), ESV_FACTS
)
def test_esv_helpers(
    esv: ESV,
    request_: bool,
    response: bool,
    sna: bool,
    two: bool,
    expected: tuple[ESV, ...],
    answers: ESV | None,
) -> None:
    assert esv.is_request is request_
    assert esv.is_response is response
    assert esv.is_sna is sna
    assert esv.has_two_blocks is two
    assert esv.expected_responses == expected
    assert esv.request is answers
    assert esv.is_notification is (esv in (ESV.INF, ESV.INFC))


# ---------------------------------------------------- one hand-checked vector per ESV (both ways)

VECTORS = [
    (
        "Get of E7 and E0",
        "1081 0001 05FF01 028801 62 02 E700 E000",
        Frame(1, CONTROLLER, METER, ESV.GET, (Property(0xE7), Property(0xE0))),
    ),
    (
        "Get_Res with two values",
        "1081 0001 028801 05FF01 72 02 E704 000001F4 E004 00012345",
        Frame(
            1,
            METER,
            CONTROLLER,
            ESV.GET_RES,
            (Property(0xE7, bytes.fromhex("000001F4")), Property(0xE0, bytes.fromhex("00012345"))),
        ),
    ),
    (
        "SetC of DA=charge",
        "1081 0102 05FF01 027D01 61 01 DA01 42",
        Frame(0x0102, CONTROLLER, BATTERY, ESV.SETC, (Property(0xDA, b"\x42"),)),
    ),
    (
        "SetI of DA=standby",
        "1081 0103 05FF01 027D01 60 01 DA01 44",
        Frame(0x0103, CONTROLLER, BATTERY, ESV.SETI, (Property(0xDA, b"\x44"),)),
    ),
    (
        "Set_Res accepting DA",
        "1081 0102 027D01 05FF01 71 01 DA00",
        Frame(0x0102, BATTERY, CONTROLLER, ESV.SET_RES, (Property(0xDA),)),
    ),
    (
        "INF_REQ of 80",
        "1081 0004 05FF01 027D01 63 01 8000",
        Frame(4, CONTROLLER, BATTERY, ESV.INF_REQ, (Property(0x80),)),
    ),
    (
        "INF of EA",
        "1081 0000 028801 05FF01 73 01 EA0B 07E80102000000 00012345",
        Frame(
            0,
            METER,
            CONTROLLER,
            ESV.INF,
            (Property(0xEA, bytes.fromhex("07E8010200000000012345")),),
        ),
    ),
    (
        "INFC of EA",
        "1081 0005 028801 05FF01 74 01 EA0B 07E80102000000 00012345",
        Frame(
            5,
            METER,
            CONTROLLER,
            ESV.INFC,
            (Property(0xEA, bytes.fromhex("07E8010200000000012345")),),
        ),
    ),
    (
        "INFC_Res",
        "1081 0005 05FF01 028801 7A 01 EA00",
        Frame(5, CONTROLLER, METER, ESV.INFC_RES, (Property(0xEA),)),
    ),
    (
        "SetGet: set DA, get CF and D3",
        "1081 0010 05FF01 027D01 6E 01 DA01 42 02 CF00 D300",
        Frame(
            0x10,
            CONTROLLER,
            BATTERY,
            ESV.SETGET,
            (Property(0xDA, b"\x42"),),
            (Property(0xCF), Property(0xD3)),
        ),
    ),
    (
        "SetGet_Res: both blocks",
        "1081 0010 027D01 05FF01 7E 01 DA00 02 CF01 42 D304 000003E8",
        Frame(
            0x10,
            BATTERY,
            CONTROLLER,
            ESV.SETGET_RES,
            (Property(0xDA),),
            (Property(0xCF, b"\x42"), Property(0xD3, bytes.fromhex("000003E8"))),
        ),
    ),
    (
        "SetGet_SNA: set refused, one get refused",
        "1081 0010 027D01 05FF01 5E 01 DA01 42 02 CF01 44 D300",
        Frame(
            0x10,
            BATTERY,
            CONTROLLER,
            ESV.SETGET_SNA,
            (Property(0xDA, b"\x42"),),
            (Property(0xCF, b"\x44"), Property(0xD3)),
        ),
    ),
    (
        "SetGet with an empty set block",
        "1081 0011 05FF01 027D01 6E 00 01 E400",
        Frame(0x11, CONTROLLER, BATTERY, ESV.SETGET, (), (Property(0xE4),)),
    ),
    (
        "SetI_SNA",
        "1081 0103 027D01 05FF01 50 01 DA01 44",
        Frame(0x0103, BATTERY, CONTROLLER, ESV.SETI_SNA, (Property(0xDA, b"\x44"),)),
    ),
    (
        "SetC_SNA: AA accepted, DA refused",
        "1081 0104 027D01 05FF01 51 02 AA00 DA01 42",
        Frame(
            0x0104,
            BATTERY,
            CONTROLLER,
            ESV.SETC_SNA,
            (Property(0xAA), Property(0xDA, b"\x42")),
        ),
    ),
    (
        "Get_SNA with partial data",
        "1081 0006 028801 05FF01 52 03 E704 000001F4 E300 E004 00012345",
        Frame(
            6,
            METER,
            CONTROLLER,
            ESV.GET_SNA,
            (
                Property(0xE7, bytes.fromhex("000001F4")),
                Property(0xE3),
                Property(0xE0, bytes.fromhex("00012345")),
            ),
        ),
    ),
    (
        "INF_SNA",
        "1081 0007 027D01 05FF01 53 01 8000",
        Frame(7, BATTERY, CONTROLLER, ESV.INF_SNA, (Property(0x80),)),
    ),
]


@pytest.mark.parametrize(("label", "wire", "frame"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_encode_and_decode(label: str, wire: str, frame: Frame) -> None:
    data = hexframe(wire)
    assert encode(frame) == data
    # Twice: the second decode goes through the compiled shape once one has been learnt.
    assert decode(data) == frame
    assert decode(data) == frame
    assert decode(data) == frame


def test_every_esv_has_a_vector() -> None:
    assert {frame.esv for _, _, frame in VECTORS} == set(ESV)


def test_get_sna_keeps_readable_values() -> None:
    frame = decode(hexframe(VECTORS[-2][1]))
    assert frame.readable() == {0xE7: bytes.fromhex("000001F4"), 0xE0: bytes.fromhex("00012345")}
    assert frame.refused() == (0xE3,)


def test_setget_readable_and_refused_use_the_right_blocks() -> None:
    frame = decode(hexframe("1081 0010 027D01 05FF01 5E 01 DA01 42 02 CF01 44 D300"))
    assert frame.readable() == {0xCF: b"\x44"}
    assert frame.refused() == (0xDA, 0xD3)
    ok = decode(hexframe("1081 0010 027D01 05FF01 7E 01 DA00 02 CF01 42 D304 000003E8"))
    assert ok.refused() == ()


def test_set_sna_refused_are_those_echoing_data() -> None:
    frame = decode(hexframe("1081 0104 027D01 05FF01 51 02 AA00 DA01 42"))
    assert frame.refused() == (0xDA,)


def test_find_and_pdc() -> None:
    frame = decode(hexframe(VECTORS[1][1]))
    found = frame.find(0xE0)
    assert found is not None and found.pdc == 4
    assert frame.find(0x80) is None
    assert Property(0x80).pdc == 0


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = hexframe(VECTORS[0][1])
    assert decode(bytearray(data)) == decode(data)
    assert decode(memoryview(data)) == decode(data)
    assert type(decode(bytearray(data)).props[0].edt) is bytes


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        decode("1081")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- decode errors

ERRORS = [
    ("empty", "", 0, "too short"),
    ("one byte", "10", 1, "too short"),
    ("EHD1", "2081 0001 05FF01 028801 62 01 E700", 0, "EHD1"),
    ("EHD2", "1082 0001 05FF01 028801 62 01 E700", 1, "EHD2"),
    ("EHD2 in a short frame", "1082", 1, "EHD2"),
    ("header cut", "1081 0001 05FF01 0288", 9, "too short"),
    ("unknown ESV", "1081 0001 05FF01 028801 99 01 E700", 10, "unknown ESV 0x99"),
    ("OPC but no property", "1081 0001 05FF01 028801 62 01", 12, "OPC=1"),
    ("OPC larger than content", "1081 0001 05FF01 028801 62 02 E700", 14, "OPC=2"),
    ("PDC byte missing", "1081 0001 05FF01 028801 62 02 E700 E0", 15, "PDC byte missing"),
    ("EDT truncated", "1081 0001 028801 05FF01 72 01 E704 0000F4", 13, "PDC=4"),
    ("trailing garbage", "1081 0001 05FF01 028801 62 01 E700 00", 14, "trailing"),
    ("OPC smaller than content", "1081 0001 05FF01 028801 62 01 E700 E000", 14, "trailing"),
    ("SetGet without OPCGet", "1081 0010 05FF01 027D01 6E 01 DA01 42", 15, "OPCGet"),
    ("SetGet get block cut", "1081 0010 05FF01 027D01 6E 01 DA01 42 02 CF00", 18, "OPCGet=2"),
    ("SetGet_Res EDT cut", "1081 0010 027D01 05FF01 7E 00 01 D304 0000", 14, "PDC=4"),
    ("SetGet trailing", "1081 0010 05FF01 027D01 6E 00 00 FF", 13, "trailing"),
]


@pytest.mark.parametrize(("label", "wire", "offset", "text"), ERRORS, ids=[e[0] for e in ERRORS])
def test_decode_errors_name_the_offset(label: str, wire: str, offset: int, text: str) -> None:
    for _ in range(3):  # also after shapes of the same length may have been learnt
        with pytest.raises(DecodeError, match=text) as info:
            decode(hexframe(wire))
        assert info.value.offset == offset
        assert f"offset {offset}" in str(info.value)


def test_decode_error_is_a_value_error_and_pickles() -> None:
    error = DecodeError("bad", 3)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert copy.offset == 3 and str(copy) == str(error)


# ------------------------------------------------------------------------------- encode errors

ENCODE_ERRORS = [
    (Frame(70000, CONTROLLER, METER, ESV.GET, ()), "TID"),
    (Frame(-1, CONTROLLER, METER, ESV.GET, ()), "TID"),
    (Frame(1, CONTROLLER, METER, ESV.GET, (Property(0x100),)), "EPC"),
    (Frame(1, CONTROLLER, METER, ESV.GET, (Property(0xE0, bytes(256)),)), "exceeds PDC max 255"),
    (Frame(1, CONTROLLER, METER, ESV.GET, tuple(Property(0x80) for _ in range(256))), "at most"),
    (Frame(1, CONTROLLER, METER, ESV.GET, (), (Property(0x80),)), "one property block"),
    (Frame(1, CONTROLLER, METER, 0x99, ()), "unknown ESV"),  # type: ignore[arg-type]
    (Frame(1, "05FF01", METER, ESV.GET, ()), "seoj"),  # type: ignore[arg-type]
    (Frame(1, CONTROLLER, METER, ESV.GET, (Property(0x80, "x"),)), "EDT must be bytes"),  # type: ignore[arg-type]
    (Frame(1, CONTROLLER, METER, ESV.GET, ((0x80, b""), 5)), "expected Property"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("frame", "text"), ENCODE_ERRORS)
def test_encode_errors(frame: Frame, text: str) -> None:
    with pytest.raises(EncodeError, match=text):
        encode(frame)


def test_encode_limits_are_inclusive() -> None:
    big = Frame(0xFFFF, CONTROLLER, METER, ESV.GET_RES, (Property(0xFF, bytes(255)),))
    assert decode(encode(big)) == big
    many = Frame(0, CONTROLLER, METER, ESV.GET, tuple(Property(0x80) for _ in range(255)))
    assert decode(encode(many)) == many


# ------------------------------------------------------------------------------------ builders


def test_get_request() -> None:
    frame = get_request(7, METER, [0xE7, 0xE8])
    assert frame == Frame(7, CONTROLLER, METER, ESV.GET, (Property(0xE7), Property(0xE8)))
    assert encode(frame) == hexframe("1081 0007 05FF01 028801 62 02 E700 E800")


def test_inf_request() -> None:
    assert inf_request(3, NODE_PROFILE, [0xD5]).esv is ESV.INF_REQ


def test_set_request_forms() -> None:
    by_map = set_request(1, BATTERY, {0xDA: b"\x42"})
    by_pairs = set_request(1, BATTERY, [(0xDA, b"\x42")])
    by_props = set_request(1, BATTERY, [Property(0xDA, b"\x42")])
    assert by_map == by_pairs == by_props
    assert by_map.esv is ESV.SETC
    assert set_request(1, BATTERY, {0xDA: b"\x42"}, response_required=False).esv is ESV.SETI


def test_setget_request() -> None:
    frame = setget_request(0x10, BATTERY, {0xDA: b"\x42"}, [0xCF, 0xD3])
    assert encode(frame) == hexframe(VECTORS[9][1])


def test_reply_swaps_objects_and_keeps_tid() -> None:
    request = get_request(9, METER, [0xE7])
    answer = reply(request, ESV.GET_RES, {0xE7: b"\x00\x00\x01\xf4"})
    assert (answer.tid, answer.seoj, answer.deoj) == (9, METER, CONTROLLER)
    assert answer.props == (Property(0xE7, b"\x00\x00\x01\xf4"),)


def test_infc_response() -> None:
    infc = decode(hexframe(VECTORS[7][1]))
    assert encode(infc_response(infc)) == hexframe(VECTORS[8][1])
    with pytest.raises(ValueError, match="INFC"):
        infc_response(get_request(1, METER, [0xE7]))


# ------------------------------------------------------------------------------ shape cache


def test_shape_cache_does_not_confuse_layouts_of_equal_length() -> None:
    # Same length, ESV and OPC; different split between the two properties.
    first = hexframe("1081 0001 028801 05FF01 72 02 E701 01 E003 020304")
    second = hexframe("1081 0002 028801 05FF01 72 02 E703 010203 E001 04")
    for _ in range(3):
        decode(first)
    assert decode(second).props == (Property(0xE7, b"\x01\x02\x03"), Property(0xE0, b"\x04"))
    assert decode(first).props == (Property(0xE7, b"\x01"), Property(0xE0, b"\x02\x03\x04"))


def test_shape_cache_checks_opcget_and_ehd() -> None:
    frame = hexframe("1081 0010 05FF01 027D01 6E 01 DA01 42 02 CF00 D300")
    for _ in range(3):
        decode(frame)
    moved = bytearray(frame)
    moved[15] = 0x01  # OPCGet 1 leaves two trailing bytes
    with pytest.raises(DecodeError, match="trailing"):
        decode(bytes(moved))
    wrong_ehd = b"\x10\x82" + frame[2:]
    with pytest.raises(DecodeError, match="EHD2"):
        decode(wrong_ehd)


def test_shape_cache_is_bounded() -> None:
    for size in range(600):
        data = encode(
            Frame(size, CONTROLLER, METER, ESV.GET_RES, (Property(0x80, bytes(size % 200)),))
        )
        decode(data)
        decode(data)
    assert len(frame_module._SHAPES) <= frame_module._SHAPES_MAX
    assert len(frame_module._SEEN) <= frame_module._SHAPES_MAX


# ------------------------------------------------------------------------------- properties


@settings(max_examples=EXAMPLES, deadline=None)
@given(frames())
def test_roundtrip(frame: Frame) -> None:
    data = encode(frame)
    assert decode(data) == frame
    assert decode(data) == frame  # compiled shape, if learnt
    assert encode(decode(data)) == data


@settings(max_examples=max(EXAMPLES // 5, 20), deadline=None)
@given(frames(properties))
def test_roundtrip_large_edts(frame: Frame) -> None:
    assert decode(encode(frame)) == frame


def outcome(data: bytes) -> Frame | tuple[str, int]:
    try:
        return decode(data)
    except DecodeError as exc:
        return ("error", exc.offset)


def strict_outcome(data: bytes) -> Frame | tuple[str, int]:
    try:
        return frame_module._decode_strict(data)
    except DecodeError as exc:
        return ("error", exc.offset)


def check_only_decode_error(data: bytes) -> None:
    result = outcome(data)
    # The fast path and the reference path agree on every input, errors included.
    assert result == strict_outcome(data)
    if isinstance(result, Frame):
        # The wire format has no slack: whatever decodes re-encodes to the same bytes.
        assert encode(result) == data


FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@LONG_TIMEOUT
@FUZZ
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    check_only_decode_error(data)


@LONG_TIMEOUT
@FUZZ
@given(st.binary(min_size=10, max_size=80).map(lambda tail: EHD + tail))
def test_fuzz_random_bytes_with_valid_header(data: bytes) -> None:
    check_only_decode_error(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(encode(draw(frames())))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]))
        if action in ("flip", "set", "delete") and not data:
            continue
        index = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip":
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[index] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[index:]
        elif action == "extend":
            data += draw(st.binary(min_size=1, max_size=8))
        elif action == "insert":
            data[index:index] = draw(st.binary(min_size=1, max_size=3))
        else:
            del data[index]
    return bytes(data)


@LONG_TIMEOUT
@FUZZ
@given(mutated())
def test_fuzz_mutated_valid_frames(data: bytes) -> None:
    check_only_decode_error(data)


@LONG_TIMEOUT
@FUZZ
@given(frames(), st.data())
def test_fuzz_after_shape_learnt(frame: Frame, data: st.DataObject) -> None:
    """Mutations of a frame whose shape has just been compiled hit the fast path first."""
    wire = encode(frame)
    decode(wire)
    decode(wire)
    index = data.draw(st.integers(0, len(wire) - 1))
    value = data.draw(st.integers(0, 255))
    check_only_decode_error(wire[:index] + bytes((value,)) + wire[index + 1 :])


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="long fuzz run; set CHISAN_SLOW=1")
@LONG_TIMEOUT
@settings(max_examples=200000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_long(data: bytes) -> None:
    check_only_decode_error(data)
