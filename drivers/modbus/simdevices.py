"""Simulated SunSpec devices: register images and physics, without any I/O.

Each unit is a SunSpec register image (built with the codec's encoder, so the simulator speaks
SunSpec from the other side of the same tables) plus the physics that move it: the ECHONET
simulator's clear-sky PV curve and battery model, so a home simulated over Modbus behaves like
one simulated over ECHONET Lite. Time is the injected clock's and physics run lazily at every
request, so a jumped ManualClock moves energy and SOC and expires revert timers.

Units:

* :class:`SimPvInverter`: models 1, 103, 120, 123 (or 704 instead of 123). Output is the
  clear-sky curve capped by WMaxLimPct (% of WRtg) while WMaxLim_Ena (704: WMaxLimPctEna) is
  set; WMaxLimPct_RvrtTms (704: WMaxLimPctRvrtTms) clears it.
* :class:`SimBatteryInverter` ``variant="124"``: models 1, 103, 120, 124. StorCtl_Mod bit 0
  charges at InWRte % of WChaMax, bit 1 discharges at OutWRte %, both hold; 0 is the unit's own
  (``auto_power_w``). InOutWRte_RvrtTms hands control back (StorCtl_Mod 0).
* :class:`SimBatteryInverter` ``variant="802"``: models 1, 701, 702, 704, 713, 802. WSet (704,
  watts, + into the grid) drives it while WSetEna is set; WSetRvrtTms clears WSetEna.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from drivers.modbus.models import MODELS, PointType
from drivers.modbus.sunspec import (
    MARKER,
    DecodedModel,
    SunSpecError,
    Value,
    decode_model,
    encode_model,
    encode_point,
)
from gateway.clock import Clock

__all__ = [
    "BATTERY_VARIANTS",
    "SimBatteryInverter",
    "SimImage",
    "SimPvInverter",
    "SimUnit",
    "WriteRefused",
    "clear_sky_w",
]

BATTERY_VARIANTS: Final = ("124", "802")
_STEP_S: Final = 60.0


def clear_sky_w(rated_w: float, clock: Clock) -> float:
    """PV output on a clear day, sunrise 06:00, sunset 18:00 (the ECHONET simulator's curve)."""
    now = clock.now()
    hour = now.hour + now.minute / 60 + now.second / 3600
    if not 6.0 < hour < 18.0:
        return 0.0
    return float(rated_w * 0.85 * math.sin(math.pi * (hour - 6.0) / 12.0) ** 1.2)


class WriteRefused(Exception):
    """A write the device refuses; ``code`` is the Modbus exception code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


ILLEGAL_ADDRESS: Final = 2
ILLEGAL_VALUE: Final = 3

ModelSpec = tuple[int, Mapping[str, Value], Sequence[Mapping[str, Value]]]


@dataclass(frozen=True)
class _Span:
    model_id: int
    start: int  # relative to the base: first point of the model
    length: int


class SimImage:
    """Marker, models in order, end marker: the registers from the base address on."""

    def __init__(self, models: Sequence[ModelSpec], *, end_marker: bool = True) -> None:
        self.words: list[int] = list(MARKER)
        self.spans: dict[int, _Span] = {}
        for model_id, values, blocks in models:
            body = encode_model(model_id, values, blocks)
            self.words += [model_id, len(body)]
            self.spans[model_id] = _Span(model_id, len(self.words), len(body))
            self.words += body
        if end_marker:
            self.words += [0xFFFF, 0]
        self._writable = self._rw_offsets()

    def _rw_offsets(self) -> dict[int, tuple[int, str]]:
        out: dict[int, tuple[int, str]] = {}
        for span in self.spans.values():
            for p in MODELS[span.model_id].points:
                if p.rw:
                    for k in range(p.size):
                        out[span.start + p.offset + k] = (span.model_id, p.name)
        return out

    def decode(self, model_id: int) -> DecodedModel:
        span = self.spans[model_id]
        return decode_model(model_id, self.words[span.start : span.start + span.length])

    def set(self, model_id: int, **values: Value) -> None:
        """Encode points in place, with the scale factors the image holds."""
        span = self.spans[model_id]
        d = MODELS[model_id]
        current = self.decode(model_id)
        for name, value in values.items():
            p = d.point(name)
            sf_raw = current.raw(p.sf) if p.sf is not None else None
            sf = sf_raw if isinstance(sf_raw, int) else None
            at = span.start + p.offset
            self.words[at : at + p.size] = encode_point(p, value, sf)

    def writable(self, offset: int) -> tuple[int, str] | None:
        """(model, point) a register belongs to if it is writable, else None."""
        return self._writable.get(offset)


class SimUnit:
    """One simulated device (a Modbus unit ID) and its physics."""

    kind: str = "device"

    def __init__(self, clock: Clock, image: SimImage, unit_id: int) -> None:
        self.clock = clock
        self.image = image
        self.unit_id = unit_id
        #: False: writes are acknowledged but not carried out (a device ignoring commands).
        self.follow = True
        self._last = clock.monotonic()
        self._deadlines: dict[str, float] = {}

    def advance(self) -> None:
        """Physics up to now, in steps so a revert timer ends a command at the right time."""
        now = self.clock.monotonic()
        while self._last < now:
            due = [t for t in self._deadlines.values() if self._last < t <= now]
            end = min([now, self._last + _STEP_S, *due])
            self._integrate(end - self._last)
            self._last = end
            for name, t in list(self._deadlines.items()):
                if t <= end:
                    del self._deadlines[name]
                    self._revert(name)
        self._last = max(self._last, now)
        self.publish()

    def write(self, offset: int, values: Sequence[int]) -> None:
        """Registers written at ``offset`` (relative to the base); refusals raise first."""
        touched: set[tuple[int, str]] = set()
        for k in range(len(values)):
            owner = self.image.writable(offset + k)
            if owner is None:
                raise WriteRefused(ILLEGAL_ADDRESS, f"register {offset + k} is read-only")
            touched.add(owner)
        before = list(self.image.words)
        self.image.words[offset : offset + len(values)] = list(values)
        try:
            self._validate(touched)
        except (WriteRefused, SunSpecError) as exc:
            self.image.words[:] = before
            if isinstance(exc, WriteRefused):
                raise
            raise WriteRefused(ILLEGAL_VALUE, str(exc)) from None
        if not self.follow:
            self.image.words[:] = before
            return
        self._written({name for _, name in touched})
        self.publish()

    def arm(self, timer: str, seconds: float | None) -> None:
        """Start (or, with None or 0, stop) a revert timer."""
        if seconds:
            self._deadlines[timer] = self.clock.monotonic() + float(seconds)
        else:
            self._deadlines.pop(timer, None)

    def timer_remaining(self, timer: str) -> float | None:
        t = self._deadlines.get(timer)
        return None if t is None else max(0.0, t - self.clock.monotonic())

    # Subclass hooks.
    def _integrate(self, seconds: float) -> None:
        pass

    def _revert(self, timer: str) -> None:
        pass

    def _validate(self, touched: set[tuple[int, str]]) -> None:
        for model_id in {m for m, _ in touched}:
            self.image.decode(model_id)

    def _written(self, names: set[str]) -> None:
        pass

    def publish(self) -> None:
        pass


def _common(make: str, model: str, serial: str, unit_id: int) -> ModelSpec:
    return (
        1,
        {"Mn": make, "Md": model, "Opt": "", "Vr": "1.0.0", "SN": serial, "DA": unit_id},
        (),
    )


def _zero_sfs(model_id: int, **given: int) -> dict[str, Value]:
    """Every scale factor of a model at 0 (unless given): a device that publishes them all."""
    values: dict[str, Value] = {
        p.name: 0 for p in MODELS[model_id].points if p.type is PointType.SUNSSF
    }
    values.update(given)
    return values


# ----------------------------------------------------------------------------------------- PV


class SimPvInverter(SimUnit):
    """A PV inverter: models 1, 103, 120, 123 (see the module docstring)."""

    kind = "pv"

    def __init__(
        self,
        clock: Clock,
        *,
        unit_id: int = 1,
        rated_w: int = 4500,
        lifetime_wh: int = 2_000_000,
        serial: str = "SIMPV0001",
        limit_model: int = 123,
    ) -> None:
        if limit_model not in (123, 704):
            raise ValueError(f"a PV limit is model 123 or 704, not {limit_model!r}")
        self.limit_model = limit_model
        controls: ModelSpec
        if limit_model == 123:
            controls = (
                123,
                {
                    "Conn": 1,
                    "WMaxLimPct": 100.0,
                    "WMaxLimPct_WinTms": 0,
                    "WMaxLimPct_RvrtTms": 0,
                    "WMaxLimPct_RmpTms": 0,
                    "WMaxLim_Ena": 0,
                    "WMaxLimPct_SF": -1,
                    "OutPFSet_SF": -3,
                    "VArPct_SF": 0,
                },
                (),
            )
        else:
            controls = (
                704,
                {
                    **_zero_sfs(704, PF_SF=-2, WMaxLimPct_SF=-1, WSetPct_SF=-1),
                    "WMaxLimPctEna": 0,
                    "WMaxLimPct": 100.0,
                    "WMaxLimPctRvrtTms": 0,
                    "WMaxLimPctRvrtRem": 0,
                    "WSetEna": 0,
                },
                (),
            )
        image = SimImage(
            [
                _common("Chisan Sim", "SIM-PV-1", serial, unit_id),
                (
                    103,
                    {
                        **_zero_sfs(103, V_SF=-1, Hz_SF=-2, PF_SF=-1),
                        "W": 0,
                        "Hz": 50.0,
                        "PhVphA": 202.0,
                        "WH": lifetime_wh,
                        "St": 2,
                        "Evt1": 0,
                        "Evt2": 0,
                    },
                    (),
                ),
                (
                    120,
                    {**_zero_sfs(120), "DERTyp": 4, "WRtg": rated_w, "VARtg": rated_w},
                    (),
                ),
                controls,
            ]
        )
        super().__init__(clock, image, unit_id)
        self.rated_w = rated_w
        self.lifetime_wh = float(lifetime_wh)
        #: The power the modules offer now (W); a clear-sky bell at the rating when None. A
        #: simulated home sets it so every array of the house sees the same sky.
        self.profile: Callable[[], float] | None = None
        self.publish()

    def available_w(self) -> float:
        if self.profile is not None:
            return max(0.0, min(float(self.rated_w), float(self.profile())))
        return clear_sky_w(self.rated_w, self.clock)

    @property
    def _names(self) -> tuple[str, str, str]:
        if self.limit_model == 123:
            return "WMaxLimPct", "WMaxLimPct_RvrtTms", "WMaxLim_Ena"
        return "WMaxLimPct", "WMaxLimPctRvrtTms", "WMaxLimPctEna"

    @property
    def limit_pct(self) -> float | None:
        """The limit in force (None: none)."""
        c = self.image.decode(self.limit_model)
        if c[self._names[2]] != 1:
            return None
        pct = c.number("WMaxLimPct")
        return None if pct is None else float(pct)

    @property
    def ceiling_w(self) -> float:
        pct = self.limit_pct
        return self.rated_w if pct is None else self.rated_w * pct / 100.0

    def generation_w(self) -> float:
        if self.limit_model == 123 and self.image.decode(123)["Conn"] == 0:
            return 0.0
        return min(self.available_w(), self.ceiling_w)

    def _integrate(self, seconds: float) -> None:
        self.lifetime_wh += self.generation_w() * seconds / 3600.0

    def _validate(self, touched: set[tuple[int, str]]) -> None:
        c = self.image.decode(self.limit_model)
        pct_name, _, ena_name = self._names
        pct = c.number(pct_name)
        if pct is not None and not 0 <= pct <= 100:
            raise WriteRefused(ILLEGAL_VALUE, f"{pct_name} {pct} outside 0..100")
        if c[ena_name] not in (0, 1) or c.get("Conn") not in (0, 1, None):
            raise WriteRefused(ILLEGAL_VALUE, "enable points take 0 or 1")

    def _written(self, names: set[str]) -> None:
        if names & set(self._names):
            c = self.image.decode(self.limit_model)
            _, rvrt_name, ena_name = self._names
            enabled = c[ena_name] == 1
            self.arm("WMaxLim", c.number(rvrt_name) if enabled else None)

    def _revert(self, timer: str) -> None:
        if timer == "WMaxLim":
            self.image.set(self.limit_model, **{self._names[2]: 0})

    def publish(self) -> None:
        if self.limit_model == 704:
            left = self.timer_remaining("WMaxLim")
            self.image.set(704, WMaxLimPctRvrtRem=0 if left is None else math.ceil(left))
        w = self.generation_w()
        limited = self.limit_pct is not None and self.available_w() > w
        st = 5 if limited else (4 if w > 0 else 2)
        self.image.set(
            103,
            W=round(w),
            VA=round(w),
            PF=100.0 if w > 0 else None,
            A=round(w / 202.0) if w else 0,
            DCW=round(w * 1.03),
            WH=max(1, int(self.lifetime_wh)),
            St=st,
        )


# ------------------------------------------------------------------------------------ battery


class SimBatteryInverter(SimUnit):
    """An AC-coupled storage inverter, model 124 or the 70x/802 DER models (``variant``)."""

    kind = "battery"

    def __init__(
        self,
        clock: Clock,
        *,
        variant: str = "124",
        unit_id: int = 1,
        soc_pct: float = 50.0,
        capacity_wh: int = 9800,
        w_cha_max: int = 5000,
        lifetime_wh: int = 1_234_000,
        serial: str = "SIM0001",
    ) -> None:
        if variant not in BATTERY_VARIANTS:
            raise ValueError(f"battery variant must be one of {BATTERY_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.soc_pct = float(soc_pct)
        self.capacity_wh = capacity_wh
        self.w_cha_max = w_cha_max
        self.charged_wh = 0.0
        self.discharged_wh = 0.0
        self.lifetime_wh = float(lifetime_wh)
        self.auto_power_w = 0.0
        common = _common("Chisan Sim", f"SIM-BAT-{variant}", serial, unit_id)
        image = SimImage(
            [common, *(self._models_124() if variant == "124" else self._models_802())]
        )
        super().__init__(clock, image, unit_id)
        self.publish()

    def _models_124(self) -> list[ModelSpec]:
        return [
            (
                120,
                {
                    **_zero_sfs(120, WHRtg_SF=1),
                    "DERTyp": 82,
                    "WRtg": self.w_cha_max,
                    "WHRtg": self.capacity_wh,
                    "MaxChaRte": self.w_cha_max,
                    "MaxDisChaRte": self.w_cha_max,
                },
                (),
            ),
            (103, {**_zero_sfs(103), "W": 0, "WH": 1, "St": 8, "Evt1": 0, "Evt2": 0}, ()),
            (
                124,
                {
                    "WChaMax": self.w_cha_max,
                    "StorCtl_Mod": 0,
                    "MinRsvPct": 0,
                    "OutWRte": 0,
                    "InWRte": 0,
                    "InOutWRte_WinTms": 0,
                    "InOutWRte_RvrtTms": 0,
                    "InOutWRte_RmpTms": 0,
                    "ChaGriSet": 1,
                    "WChaMax_SF": 0,
                    "MinRsvPct_SF": 0,
                    "ChaState_SF": -1,
                    "InOutWRte_SF": -2,
                },
                (),
            ),
        ]

    def _models_802(self) -> list[ModelSpec]:
        w = self.w_cha_max
        return [
            (
                701,
                {
                    **_zero_sfs(701, Hz_SF=-2, PF_SF=-2),
                    "ACType": 1,
                    "St": 1,
                    "InvSt": 2,
                    "W": 0,
                    "Hz": 50.0,
                    "TotWhInj": 1,
                    "TotWhAbs": 1,
                },
                (),
            ),
            (
                702,
                {
                    **_zero_sfs(702, PF_SF=-2),
                    "WMaxRtg": w,
                    "WChaRteMaxRtg": w,
                    "WDisChaRteMaxRtg": w,
                    "WMax": w,
                    "WChaRteMax": w,
                    "WDisChaRteMax": w,
                },
                (),
            ),
            (
                704,
                {
                    **_zero_sfs(704, PF_SF=-2, WMaxLimPct_SF=-1, WSetPct_SF=-1, VarSetPct_SF=-1),
                    "WMaxLimPctEna": 0,
                    "WMaxLimPct": 100.0,
                    "WSetEna": 0,
                    "WSetMod": 1,
                    "WSet": 0,
                    "WSetRvrtTms": 0,
                    "WSetRvrtRem": 0,
                    "WSetEnaRvrt": 0,
                },
                (),
            ),
            (
                713,
                {"WHRtg": self.capacity_wh, "WH_SF": 0, "Pct_SF": -1, "SoH": 100.0, "Sta": 0},
                (),
            ),
            (
                802,
                {
                    **_zero_sfs(802, SoC_SF=-1),
                    "WHRtg": self.capacity_wh,
                    "WChaRteMax": w,
                    "WDisChaRteMax": w,
                    "AHRtg": round(self.capacity_wh / 51.2),
                    "SoCMax": 100.0,
                    "SoCMin": 0.0,
                    "ChaSt": 6,
                    "LocRemCtl": 0,
                    "Typ": 4,
                    "State": 3,
                    "Evt1": 0,
                    "Evt2": 0,
                    "EvtVnd1": 0,
                    "EvtVnd2": 0,
                    "V": 512,
                    "CellV_SF": 0,
                    "A": 0,
                    "W": 0,
                    "AlmRst": 0,
                    "SetOp": 1,
                    "SetInvState": 3,
                },
                (),
            ),
        ]

    # ----------------------------------------------------------------------------- physics

    def setpoint_w(self) -> float:
        """The battery power the controls ask for (+ charging / - discharging)."""
        if self.variant == "802":
            c = self.image.decode(704)
            if self.image.decode(802)["SetInvState"] in (1, 2):
                return 0.0
            if c["WSetEna"] != 1:
                return self.auto_power_w
            if c["WSetMod"] == 1:
                wset = c.number("WSet")
            else:
                pct = c.number("WSetPct")
                wset = None if pct is None else self.w_cha_max * pct / 100.0
            if wset is None:
                return 0.0
            return max(-self.w_cha_max, min(self.w_cha_max, -float(wset)))
        s = self.image.decode(124)
        mod = s["StorCtl_Mod"]
        in_pct = max(0.0, float(s.number("InWRte") or 0.0))
        out_pct = max(0.0, float(s.number("OutWRte") or 0.0))
        if mod == 0:
            return self.auto_power_w
        if mod == 1:
            return self.w_cha_max * in_pct / 100.0
        if mod == 2:
            return -self.w_cha_max * out_pct / 100.0
        return 0.0  # both limits: hold

    def power_w(self) -> float:
        p = self.setpoint_w()
        if (p > 0 and self.soc_pct >= 100.0) or (p < 0 and self.soc_pct <= 0.0):
            return 0.0
        return p

    def _integrate(self, seconds: float) -> None:
        p = self.power_w()
        if not seconds or not p:
            return
        energy = p * seconds / 3600.0
        room = (100.0 - self.soc_pct if p > 0 else self.soc_pct) * self.capacity_wh / 100.0
        energy = max(-room, min(room, energy))
        self.soc_pct = min(100.0, max(0.0, self.soc_pct + 100.0 * energy / self.capacity_wh))
        if energy > 0:
            self.charged_wh += energy
        else:
            self.discharged_wh -= energy
            self.lifetime_wh -= energy

    def _validate(self, touched: set[tuple[int, str]]) -> None:
        if self.variant == "124":
            s = self.image.decode(124)
            mod = s["StorCtl_Mod"]
            if not isinstance(mod, int) or mod > 3:
                raise WriteRefused(ILLEGAL_VALUE, f"StorCtl_Mod {mod} is not 0..3")
            for name in ("InWRte", "OutWRte"):
                pct = s.number(name)
                if pct is not None and not -100.0 <= pct <= 100.0:
                    raise WriteRefused(ILLEGAL_VALUE, f"{name} {pct} outside -100..100 %")
            return
        c = self.image.decode(704)
        wset = c.number("WSet")
        if wset is not None and abs(wset) > self.w_cha_max:
            raise WriteRefused(ILLEGAL_VALUE, f"WSet {wset} beyond {self.w_cha_max} W")
        if c["WSetEna"] not in (0, 1) or c["WSetMod"] not in (0, 1):
            raise WriteRefused(ILLEGAL_VALUE, "WSetEna/WSetMod out of range")
        if self.image.decode(802)["SetInvState"] not in (1, 2, 3):
            raise WriteRefused(ILLEGAL_VALUE, "SetInvState takes 1..3")

    def _written(self, names: set[str]) -> None:
        if self.variant == "124":
            if names & {"StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_RvrtTms"}:
                s = self.image.decode(124)
                active = s["StorCtl_Mod"] not in (0, None)
                self.arm("InOutWRte", s.number("InOutWRte_RvrtTms") if active else None)
            return
        if names & {"WSetEna", "WSet", "WSetPct", "WSetMod", "WSetRvrtTms"}:
            c = self.image.decode(704)
            self.arm("WSet", c.number("WSetRvrtTms") if c["WSetEna"] == 1 else None)

    def _revert(self, timer: str) -> None:
        if timer == "InOutWRte":
            self.image.set(124, StorCtl_Mod=0)
        elif timer == "WSet":
            self.image.set(704, WSetEna=0)

    def publish(self) -> None:
        p = self.power_w()
        if p > 0:
            cha_st = 4
        elif p < 0:
            cha_st = 3
        elif self.soc_pct >= 100.0:
            cha_st = 5
        elif self.soc_pct <= 0.0:
            cha_st = 2
        else:
            cha_st = 6
        if self.variant == "124":
            self.image.set(103, W=round(-p), WH=max(1, int(self.lifetime_wh)), St=4 if p else 8)
            self.image.set(124, ChaState=round(self.soc_pct, 1), ChaSt=cha_st)
            return
        left = self.timer_remaining("WSet")
        self.image.set(
            701,
            W=round(-p),
            TotWhInj=max(1, int(self.discharged_wh)),
            TotWhAbs=max(1, int(self.charged_wh)),
            InvSt=3 if p else 2,
        )
        self.image.set(704, WSetRvrtRem=0 if left is None else math.ceil(left))
        soc = round(self.soc_pct, 1)
        self.image.set(713, SoC=soc, WHAvail=round(self.capacity_wh * self.soc_pct / 100))
        self.image.set(802, SoC=soc, ChaSt=cha_st, W=round(p), A=round(p / 51.2))
