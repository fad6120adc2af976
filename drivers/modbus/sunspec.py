"""SunSpec over Modbus, without I/O: discovery, model headers, decoding and encoding of points.

Everything here works on lists of 16-bit register words, so the transport, the adapters and the
simulator (which builds its register image with the ``encode_*`` helpers) share one codec and the
decoder can be fuzzed. Anything a device could send that is not a valid SunSpec image raises
:class:`SunSpecError` and nothing else; the adapters turn it into a :class:`DeviceError`.

"Not implemented" values (0xFFFF uint16, 0x8000 int16 and scale factors, 0 for accumulators as
the spec says, also 0xFFFFFFFF for acc32 since some devices use it) decode to ``None``: the
capability layer's "no data", never zero.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from drivers.modbus.models import MODELS, ModelDef, PointDef, PointType

__all__ = [
    "BASE_ADDRESSES",
    "END_MODEL_ID",
    "INVERTER_MODELS",
    "MARKER",
    "ChainEntry",
    "CommonModel",
    "DecodedModel",
    "InverterModel",
    "InverterOffsets",
    "ModelHeader",
    "NameplateModel",
    "NameplateOffsets",
    "PointValue",
    "StorCtl",
    "StorageModel",
    "StorageOffsets",
    "SunSpecError",
    "decode_common",
    "decode_inverter",
    "decode_model",
    "decode_nameplate",
    "decode_storage",
    "encode_acc32",
    "encode_int16",
    "encode_model",
    "encode_point",
    "encode_scaled",
    "encode_string",
    "has_marker",
    "header_at",
    "model_problem",
    "parse_chain",
]

MARKER: Final = (0x5375, 0x6E53)  # "SunS"
BASE_ADDRESSES: Final = (40000, 0, 50000)  # 40000 first: by far the most common
END_MODEL_ID: Final = 0xFFFF
INVERTER_MODELS: Final = (101, 102, 103, 111, 112, 113)
"""Integer + scale factor inverters first, then the float ones: a device with both is read
through the former, which every SunSpec client supports."""

_NI_UINT16: Final = 0xFFFF
_NI_INT16: Final = 0x8000
_NI_ACC32: Final = (0x00000000, 0xFFFFFFFF)
_MAX_SF: Final = 10


class SunSpecError(ValueError):
    """Register data that is not a valid SunSpec image (no marker, truncated, bad chain...)."""


# ------------------------------------------------------------------------------- primitives


def _check_words(words: Sequence[int], need: int, what: str) -> None:
    if len(words) < need:
        raise SunSpecError(f"{what}: need {need} registers, got {len(words)}")
    for i in range(need):
        w = words[i]
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 0xFFFF:
            raise SunSpecError(f"{what}: register {i} is not a 16-bit word: {w!r}")


def _uint16(raw: int) -> int | None:
    return None if raw == _NI_UINT16 else raw


def _int16(raw: int) -> int | None:
    if raw == _NI_INT16:
        return None
    return raw - 0x10000 if raw & 0x8000 else raw


def _acc32(hi: int, lo: int) -> int | None:
    raw = (hi << 16) | lo
    return None if raw in _NI_ACC32 else raw


def _sf(raw: int, what: str) -> int | None:
    value = _int16(raw)
    if value is None:
        return None
    if not -_MAX_SF <= value <= _MAX_SF:
        raise SunSpecError(f"{what}: scale factor {value} outside -10..10")
    return value


def _scaled(raw: int | None, sf: int | None) -> float | None:
    if raw is None or sf is None:
        return None
    return round(raw * 10.0**sf, max(0, -sf))


def _string(words: Sequence[int]) -> str | None:
    data = b"".join(w.to_bytes(2, "big") for w in words)
    text = data.split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()
    return text or None


def encode_string(text: str, registers: int) -> list[int]:
    """A NUL-padded string point of ``registers`` words (the simulator's side of ``_string``)."""
    data = text.encode("utf-8")
    if len(data) > 2 * registers:
        raise SunSpecError(f"string {text!r} does not fit in {registers} registers")
    data = data.ljust(2 * registers, b"\x00")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def encode_int16(value: int) -> int:
    if not -0x8000 <= value <= 0x7FFF:
        raise SunSpecError(f"{value} does not fit in int16")
    return value & 0xFFFF


def encode_acc32(value: int) -> list[int]:
    if not 0 <= value <= 0xFFFFFFFF:
        raise SunSpecError(f"{value} does not fit in acc32")
    return [value >> 16, value & 0xFFFF]


def encode_scaled(value: float, sf: int, *, signed: bool = False) -> int:
    """The register word for ``value`` at scale factor ``sf`` (rounded, range-checked).

    The not-implemented codes are refused too, so a setpoint can never read back as "no data".
    """
    raw = round(value / 10.0**sf)
    if signed:
        if not -0x7FFF <= raw <= 0x7FFF:
            raise SunSpecError(f"{value} at scale 10^{sf} does not fit in int16")
        return raw & 0xFFFF
    if not 0 <= raw < _NI_UINT16:
        raise SunSpecError(f"{value} at scale 10^{sf} does not fit in uint16")
    return raw


# ---------------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class ModelHeader:
    """One model of the chain: its ID, where its points start, and how many registers it has."""

    model_id: int
    address: int
    length: int

    @property
    def end(self) -> int:
        """Address of the next model's header."""
        return self.address + self.length


def has_marker(words: Sequence[int]) -> bool:
    """Whether the two words read at a base address are the "SunS" marker."""
    _check_words(words, 2, "marker")
    return (words[0], words[1]) == MARKER


def header_at(address: int, words: Sequence[int]) -> ModelHeader | None:
    """The model header (ID, L) read at ``address``; None at the end of the chain."""
    _check_words(words, 2, f"model header at {address}")
    model_id, length = words[0], words[1]
    if model_id == END_MODEL_ID:
        return None
    if model_id == 0:
        raise SunSpecError(f"model header at {address}: model ID 0")
    if address + 2 + length > 0x10000:
        raise SunSpecError(f"model {model_id} at {address}: length {length} runs past 65535")
    return ModelHeader(model_id, address + 2, length)


def parse_chain(words: Sequence[int], base: int, *, max_models: int = 64) -> list[ModelHeader]:
    """The model chain of a register image that starts at ``base`` with the marker.

    The transport walks the chain header by header on the wire (:func:`header_at`); this is the
    same walk over an image already in memory (tests, captures).
    """
    if not has_marker(words):
        raise SunSpecError(f"no SunS marker at {base}")
    models: list[ModelHeader] = []
    offset = 2
    while True:
        header = header_at(base + offset, words[offset : offset + 2])
        if header is None:
            return models
        if len(models) >= max_models:
            raise SunSpecError(f"more than {max_models} models: a broken chain")
        if header.end - base > len(words):
            raise SunSpecError(f"model {header.model_id} at {header.address} is truncated")
        models.append(header)
        offset = header.end - base


# ------------------------------------------------------------------------------------ models


@dataclass(frozen=True)
class CommonModel:
    """Model 1: who made the device."""

    manufacturer: str | None
    model: str | None
    options: str | None
    version: str | None
    serial: str | None
    device_address: int | None


def decode_common(words: Sequence[int]) -> CommonModel:
    """Model 1 points (65 or 66 registers: the pad is optional)."""
    _check_words(words, 65, "model 1")
    return CommonModel(
        manufacturer=_string(words[0:16]),
        model=_string(words[16:32]),
        options=_string(words[32:40]),
        version=_string(words[40:48]),
        serial=_string(words[48:64]),
        device_address=_uint16(words[64]),
    )


class InverterOffsets:
    """Register offsets of the integer + scale factor inverter models 101/102/103."""

    W: Final = 12
    W_SF: Final = 13
    WH: Final = 22
    WH_SF: Final = 24
    DCW: Final = 29
    DCW_SF: Final = 30
    ST: Final = 36
    ST_VND: Final = 37
    LENGTH: Final = 50


INVERTER_STATUS: Final = {
    1: "off",
    2: "sleeping",
    3: "starting",
    4: "mppt",
    5: "throttled",
    6: "shutting_down",
    7: "fault",
    8: "standby",
}


@dataclass(frozen=True)
class InverterModel:
    """Models 101-103: AC power (+ = the inverter delivers to AC), lifetime AC energy, status."""

    model_id: int
    w: float | None
    wh: int | None
    dc_w: float | None
    status: str | None
    status_code: int | None


def decode_inverter(model_id: int, words: Sequence[int]) -> InverterModel:
    """Models 101-103 (integers + scale factors) or 111-113 (float32): the same readings."""
    if model_id not in INVERTER_MODELS:
        raise SunSpecError(f"model {model_id} is not an inverter model 101-103 or 111-113")
    if model_id >= 111:
        m = decode_model(model_id, words)
        status_raw = m.raw("St")
        status_code = status_raw if isinstance(status_raw, int) else None
        wh_value = m.number("WH")
        w_value, dc_value = m.number("W"), m.number("DCW")
        return InverterModel(
            model_id=model_id,
            w=None if w_value is None else float(w_value),
            wh=None if wh_value is None else int(wh_value),
            dc_w=None if dc_value is None else float(dc_value),
            status=None if status_code is None else INVERTER_STATUS.get(status_code, "other"),
            status_code=status_code,
        )
    o = InverterOffsets
    _check_words(words, o.LENGTH, f"model {model_id}")
    wh = _scaled(_acc32(words[o.WH], words[o.WH + 1]), _sf(words[o.WH_SF], "WH_SF"))
    status = _uint16(words[o.ST])
    return InverterModel(
        model_id=model_id,
        w=_scaled(_int16(words[o.W]), _sf(words[o.W_SF], "W_SF")),
        wh=None if wh is None else int(wh),
        dc_w=_scaled(_int16(words[o.DCW]), _sf(words[o.DCW_SF], "DCW_SF")),
        status=None if status is None else INVERTER_STATUS.get(status, "other"),
        status_code=status,
    )


class NameplateOffsets:
    """Register offsets of model 120 (nameplate ratings)."""

    WRTG: Final = 1
    WRTG_SF: Final = 2
    WHRTG: Final = 17
    WHRTG_SF: Final = 18
    MAX_CHA_RTE: Final = 21
    MAX_CHA_RTE_SF: Final = 22
    MAX_DIS_CHA_RTE: Final = 23
    MAX_DIS_CHA_RTE_SF: Final = 24
    LENGTH: Final = 26


@dataclass(frozen=True)
class NameplateModel:
    """Model 120: ratings, including the usable energy (WHRtg) that model 124 lacks."""

    w_rtg: float | None
    wh_rtg: float | None
    max_cha_rte: float | None
    max_dis_cha_rte: float | None


def decode_nameplate(words: Sequence[int]) -> NameplateModel:
    o = NameplateOffsets
    _check_words(words, o.LENGTH, "model 120")

    def point(value: int, sf: int, name: str) -> float | None:
        return _scaled(_uint16(words[value]), _sf(words[sf], f"{name}_SF"))

    return NameplateModel(
        w_rtg=point(o.WRTG, o.WRTG_SF, "WRtg"),
        wh_rtg=point(o.WHRTG, o.WHRTG_SF, "WHRtg"),
        max_cha_rte=point(o.MAX_CHA_RTE, o.MAX_CHA_RTE_SF, "MaxChaRte"),
        max_dis_cha_rte=point(o.MAX_DIS_CHA_RTE, o.MAX_DIS_CHA_RTE_SF, "MaxDisChaRte"),
    )


class StorCtl:
    """StorCtl_Mod bits: which of the InWRte/OutWRte limits the device is to honour."""

    CHARGE: Final = 0x0001
    DISCHARGE: Final = 0x0002


class StorageOffsets:
    """Register offsets of model 124 (basic storage controls)."""

    WCHA_MAX: Final = 0
    STOR_CTL_MOD: Final = 3
    MIN_RSV_PCT: Final = 5
    CHA_STATE: Final = 6
    CHA_ST: Final = 9
    OUT_W_RTE: Final = 10
    IN_W_RTE: Final = 11
    CHA_GRI_SET: Final = 15
    WCHA_MAX_SF: Final = 16
    MIN_RSV_PCT_SF: Final = 19
    CHA_STATE_SF: Final = 20
    IN_OUT_W_RTE_SF: Final = 23
    LENGTH: Final = 24


CHARGE_STATUS: Final = {
    1: "off",
    2: "empty",
    3: "discharging",
    4: "charging",
    5: "full",
    6: "holding",
    7: "testing",
}
CHARGE_SOURCE: Final = {0: "pv", 1: "grid"}


@dataclass(frozen=True)
class StorageModel:
    """Model 124, decoded; the raw control words are kept for read-back comparison."""

    w_cha_max: float | None
    stor_ctl_mod: int | None
    min_rsv_pct: float | None
    cha_state_pct: float | None
    cha_st: str | None
    out_w_rte_pct: float | None
    in_w_rte_pct: float | None
    cha_gri_set: str | None
    raw_out_w_rte: int
    raw_in_w_rte: int
    w_cha_max_sf: int | None
    in_out_w_rte_sf: int | None


def decode_storage(words: Sequence[int]) -> StorageModel:
    o = StorageOffsets
    _check_words(words, o.LENGTH, "model 124")
    w_sf = _sf(words[o.WCHA_MAX_SF], "WChaMax_SF")
    rte_sf = _sf(words[o.IN_OUT_W_RTE_SF], "InOutWRte_SF")
    cha_st = _uint16(words[o.CHA_ST])
    gri = _uint16(words[o.CHA_GRI_SET])
    return StorageModel(
        w_cha_max=_scaled(_uint16(words[o.WCHA_MAX]), w_sf),
        stor_ctl_mod=_uint16(words[o.STOR_CTL_MOD]),
        min_rsv_pct=_scaled(
            _uint16(words[o.MIN_RSV_PCT]), _sf(words[o.MIN_RSV_PCT_SF], "MinRsvPct_SF")
        ),
        cha_state_pct=_scaled(
            _uint16(words[o.CHA_STATE]), _sf(words[o.CHA_STATE_SF], "ChaState_SF")
        ),
        cha_st=None if cha_st is None else CHARGE_STATUS.get(cha_st, "other"),
        out_w_rte_pct=_scaled(_int16(words[o.OUT_W_RTE]), rte_sf),
        in_w_rte_pct=_scaled(_int16(words[o.IN_W_RTE]), rte_sf),
        cha_gri_set=None if gri is None else CHARGE_SOURCE.get(gri, "other"),
        raw_out_w_rte=words[o.OUT_W_RTE],
        raw_in_w_rte=words[o.IN_W_RTE],
        w_cha_max_sf=w_sf,
        in_out_w_rte_sf=rte_sf,
    )


# ---------------------------------------------------------------------- table-driven codec

Value = float | int | str | None
_NI_WORDS: Final[dict[PointType, int]] = {
    PointType.UINT16: 0xFFFF,
    PointType.ENUM16: 0xFFFF,
    PointType.BITFIELD16: 0xFFFF,
    PointType.COUNT: 0xFFFF,
    PointType.INT16: 0x8000,
    PointType.SUNSSF: 0x8000,
    PointType.ACC16: 0,
    PointType.PAD: 0x8000,
    PointType.UINT32: 0xFFFFFFFF,
    PointType.ENUM32: 0xFFFFFFFF,
    PointType.BITFIELD32: 0xFFFFFFFF,
    PointType.INT32: 0x80000000,
    PointType.ACC32: 0,
    PointType.FLOAT32: 0x7FC00000,
    PointType.UINT64: 0xFFFFFFFFFFFFFFFF,
    PointType.INT64: 0x8000000000000000,
    PointType.ACC64: 0,
}
_SIGNED: Final = frozenset({PointType.INT16, PointType.SUNSSF, PointType.INT32, PointType.INT64})
_ACCUMULATORS: Final = frozenset({PointType.ACC16, PointType.ACC32, PointType.ACC64})


@dataclass(frozen=True)
class PointValue:
    """A decoded point: ``value`` is scaled (None = not implemented, or no scale factor)."""

    name: str
    value: Value
    units: str | None
    raw: int | float | str | None


@dataclass(frozen=True)
class DecodedModel:
    """Every point of one model by its SunSpec name; once-only groups as ``Group.Point``,
    repeating blocks (model 160's modules) in ``blocks``."""

    model_id: int
    name: str
    label: str
    points: dict[str, PointValue]
    blocks: list[dict[str, PointValue]] = field(default_factory=list)

    def __getitem__(self, name: str) -> Value:
        return self.points[name].value

    def get(self, name: str) -> Value:
        point = self.points.get(name)
        return None if point is None else point.value

    def raw(self, name: str) -> int | float | str | None:
        point = self.points.get(name)
        return None if point is None else point.raw

    def number(self, name: str) -> float | int | None:
        """A numeric point's value (None if absent, not implemented or not a number)."""
        value = self.get(name)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _join(words: Sequence[int]) -> int:
    raw = 0
    for w in words:
        raw = (raw << 16) | w
    return raw


def _decode_raw(point: PointDef, words: Sequence[int]) -> int | float | str | None:
    """A point's unscaled value; None for the type's "not implemented" code."""
    t = point.type
    if t is PointType.STRING:
        return _string(words)
    raw = _join(words)
    if t is PointType.FLOAT32:
        value: float = struct.unpack(">f", raw.to_bytes(4, "big"))[0]
        return value if math.isfinite(value) else None
    if raw == _NI_WORDS[t]:
        return None
    if t in _ACCUMULATORS and raw == (1 << (16 * point.size)) - 1:
        return None  # all ones: some devices use it for accumulators too
    if t in _SIGNED and raw >> (16 * point.size - 1):
        raw -= 1 << (16 * point.size)
    if t is PointType.SUNSSF and not -_MAX_SF <= raw <= _MAX_SF:
        raise SunSpecError(f"{point.name}: scale factor {raw} outside -10..10")
    return raw


def _decode_block(
    model_id: int,
    points: Sequence[PointDef],
    words: Sequence[int],
    start: int,
    prefix: str,
    outer: Mapping[str, PointValue],
) -> dict[str, PointValue]:
    raws: dict[str, int | float | str | None] = {}
    for p in points:
        if p.type is PointType.PAD:
            continue
        at = start + p.offset
        raws[p.name] = (
            _decode_raw(p, words[at : at + p.size]) if at + p.size <= len(words) else None
        )
    out: dict[str, PointValue] = {}
    for p in points:
        if p.type is PointType.PAD:
            continue
        raw = raws[p.name]
        value: Value = raw
        if p.sf is not None and isinstance(raw, int):
            if p.sf in raws:
                sf = raws[p.sf]
            elif p.sf in outer:
                sf = outer[p.sf].raw
            else:
                raise SunSpecError(f"model {model_id}: {p.name} has no scale factor {p.sf}")
            factor = sf if isinstance(sf, int) else None
            value = _scaled(raw, factor)
            if factor is not None and factor >= 0 and value is not None:
                value = int(value)  # whole numbers stay whole (WChaMax 5000, not 5000.0)
        out[prefix + p.name] = PointValue(prefix + p.name, value, p.units, raw)
    return out


def model_problem(model_id: int, length: int) -> str | None:
    """Why a known model of ``length`` registers cannot be decoded (None: it can).

    Shorter than its points (a trailing pad may be missing), or a repeating block that does
    not fit a whole number of times: both mean a broken model that discovery skips.
    """
    d = MODELS.get(model_id)
    if d is None:
        return None
    need = d.fixed_length
    tail = d.points[-1] if d.points and not d.repeating and not d.groups else None
    if tail is not None and tail.type is PointType.PAD:
        need -= tail.size
    if length < need:
        return f"model {model_id} has {length} registers, needs {need}"
    block = d.repeating
    if block is not None and (length - d.fixed_length) % block.length:
        return (
            f"model {model_id}: {length - d.fixed_length} registers after the fixed points "
            f"are not whole {block.name} blocks of {block.length}"
        )
    return None


def decode_model(model_id: int, words: Sequence[int]) -> DecodedModel:
    """Decode one model (its L registers after the header) by its table."""
    d = MODELS.get(model_id)
    if d is None:
        raise SunSpecError(f"model {model_id} is not known to this gateway")
    _check_words(words, len(words), f"model {model_id}")
    problem = model_problem(model_id, len(words))
    if problem is not None:
        raise SunSpecError(problem)
    points = _decode_block(model_id, d.points, words, 0, "", {})
    at = sum(p.size for p in d.points)
    blocks: list[dict[str, PointValue]] = []
    for group in d.groups:
        if group.count is None:
            points.update(
                _decode_block(model_id, group.points, words, at, f"{group.name}.", points)
            )
            at += group.length
    block = d.repeating
    if block is not None:
        while at + block.length <= len(words):
            blocks.append(_decode_block(model_id, block.points, words, at, "", points))
            at += block.length
    return DecodedModel(model_id, d.name, d.label, points, blocks)


def encode_point(point: PointDef, value: Value, sf: int | None = None) -> list[int]:
    """The registers of one point holding ``value`` (None: the not-implemented code).

    Scaled points need their scale factor ``sf``; a value that does not fit, or that would
    encode as the not-implemented code, is refused.
    """
    t, n = point.type, point.size
    if value is None:
        if t is PointType.STRING:
            return [0] * n
        code = _NI_WORDS[t]
        return [(code >> (16 * (n - 1 - i))) & 0xFFFF for i in range(n)]
    if t is PointType.STRING:
        if not isinstance(value, str):
            raise SunSpecError(f"{point.name}: a string point needs text, got {value!r}")
        return encode_string(value, n)
    if isinstance(value, str | bool):
        raise SunSpecError(f"{point.name}: {value!r} is not a number")
    if t is PointType.FLOAT32:
        bits = int.from_bytes(struct.pack(">f", float(value)), "big")
        return [bits >> 16, bits & 0xFFFF]
    if point.sf is not None:
        if sf is None:
            raise SunSpecError(f"{point.name}: no scale factor {point.sf} to encode with")
        raw = round(value / 10.0**sf)
    else:
        if value != int(value):
            raise SunSpecError(f"{point.name}: {value!r} is not an integer")
        raw = int(value)
    bits = 16 * n
    if t in _SIGNED:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    if not lo <= raw <= hi:
        raise SunSpecError(f"{point.name}: {value!r} does not fit in {t.value}")
    raw &= (1 << bits) - 1
    if raw == _NI_WORDS[t] and t is not PointType.SUNSSF:
        raise SunSpecError(f"{point.name}: {value!r} would read back as not implemented")
    if t is PointType.SUNSSF and not -_MAX_SF <= value <= _MAX_SF:
        raise SunSpecError(f"{point.name}: scale factor {value} outside -10..10")
    return [(raw >> (16 * (n - 1 - i))) & 0xFFFF for i in range(n)]


def _encode_block(
    points: Sequence[PointDef], values: Mapping[str, Value], outer: Mapping[str, Value]
) -> list[int]:
    words: list[int] = []
    for p in points:
        sf: int | None = None
        if p.sf is not None:
            given = values.get(p.sf, outer.get(p.sf))
            sf = given if isinstance(given, int) else None
        words += encode_point(p, values.get(p.name), sf)
    return words


def encode_model(
    model_id: int,
    values: Mapping[str, Value],
    blocks: Sequence[Mapping[str, Value]] = (),
) -> list[int]:
    """The L registers of a model from point values by SunSpec name (the simulator's side of
    :func:`decode_model`); points not given read as not implemented."""
    d = MODELS.get(model_id)
    if d is None:
        raise SunSpecError(f"model {model_id} is not known to this gateway")
    known = {p.name for p in d.points} | {
        f"{g.name}.{p.name}" for g in d.groups if g.count is None for p in g.points
    }
    unknown = set(values) - known
    if unknown:
        raise SunSpecError(f"model {model_id} has no point {', '.join(sorted(unknown))}")
    words = _encode_block(d.points, values, {})
    for group in d.groups:
        if group.count is None:
            prefix = f"{group.name}."
            inner = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
            words += _encode_block(group.points, inner, values)
    if blocks and d.repeating is None:
        raise SunSpecError(f"model {model_id} has no repeating block")
    for block in blocks:
        assert d.repeating is not None
        words += _encode_block(d.repeating.points, block, values)
    return words


# -------------------------------------------------------------------------- chain walking


@dataclass(frozen=True)
class ChainEntry:
    """A model found while walking the chain, usable or not."""

    header: ModelHeader
    problem: str | None = None

    @property
    def model_id(self) -> int:
        return self.header.model_id

    @property
    def known(self) -> bool:
        return self.header.model_id in MODELS

    @property
    def name(self) -> str:
        d: ModelDef | None = MODELS.get(self.header.model_id)
        return d.name if d is not None else "unknown"

    @property
    def label(self) -> str:
        d = MODELS.get(self.header.model_id)
        return d.label if d is not None else ""
