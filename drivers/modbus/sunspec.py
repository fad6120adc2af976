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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BASE_ADDRESSES",
    "END_MODEL_ID",
    "INVERTER_MODELS",
    "MARKER",
    "CommonModel",
    "InverterModel",
    "InverterOffsets",
    "ModelHeader",
    "NameplateModel",
    "NameplateOffsets",
    "StorCtl",
    "StorageModel",
    "StorageOffsets",
    "SunSpecError",
    "decode_common",
    "decode_inverter",
    "decode_nameplate",
    "decode_storage",
    "encode_acc32",
    "encode_int16",
    "encode_scaled",
    "encode_string",
    "has_marker",
    "header_at",
    "parse_chain",
]

MARKER: Final = (0x5375, 0x6E53)  # "SunS"
BASE_ADDRESSES: Final = (40000, 0, 50000)  # 40000 first: by far the most common
END_MODEL_ID: Final = 0xFFFF
INVERTER_MODELS: Final = (101, 102, 103)

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
    if model_id not in INVERTER_MODELS:
        raise SunSpecError(f"model {model_id} is not an inverter model 101-103")
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
