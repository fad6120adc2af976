"""The interlock's vocabulary: what is asked, what is measured, what is allowed, and why.

Everything here is a frozen value so a decision can be logged, compared and replayed; nothing here
knows about MQTT, ECHONET or Modbus. ``None`` always means "unknown", never zero, so a rule can
tell "the battery is idle" from "the battery did not answer" and fall back to its safe default.

Sign conventions follow ``drivers.capabilities``: meter power + import / − export, battery power
+ charging / − discharging. Requested charge/discharge powers are non-negative magnitudes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from drivers.capabilities import BatteryRatings
from gateway.config import LimitsConfig


class SetpointKind(StrEnum):
    BATTERY_CHARGE = "battery_charge"
    BATTERY_DISCHARGE = "battery_discharge"
    BATTERY_STANDBY = "battery_standby"
    BATTERY_AUTO = "battery_auto"
    PV_LIMIT = "pv_limit"
    WATER_HEATER_HEAT = "water_heater_heat"
    AIRCON_SAVING = "aircon_saving"
    NONE = "none"


BATTERY_KINDS = frozenset(
    {
        SetpointKind.BATTERY_CHARGE,
        SetpointKind.BATTERY_DISCHARGE,
        SetpointKind.BATTERY_STANDBY,
        SetpointKind.BATTERY_AUTO,
    }
)
#: Kinds that drive the battery away from its own automatic control.
FORCED_BATTERY_KINDS = frozenset({SetpointKind.BATTERY_CHARGE, SetpointKind.BATTERY_DISCHARGE})

#: Sources that are not remote commands.
SOURCE_OVERRIDE = "override"
SOURCE_DEFAULT = "default"


@dataclass(frozen=True)
class Setpoint:
    """One requested (or allowed) device state.

    ``power_w`` is the charge/discharge magnitude for the battery, and the expected draw for the
    water heater (0 = use ``Limits.water_heater_w``). ``limit_w`` is the PV output cap.
    ``allow_export`` lets a discharge push power to the grid when every local rule agrees.
    ``start``/``end`` bound a remote command; they may be None for local setpoints.
    """

    kind: SetpointKind
    power_w: float = 0.0
    limit_w: float | None = None
    allow_export: bool = False
    source: str = SOURCE_DEFAULT
    start: datetime | None = None
    end: datetime | None = None

    @property
    def is_battery(self) -> bool:
        return self.kind in BATTERY_KINDS

    @property
    def forced(self) -> bool:
        return self.kind in FORCED_BATTERY_KINDS


AUTO = Setpoint(SetpointKind.BATTERY_AUTO)
NOTHING = Setpoint(SetpointKind.NONE)


class PvContract(StrEnum):
    """PV C1 (FIT contract type): 0x41 FIT, 0x42 non-FIT, anything else unknown."""

    FIT = "fit"
    NON_FIT = "non_fit"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Measurements:
    """The latest readings with the time each was taken; any of them may be missing.

    ``current_t_a`` None means a single-phase 2-wire meter (100 V, everything on R); NaN means the
    T phase is unknown. Currents may be signed (negative = export) or magnitudes: either way the
    interlock's arithmetic stays conservative.
    """

    meter_power_w: float | None = None
    meter_power_at: datetime | None = None
    current_r_a: float | None = None
    current_t_a: float | None = None
    currents_at: datetime | None = None
    soc_pct: float | None = None
    soc_at: datetime | None = None
    battery_power_w: float | None = None
    battery_power_at: datetime | None = None
    reverse_flow_ok: bool | None = None
    ratings: BatteryRatings | None = None
    pv_contract: PvContract = PvContract.UNKNOWN


@dataclass(frozen=True)
class Limits:
    """Every number a rule uses; the defaults are the safe ones.

    ``fit`` defaults to True (no battery export) because wrongly forbidding export costs a little
    revenue, wrongly allowing it breaks the FIT contract. ``unknown_current_charge_w`` is the most
    forced charging allowed when the phase currents are unknown (0 = none).
    """

    soc_reserve_pct: float = 30.0
    soc_max_pct: float = 95.0
    export_limit_w: float = 4500.0
    breaker_a: float = 60.0
    breaker_margin_a: float = 5.0
    meter_stale_s: float = 60.0
    failsafe_hysteresis_s: float = 120.0
    min_dwell_s: float = 60.0
    fit: bool = True
    nominal_voltage_v: float = 200.0
    export_margin_w: float = 100.0
    unknown_current_charge_w: float = 0.0
    battery_stale_s: float = 60.0
    future_tolerance_s: float = 5.0
    water_heater_w: float = 1500.0

    @classmethod
    def from_config(
        cls,
        cfg: LimitsConfig,
        *,
        fit: bool,
        nominal_voltage_v: float = 200.0,
        export_margin_w: float = 100.0,
    ) -> Limits:
        return cls(
            soc_reserve_pct=float(cfg.soc_reserve_pct),
            soc_max_pct=float(cfg.soc_max_pct),
            export_limit_w=float(cfg.export_limit_w),
            breaker_a=float(cfg.breaker_a),
            breaker_margin_a=float(cfg.breaker_margin_a),
            meter_stale_s=float(cfg.meter_stale_s),
            failsafe_hysteresis_s=float(cfg.failsafe_hysteresis_s),
            min_dwell_s=float(cfg.min_dwell_s),
            battery_stale_s=float(cfg.battery_stale_s),
            fit=fit,
            nominal_voltage_v=nominal_voltage_v,
            export_margin_w=export_margin_w,
        )


class OverrideMode(StrEnum):
    AUTO = "auto"
    STANDBY = "standby"


@dataclass(frozen=True)
class Override:
    """A resident/installer's local choice; ``until`` None = until it is cleared."""

    mode: OverrideMode
    until: datetime | None = None


@dataclass(frozen=True)
class FailsafeState:
    """Whether fail-safe holds, since when, and since when the meter has been fresh again.

    The default is *active*: a gateway that has just started has not yet seen fresh data for the
    hysteresis period, so it forces nothing until it has.
    """

    active: bool = True
    since: datetime | None = None
    fresh_since: datetime | None = None


NORMAL = FailsafeState(active=False)


@dataclass(frozen=True)
class Context:
    """What the interlock must remember between calls (the caller stores it, see next_context).

    ``applied`` is the battery setpoint now in force and ``applied_since`` when its mode (kind)
    last changed; min dwell is measured from there.
    """

    applied: Setpoint | None = None
    applied_since: datetime | None = None
    failsafe: FailsafeState = FailsafeState()
    override: Override | None = None


class Rule(StrEnum):
    """Stable ids: acknowledgements and logs carry them, the backend may match on them."""

    SOC_RESERVE = "soc_reserve"
    SOC_CEILING = "soc_ceiling"
    EXPORT_LIMIT = "export_limit"
    FIT_NO_EXPORT = "fit_no_export"
    REVERSE_FLOW_NOT_ACCEPTABLE = "reverse_flow_not_acceptable"
    BREAKER = "breaker"
    METER_STALE = "meter_stale"
    FAILSAFE = "failsafe"
    NOT_STARTED = "not_started"
    EXPIRED = "expired"
    MIN_DWELL = "min_dwell"
    OVERRIDE = "override"
    DEVICE_RATING = "device_rating"
    UNKNOWN_STATE = "unknown_state"


@dataclass(frozen=True)
class Reason:
    """Why the allowed setpoint differs from the request; ``allowed_w`` is that rule's cap."""

    rule: Rule
    detail: str
    allowed_w: float | None = None


@dataclass(frozen=True)
class Decision:
    """The interlock's answer.

    ``blocked``: the request may not act at all; ``allowed`` is the safe default (battery: AUTO,
    others: NONE), the override's mode, or the mode held for min dwell. ``clamped``: the request
    acts with less power than asked (or standby, when that is below the device minimum). Never
    both. ``failsafe`` is the updated fail-safe state, to be stored for the next call.
    """

    requested: Setpoint
    allowed: Setpoint
    reasons: tuple[Reason, ...]
    clamped: bool
    blocked: bool
    failsafe: FailsafeState

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r.rule for r in self.reasons)
