"""SunSpec model definitions as data: every point's name, type, size, scale factor and units.

The names, types, sizes, scale-factor references and units are SunSpec's (the published model
definitions); a test cross-checks every table here against the JSON files that pysunspec2 ships,
so a transcription slip cannot survive. Offsets are not written down: they follow from the order
and sizes of the points, as on the wire, counted from the first register after the model's ID
and length (L).

A model is a fixed block of points, then optional groups. A group with ``count=None`` occurs
once (model 704's power-factor pairs); ``count=0`` marks a repeating block whose number of
instances follows from the model length (model 160's MPPT modules).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "MODELS",
    "GroupDef",
    "ModelDef",
    "PointDef",
    "PointType",
    "model_def",
]


class PointType(StrEnum):
    """SunSpec point types (the names the model definitions use)."""

    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    UINT64 = "uint64"
    INT64 = "int64"
    ACC16 = "acc16"
    ACC32 = "acc32"
    ACC64 = "acc64"
    FLOAT32 = "float32"
    STRING = "string"
    ENUM16 = "enum16"
    ENUM32 = "enum32"
    BITFIELD16 = "bitfield16"
    BITFIELD32 = "bitfield32"
    SUNSSF = "sunssf"
    PAD = "pad"
    COUNT = "count"

    @property
    def size(self) -> int | None:
        """Registers a point of this type takes (None: strings say their own size)."""
        return _SIZES[self]


_SIZES: Final[dict[PointType, int | None]] = {
    PointType.UINT16: 1,
    PointType.INT16: 1,
    PointType.UINT32: 2,
    PointType.INT32: 2,
    PointType.UINT64: 4,
    PointType.INT64: 4,
    PointType.ACC16: 1,
    PointType.ACC32: 2,
    PointType.ACC64: 4,
    PointType.FLOAT32: 2,
    PointType.STRING: None,
    PointType.ENUM16: 1,
    PointType.ENUM32: 2,
    PointType.BITFIELD16: 1,
    PointType.BITFIELD32: 2,
    PointType.SUNSSF: 1,
    PointType.PAD: 1,
    PointType.COUNT: 1,
}

U16 = PointType.UINT16
I16 = PointType.INT16
U32 = PointType.UINT32
I32 = PointType.INT32
U64 = PointType.UINT64
I64 = PointType.INT64
A16 = PointType.ACC16
A32 = PointType.ACC32
A64 = PointType.ACC64
F32 = PointType.FLOAT32
STR = PointType.STRING
E16 = PointType.ENUM16
E32 = PointType.ENUM32
B16 = PointType.BITFIELD16
B32 = PointType.BITFIELD32
SF = PointType.SUNSSF
PAD = PointType.PAD
CNT = PointType.COUNT


@dataclass(frozen=True)
class PointDef:
    """One point; ``offset`` counts from the start of its block (model or group instance)."""

    name: str
    type: PointType
    size: int
    offset: int = 0
    sf: str | None = None
    units: str | None = None
    rw: bool = False


@dataclass(frozen=True)
class GroupDef:
    """Points after the model's own: once (``count=None``) or repeated (``count=0``)."""

    name: str
    count: int | None
    points: tuple[PointDef, ...]

    @property
    def length(self) -> int:
        return sum(p.size for p in self.points)


@dataclass(frozen=True)
class ModelDef:
    model_id: int
    name: str
    label: str
    points: tuple[PointDef, ...]
    groups: tuple[GroupDef, ...] = ()

    @property
    def fixed_length(self) -> int:
        """Registers of the model's own points and its once-only groups."""
        return sum(p.size for p in self.points) + sum(
            g.length for g in self.groups if g.count is None
        )

    @property
    def repeating(self) -> GroupDef | None:
        return next((g for g in self.groups if g.count == 0), None)

    def point(self, name: str) -> PointDef:
        """A point of the fixed block by its SunSpec name (KeyError if the model has none)."""
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"model {self.model_id} has no point {name}")

    def offset(self, name: str) -> int:
        return self.point(name).offset


def _p(
    name: str,
    type_: PointType,
    *,
    size: int | None = None,
    sf: str | None = None,
    units: str | None = None,
    rw: bool = False,
) -> PointDef:
    n = size if size is not None else type_.size
    assert n is not None, name
    return PointDef(name, type_, n, 0, sf, units, rw)


def _laid_out(points: tuple[PointDef, ...], start: int = 0) -> tuple[PointDef, ...]:
    out: list[PointDef] = []
    at = start
    for p in points:
        out.append(PointDef(p.name, p.type, p.size, at, p.sf, p.units, p.rw))
        at += p.size
    return tuple(out)


def _group(name: str, count: int | None, points: tuple[PointDef, ...]) -> GroupDef:
    return GroupDef(name, count, _laid_out(points))


def _model(
    model_id: int,
    name: str,
    label: str,
    points: tuple[PointDef, ...],
    groups: tuple[GroupDef, ...] = (),
) -> ModelDef:
    return ModelDef(model_id, name, label, _laid_out(points), groups)


def model_def(model_id: int) -> ModelDef | None:
    """The definition of a model this gateway knows, or None."""
    return MODELS.get(model_id)


# The tables (SunSpec names and units as published; ID and L are left out: they are the header).
_ALL: Final = (
    _model(
        1,
        "common",
        "Common",
        (
            _p("Mn", STR, size=16),
            _p("Md", STR, size=16),
            _p("Opt", STR, size=8),
            _p("Vr", STR, size=8),
            _p("SN", STR, size=16),
            _p("DA", U16, rw=True),
            _p("Pad", PAD),
        ),
    ),
    _model(
        101,
        "inverter_single_phase",
        "Inverter (Single Phase)",
        (
            _p("A", U16, sf="A_SF", units="A"),
            _p("AphA", U16, sf="A_SF", units="A"),
            _p("AphB", U16, sf="A_SF", units="A"),
            _p("AphC", U16, sf="A_SF", units="A"),
            _p("A_SF", SF),
            _p("PPVphAB", U16, sf="V_SF", units="V"),
            _p("PPVphBC", U16, sf="V_SF", units="V"),
            _p("PPVphCA", U16, sf="V_SF", units="V"),
            _p("PhVphA", U16, sf="V_SF", units="V"),
            _p("PhVphB", U16, sf="V_SF", units="V"),
            _p("PhVphC", U16, sf="V_SF", units="V"),
            _p("V_SF", SF),
            _p("W", I16, sf="W_SF", units="W"),
            _p("W_SF", SF),
            _p("Hz", U16, sf="Hz_SF", units="Hz"),
            _p("Hz_SF", SF),
            _p("VA", I16, sf="VA_SF", units="VA"),
            _p("VA_SF", SF),
            _p("VAr", I16, sf="VAr_SF", units="var"),
            _p("VAr_SF", SF),
            _p("PF", I16, sf="PF_SF", units="Pct"),
            _p("PF_SF", SF),
            _p("WH", A32, sf="WH_SF", units="Wh"),
            _p("WH_SF", SF),
            _p("DCA", U16, sf="DCA_SF", units="A"),
            _p("DCA_SF", SF),
            _p("DCV", U16, sf="DCV_SF", units="V"),
            _p("DCV_SF", SF),
            _p("DCW", I16, sf="DCW_SF", units="W"),
            _p("DCW_SF", SF),
            _p("TmpCab", I16, sf="Tmp_SF", units="C"),
            _p("TmpSnk", I16, sf="Tmp_SF", units="C"),
            _p("TmpTrns", I16, sf="Tmp_SF", units="C"),
            _p("TmpOt", I16, sf="Tmp_SF", units="C"),
            _p("Tmp_SF", SF),
            _p("St", E16),
            _p("StVnd", E16),
            _p("Evt1", B32),
            _p("Evt2", B32),
            _p("EvtVnd1", B32),
            _p("EvtVnd2", B32),
            _p("EvtVnd3", B32),
            _p("EvtVnd4", B32),
        ),
    ),
    _model(
        102,
        "inverter_split_phase",
        "Inverter (Split-Phase)",
        (
            _p("A", U16, sf="A_SF", units="A"),
            _p("AphA", U16, sf="A_SF", units="A"),
            _p("AphB", U16, sf="A_SF", units="A"),
            _p("AphC", U16, sf="A_SF", units="A"),
            _p("A_SF", SF),
            _p("PPVphAB", U16, sf="V_SF", units="V"),
            _p("PPVphBC", U16, sf="V_SF", units="V"),
            _p("PPVphCA", U16, sf="V_SF", units="V"),
            _p("PhVphA", U16, sf="V_SF", units="V"),
            _p("PhVphB", U16, sf="V_SF", units="V"),
            _p("PhVphC", U16, sf="V_SF", units="V"),
            _p("V_SF", SF),
            _p("W", I16, sf="W_SF", units="W"),
            _p("W_SF", SF),
            _p("Hz", U16, sf="Hz_SF", units="Hz"),
            _p("Hz_SF", SF),
            _p("VA", I16, sf="VA_SF", units="VA"),
            _p("VA_SF", SF),
            _p("VAr", I16, sf="VAr_SF", units="var"),
            _p("VAr_SF", SF),
            _p("PF", I16, sf="PF_SF", units="Pct"),
            _p("PF_SF", SF),
            _p("WH", A32, sf="WH_SF", units="Wh"),
            _p("WH_SF", SF),
            _p("DCA", U16, sf="DCA_SF", units="A"),
            _p("DCA_SF", SF),
            _p("DCV", U16, sf="DCV_SF", units="V"),
            _p("DCV_SF", SF),
            _p("DCW", I16, sf="DCW_SF", units="W"),
            _p("DCW_SF", SF),
            _p("TmpCab", I16, sf="Tmp_SF", units="C"),
            _p("TmpSnk", I16, sf="Tmp_SF", units="C"),
            _p("TmpTrns", I16, sf="Tmp_SF", units="C"),
            _p("TmpOt", I16, sf="Tmp_SF", units="C"),
            _p("Tmp_SF", SF),
            _p("St", E16),
            _p("StVnd", E16),
            _p("Evt1", B32),
            _p("Evt2", B32),
            _p("EvtVnd1", B32),
            _p("EvtVnd2", B32),
            _p("EvtVnd3", B32),
            _p("EvtVnd4", B32),
        ),
    ),
    _model(
        103,
        "inverter_three_phase",
        "Inverter (Three Phase)",
        (
            _p("A", U16, sf="A_SF", units="A"),
            _p("AphA", U16, sf="A_SF", units="A"),
            _p("AphB", U16, sf="A_SF", units="A"),
            _p("AphC", U16, sf="A_SF", units="A"),
            _p("A_SF", SF),
            _p("PPVphAB", U16, sf="V_SF", units="V"),
            _p("PPVphBC", U16, sf="V_SF", units="V"),
            _p("PPVphCA", U16, sf="V_SF", units="V"),
            _p("PhVphA", U16, sf="V_SF", units="V"),
            _p("PhVphB", U16, sf="V_SF", units="V"),
            _p("PhVphC", U16, sf="V_SF", units="V"),
            _p("V_SF", SF),
            _p("W", I16, sf="W_SF", units="W"),
            _p("W_SF", SF),
            _p("Hz", U16, sf="Hz_SF", units="Hz"),
            _p("Hz_SF", SF),
            _p("VA", I16, sf="VA_SF", units="VA"),
            _p("VA_SF", SF),
            _p("VAr", I16, sf="VAr_SF", units="var"),
            _p("VAr_SF", SF),
            _p("PF", I16, sf="PF_SF", units="Pct"),
            _p("PF_SF", SF),
            _p("WH", A32, sf="WH_SF", units="Wh"),
            _p("WH_SF", SF),
            _p("DCA", U16, sf="DCA_SF", units="A"),
            _p("DCA_SF", SF),
            _p("DCV", U16, sf="DCV_SF", units="V"),
            _p("DCV_SF", SF),
            _p("DCW", I16, sf="DCW_SF", units="W"),
            _p("DCW_SF", SF),
            _p("TmpCab", I16, sf="Tmp_SF", units="C"),
            _p("TmpSnk", I16, sf="Tmp_SF", units="C"),
            _p("TmpTrns", I16, sf="Tmp_SF", units="C"),
            _p("TmpOt", I16, sf="Tmp_SF", units="C"),
            _p("Tmp_SF", SF),
            _p("St", E16),
            _p("StVnd", E16),
            _p("Evt1", B32),
            _p("Evt2", B32),
            _p("EvtVnd1", B32),
            _p("EvtVnd2", B32),
            _p("EvtVnd3", B32),
            _p("EvtVnd4", B32),
        ),
    ),
    _model(
        111,
        "inverter_single_phase_float",
        "Inverter (Single Phase) FLOAT",
        (
            _p("A", F32, units="A"),
            _p("AphA", F32, units="A"),
            _p("AphB", F32, units="A"),
            _p("AphC", F32, units="A"),
            _p("PPVphAB", F32, units="V"),
            _p("PPVphBC", F32, units="V"),
            _p("PPVphCA", F32, units="V"),
            _p("PhVphA", F32, units="V"),
            _p("PhVphB", F32, units="V"),
            _p("PhVphC", F32, units="V"),
            _p("W", F32, units="W"),
            _p("Hz", F32, units="Hz"),
            _p("VA", F32, units="VA"),
            _p("VAr", F32, units="var"),
            _p("PF", F32, units="Pct"),
            _p("WH", F32, units="Wh"),
            _p("DCA", F32, units="A"),
            _p("DCV", F32, units="V"),
            _p("DCW", F32, units="W"),
            _p("TmpCab", F32, units="C"),
            _p("TmpSnk", F32, units="C"),
            _p("TmpTrns", F32, units="C"),
            _p("TmpOt", F32, units="C"),
            _p("St", E16),
            _p("StVnd", E16),
            _p("Evt1", B32),
            _p("Evt2", B32),
            _p("EvtVnd1", B32),
            _p("EvtVnd2", B32),
            _p("EvtVnd3", B32),
            _p("EvtVnd4", B32),
        ),
    ),
    _model(
        112,
        "inverter_split_phase_float",
        "Inverter (Split Phase) FLOAT",
        (
            _p("A", F32, units="A"),
            _p("AphA", F32, units="A"),
            _p("AphB", F32, units="A"),
            _p("AphC", F32, units="A"),
            _p("PPVphAB", F32, units="V"),
            _p("PPVphBC", F32, units="V"),
            _p("PPVphCA", F32, units="V"),
            _p("PhVphA", F32, units="V"),
            _p("PhVphB", F32, units="V"),
            _p("PhVphC", F32, units="V"),
            _p("W", F32, units="W"),
            _p("Hz", F32, units="Hz"),
            _p("VA", F32, units="VA"),
            _p("VAr", F32, units="var"),
            _p("PF", F32, units="Pct"),
            _p("WH", F32, units="Wh"),
            _p("DCA", F32, units="A"),
            _p("DCV", F32, units="V"),
            _p("DCW", F32, units="W"),
            _p("TmpCab", F32, units="C"),
            _p("TmpSnk", F32, units="C"),
            _p("TmpTrns", F32, units="C"),
            _p("TmpOt", F32, units="C"),
            _p("St", E16),
            _p("StVnd", E16),
            _p("Evt1", B32),
            _p("Evt2", B32),
            _p("EvtVnd1", B32),
            _p("EvtVnd2", B32),
            _p("EvtVnd3", B32),
            _p("EvtVnd4", B32),
        ),
    ),
    _model(
        113,
        "inverter_three_phase_float",
        "Inverter (Three Phase) FLOAT",
        (
            _p("A", F32, units="A"),
            _p("AphA", F32, units="A"),
            _p("AphB", F32, units="A"),
            _p("AphC", F32, units="A"),
            _p("PPVphAB", F32, units="V"),
            _p("PPVphBC", F32, units="V"),
            _p("PPVphCA", F32, units="V"),
            _p("PhVphA", F32, units="V"),
            _p("PhVphB", F32, units="V"),
            _p("PhVphC", F32, units="V"),
            _p("W", F32, units="W"),
            _p("Hz", F32, units="Hz"),
            _p("VA", F32, units="VA"),
            _p("VAr", F32, units="var"),
            _p("PF", F32, units="Pct"),
            _p("WH", F32, units="Wh"),
            _p("DCA", F32, units="A"),
            _p("DCV", F32, units="V"),
            _p("DCW", F32, units="W"),
            _p("TmpCab", F32, units="C"),
            _p("TmpSnk", F32, units="C"),
            _p("TmpTrns", F32, units="C"),
            _p("TmpOt", F32, units="C"),
            _p("St", E16),
            _p("StVnd", E16),
            _p("Evt1", B32),
            _p("Evt2", B32),
            _p("EvtVnd1", B32),
            _p("EvtVnd2", B32),
            _p("EvtVnd3", B32),
            _p("EvtVnd4", B32),
        ),
    ),
    _model(
        120,
        "nameplate",
        "Nameplate",
        (
            _p("DERTyp", E16),
            _p("WRtg", U16, sf="WRtg_SF", units="W"),
            _p("WRtg_SF", SF),
            _p("VARtg", U16, sf="VARtg_SF", units="VA"),
            _p("VARtg_SF", SF),
            _p("VArRtgQ1", I16, sf="VArRtg_SF", units="var"),
            _p("VArRtgQ2", I16, sf="VArRtg_SF", units="var"),
            _p("VArRtgQ3", I16, sf="VArRtg_SF", units="var"),
            _p("VArRtgQ4", I16, sf="VArRtg_SF", units="var"),
            _p("VArRtg_SF", SF),
            _p("ARtg", U16, sf="ARtg_SF", units="A"),
            _p("ARtg_SF", SF),
            _p("PFRtgQ1", I16, sf="PFRtg_SF", units="cos()"),
            _p("PFRtgQ2", I16, sf="PFRtg_SF", units="cos()"),
            _p("PFRtgQ3", I16, sf="PFRtg_SF", units="cos()"),
            _p("PFRtgQ4", I16, sf="PFRtg_SF", units="cos()"),
            _p("PFRtg_SF", SF),
            _p("WHRtg", U16, sf="WHRtg_SF", units="Wh"),
            _p("WHRtg_SF", SF),
            _p("AhrRtg", U16, sf="AhrRtg_SF", units="AH"),
            _p("AhrRtg_SF", SF),
            _p("MaxChaRte", U16, sf="MaxChaRte_SF", units="W"),
            _p("MaxChaRte_SF", SF),
            _p("MaxDisChaRte", U16, sf="MaxDisChaRte_SF", units="W"),
            _p("MaxDisChaRte_SF", SF),
            _p("Pad", PAD),
        ),
    ),
    _model(
        121,
        "settings",
        "Basic Settings",
        (
            _p("WMax", U16, sf="WMax_SF", units="W", rw=True),
            _p("VRef", U16, sf="VRef_SF", units="V", rw=True),
            _p("VRefOfs", I16, sf="VRefOfs_SF", units="V", rw=True),
            _p("VMax", U16, sf="VMinMax_SF", units="V", rw=True),
            _p("VMin", U16, sf="VMinMax_SF", units="V", rw=True),
            _p("VAMax", U16, sf="VAMax_SF", units="VA", rw=True),
            _p("VArMaxQ1", I16, sf="VArMax_SF", units="var", rw=True),
            _p("VArMaxQ2", I16, sf="VArMax_SF", units="var", rw=True),
            _p("VArMaxQ3", I16, sf="VArMax_SF", units="var", rw=True),
            _p("VArMaxQ4", I16, sf="VArMax_SF", units="var", rw=True),
            _p("WGra", U16, sf="WGra_SF", units="% WMax/sec", rw=True),
            _p("PFMinQ1", I16, sf="PFMin_SF", units="cos()", rw=True),
            _p("PFMinQ2", I16, sf="PFMin_SF", units="cos()", rw=True),
            _p("PFMinQ3", I16, sf="PFMin_SF", units="cos()", rw=True),
            _p("PFMinQ4", I16, sf="PFMin_SF", units="cos()", rw=True),
            _p("VArAct", E16, rw=True),
            _p("ClcTotVA", E16, rw=True),
            _p("MaxRmpRte", U16, sf="MaxRmpRte_SF", units="% WGra", rw=True),
            _p("ECPNomHz", U16, sf="ECPNomHz_SF", units="Hz", rw=True),
            _p("ConnPh", E16, rw=True),
            _p("WMax_SF", SF),
            _p("VRef_SF", SF),
            _p("VRefOfs_SF", SF),
            _p("VMinMax_SF", SF),
            _p("VAMax_SF", SF),
            _p("VArMax_SF", SF),
            _p("WGra_SF", SF),
            _p("PFMin_SF", SF),
            _p("MaxRmpRte_SF", SF),
            _p("ECPNomHz_SF", SF),
        ),
    ),
    _model(
        122,
        "status",
        "Measurements_Status",
        (
            _p("PVConn", B16),
            _p("StorConn", B16),
            _p("ECPConn", B16),
            _p("ActWh", A64, units="Wh"),
            _p("ActVAh", A64, units="VAh"),
            _p("ActVArhQ1", A64, units="varh"),
            _p("ActVArhQ2", A64, units="varh"),
            _p("ActVArhQ3", A64, units="varh"),
            _p("ActVArhQ4", A64, units="varh"),
            _p("VArAval", I16, sf="VArAval_SF", units="var"),
            _p("VArAval_SF", SF),
            _p("WAval", U16, sf="WAval_SF", units="W"),
            _p("WAval_SF", SF),
            _p("StSetLimMsk", B32),
            _p("StActCtl", B32),
            _p("TmSrc", STR, size=4),
            _p("Tms", U32, units="Secs"),
            _p("RtSt", B16),
            _p("Ris", U16, sf="Ris_SF", units="ohms"),
            _p("Ris_SF", SF),
        ),
    ),
    _model(
        123,
        "controls",
        "Immediate Controls",
        (
            _p("Conn_WinTms", U16, units="Secs", rw=True),
            _p("Conn_RvrtTms", U16, units="Secs", rw=True),
            _p("Conn", E16, rw=True),
            _p("WMaxLimPct", U16, sf="WMaxLimPct_SF", units="% WMax", rw=True),
            _p("WMaxLimPct_WinTms", U16, units="Secs", rw=True),
            _p("WMaxLimPct_RvrtTms", U16, units="Secs", rw=True),
            _p("WMaxLimPct_RmpTms", U16, units="Secs", rw=True),
            _p("WMaxLim_Ena", E16, rw=True),
            _p("OutPFSet", I16, sf="OutPFSet_SF", units="cos()", rw=True),
            _p("OutPFSet_WinTms", U16, units="Secs", rw=True),
            _p("OutPFSet_RvrtTms", U16, units="Secs", rw=True),
            _p("OutPFSet_RmpTms", U16, units="Secs", rw=True),
            _p("OutPFSet_Ena", E16, rw=True),
            _p("VArWMaxPct", I16, sf="VArPct_SF", units="% WMax", rw=True),
            _p("VArMaxPct", I16, sf="VArPct_SF", units="% VArMax", rw=True),
            _p("VArAvalPct", I16, sf="VArPct_SF", units="% VArAval", rw=True),
            _p("VArPct_WinTms", U16, units="Secs", rw=True),
            _p("VArPct_RvrtTms", U16, units="Secs", rw=True),
            _p("VArPct_RmpTms", U16, units="Secs", rw=True),
            _p("VArPct_Mod", E16, rw=True),
            _p("VArPct_Ena", E16, rw=True),
            _p("WMaxLimPct_SF", SF),
            _p("OutPFSet_SF", SF),
            _p("VArPct_SF", SF),
        ),
    ),
    _model(
        124,
        "storage_basic",
        "Storage",
        (
            _p("WChaMax", U16, sf="WChaMax_SF", units="W", rw=True),
            _p("WChaGra", U16, sf="WChaDisChaGra_SF", units="% WChaMax/sec", rw=True),
            _p("WDisChaGra", U16, sf="WChaDisChaGra_SF", units="% WChaMax/sec", rw=True),
            _p("StorCtl_Mod", B16, rw=True),
            _p("VAChaMax", U16, sf="VAChaMax_SF", units="VA", rw=True),
            _p("MinRsvPct", U16, sf="MinRsvPct_SF", units="% WChaMax", rw=True),
            _p("ChaState", U16, sf="ChaState_SF", units="% AhrRtg"),
            _p("StorAval", U16, sf="StorAval_SF", units="AH"),
            _p("InBatV", U16, sf="InBatV_SF", units="V"),
            _p("ChaSt", E16),
            _p("OutWRte", I16, sf="InOutWRte_SF", units="% WDisChaMax", rw=True),
            _p("InWRte", I16, sf="InOutWRte_SF", units="% WChaMax", rw=True),
            _p("InOutWRte_WinTms", U16, units="Secs", rw=True),
            _p("InOutWRte_RvrtTms", U16, units="Secs", rw=True),
            _p("InOutWRte_RmpTms", U16, units="Secs", rw=True),
            _p("ChaGriSet", E16, rw=True),
            _p("WChaMax_SF", SF),
            _p("WChaDisChaGra_SF", SF),
            _p("VAChaMax_SF", SF),
            _p("MinRsvPct_SF", SF),
            _p("ChaState_SF", SF),
            _p("StorAval_SF", SF),
            _p("InBatV_SF", SF),
            _p("InOutWRte_SF", SF),
        ),
    ),
    _model(
        160,
        "mppt",
        "Multiple MPPT Inverter Extension Model",
        (
            _p("DCA_SF", SF),
            _p("DCV_SF", SF),
            _p("DCW_SF", SF),
            _p("DCWH_SF", SF),
            _p("Evt", B32),
            _p("N", CNT),
            _p("TmsPer", U16),
        ),
        (
            _group(
                "module",
                0,
                (
                    _p("ID", U16),
                    _p("IDStr", STR, size=8),
                    _p("DCA", U16, sf="DCA_SF", units="A"),
                    _p("DCV", U16, sf="DCV_SF", units="V"),
                    _p("DCW", U16, sf="DCW_SF", units="W"),
                    _p("DCWH", A32, sf="DCWH_SF", units="Wh"),
                    _p("Tms", U32, units="Secs"),
                    _p("Tmp", I16, units="C"),
                    _p("DCSt", E16),
                    _p("DCEvt", B32),
                ),
            ),
        ),
    ),
    _model(
        701,
        "DERMeasureAC",
        "DER AC Measurement",
        (
            _p("ACType", E16),
            _p("St", E16),
            _p("InvSt", E16),
            _p("ConnSt", E16),
            _p("Alrm", B32),
            _p("DERMode", B32),
            _p("W", I16, sf="W_SF", units="W"),
            _p("VA", I16, sf="VA_SF", units="VA"),
            _p("Var", I16, sf="Var_SF", units="Var"),
            _p("PF", I16, sf="PF_SF"),
            _p("A", I16, sf="A_SF", units="A"),
            _p("LLV", U16, sf="V_SF", units="V"),
            _p("LNV", U16, sf="V_SF", units="V"),
            _p("Hz", U32, sf="Hz_SF", units="Hz"),
            _p("TotWhInj", U64, sf="TotWh_SF", units="Wh"),
            _p("TotWhAbs", U64, sf="TotWh_SF", units="Wh"),
            _p("TotVarhInj", U64, sf="TotVarh_SF", units="Varh"),
            _p("TotVarhAbs", U64, sf="TotVarh_SF", units="Varh"),
            _p("TmpAmb", I16, sf="Tmp_SF", units="C"),
            _p("TmpCab", I16, sf="Tmp_SF", units="C"),
            _p("TmpSnk", I16, sf="Tmp_SF", units="C"),
            _p("TmpTrns", I16, sf="Tmp_SF", units="C"),
            _p("TmpSw", I16, sf="Tmp_SF", units="C"),
            _p("TmpOt", I16, sf="Tmp_SF", units="C"),
            _p("WL1", I16, sf="W_SF", units="W"),
            _p("VAL1", I16, sf="VA_SF", units="VA"),
            _p("VarL1", I16, sf="Var_SF", units="Var"),
            _p("PFL1", I16, sf="PF_SF"),
            _p("AL1", I16, sf="A_SF", units="A"),
            _p("VL1L2", U16, sf="V_SF", units="V"),
            _p("VL1", U16, sf="V_SF", units="V"),
            _p("TotWhInjL1", U64, sf="TotWh_SF", units="Wh"),
            _p("TotWhAbsL1", U64, sf="TotWh_SF", units="Wh"),
            _p("TotVarhInjL1", U64, sf="TotVarh_SF", units="Varh"),
            _p("TotVarhAbsL1", U64, sf="TotVarh_SF", units="Varh"),
            _p("WL2", I16, sf="W_SF", units="W"),
            _p("VAL2", I16, sf="VA_SF", units="VA"),
            _p("VarL2", I16, sf="Var_SF", units="Var"),
            _p("PFL2", I16, sf="PF_SF"),
            _p("AL2", I16, sf="A_SF", units="A"),
            _p("VL2L3", U16, sf="V_SF", units="V"),
            _p("VL2", U16, sf="V_SF", units="V"),
            _p("TotWhInjL2", U64, sf="TotWh_SF", units="Wh"),
            _p("TotWhAbsL2", U64, sf="TotWh_SF", units="Wh"),
            _p("TotVarhInjL2", U64, sf="TotVarh_SF", units="Varh"),
            _p("TotVarhAbsL2", U64, sf="TotVarh_SF", units="Varh"),
            _p("WL3", I16, sf="W_SF", units="W"),
            _p("VAL3", I16, sf="VA_SF", units="VA"),
            _p("VarL3", I16, sf="Var_SF", units="Var"),
            _p("PFL3", I16, sf="PF_SF"),
            _p("AL3", I16, sf="A_SF", units="A"),
            _p("VL3L1", U16, sf="V_SF", units="V"),
            _p("VL3", U16, sf="V_SF", units="V"),
            _p("TotWhInjL3", U64, sf="TotWh_SF", units="Wh"),
            _p("TotWhAbsL3", U64, sf="TotWh_SF", units="Wh"),
            _p("TotVarhInjL3", U64, sf="TotVarh_SF", units="Varh"),
            _p("TotVarhAbsL3", U64, sf="TotVarh_SF", units="Varh"),
            _p("ThrotPct", U16, units="Pct"),
            _p("ThrotSrc", B32),
            _p("A_SF", SF),
            _p("V_SF", SF),
            _p("Hz_SF", SF),
            _p("W_SF", SF),
            _p("PF_SF", SF),
            _p("VA_SF", SF),
            _p("Var_SF", SF),
            _p("TotWh_SF", SF),
            _p("TotVarh_SF", SF),
            _p("Tmp_SF", SF),
            _p("MnAlrmInfo", STR, size=32),
        ),
    ),
    _model(
        702,
        "DERCapacity",
        "DER Capacity",
        (
            _p("WMaxRtg", U16, sf="W_SF", units="W"),
            _p("WOvrExtRtg", U16, sf="W_SF", units="W"),
            _p("WOvrExtRtgPF", U16, sf="PF_SF"),
            _p("WUndExtRtg", U16, sf="W_SF", units="W"),
            _p("WUndExtRtgPF", U16, sf="PF_SF"),
            _p("VAMaxRtg", U16, sf="VA_SF", units="VA"),
            _p("VarMaxInjRtg", U16, sf="Var_SF", units="Var"),
            _p("VarMaxAbsRtg", U16, sf="Var_SF", units="Var"),
            _p("WChaRteMaxRtg", U16, sf="W_SF", units="W"),
            _p("WDisChaRteMaxRtg", U16, sf="W_SF", units="W"),
            _p("VAChaRteMaxRtg", U16, sf="VA_SF", units="VA"),
            _p("VADisChaRteMaxRtg", U16, sf="VA_SF", units="VA"),
            _p("VNomRtg", U16, sf="V_SF", units="V"),
            _p("VMaxRtg", U16, sf="V_SF", units="V"),
            _p("VMinRtg", U16, sf="V_SF", units="V"),
            _p("AMaxRtg", U16, sf="A_SF", units="A"),
            _p("PFOvrExtRtg", U16, sf="PF_SF"),
            _p("PFUndExtRtg", U16, sf="PF_SF"),
            _p("ReactSusceptRtg", U16, sf="S_SF", units="S"),
            _p("NorOpCatRtg", E16),
            _p("AbnOpCatRtg", E16),
            _p("CtrlModes", B32),
            _p("IntIslandCatRtg", B16),
            _p("WMax", U16, sf="W_SF", units="W", rw=True),
            _p("WMaxOvrExt", U16, sf="W_SF", units="W", rw=True),
            _p("WOvrExtPF", U16, sf="PF_SF", rw=True),
            _p("WMaxUndExt", U16, sf="W_SF", units="W", rw=True),
            _p("WUndExtPF", U16, sf="PF_SF", rw=True),
            _p("VAMax", U16, sf="VA_SF", units="VA", rw=True),
            _p("VarMaxInj", U16, sf="Var_SF", units="Var", rw=True),
            _p("VarMaxAbs", U16, sf="Var_SF", units="Var", rw=True),
            _p("WChaRteMax", U16, sf="W_SF", units="W", rw=True),
            _p("WDisChaRteMax", U16, sf="W_SF", units="W", rw=True),
            _p("VAChaRteMax", U16, sf="VA_SF", units="VA", rw=True),
            _p("VADisChaRteMax", U16, sf="VA_SF", units="VA", rw=True),
            _p("VNom", U16, sf="V_SF", units="V", rw=True),
            _p("VMax", U16, sf="V_SF", units="V", rw=True),
            _p("VMin", U16, sf="V_SF", units="V", rw=True),
            _p("AMax", U16, sf="A_SF", units="A", rw=True),
            _p("PFOvrExt", U16, sf="PF_SF", rw=True),
            _p("PFUndExt", U16, sf="PF_SF", rw=True),
            _p("IntIslandCat", B16, rw=True),
            _p("W_SF", SF),
            _p("PF_SF", SF),
            _p("VA_SF", SF),
            _p("Var_SF", SF),
            _p("V_SF", SF),
            _p("A_SF", SF),
            _p("S_SF", SF),
        ),
    ),
    _model(
        704,
        "DERCtlAC",
        "DER AC Controls",
        (
            _p("PFWInjEna", E16, rw=True),
            _p("PFWInjEnaRvrt", E16, rw=True),
            _p("PFWInjRvrtTms", U32, units="Secs", rw=True),
            _p("PFWInjRvrtRem", U32, units="Secs"),
            _p("PFWAbsEna", E16, rw=True),
            _p("PFWAbsEnaRvrt", E16, rw=True),
            _p("PFWAbsRvrtTms", U32, units="Secs", rw=True),
            _p("PFWAbsRvrtRem", U32, units="Secs"),
            _p("WMaxLimPctEna", E16, rw=True),
            _p("WMaxLimPct", U16, sf="WMaxLimPct_SF", units="Pct", rw=True),
            _p("WMaxLimPctRvrt", U16, sf="WMaxLimPct_SF", units="Pct", rw=True),
            _p("WMaxLimPctEnaRvrt", E16, rw=True),
            _p("WMaxLimPctRvrtTms", U32, units="Secs", rw=True),
            _p("WMaxLimPctRvrtRem", U32, units="Secs"),
            _p("WSetEna", E16, rw=True),
            _p("WSetMod", E16, rw=True),
            _p("WSet", I32, sf="WSet_SF", units="W", rw=True),
            _p("WSetRvrt", I32, sf="WSet_SF", units="W", rw=True),
            _p("WSetPct", I16, sf="WSetPct_SF", units="Pct", rw=True),
            _p("WSetPctRvrt", I16, sf="WSetPct_SF", units="Pct", rw=True),
            _p("WSetEnaRvrt", E16, rw=True),
            _p("WSetRvrtTms", U32, units="Secs", rw=True),
            _p("WSetRvrtRem", U32, units="Secs"),
            _p("VarSetEna", E16, rw=True),
            _p("VarSetMod", E16, rw=True),
            _p("VarSetPri", E16, rw=True),
            _p("VarSet", I32, sf="VarSet_SF", units="Var", rw=True),
            _p("VarSetRvrt", I32, sf="VarSet_SF", units="Var", rw=True),
            _p("VarSetPct", I16, sf="VarSetPct_SF", units="Pct", rw=True),
            _p("VarSetPctRvrt", I16, sf="VarSetPct_SF", units="Pct", rw=True),
            _p("VarSetEnaRvrt", E16, rw=True),
            _p("VarSetRvrtTms", U32, units="Secs", rw=True),
            _p("VarSetRvrtRem", U32, units="Secs"),
            _p("WRmp", U16, units="%Max/Sec", rw=True),
            _p("WRmpRef", E16, rw=True),
            _p("VarRmp", U16, units="%Max/Sec", rw=True),
            _p("AntiIslEna", E16, rw=True),
            _p("PF_SF", SF),
            _p("WMaxLimPct_SF", SF),
            _p("WSet_SF", SF),
            _p("WSetPct_SF", SF),
            _p("VarSet_SF", SF),
            _p("VarSetPct_SF", SF),
        ),
        (
            _group(
                "PFWInj",
                None,
                (
                    _p("PF", U16, sf="PF_SF", rw=True),
                    _p("Ext", E16, rw=True),
                ),
            ),
            _group(
                "PFWInjRvrt",
                None,
                (
                    _p("PF", U16, sf="PF_SF", rw=True),
                    _p("Ext", E16, rw=True),
                ),
            ),
            _group(
                "PFWAbs",
                None,
                (
                    _p("PF", U16, sf="PF_SF", rw=True),
                    _p("Ext", E16, rw=True),
                ),
            ),
            _group(
                "PFWAbsRvrt",
                None,
                (
                    _p("PF", U16, sf="PF_SF", rw=True),
                    _p("Ext", E16, rw=True),
                ),
            ),
        ),
    ),
    _model(
        713,
        "DERStorageCapacity",
        "DER Storage Capacity",
        (
            _p("WHRtg", U16, sf="WH_SF", units="WH"),
            _p("WHAvail", U16, sf="WH_SF", units="WH"),
            _p("SoC", U16, sf="Pct_SF", units="Pct"),
            _p("SoH", U16, sf="Pct_SF", units="Pct"),
            _p("Sta", E16),
            _p("WH_SF", SF),
            _p("Pct_SF", SF),
        ),
    ),
    _model(
        802,
        "battery",
        "Battery Base Model",
        (
            _p("AHRtg", U16, sf="AHRtg_SF", units="Ah"),
            _p("WHRtg", U16, sf="WHRtg_SF", units="Wh"),
            _p("WChaRteMax", U16, sf="WChaDisChaMax_SF", units="W"),
            _p("WDisChaRteMax", U16, sf="WChaDisChaMax_SF", units="W"),
            _p("DisChaRte", U16, sf="DisChaRte_SF", units="%WHRtg"),
            _p("SoCMax", U16, sf="SoC_SF", units="%WHRtg"),
            _p("SoCMin", U16, sf="SoC_SF", units="%WHRtg"),
            _p("SocRsvMax", U16, sf="SoC_SF", units="%WHRtg", rw=True),
            _p("SoCRsvMin", U16, sf="SoC_SF", units="%WHRtg", rw=True),
            _p("SoC", U16, sf="SoC_SF", units="%WHRtg"),
            _p("DoD", U16, sf="DoD_SF", units="%"),
            _p("SoH", U16, sf="SoH_SF", units="%"),
            _p("NCyc", U32),
            _p("ChaSt", E16),
            _p("LocRemCtl", E16),
            _p("Hb", U16),
            _p("CtrlHb", U16, rw=True),
            _p("AlmRst", U16, rw=True),
            _p("Typ", E16),
            _p("State", E16),
            _p("StateVnd", E16),
            _p("WarrDt", U32),
            _p("Evt1", B32),
            _p("Evt2", B32),
            _p("EvtVnd1", B32),
            _p("EvtVnd2", B32),
            _p("V", U16, sf="V_SF", units="V"),
            _p("VMax", U16, sf="V_SF", units="V"),
            _p("VMin", U16, sf="V_SF", units="V"),
            _p("CellVMax", U16, sf="CellV_SF", units="V"),
            _p("CellVMaxStr", U16),
            _p("CellVMaxMod", U16),
            _p("CellVMin", U16, sf="CellV_SF", units="V"),
            _p("CellVMinStr", U16),
            _p("CellVMinMod", U16),
            _p("CellVAvg", U16, sf="CellV_SF", units="V"),
            _p("A", I16, sf="A_SF", units="A"),
            _p("AChaMax", U16, sf="AMax_SF", units="A"),
            _p("ADisChaMax", U16, sf="AMax_SF", units="A"),
            _p("W", I16, sf="W_SF", units="W"),
            _p("ReqInvState", E16),
            _p("ReqW", I16, sf="W_SF", units="W"),
            _p("SetOp", E16, rw=True),
            _p("SetInvState", E16, rw=True),
            _p("AHRtg_SF", SF),
            _p("WHRtg_SF", SF),
            _p("WChaDisChaMax_SF", SF),
            _p("DisChaRte_SF", SF),
            _p("SoC_SF", SF),
            _p("DoD_SF", SF),
            _p("SoH_SF", SF),
            _p("V_SF", SF),
            _p("CellV_SF", SF),
            _p("A_SF", SF),
            _p("AMax_SF", SF),
            _p("W_SF", SF),
        ),
    ),
)

MODELS: Final[dict[int, ModelDef]] = {m.model_id: m for m in _ALL}
