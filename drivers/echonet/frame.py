"""ECHONET Lite frame codec (format 1), sans I/O.

Bytes in, :class:`Frame` out and back; no sockets, no clocks, no logging. The decoder is strict
because a silently shortened EDT on the B-route would become a wrong settlement figure: every
structural fault is a :class:`DecodeError` carrying the byte offset, and nothing else escapes
:func:`decode` for any bytes-like input.

The hot paths skip per-field checks and rely on Python raising (``IndexError`` from indexing,
``struct.error``/``ValueError`` from packing) when something is off; only then does a slow path
walk the input again to say precisely what is wrong. Valid traffic therefore pays for nothing
but the parse itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Final, NamedTuple, cast

__all__ = [
    "CONTROLLER",
    "EHD",
    "EOJ",
    "ESV",
    "NODE_PROFILE",
    "DecodeError",
    "EncodeError",
    "Frame",
    "Property",
    "decode",
    "encode",
    "get_request",
    "inf_request",
    "infc_response",
    "reply",
    "set_request",
    "setget_request",
]

EHD: Final = b"\x10\x81"
"""EHD1 (ECHONET Lite) + EHD2 (format 1, specified message format)."""

_EHD_INT: Final = 0x1081
_HEADER_LEN: Final = 12
_MAX_TID: Final = 0xFFFF
_MAX_COUNT: Final = 0xFF

# EHD(2) TID(2) SEOJ(3) DEOJ(3) ESV(1) OPC(1)
_HEADER: Final = struct.Struct(">HH3s3sBB")
# Same layout with the EOJs split into their bytes, so encode needs a single pack call.
_HEADER_OUT: Final = struct.Struct(">HHBBBBBBBB")


class DecodeError(ValueError):
    """The bytes are not a well-formed ECHONET Lite frame.

    ``offset`` is the index of the offending byte, or the length of the input when bytes are
    missing; the message repeats it so a log line alone is enough to locate the fault.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte offset {offset})")
        self.offset = offset
        self.reason = message

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, int]]:
        return (type(self), (self.reason, self.offset))


class EncodeError(ValueError):
    """A :class:`Frame` cannot be put on the wire (value out of range, wrong block layout)."""


@dataclass(frozen=True, slots=True)
class EOJ:
    """ECHONET object: class group, class code, instance (one byte each)."""

    class_group: int
    class_code: int
    instance: int

    NODE_PROFILE: ClassVar[EOJ]
    CONTROLLER: ClassVar[EOJ]

    def __post_init__(self) -> None:
        for name in ("class_group", "class_code", "instance"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 0xFF:
                raise ValueError(f"EOJ {name} must be an int 0..255, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> EOJ:
        """Accept the conventional hex spelling (``"027D01"``, ``"0x027d01"``) used in config."""
        digits = text.strip()
        if digits[:2].lower() == "0x":
            digits = digits[2:]
        if len(digits) != 6:
            raise ValueError(f"EOJ must be 6 hex digits, got {text!r}")
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            raise ValueError(f"EOJ must be 6 hex digits, got {text!r}") from None
        return cls(raw[0], raw[1], raw[2])

    @classmethod
    def of(cls, class_id: int, instance: int = 1) -> EOJ:
        """Build from the 16-bit class id (``0x027D``) that the property tables are keyed by."""
        if not 0 <= class_id <= 0xFFFF:
            raise ValueError(f"class id must be 0..0xFFFF, got {class_id!r}")
        return cls(class_id >> 8, class_id & 0xFF, instance)

    @classmethod
    def from_bytes(cls, data: bytes) -> EOJ:
        if len(data) != 3:
            raise ValueError(f"EOJ is 3 bytes, got {len(data)}")
        return cls(data[0], data[1], data[2])

    @property
    def class_id(self) -> int:
        return (self.class_group << 8) | self.class_code

    @property
    def is_node_profile(self) -> bool:
        return self.class_group == 0x0E and self.class_code == 0xF0

    def to_bytes(self) -> bytes:
        return bytes((self.class_group, self.class_code, self.instance))

    def with_instance(self, instance: int) -> EOJ:
        return EOJ(self.class_group, self.class_code, instance)

    def __str__(self) -> str:
        return f"{self.class_group:02X}{self.class_code:02X}{self.instance:02X}"


NODE_PROFILE: Final = EOJ(0x0E, 0xF0, 0x01)
CONTROLLER: Final = EOJ(0x05, 0xFF, 0x01)
EOJ.NODE_PROFILE = NODE_PROFILE
EOJ.CONTROLLER = CONTROLLER


class ESV(IntEnum):
    """ECHONET Lite service codes."""

    SETI = 0x60
    SETC = 0x61
    GET = 0x62
    INF_REQ = 0x63
    SETGET = 0x6E
    SET_RES = 0x71
    GET_RES = 0x72
    INF = 0x73
    INFC = 0x74
    INFC_RES = 0x7A
    SETGET_RES = 0x7E
    SETI_SNA = 0x50
    SETC_SNA = 0x51
    GET_SNA = 0x52
    INF_SNA = 0x53
    SETGET_SNA = 0x5E

    @property
    def is_request(self) -> bool:
        """Sent by a controller to ask something of an object (0x6_)."""
        return 0x60 <= self._value_ <= 0x6F

    @property
    def is_response(self) -> bool:
        """Positive answers and notifications (0x7_)."""
        return 0x70 <= self._value_ <= 0x7F

    @property
    def is_sna(self) -> bool:
        """'Service not available': the object refused all or part of the request (0x5_)."""
        return 0x50 <= self._value_ <= 0x5F

    @property
    def is_notification(self) -> bool:
        """Unsolicited or requested announcements (INF, INFC)."""
        return self._value_ in (0x73, 0x74)

    @property
    def has_two_blocks(self) -> bool:
        """SetGet and its answers carry an OPCSet block followed by an OPCGet block."""
        return self._value_ in _TWO_BLOCK_CODES

    @property
    def expected_responses(self) -> tuple[ESV, ...]:
        """ESVs that can answer this one; empty if nothing answers it.

        SetI answers only on failure (SetI_SNA); INF_REQ is answered by a (multicast) INF.
        """
        return _EXPECTED_RESPONSES.get(self._value_, ())

    @property
    def request(self) -> ESV | None:
        """The request this response/SNA answers (None for requests and unsolicited INF)."""
        return _REQUEST_OF.get(self._value_)


_TWO_BLOCK_CODES: Final = frozenset({0x6E, 0x7E, 0x5E})
_ESV_BY_CODE: Final[dict[int, ESV]] = {member._value_: member for member in ESV}
_EXPECTED_RESPONSES: Final[dict[int, tuple[ESV, ...]]] = {
    0x60: (ESV.SETI_SNA,),
    0x61: (ESV.SET_RES, ESV.SETC_SNA),
    0x62: (ESV.GET_RES, ESV.GET_SNA),
    0x63: (ESV.INF, ESV.INF_SNA),
    0x6E: (ESV.SETGET_RES, ESV.SETGET_SNA),
    0x74: (ESV.INFC_RES,),
}
_REQUEST_OF: Final[dict[int, ESV]] = {
    response._value_: _ESV_BY_CODE[request]
    for request, responses in _EXPECTED_RESPONSES.items()
    for response in responses
}


class Property(NamedTuple):
    """One (EPC, EDT) pair. An empty EDT is PDC=0: a Get request, or a property an SNA refused.

    A NamedTuple rather than a dataclass: a frozen dataclass costs more to build than all the
    other per-property work of the decoder together, and decode rate is a requirement. Values are
    not range-checked here for the same reason; :func:`encode` checks them.
    """

    epc: int
    edt: bytes = b""

    @property
    def pdc(self) -> int:
        return len(self.edt)

    def __repr__(self) -> str:
        return f"Property(0x{self.epc:02X}, {self.edt.hex().upper() or '-'})"


class Frame(NamedTuple):
    """A decoded or to-be-encoded message.

    For the two-block ESVs (SetGet, SetGet_Res, SetGet_SNA) ``props`` is the Set block and
    ``get_props`` the Get block; for every other ESV ``get_props`` must stay empty.

    A NamedTuple for the same reason as :class:`Property`: it is immutable and typed like a frozen
    dataclass but the decoder can build it in one C call. Use ``_replace`` to derive frames, and
    mind that ``len(frame)`` and iteration are over the six fields, not the properties.
    """

    tid: int
    seoj: EOJ
    deoj: EOJ
    esv: ESV
    props: tuple[Property, ...]
    get_props: tuple[Property, ...] = ()

    def find(self, epc: int) -> Property | None:
        """First property with this EPC in ``props`` (the Set block of a SetGet)."""
        for prop in self.props:
            if prop.epc == epc:
                return prop
        return None

    def readable(self) -> dict[int, bytes]:
        """EPC → EDT of the properties that carry data.

        A Get_SNA mixes properties the object could read (PDC>0) with refused ones (PDC=0);
        the readable ones are still valid values. For two-block ESVs this reads the Get block.
        """
        block = self.get_props if self.esv._value_ in _TWO_BLOCK_CODES else self.props
        return {prop.epc: prop.edt for prop in block if prop.edt}

    def refused(self) -> tuple[int, ...]:
        """EPCs an SNA answered with PDC=0 (for Set blocks, PDC=0 means accepted instead)."""
        if not self.esv.is_sna:
            return ()
        if self.esv._value_ in _TWO_BLOCK_CODES:
            return tuple(p.epc for p in self.props if p.edt) + tuple(
                p.epc for p in self.get_props if not p.edt
            )
        if self.esv in (ESV.SETI_SNA, ESV.SETC_SNA):
            # A Set answer echoes PDC=0 for accepted properties and returns the EDT it refused.
            return tuple(p.epc for p in self.props if p.edt)
        return tuple(p.epc for p in self.props if not p.edt)


# --------------------------------------------------------------------------------------- decode
#
# Two paths give identical results (the tests hold them to that):
#
# * ``_decode_strict`` walks the properties one by one. It is the reference and produces every
#   error.
# * Compiled shapes, for the traffic a gateway actually sees: the same few requests answered by
#   the same devices with the same property lengths, every few seconds. When a frame layout (the
#   sequence of PDCs under one (length, ESV, OPC)) has decoded strictly twice, a small function
#   specialised to it is generated. The key fixes the length, so one ``struct`` call cuts the
#   whole frame; one tuple comparison then checks EHD and that every PDC byte (and the OPCGet
#   byte) holds the layout's value. By induction from offset 12, equal PDC bytes mean equal
#   property boundaries, so that parse is exactly the strict one; any difference returns None
#   and the strict path decides.
#   Generated code is the only way found to beat a plain dict-building parser while validating:
#   the generic loop costs about the same per property as pychonet, the specialised one a third.
#   The source is built from integers the codec computed, never from frame contents.

_EOJ_CACHE: Final[dict[bytes, EOJ]] = {}
_EOJ_CACHE_MAX: Final = 4096

_ShapeKey = tuple[int, int, int]  # (frame length, ESV byte, OPC byte)
_Layout = tuple[int, ...]  # PDCs of the Set/only block, then -1, then PDCs of the Get block
_ShapeFn = Callable[[bytes], "Frame | None"]
_SHAPES: Final[dict[_ShapeKey, _ShapeFn]] = {}
_SEEN: Final[dict[_ShapeKey, _Layout]] = {}
# Bounds so that hostile or random traffic cannot grow memory or make us compile all day.
_SHAPES_MAX: Final = 256
_MAX_SHAPE_PROPS: Final = 64

_EMPTY_PROPERTIES: Final = tuple(Property(epc) for epc in range(256))
"""Shared PDC=0 properties: immutable, so one per EPC serves every frame."""

_EOJ_PAIRS: Final[dict[bytes, tuple[EOJ, EOJ]]] = {}


def _eoj(raw: bytes) -> EOJ:
    eoj = _EOJ_CACHE.get(raw)
    if eoj is None:
        eoj = EOJ(raw[0], raw[1], raw[2])
        if len(_EOJ_CACHE) < _EOJ_CACHE_MAX:
            _EOJ_CACHE[raw] = eoj
    return eoj


def _eoj_pair(raw: bytes) -> tuple[EOJ, EOJ]:
    """SEOJ and DEOJ from their 6 bytes; a shape looks both up with one dict access."""
    pair = (_eoj(raw[:3]), _eoj(raw[3:]))
    if len(_EOJ_PAIRS) < _EOJ_CACHE_MAX:
        _EOJ_PAIRS[raw] = pair
    return pair


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Parse one ECHONET Lite format-1 frame (a whole UDP payload).

    Raises :class:`DecodeError` for anything that is not exactly one well-formed frame: wrong
    EHD, short header, unknown ESV, OPC disagreeing with the bytes, truncated EDT, trailing bytes.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytearray | memoryview):
            raise TypeError(f"decode expects bytes, got {type(data).__name__}")
        data = bytes(data)
    try:
        key = (len(data), data[10], data[11])
    except IndexError:
        raise _header_error(data) from None
    shape = _SHAPES.get(key)
    if shape is not None:
        frame = shape(data)
        if frame is not None:
            return frame
    frame = _decode_strict(data)
    _observe(key, frame)
    return frame


def _observe(key: _ShapeKey, frame: Frame) -> None:
    if len(frame.props) + len(frame.get_props) > _MAX_SHAPE_PROPS:
        return
    layout = tuple(len(p.edt) for p in frame.props)
    if frame.esv._value_ in _TWO_BLOCK_CODES:
        layout += (-1, *(len(p.edt) for p in frame.get_props))
    if _SEEN.get(key) != layout:
        if len(_SEEN) >= _SHAPES_MAX:
            _SEEN.clear()
        _SEEN[key] = layout
        return
    if len(_SHAPES) >= _SHAPES_MAX:
        _SHAPES.clear()
    _SHAPES[key] = _compile_shape(layout, frame.esv)


def _compile_shape(layout: _Layout, esv: ESV) -> _ShapeFn:
    # The key fixed the length, so the unpack cannot fail; the PDC bytes (and OPCGet) it
    # yields are then compared with this layout's in one tuple comparison, EHD included.
    fmt = [">HH6s2x"]  # EHD, TID, SEOJ+DEOJ, (ESV, OPC: known from the key)
    names: list[str] = []
    guards = ["ehd"]
    expected = [_EHD_INT]
    blocks: list[list[str]] = [[]]
    for pdc in layout:
        index = len(names)
        if pdc < 0:  # the OPCGet byte between the two blocks
            fmt.append("B")
            names.append(f"g{index}")
            guards.append(f"g{index}")
            expected.append(len(layout) - len(blocks[0]) - 1)
            blocks.append([])
            continue
        guards.append(f"p{index}")
        expected.append(pdc)
        if pdc:
            fmt.append(f"BB{pdc}s")
            names.append(f"e{index}, p{index}, d{index}")
            blocks[-1].append(f"N(P, (e{index}, d{index})),")
        else:  # PDC=0 (Get requests, SNA refusals): a shared prebuilt Property
            fmt.append("BB")
            names.append(f"e{index}, p{index}")
            blocks[-1].append(f"EMPTY[e{index}],")
    get_block = f"({' '.join(blocks[1])})" if len(blocks) > 1 else "()"
    source = (
        "def shape(data):\n"
        f"    ehd, tid, eojs, {''.join(n + ', ' for n in names)} = unpack(data)\n"
        f"    if ({', '.join(guards)},) != EXPECTED:\n"
        "        return None\n"
        "    seoj, deoj = PAIRS(eojs) or eoj_pair(eojs)\n"
        f"    return N(F, (tid, seoj, deoj, esv, ({' '.join(blocks[0])}), {get_block}))\n"
    )
    namespace: dict[str, Any] = {
        "unpack": struct.Struct("".join(fmt)).unpack,
        "EXPECTED": tuple(expected),
        "N": tuple.__new__,
        "P": Property,
        "F": Frame,
        "EMPTY": _EMPTY_PROPERTIES,
        "PAIRS": _EOJ_PAIRS.get,
        "eoj_pair": _eoj_pair,
        "esv": esv,
    }
    exec(source, namespace)
    return cast(_ShapeFn, namespace["shape"])


def _decode_strict(data: bytes) -> Frame:
    try:
        ehd, tid, seoj_raw, deoj_raw, esv_code, opc = _HEADER.unpack_from(data)
    except struct.error:
        raise _header_error(data) from None
    if ehd != _EHD_INT:
        raise _header_error(data)
    esv = _ESV_BY_CODE.get(esv_code)
    if esv is None:
        raise DecodeError(f"unknown ESV 0x{esv_code:02X}", 10)

    size = len(data)
    props, pos = _decode_block(data, _HEADER_LEN, opc, "OPC")
    get_props: tuple[Property, ...] = ()
    if esv_code in _TWO_BLOCK_CODES:
        if pos >= size:
            raise DecodeError(f"{esv.name} frame ends before its OPCGet byte", pos)
        get_props, pos = _decode_block(data, pos + 1, data[pos], "OPCGet")
    if pos != size:
        raise DecodeError(f"{size - pos} trailing byte(s) after the last property", pos)
    return Frame(tid, _eoj(seoj_raw), _eoj(deoj_raw), esv, props, get_props)


def _decode_block(
    data: bytes, start: int, count: int, what: str
) -> tuple[tuple[Property, ...], int]:
    # No per-property bounds checks: an overrun shows up as IndexError or as an end beyond the
    # data, and only then does _block_error walk the block again to say what is wrong.
    pos = start
    props: list[Property] = []
    append = props.append
    new = tuple.__new__
    try:
        for _ in range(count):
            end = pos + 2 + data[pos + 1]
            append(new(Property, (data[pos], data[pos + 2 : end])))
            pos = end
    except IndexError:
        raise _block_error(data, start, count, what) from None
    if pos > len(data):
        raise _block_error(data, start, count, what)
    return tuple(props), pos


def _block_error(data: bytes, start: int, count: int, what: str) -> DecodeError:
    size = len(data)
    pos = start
    for index in range(count):
        if pos >= size:
            return DecodeError(
                f"{what}={count} but the frame ends after {index} propert"
                f"{'y' if index == 1 else 'ies'}: EPC missing",
                pos,
            )
        epc = data[pos]
        if pos + 1 >= size:
            return DecodeError(f"EPC 0x{epc:02X}: PDC byte missing ({what}={count})", pos + 1)
        pdc = data[pos + 1]
        if pos + 2 + pdc > size:
            return DecodeError(
                f"EPC 0x{epc:02X}: PDC={pdc} but only {size - pos - 2} EDT byte(s) remain", pos + 1
            )
        pos += 2 + pdc
    raise AssertionError("_block_error called for a well-formed block")


def _header_error(data: bytes) -> DecodeError:
    if len(data) >= 1 and data[0] != 0x10:
        return DecodeError(f"EHD1 must be 0x10, got 0x{data[0]:02X}", 0)
    if len(data) >= 2 and data[1] != 0x81:
        return DecodeError(f"EHD2 must be 0x81 (format 1), got 0x{data[1]:02X}", 1)
    return DecodeError(
        f"frame too short: {len(data)} byte(s), a header needs {_HEADER_LEN}", len(data)
    )


# --------------------------------------------------------------------------------------- encode


def encode(frame: Frame) -> bytes:
    """Serialise a frame, refusing values that do not fit the wire format."""
    esv = frame.esv
    seoj = frame.seoj
    deoj = frame.deoj
    props = frame.props
    get_props = frame.get_props
    try:
        esv_code = _ESV_BY_CODE[esv]._value_
        out = bytearray(
            _HEADER_OUT.pack(
                _EHD_INT,
                frame.tid,
                seoj.class_group,
                seoj.class_code,
                seoj.instance,
                deoj.class_group,
                deoj.class_code,
                deoj.instance,
                esv_code,
                len(props),
            )
        )
        for prop in props:
            edt = prop.edt
            out.append(prop.epc)
            out.append(len(edt))
            out += edt
        if esv_code in _TWO_BLOCK_CODES:
            out.append(len(get_props))
            for prop in get_props:
                edt = prop.edt
                out.append(prop.epc)
                out.append(len(edt))
                out += edt
        elif get_props:
            raise EncodeError(f"{esv.name} has one property block; get_props must be empty")
    except (struct.error, ValueError, TypeError, KeyError, AttributeError) as exc:
        if isinstance(exc, EncodeError):
            raise
        raise _encode_error(frame) from exc
    return bytes(out)


def _encode_error(frame: Frame) -> EncodeError:
    if not isinstance(frame.esv, int) or frame.esv not in _ESV_BY_CODE:
        return EncodeError(f"unknown ESV {frame.esv!r}")
    if type(frame.tid) is not int or not 0 <= frame.tid <= _MAX_TID:
        return EncodeError(f"TID must be 0..65535, got {frame.tid!r}")
    for name in ("seoj", "deoj"):
        eoj = getattr(frame, name)
        if not isinstance(eoj, EOJ):
            return EncodeError(f"{name} must be an EOJ, got {eoj!r}")
    for block_name, block in (("props", frame.props), ("get_props", frame.get_props)):
        if len(block) > _MAX_COUNT:
            return EncodeError(f"{block_name}: at most 255 properties, got {len(block)}")
        # Typed as object: the checks guard against callers that ignored the annotations.
        for item in block:
            prop: object = item
            if not isinstance(prop, Property):
                return EncodeError(f"{block_name}: expected Property, got {prop!r}")
            epc: object = prop.epc
            if type(epc) is not int or not 0 <= epc <= 0xFF:
                return EncodeError(f"EPC must be 0..255, got {epc!r}")
            edt: object = prop.edt
            if not isinstance(edt, bytes | bytearray | memoryview):
                return EncodeError(f"EPC 0x{epc:02X}: EDT must be bytes, got {edt!r}")
            if len(edt) > _MAX_COUNT:
                return EncodeError(f"EPC 0x{epc:02X}: EDT of {len(edt)} bytes exceeds PDC max 255")
    return EncodeError(f"cannot encode {frame!r}")


# ------------------------------------------------------------------------------------- builders

PropsLike = Mapping[int, bytes] | Iterable[Property | tuple[int, bytes]]


def _props(items: PropsLike) -> tuple[Property, ...]:
    if isinstance(items, Mapping):
        return tuple(Property(epc, bytes(edt)) for epc, edt in items.items())
    out: list[Property] = []
    for item in items:
        if isinstance(item, Property):
            out.append(item)
        else:
            epc, edt = item
            out.append(Property(epc, bytes(edt)))
    return tuple(out)


def get_request(tid: int, deoj: EOJ, epcs: Iterable[int], *, seoj: EOJ = CONTROLLER) -> Frame:
    return Frame(tid, seoj, deoj, ESV.GET, tuple(Property(epc) for epc in epcs))


def inf_request(tid: int, deoj: EOJ, epcs: Iterable[int], *, seoj: EOJ = CONTROLLER) -> Frame:
    return Frame(tid, seoj, deoj, ESV.INF_REQ, tuple(Property(epc) for epc in epcs))


def set_request(
    tid: int,
    deoj: EOJ,
    props: PropsLike,
    *,
    seoj: EOJ = CONTROLLER,
    response_required: bool = True,
) -> Frame:
    """SetC by default: a controller needs the Set_Res to know the write landed."""
    esv = ESV.SETC if response_required else ESV.SETI
    return Frame(tid, seoj, deoj, esv, _props(props))


def setget_request(
    tid: int,
    deoj: EOJ,
    set_props: PropsLike,
    get_epcs: Iterable[int],
    *,
    seoj: EOJ = CONTROLLER,
) -> Frame:
    return Frame(
        tid,
        seoj,
        deoj,
        ESV.SETGET,
        _props(set_props),
        tuple(Property(epc) for epc in get_epcs),
    )


def reply(request: Frame, esv: ESV, props: PropsLike = (), get_props: PropsLike = ()) -> Frame:
    """An answer to ``request``: same TID, source and destination objects swapped."""
    return Frame(request.tid, request.deoj, request.seoj, esv, _props(props), _props(get_props))


def infc_response(infc: Frame) -> Frame:
    """The INFC_Res that stops the sender retransmitting: the same EPCs with PDC=0."""
    if infc.esv is not ESV.INFC:
        raise ValueError(f"INFC_Res answers an INFC, not {infc.esv.name}")
    return Frame(
        infc.tid, infc.deoj, infc.seoj, ESV.INFC_RES, tuple(Property(p.epc) for p in infc.props)
    )
