"""The interlock itself: one pure, total function between every setpoint and every device.

It is deliberately ignorant of where a request came from (MQTT, the control socket, the default
control) and of how a device is driven; it sees numbers with timestamps and answers with the
setpoint that may reach the device and every reason it differs from the request. Anything it
cannot judge (unknown, stale, NaN, negative, naive times, inconsistent limits) makes it fall back
to the safe default: the battery's own automatic mode, or no action for other devices.

Order of judgement: gates that forbid acting at all (override, unusable input, command window,
fail-safe), then the kind's own limits (SOC, export, breaker, ratings, each a cap on the power),
then min dwell. Caps combine by taking the smallest; every cap below the request is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from drivers.capabilities import BatteryRatings
from gateway.interlock.failsafe import (
    aware,
    finite,
    meter_freshness,
    recent,
    update_failsafe,
)
from gateway.interlock.model import (
    AUTO,
    BATTERY_KINDS,
    NOTHING,
    SOURCE_OVERRIDE,
    Context,
    Decision,
    FailsafeState,
    Limits,
    Measurements,
    Override,
    OverrideMode,
    PvContract,
    Reason,
    Rule,
    Setpoint,
    SetpointKind,
)

#: A meter that reports no T phase is single-phase 2-wire: the whole load flows on R at 100 V.
SINGLE_PHASE_2W_V = 100.0

_K = SetpointKind


@dataclass(frozen=True)
class _Outcome:
    allowed: Setpoint
    reasons: tuple[Reason, ...] = ()
    clamped: bool = False
    blocked: bool = False


def evaluate(
    request: Setpoint, m: Measurements, limits: Limits, now: datetime, ctx: Context
) -> Decision:
    """Judge ``request`` against the rules; never raises.

    The returned ``Decision.failsafe`` is the fail-safe state updated with ``m`` at ``now``; store
    it (see ``next_context``) and pass it back in the next call.
    """
    try:
        previous = ctx.failsafe if isinstance(ctx, Context) else FailsafeState()
        failsafe = update_failsafe(previous, m, limits, now)
    except Exception:  # a guard for totality: unusable input means fail-safe
        failsafe = FailsafeState(active=True, since=aware(now))
    try:
        out = _decide(request, m, limits, now, ctx, failsafe, dwell=True)
    except Exception as exc:  # a guard for totality; the tests assert it never triggers
        safe = AUTO if _is_battery(request) else NOTHING
        detail = f"interlock could not judge the request ({type(exc).__name__}: {exc})"
        out = _Outcome(safe, (Reason(Rule.UNKNOWN_STATE, detail),), blocked=True)
    return Decision(request, out.allowed, out.reasons, out.clamped, out.blocked, failsafe)


def next_context(ctx: Context, decision: Decision, now: datetime) -> Context:
    """The context once ``decision`` is applied at ``now``: battery mode, its start, fail-safe."""
    applied, since = ctx.applied, ctx.applied_since
    allowed = decision.allowed
    if allowed.is_battery:
        if applied is None or applied.kind != allowed.kind:
            since = now
        applied = allowed
    return replace(ctx, applied=applied, applied_since=since, failsafe=decision.failsafe)


def active_override(ov: Override | None, now: datetime | None) -> Override | None:
    """The override in force at ``now``; one whose end cannot be judged counts as in force."""
    if ov is None:
        return None
    mode = getattr(ov, "mode", None)
    mode = mode if isinstance(mode, OverrideMode) else OverrideMode.AUTO
    until = getattr(ov, "until", None)
    end = aware(until)
    if until is None or end is None or now is None:
        return Override(mode, end)
    return Override(mode, end) if now < end else None


# --------------------------------------------------------------------------------------------
# The decision


def _is_battery(request: object) -> bool:
    kind = getattr(request, "kind", None)
    return isinstance(kind, SetpointKind) and kind in BATTERY_KINDS


def _blocked(safe: Setpoint, *reasons: Reason) -> _Outcome:
    return _Outcome(safe, tuple(reasons), blocked=True)


def _decide(
    request: Setpoint,
    m: Measurements,
    limits: Limits,
    now: datetime,
    ctx: Context,
    failsafe: FailsafeState,
    *,
    dwell: bool,
) -> _Outcome:
    raw: object = request.kind  # typed callers cannot pass anything else; others are refused
    if not isinstance(raw, SetpointKind):
        return _blocked(NOTHING, Reason(Rule.UNKNOWN_STATE, f"unknown setpoint kind {raw!r}"))
    kind = raw
    if kind is _K.NONE:
        return _Outcome(request)
    battery = request.is_battery
    safe = AUTO if battery else NOTHING
    clock = aware(now)

    override = active_override(ctx.override, clock)
    if override is not None:
        own = _override_setpoint(override)
        if request.source == SOURCE_OVERRIDE and kind is own.kind:
            return _Outcome(request)
        detail = f"local override ({override.mode.value}) in force" + (
            f" until {override.until.isoformat()}" if override.until else " until cleared"
        )
        return _blocked(own if battery else NOTHING, Reason(Rule.OVERRIDE, detail))
    if kind is _K.BATTERY_AUTO:
        return _Outcome(request)

    gates = _gates(request, m, limits, clock, failsafe)
    if gates:
        return _blocked(safe, *gates)
    assert clock is not None  # _gates reports an unusable clock

    if kind is _K.BATTERY_CHARGE:
        out = _charge(request, m, limits, clock)
    elif kind is _K.BATTERY_DISCHARGE:
        out = _discharge(request, m, limits, clock)
    elif kind is _K.WATER_HEATER_HEAT:
        out = _water_heater(request, m, limits, clock)
    else:  # standby, PV limit, air-conditioner saving: no power to bound
        out = _Outcome(request)

    if dwell and out.allowed.is_battery and out.allowed.kind is not _K.BATTERY_AUTO:
        held = _dwell(out, m, limits, clock, ctx, failsafe)
        if held is not None:
            return held
    return out


def _override_setpoint(ov: Override) -> Setpoint:
    kind = _K.BATTERY_STANDBY if ov.mode is OverrideMode.STANDBY else _K.BATTERY_AUTO
    return Setpoint(kind, source=SOURCE_OVERRIDE, end=ov.until)


def _gates(
    request: Setpoint,
    m: Measurements,
    limits: Limits,
    clock: datetime | None,
    failsafe: FailsafeState,
) -> list[Reason]:
    """Reasons that forbid the request from acting at all (rules 4, 5 and unusable input)."""
    kind = request.kind
    out: list[Reason] = []
    if clock is None:
        out.append(Reason(Rule.UNKNOWN_STATE, "clock is not an aware datetime"))
    problems = limit_problems(limits)
    if problems and kind is not _K.PV_LIMIT:
        out.append(Reason(Rule.UNKNOWN_STATE, "invalid limits: " + ", ".join(problems)))
    problem = _request_problem(request)
    if problem:
        out.append(Reason(Rule.UNKNOWN_STATE, problem))
    out.extend(_window(request, clock))
    # Curtailing PV can only lower export, and a grid operator's curtailment must go on: it is the
    # one action fail-safe keeps.
    if kind is not _K.PV_LIMIT and (failsafe.active or clock is None):
        if clock is not None:
            fresh = meter_freshness(m, limits, clock)
            if not fresh.fresh:
                out.append(Reason(Rule.METER_STALE, fresh.detail))
        out.append(Reason(Rule.FAILSAFE, _failsafe_text(failsafe, limits, clock)))
    return out


def _failsafe_text(failsafe: FailsafeState, limits: Limits, clock: datetime | None) -> str:
    fresh_since = aware(failsafe.fresh_since)
    if fresh_since is not None and clock is not None:
        fresh_s = (clock - fresh_since).total_seconds()
        return (
            f"fail-safe: meter fresh again for {fresh_s:.0f} s, "
            f"needs {finite(limits.failsafe_hysteresis_s) or 0:g} s"
        )
    return "fail-safe: no forced charge/discharge, battery in auto, DR suspended"


def _request_problem(request: Setpoint) -> str | None:
    kind = request.kind
    if kind in (_K.BATTERY_CHARGE, _K.BATTERY_DISCHARGE, _K.WATER_HEATER_HEAT):
        power = finite(request.power_w)
        if power is None or power < 0:
            return f"requested power {request.power_w!r} is not a non-negative number"
    if kind is _K.PV_LIMIT:
        limit = finite(request.limit_w)
        if limit is None or limit < 0:
            return f"PV limit {request.limit_w!r} is not a non-negative number"
    return None


def _window(request: Setpoint, clock: datetime | None) -> list[Reason]:
    """Rule 5: a command acts only inside [start, end)."""
    out: list[Reason] = []
    start, end = request.start, request.end
    if start is not None and aware(start) is None:
        out.append(Reason(Rule.UNKNOWN_STATE, "command start is not an aware datetime"))
    if end is not None and aware(end) is None:
        out.append(Reason(Rule.UNKNOWN_STATE, "command end is not an aware datetime"))
    if clock is None:
        return out
    if end is not None and aware(end) is not None and clock >= end:
        out.append(Reason(Rule.EXPIRED, f"command ended at {end.isoformat()}"))
    if start is not None and aware(start) is not None and clock < start:
        out.append(Reason(Rule.NOT_STARTED, f"command starts at {start.isoformat()}"))
    return out


def limit_problems(limits: Limits) -> list[str]:
    """Names of limits that are not usable numbers; any of them disables forced actions."""
    checks: list[tuple[str, object, float, float, bool]] = [
        # name, value, low, high, low is exclusive
        ("soc_reserve_pct", limits.soc_reserve_pct, 0.0, 100.0, False),
        ("soc_max_pct", limits.soc_max_pct, 0.0, 100.0, False),
        ("export_limit_w", limits.export_limit_w, 0.0, math.inf, False),
        ("breaker_a", limits.breaker_a, 0.0, math.inf, True),
        ("breaker_margin_a", limits.breaker_margin_a, 0.0, math.inf, False),
        ("meter_stale_s", limits.meter_stale_s, 0.0, math.inf, True),
        ("failsafe_hysteresis_s", limits.failsafe_hysteresis_s, 0.0, math.inf, False),
        ("min_dwell_s", limits.min_dwell_s, 0.0, math.inf, False),
        ("nominal_voltage_v", limits.nominal_voltage_v, 0.0, math.inf, True),
        ("export_margin_w", limits.export_margin_w, 0.0, math.inf, False),
        ("unknown_current_charge_w", limits.unknown_current_charge_w, 0.0, math.inf, False),
        ("battery_stale_s", limits.battery_stale_s, 0.0, math.inf, True),
        ("future_tolerance_s", limits.future_tolerance_s, 0.0, math.inf, False),
        ("water_heater_w", limits.water_heater_w, 0.0, math.inf, True),
    ]
    bad = []
    for name, value, low, high, exclusive in checks:
        number = finite(value)
        if number is None or number > high or number < low or (exclusive and number == low):
            bad.append(name)
    fit: object = limits.fit
    if not isinstance(fit, bool):
        bad.append("fit")
    return bad


# --------------------------------------------------------------------------------------------
# Readings the rules need (None = unknown, which every rule treats as its safe default)


def _soc(m: Measurements, limits: Limits, clock: datetime) -> float | None:
    soc = finite(m.soc_pct)
    if soc is None or not 0.0 <= soc <= 100.0:
        return None
    ok = recent(m.soc_at, clock, limits.battery_stale_s, limits.future_tolerance_s)
    return soc if ok else None


def _battery_power(m: Measurements, limits: Limits, clock: datetime) -> float | None:
    power = finite(m.battery_power_w)
    ok = recent(m.battery_power_at, clock, limits.battery_stale_s, limits.future_tolerance_s)
    return power if ok else None


def _meter_power(m: Measurements, limits: Limits, clock: datetime) -> float | None:
    power = finite(m.meter_power_w)
    ok = recent(m.meter_power_at, clock, limits.meter_stale_s, limits.future_tolerance_s)
    return power if ok else None


def phase_model(m: Measurements, limits: Limits, clock: datetime) -> tuple[float, float] | None:
    """(highest phase current in A, volts that turn W into A on it), or None if unknown.

    On 1φ3W a 200 V battery adds ΔP/200 on both R and T, so the higher phase binds; on 1φ2W
    (no T) everything flows on R at 100 V.
    """
    if not recent(m.currents_at, clock, limits.meter_stale_s, limits.future_tolerance_s):
        return None
    r = finite(m.current_r_a)
    if r is None:
        return None
    if m.current_t_a is None:
        return r, SINGLE_PHASE_2W_V
    t = finite(m.current_t_a)
    if t is None:
        return None
    return max(r, t), float(limits.nominal_voltage_v)


def _rating(ratings: BatteryRatings | None, name: str, *, positive: bool) -> float | None:
    if not isinstance(ratings, BatteryRatings):
        return None
    value = finite(getattr(ratings, name, None))
    if value is None or value < 0 or (positive and value == 0):
        return None
    return value


def reverse_flow_acceptable(m: Measurements) -> bool | None:
    """The battery's own answer (measurement, else its ratings); any "no" wins over a "yes"."""
    raw: list[object] = [m.reverse_flow_ok]
    if isinstance(m.ratings, BatteryRatings):
        raw.append(m.ratings.reverse_flow_ok)
    answers = [a for a in raw if isinstance(a, bool)]
    if False in answers:
        return False
    return True if answers else None


# --------------------------------------------------------------------------------------------
# Rules that cap a power


@dataclass(frozen=True)
class _Cap:
    rule: Rule
    watts: float
    detail: str


def _apply_caps(
    request: Setpoint, requested: int, caps: list[_Cap], minimum: float | None
) -> _Outcome:
    """The request bounded by every cap: act, act at less power, standby, or give up (auto).

    Powers are floored to whole watts so rounding never exceeds a cap; a cap below the request is
    reported with its own value even when another cap binds harder.
    """
    bounds = [(c, 0.0 if math.isnan(c.watts) else c.watts) for c in caps]
    reasons = [Reason(c.rule, c.detail, _whole(w)) for c, w in bounds if w < requested]
    lowest = min([float(requested), *(w for _, w in bounds)])
    if lowest < 1:
        return _blocked(AUTO, *reasons)
    allowed = math.floor(lowest)
    if minimum is not None and allowed < minimum:
        detail = f"{allowed} W is below the device minimum of {minimum:.0f} W: standby"
        reasons.append(Reason(Rule.DEVICE_RATING, detail, 0))
        standby = replace(request, kind=_K.BATTERY_STANDBY, power_w=0)
        return _Outcome(standby, tuple(reasons), clamped=True)
    return _Outcome(replace(request, power_w=allowed), tuple(reasons), clamped=allowed < requested)


def _whole(watts: float) -> int:
    """A cap as whole watts for the report: never negative (nothing is allowed below zero)."""
    return math.floor(watts) if 0 < watts < math.inf else 0


def _charge(request: Setpoint, m: Measurements, limits: Limits, clock: datetime) -> _Outcome:
    """Rules 1, 3, 7 for a forced charge."""
    requested = math.floor(request.power_w)
    if requested <= 0:
        standby = replace(request, kind=_K.BATTERY_STANDBY, power_w=0)
        return _Outcome(standby, (Reason(Rule.DEVICE_RATING, "0 W charge requested: standby", 0),))
    soc = _soc(m, limits, clock)
    if soc is None:
        return _blocked(AUTO, Reason(Rule.UNKNOWN_STATE, "battery SOC unknown or stale", 0))
    if soc >= limits.soc_max_pct:
        detail = f"SOC {soc:g} % is at or above the ceiling of {limits.soc_max_pct:g} %"
        return _blocked(AUTO, Reason(Rule.SOC_CEILING, detail, 0))
    battery_w = _battery_power(m, limits, clock)
    if battery_w is None:
        return _blocked(AUTO, Reason(Rule.UNKNOWN_STATE, "battery power unknown or stale", 0))

    caps: list[_Cap] = []
    rated = _rating(m.ratings, "max_charge_w", positive=False)
    if rated is not None:
        caps.append(_Cap(Rule.DEVICE_RATING, rated, f"rated charge power {rated:.0f} W"))
    caps.append(_breaker_cap(m, limits, clock, battery_w))
    minimum = _rating(m.ratings, "min_charge_w", positive=True)
    return _apply_caps(request, requested, caps, minimum)


def _breaker_cap(m: Measurements, limits: Limits, clock: datetime, battery_w: float) -> _Cap:
    """Rule 3: charge C keeps max phase current + (C − battery now) / V under breaker − margin."""
    limit_a = limits.breaker_a - limits.breaker_margin_a
    phases = phase_model(m, limits, clock)
    if phases is None:
        allowance = float(limits.unknown_current_charge_w)
        detail = f"phase currents unknown: forced charging limited to {allowance:.0f} W"
        return _Cap(Rule.UNKNOWN_STATE, allowance, detail)
    current_a, volts = phases
    cap = battery_w + (limit_a - current_a) * volts
    detail = (
        f"phase current {current_a:g} A with battery at {battery_w:.0f} W; "
        f"limit {limit_a:g} A ({limits.breaker_a:g} A breaker − {limits.breaker_margin_a:g} A) "
        f"at {volts:g} V allows {max(cap, 0.0):.0f} W"
    )
    return _Cap(Rule.BREAKER, cap, detail)


def _discharge(request: Setpoint, m: Measurements, limits: Limits, clock: datetime) -> _Outcome:
    """Rules 1, 2, 7 for a forced discharge."""
    requested = math.floor(request.power_w)
    if requested <= 0:
        standby = replace(request, kind=_K.BATTERY_STANDBY, power_w=0)
        return _Outcome(
            standby, (Reason(Rule.DEVICE_RATING, "0 W discharge requested: standby", 0),)
        )
    soc = _soc(m, limits, clock)
    if soc is None:
        return _blocked(AUTO, Reason(Rule.UNKNOWN_STATE, "battery SOC unknown or stale", 0))
    if soc <= limits.soc_reserve_pct:
        detail = f"SOC {soc:g} % is at or below the reserve of {limits.soc_reserve_pct:g} %"
        return _blocked(AUTO, Reason(Rule.SOC_RESERVE, detail, 0))
    meter_w = _meter_power(m, limits, clock)
    if meter_w is None:
        return _blocked(AUTO, Reason(Rule.UNKNOWN_STATE, "meter power unknown or stale", 0))
    battery_w = _battery_power(m, limits, clock)
    if battery_w is None:
        return _blocked(AUTO, Reason(Rule.UNKNOWN_STATE, "battery power unknown or stale", 0))

    caps: list[_Cap] = []
    rated = _rating(m.ratings, "max_discharge_w", positive=False)
    if rated is not None:
        caps.append(_Cap(Rule.DEVICE_RATING, rated, f"rated discharge power {rated:.0f} W"))
    caps.append(_export_cap(request, m, limits, meter_w, battery_w))
    minimum = _rating(m.ratings, "min_discharge_w", positive=True)
    return _apply_caps(request, requested, caps, minimum)


def export_blockers(request: Setpoint, m: Measurements, limits: Limits) -> list[tuple[Rule, str]]:
    """Why the battery may not export at all (empty = it may, up to the export limit)."""
    out: list[tuple[Rule, str]] = []
    if limits.fit is not False:
        out.append((Rule.FIT_NO_EXPORT, "site is under FIT"))
    if m.pv_contract is PvContract.FIT:
        out.append((Rule.FIT_NO_EXPORT, "PV reports a FIT contract"))
    reverse = reverse_flow_acceptable(m)
    if reverse is not True:
        what = "not acceptable" if reverse is False else "not known to be acceptable"
        out.append((Rule.REVERSE_FLOW_NOT_ACCEPTABLE, f"battery reverse flow {what}"))
    if request.allow_export is not True:
        out.append((Rule.EXPORT_LIMIT, "command does not allow export"))
    return out


def _export_cap(
    request: Setpoint, m: Measurements, limits: Limits, meter_w: float, battery_w: float
) -> _Cap:
    """Rule 2: with base = meter − battery (the house alone), discharging D makes the meter
    base − D, so D ≤ base + X − margin, X = export limit where export is allowed, else 0."""
    base = meter_w - battery_w
    margin = float(limits.export_margin_w)
    blockers = export_blockers(request, m, limits)
    export_w = 0.0 if blockers else float(limits.export_limit_w)
    cap = base + export_w - margin
    shown = max(cap, 0.0)
    if blockers:
        rule = blockers[0][0]
        why = "; ".join(text for _, text in blockers)
        detail = f"no battery export ({why}): house load {base:.0f} W − margin {margin:g} W"
        return _Cap(rule, cap, f"{detail} allows {shown:.0f} W")
    detail = (
        f"house load {base:.0f} W + export limit {export_w:g} W − margin {margin:g} W "
        f"allows {shown:.0f} W"
    )
    return _Cap(Rule.EXPORT_LIMIT, cap, detail)


def _water_heater(request: Setpoint, m: Measurements, limits: Limits, clock: datetime) -> _Outcome:
    """Rule 3 for the other load-raising action: start heating only within the breaker."""
    draw = float(request.power_w) if request.power_w > 0 else float(limits.water_heater_w)
    phases = phase_model(m, limits, clock)
    if phases is None:
        if draw > limits.unknown_current_charge_w:
            detail = f"phase currents unknown: cannot start a {draw:.0f} W heater"
            return _blocked(NOTHING, Reason(Rule.UNKNOWN_STATE, detail, 0))
        return _Outcome(request)
    current_a, volts = phases
    limit_a = limits.breaker_a - limits.breaker_margin_a
    predicted = current_a + draw / volts
    if predicted > limit_a:
        detail = f"heater {draw:.0f} W would take {predicted:.1f} A over the {limit_a:g} A limit"
        return _blocked(NOTHING, Reason(Rule.BREAKER, detail, 0))
    return _Outcome(request)


# --------------------------------------------------------------------------------------------
# Rule 5b: min dwell


def _dwell(
    out: _Outcome,
    m: Measurements,
    limits: Limits,
    clock: datetime,
    ctx: Context,
    failsafe: FailsafeState,
) -> _Outcome | None:
    """Hold the current mode if it changed less than ``min_dwell_s`` ago, when that is safe.

    The held mode is judged again now; if the rules no longer allow it, the battery goes to auto
    at once (a change towards the safe default never waits). A change to auto never waits either.
    """
    applied = ctx.applied
    if not isinstance(applied, Setpoint) or not applied.is_battery:
        return None
    if applied.kind is out.allowed.kind:
        return None
    since = aware(ctx.applied_since)
    if since is None:
        return None
    elapsed = (clock - since).total_seconds()
    if elapsed >= limits.min_dwell_s:
        return None
    reason = Reason(
        Rule.MIN_DWELL,
        f"battery mode {applied.kind.value} set {max(elapsed, 0.0):.0f} s ago "
        f"(min dwell {limits.min_dwell_s:g} s): {out.allowed.kind.value} waits",
    )
    held = _decide(applied, m, limits, clock, ctx, failsafe, dwell=False)
    if held.allowed.kind is applied.kind:
        return _Outcome(held.allowed, (reason, *held.reasons), blocked=True)
    return _Outcome(AUTO, (reason, *held.reasons), blocked=True)
