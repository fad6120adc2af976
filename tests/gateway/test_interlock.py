"""The safety interlock: every rule with hand-computed numbers, then invariants over random input.

Numbers in the tables are worked out by hand from the formulas in docs/interlock.md, e.g. the
export limit: house load (meter − battery) 1200 W + export limit 4500 W − margin 100 W = 5600 W.
The property tests draw requests, measurements, limits and contexts (including NaN, negative,
stale, naive and future values) and check what must hold whatever the input. Default run: a few
thousand examples; CHISAN_SLOW=1 runs more than 100,000.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.capabilities import BatteryRatings
from gateway.clock import JST
from gateway.config import LimitsConfig
from gateway.interlock import (
    AUTO,
    NORMAL,
    NOTHING,
    Context,
    Decision,
    FailsafeState,
    Limits,
    Measurements,
    Override,
    OverrideMode,
    PvContract,
    Rule,
    Setpoint,
    SetpointKind,
    evaluate,
    next_context,
    update_failsafe,
)

SLOW = os.environ.get("CHISAN_SLOW") == "1"
#: The long run (CHISAN_SLOW=1) takes minutes; the default one seconds.
pytestmark = pytest.mark.timeout(1800 if SLOW else 120)


def examples(default: int, slow: int) -> int:
    return slow if SLOW else default


K = SetpointKind
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
RATINGS = BatteryRatings(
    max_charge_w=12000,
    max_discharge_w=12000,
    min_charge_w=300,
    min_discharge_w=300,
    reverse_flow_ok=True,
)
#: A non-FIT site, everything else at the configured defaults.
LIM = Limits(fit=False)
CTX = Context(failsafe=NORMAL)


def meas(**kw: Any) -> Measurements:
    """A house importing 1.2 kW, battery idle at 60 %, all readings taken just now."""
    base: dict[str, Any] = dict(
        meter_power_w=1200.0,
        meter_power_at=T0,
        current_r_a=6.0,
        current_t_a=6.0,
        currents_at=T0,
        soc_pct=60.0,
        soc_at=T0,
        battery_power_w=0.0,
        battery_power_at=T0,
        reverse_flow_ok=True,
        ratings=RATINGS,
        pv_contract=PvContract.NON_FIT,
    )
    base.update(kw)
    return Measurements(**base)


def dis(w: float, export: bool = True, **kw: Any) -> Setpoint:
    return Setpoint(K.BATTERY_DISCHARGE, w, allow_export=export, source="cmd-1", **kw)


def chg(w: float, **kw: Any) -> Setpoint:
    return Setpoint(K.BATTERY_CHARGE, w, source="cmd-1", **kw)


AGO = timedelta(seconds=61)  # just past meter_stale_s = 60


def case(
    name: str,
    request: Setpoint,
    expected: tuple[K, float],
    rules: str,
    *,
    m: dict[str, Any] | None = None,
    lim: dict[str, Any] | None = None,
    ctx: Context = CTX,
    blocked: bool = False,
    clamped: bool = False,
) -> Any:
    """One row: the request, what comes out (kind, W), the rule ids reported (space-separated),
    after these changes to the default measurements ``m`` and limits ``lim``."""
    ids = tuple(rules.split())
    return pytest.param(request, m or {}, lim or {}, ctx, expected, ids, blocked, clamped, id=name)


CASES = [
    # Rule 2: export limit. base = 1200 − 0; 1200 + 4500 − 100 = 5600.
    case("export_limit", dis(10000), (K.BATTERY_DISCHARGE, 5600), "export_limit", clamped=True),
    case(
        "export_limit_no_margin",
        dis(10000),
        (K.BATTERY_DISCHARGE, 5700),
        "export_limit",
        lim={"export_margin_w": 0},
        clamped=True,
    ),
    # meter −800 with the battery already discharging 2000: the house alone is still 1200.
    case(
        "export_base_excludes_battery",
        dis(10000),
        (K.BATTERY_DISCHARGE, 5600),
        "export_limit",
        m={"meter_power_w": -800.0, "battery_power_w": -2000.0},
        clamped=True,
    ),
    # PV exporting 3 kW: −3000 + 4500 − 100 = 1400.
    case(
        "export_with_pv_surplus",
        dis(5000),
        (K.BATTERY_DISCHARGE, 1400),
        "export_limit",
        m={"meter_power_w": -3000.0},
        clamped=True,
    ),
    case("within_limits", dis(1000, export=False), (K.BATTERY_DISCHARGE, 1000), ""),
    # No battery export at all: D ≤ base − margin = 1100 (= the house load when margin is 0).
    case(
        "fit_site",
        dis(10000),
        (K.BATTERY_DISCHARGE, 1100),
        "fit_no_export",
        lim={"fit": True},
        clamped=True,
    ),
    case(
        "fit_clamped_to_house_load",
        dis(10000),
        (K.BATTERY_DISCHARGE, 1200),
        "fit_no_export",
        lim={"fit": True, "export_margin_w": 0},
        clamped=True,
    ),
    case(
        "pv_says_fit",
        dis(10000),
        (K.BATTERY_DISCHARGE, 1100),
        "fit_no_export",
        m={"pv_contract": PvContract.FIT},
        clamped=True,
    ),
    case(
        "reverse_flow_refused",
        dis(10000),
        (K.BATTERY_DISCHARGE, 1100),
        "reverse_flow_not_acceptable",
        m={"reverse_flow_ok": False},
        clamped=True,
    ),
    case(
        "reverse_flow_unknown",
        dis(10000),
        (K.BATTERY_DISCHARGE, 1100),
        "reverse_flow_not_acceptable",
        m={"reverse_flow_ok": None, "ratings": replace(RATINGS, reverse_flow_ok=None)},
        clamped=True,
    ),
    case(
        "ratings_refuse_reverse_flow",
        dis(10000),
        (K.BATTERY_DISCHARGE, 1100),
        "reverse_flow_not_acceptable",
        m={"ratings": replace(RATINGS, reverse_flow_ok=False)},
        clamped=True,
    ),
    case(
        "command_forbids_export",
        dis(10000, export=False),
        (K.BATTERY_DISCHARGE, 1100),
        "export_limit",
        clamped=True,
    ),
    # PV already exporting under FIT: any discharge would be pushed out → nothing, auto.
    case(
        "fit_pv_surplus_blocks",
        dis(2000),
        (K.BATTERY_AUTO, 0),
        "fit_no_export",
        m={"meter_power_w": -3000.0},
        lim={"fit": True},
        blocked=True,
    ),
    # Rule 1: SOC reserve and ceiling.
    case(
        "at_reserve",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "soc_reserve",
        m={"soc_pct": 30.0},
        blocked=True,
    ),
    case(
        "below_reserve",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "soc_reserve",
        m={"soc_pct": 12.0},
        blocked=True,
    ),
    case("just_above_reserve", dis(1000), (K.BATTERY_DISCHARGE, 1000), "", m={"soc_pct": 30.1}),
    case(
        "soc_unknown_discharge",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        m={"soc_pct": None},
        blocked=True,
    ),
    case(
        "soc_nan_charge",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        m={"soc_pct": math.nan},
        blocked=True,
    ),
    case(
        "soc_over_100",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        m={"soc_pct": 140.0},
        blocked=True,
    ),
    case(
        "soc_stale",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        m={"soc_at": T0 - AGO},
        blocked=True,
    ),
    case(
        "at_ceiling",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "soc_ceiling",
        m={"soc_pct": 95.0},
        blocked=True,
    ),
    case("just_below_ceiling", chg(1000), (K.BATTERY_CHARGE, 1000), "", m={"soc_pct": 94.9}),
    case(
        "battery_power_unknown",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        m={"battery_power_w": None},
        blocked=True,
    ),
    # Rule 3: breaker. 60 − 5 = 55 A; R 50 A at 200 V leaves 5 A = 1000 W.
    case(
        "breaker_1p3w",
        chg(5000),
        (K.BATTERY_CHARGE, 1000),
        "breaker",
        m={"current_r_a": 50.0, "current_t_a": 42.0},
        clamped=True,
    ),
    case(
        "breaker_t_phase_binds",
        chg(5000),
        (K.BATTERY_CHARGE, 600),
        "breaker",
        m={"current_r_a": 30.0, "current_t_a": 52.0},
        clamped=True,
    ),
    # Already charging 2000 W inside the measured 50 A: 2000 + 5 × 200 = 3000.
    case(
        "breaker_counts_present_charge",
        chg(5000),
        (K.BATTERY_CHARGE, 3000),
        "breaker",
        m={"current_r_a": 50.0, "current_t_a": 50.0, "battery_power_w": 2000.0},
        clamped=True,
    ),
    # Discharging 1000 W now: switching to charge adds 1000 + C; −1000 + 5 × 200 = 0 → nothing.
    case(
        "breaker_counts_present_discharge",
        chg(5000),
        (K.BATTERY_AUTO, 0),
        "breaker",
        m={"current_r_a": 50.0, "current_t_a": 50.0, "battery_power_w": -1000.0},
        blocked=True,
    ),
    # Single-phase 2-wire (no T): 100 V on R, (55 − 20) × 100 = 3500.
    case(
        "breaker_1p2w",
        chg(5000),
        (K.BATTERY_CHARGE, 3500),
        "breaker",
        m={"current_r_a": 20.0, "current_t_a": None},
        clamped=True,
    ),
    case(
        "breaker_already_over",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "breaker",
        m={"current_r_a": 58.0},
        blocked=True,
    ),
    case(
        "currents_unknown",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        m={"current_r_a": math.nan},
        blocked=True,
    ),
    case(
        "t_phase_unknown",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        m={"current_t_a": math.inf},
        blocked=True,
    ),
    case(
        "currents_unknown_allowance",
        chg(1000),
        (K.BATTERY_CHARGE, 500),
        "unknown_state",
        m={"current_r_a": None},
        lim={"unknown_current_charge_w": 500},
        clamped=True,
    ),
    # Rule 7: ratings and minimum power.
    case(
        "max_charge_rating",
        chg(8000),
        (K.BATTERY_CHARGE, 5000),
        "device_rating",
        m={"ratings": replace(RATINGS, max_charge_w=5000)},
        clamped=True,
    ),
    case(
        "max_discharge_rating",
        dis(3000),
        (K.BATTERY_DISCHARGE, 2000),
        "device_rating",
        m={"ratings": replace(RATINGS, max_discharge_w=2000)},
        clamped=True,
    ),
    case("below_min_request", chg(200), (K.BATTERY_STANDBY, 0), "device_rating", clamped=True),
    # FIT with a 350 W house: 350 − 100 = 250 W is under the 300 W minimum → standby.
    case(
        "clamped_below_min",
        dis(5000),
        (K.BATTERY_STANDBY, 0),
        "fit_no_export device_rating",
        m={"meter_power_w": 350.0},
        lim={"fit": True},
        clamped=True,
    ),
    case(
        "zero_rating_cannot_charge",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "device_rating",
        m={"ratings": replace(RATINGS, max_charge_w=0)},
        blocked=True,
    ),
    case("ratings_unknown", chg(1000), (K.BATTERY_CHARGE, 1000), "", m={"ratings": None}),
    case(
        "every_cap_reported",
        dis(20000),
        (K.BATTERY_DISCHARGE, 1100),
        "device_rating fit_no_export",
        m={"ratings": replace(RATINGS, max_discharge_w=3000)},
        lim={"fit": True},
        clamped=True,
    ),
    # Rule 4: fresh meter data.
    case(
        "meter_stale",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "meter_stale failsafe",
        m={"meter_power_at": T0 - AGO},
        blocked=True,
    ),
    case(
        "currents_stale",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "meter_stale failsafe",
        m={"currents_at": T0 - AGO},
        blocked=True,
    ),
    case(
        "meter_missing",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "meter_stale failsafe",
        m={"meter_power_w": None},
        blocked=True,
    ),
    case(
        "meter_nan",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "meter_stale failsafe",
        m={"meter_power_w": math.nan},
        blocked=True,
    ),
    case(
        "meter_from_future",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "meter_stale failsafe",
        m={"meter_power_at": T0 + timedelta(seconds=10)},
        blocked=True,
    ),
    case(
        "meter_naive_time",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "meter_stale failsafe",
        m={"meter_power_at": T0.replace(tzinfo=None)},
        blocked=True,
    ),
    case(
        "standby_in_failsafe",
        Setpoint(K.BATTERY_STANDBY, source="cmd-1"),
        (K.BATTERY_AUTO, 0),
        "failsafe",
        ctx=Context(),
        blocked=True,
    ),
    case(
        "failsafe_hysteresis_holds",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "failsafe",
        ctx=Context(failsafe=FailsafeState(True, T0 - AGO, T0 - timedelta(seconds=100))),
        blocked=True,
    ),
    case(
        "failsafe_hysteresis_done",
        dis(1000),
        (K.BATTERY_DISCHARGE, 1000),
        "",
        ctx=Context(failsafe=FailsafeState(True, T0 - AGO, T0 - timedelta(seconds=120))),
    ),
    case(
        "pv_limit_kept_in_failsafe",
        Setpoint(K.PV_LIMIT, limit_w=2000, source="cmd-1"),
        (K.PV_LIMIT, 0),
        "",
        m={"meter_power_w": None},
    ),
    case(
        "aircon_suspended_in_failsafe",
        Setpoint(K.AIRCON_SAVING, source="cmd-1"),
        (K.NONE, 0),
        "meter_stale failsafe",
        m={"meter_power_w": None},
        blocked=True,
    ),
    case(
        "auto_always",
        Setpoint(K.BATTERY_AUTO, source="cmd-1"),
        (K.BATTERY_AUTO, 0),
        "",
        m={"meter_power_w": None},
    ),
    # Rule 5: command window [start, end).
    case("expired", dis(1000, end=T0), (K.BATTERY_AUTO, 0), "expired", blocked=True),
    case(
        "not_started",
        dis(1000, start=T0 + timedelta(seconds=1)),
        (K.BATTERY_AUTO, 0),
        "not_started",
        blocked=True,
    ),
    case(
        "in_window",
        dis(1000, start=T0, end=T0 + timedelta(minutes=30)),
        (K.BATTERY_DISCHARGE, 1000),
        "",
    ),
    case(
        "naive_end",
        dis(1000, end=T0.replace(tzinfo=None) + timedelta(hours=1)),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        blocked=True,
    ),
    case(
        "pv_limit_expired",
        Setpoint(K.PV_LIMIT, limit_w=0, end=T0),
        (K.NONE, 0),
        "expired",
        blocked=True,
    ),
    case(
        "heater_not_started",
        Setpoint(K.WATER_HEATER_HEAT, start=T0 + timedelta(hours=1)),
        (K.NONE, 0),
        "not_started",
        blocked=True,
    ),
    # Rule 6: override beats remote commands until it ends.
    case(
        "override_standby",
        dis(1000),
        (K.BATTERY_STANDBY, 0),
        "override",
        ctx=replace(CTX, override=Override(OverrideMode.STANDBY, T0 + timedelta(hours=1))),
        blocked=True,
    ),
    case(
        "override_auto_beats_auto_cmd",
        Setpoint(K.BATTERY_STANDBY, source="cmd-1"),
        (K.BATTERY_AUTO, 0),
        "override",
        ctx=replace(CTX, override=Override(OverrideMode.AUTO)),
        blocked=True,
    ),
    case(
        "override_blocks_heater",
        Setpoint(K.WATER_HEATER_HEAT),
        (K.NONE, 0),
        "override",
        ctx=replace(CTX, override=Override(OverrideMode.AUTO)),
        blocked=True,
    ),
    case(
        "override_ended",
        dis(1000),
        (K.BATTERY_DISCHARGE, 1000),
        "",
        ctx=replace(CTX, override=Override(OverrideMode.STANDBY, T0)),
    ),
    case(
        "override_own_in_failsafe",
        Setpoint(K.BATTERY_STANDBY, source="override"),
        (K.BATTERY_STANDBY, 0),
        "",
        m={"meter_power_w": None},
        ctx=replace(CTX, override=Override(OverrideMode.STANDBY)),
    ),
    # Rule 3 for the heat-pump water heater: 50 A + 1500 W / 200 V = 57.5 A > 55 A.
    case(
        "heater_near_breaker",
        Setpoint(K.WATER_HEATER_HEAT),
        (K.NONE, 0),
        "breaker",
        m={"current_r_a": 50.0},
        blocked=True,
    ),
    case(
        "heater_ok",
        Setpoint(K.WATER_HEATER_HEAT),
        (K.WATER_HEATER_HEAT, 0),
        "",
        m={"current_r_a": 10.0},
    ),
    case(
        "heater_currents_unknown",
        Setpoint(K.WATER_HEATER_HEAT),
        (K.NONE, 0),
        "unknown_state",
        m={"current_r_a": None},
        blocked=True,
    ),
    # Nonsense in, safe default out.
    case("negative_power", chg(-5), (K.BATTERY_AUTO, 0), "unknown_state", blocked=True),
    case("nan_power", dis(math.nan), (K.BATTERY_AUTO, 0), "unknown_state", blocked=True),
    case(
        "nan_pv_limit",
        Setpoint(K.PV_LIMIT, limit_w=math.nan),
        (K.NONE, 0),
        "unknown_state",
        blocked=True,
    ),
    case(
        "bad_limits",
        dis(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        lim={"soc_reserve_pct": math.nan},
        blocked=True,
    ),
    case(
        "bad_voltage",
        chg(1000),
        (K.BATTERY_AUTO, 0),
        "unknown_state",
        lim={"nominal_voltage_v": 0},
        blocked=True,
    ),
    case("zero_power_charge", chg(0), (K.BATTERY_STANDBY, 0), "device_rating"),
    case("none_passes", Setpoint(K.NONE), (K.NONE, 0), "", m={"meter_power_w": None}),
]


@pytest.mark.parametrize(
    ("request_", "changes", "limit_changes", "ctx", "expected", "rules", "blocked", "clamped"),
    CASES,
)
def test_rule_table(
    request_: Setpoint,
    changes: dict[str, Any],
    limit_changes: dict[str, Any],
    ctx: Context,
    expected: tuple[K, float],
    rules: tuple[str, ...],
    blocked: bool,
    clamped: bool,
) -> None:
    d = evaluate(request_, meas(**changes), replace(LIM, **limit_changes), T0, ctx)
    assert (d.allowed.kind, d.allowed.power_w) == expected, d.reasons
    assert d.rules == rules, d.reasons
    assert (d.blocked, d.clamped) == (blocked, clamped)
    assert all(r.detail for r in d.reasons)


def test_export_clamp_reports_the_cap_and_keeps_the_command() -> None:
    d = evaluate(dis(10000, start=T0, end=T0 + timedelta(hours=1)), meas(), LIM, T0, CTX)
    assert d.reasons[0].allowed_w == 5600
    assert "1200" in d.reasons[0].detail and "4500" in d.reasons[0].detail
    assert d.allowed == replace(d.requested, power_w=5600)


def test_blocked_goes_to_auto_from_the_default_source() -> None:
    d = evaluate(dis(1000), meas(soc_pct=10.0), LIM, T0, CTX)
    assert d.allowed == AUTO
    d = evaluate(Setpoint(K.AIRCON_SAVING, end=T0), meas(), LIM, T0, CTX)
    assert d.allowed == NOTHING


def test_override_setpoint_names_the_override_and_its_end() -> None:
    until = T0 + timedelta(hours=2)
    ctx = replace(CTX, override=Override(OverrideMode.STANDBY, until))
    d = evaluate(chg(1000), meas(), LIM, T0, ctx)
    assert d.allowed == Setpoint(K.BATTERY_STANDBY, source="override", end=until)
    assert until.isoformat() in d.reasons[0].detail


def test_naive_clock_forces_nothing() -> None:
    d = evaluate(dis(1000), meas(), LIM, T0.replace(tzinfo=None), CTX)
    assert d.allowed == AUTO and d.blocked
    assert Rule.UNKNOWN_STATE in d.rules and d.failsafe.active


def test_limits_from_config() -> None:
    cfg = LimitsConfig(soc_reserve_pct=20, export_limit_w=3000, breaker_a=40)
    lim = Limits.from_config(cfg, fit=True, export_margin_w=50)
    assert (lim.soc_reserve_pct, lim.soc_max_pct, lim.export_limit_w) == (20, 95, 3000)
    assert (lim.breaker_a, lim.breaker_margin_a, lim.fit, lim.export_margin_w) == (40, 5, True, 50)
    assert (lim.meter_stale_s, lim.failsafe_hysteresis_s, lim.min_dwell_s) == (60, 120, 60)
    assert Limits().fit is True  # the safe default: no battery export


# --------------------------------------------------------------------------------------------
# Min dwell


def dwell_ctx(applied: Setpoint, ago_s: float) -> Context:
    return Context(applied=applied, applied_since=T0 - timedelta(seconds=ago_s), failsafe=NORMAL)


def test_dwell_holds_the_current_mode() -> None:
    d = evaluate(chg(1000), meas(), LIM, T0, dwell_ctx(dis(800), 30))
    assert d.allowed == dis(800) and d.blocked and d.rules == (Rule.MIN_DWELL,)
    assert "30 s ago" in d.reasons[0].detail


def test_dwell_ends_after_min_dwell() -> None:
    d = evaluate(chg(1000), meas(), LIM, T0, dwell_ctx(dis(800), 60))
    assert d.allowed == chg(1000) and not d.blocked


def test_dwell_never_delays_auto() -> None:
    d = evaluate(Setpoint(K.BATTERY_AUTO, source="cmd-2"), meas(), LIM, T0, dwell_ctx(dis(800), 1))
    assert d.allowed.kind is K.BATTERY_AUTO and not d.reasons


def test_dwell_holds_auto_too() -> None:
    d = evaluate(dis(1000), meas(), LIM, T0, dwell_ctx(AUTO, 10))
    assert d.allowed == AUTO and d.rules == (Rule.MIN_DWELL,)


def test_dwell_power_change_in_the_same_mode_is_immediate() -> None:
    d = evaluate(dis(500), meas(), LIM, T0, dwell_ctx(dis(3000), 1))
    assert d.allowed == dis(500) and not d.reasons


def test_dwell_held_mode_is_judged_again() -> None:
    # The held discharge is clamped by today's export limit: 1200 + 4500 − 100.
    d = evaluate(chg(1000), meas(), LIM, T0, dwell_ctx(dis(9000), 10))
    assert d.allowed == dis(5600) and d.rules == (Rule.MIN_DWELL, Rule.EXPORT_LIMIT)


def test_dwell_gives_way_to_safety() -> None:
    # SOC fell to the reserve: the held discharge is no longer allowed, so auto at once.
    d = evaluate(chg(1000), meas(soc_pct=30.0), LIM, T0, dwell_ctx(dis(800), 10))
    assert d.allowed == AUTO and d.rules == (Rule.MIN_DWELL, Rule.SOC_RESERVE)
    # The held command has ended: auto at once.
    d = evaluate(chg(1000), meas(), LIM, T0, dwell_ctx(dis(800, end=T0), 10))
    assert d.allowed == AUTO and d.rules == (Rule.MIN_DWELL, Rule.EXPIRED)


def test_dwell_does_not_delay_rule_driven_changes() -> None:
    for m in (meas(soc_pct=20.0), meas(meter_power_at=T0 - AGO)):
        d = evaluate(dis(800), m, LIM, T0, dwell_ctx(Setpoint(K.BATTERY_STANDBY), 1))
        assert d.allowed == AUTO and Rule.MIN_DWELL not in d.rules


def test_dwell_does_not_delay_an_override() -> None:
    ctx = replace(dwell_ctx(dis(800), 1), override=Override(OverrideMode.STANDBY))
    d = evaluate(dis(800), meas(), LIM, T0, ctx)
    assert d.allowed.kind is K.BATTERY_STANDBY and d.rules == (Rule.OVERRIDE,)
    own = Setpoint(K.BATTERY_STANDBY, source="override")
    assert evaluate(own, meas(), LIM, T0, ctx).allowed == own


def test_dwell_from_the_future_holds() -> None:
    """A clock stepped backwards counts as 'just changed'."""
    d = evaluate(chg(1000), meas(), LIM, T0, dwell_ctx(dis(800), -300))
    assert d.allowed == dis(800) and d.rules == (Rule.MIN_DWELL,)


def test_next_context_tracks_mode_changes_only() -> None:
    ctx = Context(failsafe=NORMAL)
    d1 = evaluate(dis(1000), meas(), LIM, T0, ctx)
    c1 = next_context(ctx, d1, T0)
    assert (c1.applied, c1.applied_since) == (dis(1000), T0)
    later = T0 + timedelta(seconds=5)
    d2 = evaluate(dis(700), meas(), LIM, later, c1)
    c2 = next_context(c1, d2, later)
    assert (c2.applied, c2.applied_since) == (dis(700), T0)
    d3 = evaluate(Setpoint(K.PV_LIMIT, limit_w=100), meas(), LIM, later, c2)
    assert next_context(c2, d3, later).applied == dis(700)


# --------------------------------------------------------------------------------------------
# Fail-safe hysteresis


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fresh_at(when: datetime) -> Measurements:
    return meas(meter_power_at=when, currents_at=when, soc_at=when, battery_power_at=when)


def test_failsafe_enters_at_once_and_leaves_after_hysteresis() -> None:
    s = update_failsafe(NORMAL, fresh_at(at(0)), LIM, at(0))
    assert s == NORMAL
    s = update_failsafe(s, fresh_at(at(0)), LIM, at(61))  # stale
    assert s == FailsafeState(True, at(61), None)
    s = update_failsafe(s, fresh_at(at(70)), LIM, at(70))
    assert s == FailsafeState(True, at(61), at(70))
    s = update_failsafe(s, fresh_at(at(189)), LIM, at(189))  # 119 s of fresh data
    assert s.active
    s = update_failsafe(s, fresh_at(at(190)), LIM, at(190))  # 120 s
    assert s == NORMAL


def test_failsafe_restarts_hysteresis_on_a_new_gap() -> None:
    s = FailsafeState(True, at(0), at(10))
    s = update_failsafe(s, fresh_at(at(0)), LIM, at(100))  # stale again (100 s old)
    assert s == FailsafeState(True, at(0), None)
    s = update_failsafe(s, fresh_at(at(110)), LIM, at(110))
    assert s.fresh_since == at(110)
    assert update_failsafe(s, fresh_at(at(200)), LIM, at(200)).active


def test_failsafe_starts_active() -> None:
    s = update_failsafe(FailsafeState(), fresh_at(at(0)), LIM, at(0))
    assert s.active and s.fresh_since == at(0)
    zero = replace(LIM, failsafe_hysteresis_s=0)
    assert update_failsafe(FailsafeState(), fresh_at(at(0)), zero, at(0)) == NORMAL


def test_failsafe_clock_stepping_back_restarts_the_count() -> None:
    s = FailsafeState(True, at(0), at(100))
    s = update_failsafe(s, fresh_at(at(50)), LIM, at(50))
    assert s == FailsafeState(True, at(0), at(50))


def test_failsafe_bad_hysteresis_never_leaves() -> None:
    bad = replace(LIM, failsafe_hysteresis_s=math.nan)
    s = update_failsafe(FailsafeState(True, at(0), at(0)), fresh_at(at(9999)), bad, at(9999))
    assert s.active


def test_decision_carries_the_updated_failsafe_state() -> None:
    d = evaluate(dis(1000), meas(meter_power_at=T0 - AGO), LIM, T0, CTX)
    assert d.failsafe == FailsafeState(True, T0, None)
    assert next_context(CTX, d, T0).failsafe == d.failsafe


# --------------------------------------------------------------------------------------------
# Property-based: invariants that hold for any input

NOW = T0


def weighted(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = 20
) -> st.SearchStrategy[Any]:
    """Mostly sensible values, sometimes (1 in ``odds``) nonsense: with a dozen fields each
    going wrong now and then, forced actions still happen often enough to be checked."""
    # (one_of would merge repeated copies of ``good``: choose by an integer instead)
    return st.integers(0, odds - 1).flatmap(lambda i: bad if i == 0 else good)


# Strategies are built once: building them inside each draw costs more than evaluating.
NONSENSE = st.sampled_from([None, math.nan, math.inf, -math.inf, -1.0, -1e9, 1e308, -1e308])
BAD_TIMES = st.sampled_from([None, NOW.replace(tzinfo=None), NOW + timedelta(days=1)])


def stamps(usual_age: float, max_age: float) -> st.SearchStrategy[datetime | None]:
    usual = st.floats(-3, usual_age).map(lambda s: NOW - timedelta(seconds=s))
    any_age = st.floats(-60, max_age).map(lambda s: NOW - timedelta(seconds=s))
    return weighted(weighted(usual, any_age, 5), BAD_TIMES)


STAMP = stamps(30.0, 300.0)
OLD_STAMP = stamps(600.0, 600.0)
METER_W = weighted(st.floats(-8000, 12000), NONSENSE)
CURRENT_A = weighted(st.floats(-40, 80), NONSENSE)
T_CURRENT_A = st.one_of(st.none(), CURRENT_A)
SOC = weighted(st.floats(0, 100), st.sampled_from([None, math.nan, -1.0, 150.0]))
BATTERY_W = weighted(st.floats(-6000, 6000), NONSENSE)
MAYBE_BOOL = st.sampled_from([None, True, False])
RATING_W = st.one_of(st.none(), st.integers(0, 15000))
MIN_W = st.one_of(st.none(), st.integers(0, 1000))
RATINGS_ST = st.one_of(
    st.none(),
    st.builds(
        BatteryRatings,
        max_charge_w=RATING_W,
        max_discharge_w=RATING_W,
        min_charge_w=MIN_W,
        min_discharge_w=MIN_W,
        reverse_flow_ok=MAYBE_BOOL,
    ),
)
MEASUREMENTS = st.builds(
    Measurements,
    meter_power_w=METER_W,
    meter_power_at=STAMP,
    current_r_a=CURRENT_A,
    current_t_a=T_CURRENT_A,
    currents_at=STAMP,
    soc_pct=SOC,
    soc_at=STAMP,
    battery_power_w=BATTERY_W,
    battery_power_at=STAMP,
    reverse_flow_ok=MAYBE_BOOL,
    ratings=RATINGS_ST,
    pv_contract=st.sampled_from(PvContract),
)


def limit(lo: float, hi: float) -> st.SearchStrategy[float]:
    return weighted(st.floats(lo, hi), st.sampled_from([math.nan, -5.0, math.inf]))


LIMITS = st.builds(
    Limits,
    soc_reserve_pct=limit(0, 60),
    soc_max_pct=limit(50, 100),
    export_limit_w=limit(0, 10000),
    breaker_a=limit(10, 120),
    breaker_margin_a=limit(0, 15),
    meter_stale_s=limit(5, 120),
    failsafe_hysteresis_s=limit(0, 300),
    min_dwell_s=limit(0, 300),
    fit=st.booleans(),
    nominal_voltage_v=weighted(st.sampled_from([200.0, 100.0]), st.sampled_from([0.0, math.nan])),
    export_margin_w=limit(0, 500),
    unknown_current_charge_w=st.sampled_from([0.0, 0.0, 500.0]),
    battery_stale_s=limit(5, 120),
    future_tolerance_s=st.sampled_from([5.0, 0.0, 30.0]),
    water_heater_w=st.sampled_from([1500.0, 800.0]),
)
WINDOW = weighted(
    st.none(),
    weighted(
        st.floats(-7200, 7200).map(lambda s: NOW + timedelta(seconds=s)),
        st.just(NOW.replace(tzinfo=None)),
    ),
    4,
)
SETPOINTS = st.builds(
    Setpoint,
    kind=st.sampled_from(
        [K.BATTERY_CHARGE, K.BATTERY_DISCHARGE, K.BATTERY_CHARGE, K.BATTERY_DISCHARGE, *K]
    ),
    power_w=weighted(st.floats(0, 15000), st.sampled_from([math.nan, -1.0, math.inf])),
    limit_w=st.one_of(st.none(), st.floats(0, 6000), st.just(math.nan)),
    allow_export=st.booleans(),
    source=st.sampled_from(["cmd-1", "cmd-2", "override", "default"]),
    start=WINDOW,
    end=WINDOW,
)
FAILSAFE = weighted(
    st.just(NORMAL),
    st.builds(FailsafeState, st.just(True), OLD_STAMP, st.one_of(st.none(), OLD_STAMP)),
    5,
)
OVERRIDES = weighted(st.none(), st.builds(Override, st.sampled_from(OverrideMode), WINDOW), 8)
CONTEXTS = st.builds(
    Context,
    applied=st.one_of(st.none(), SETPOINTS),
    applied_since=OLD_STAMP,
    failsafe=FAILSAFE,
    override=OVERRIDES,
)


def fresh_stamp(max_age: float) -> st.SearchStrategy[datetime]:
    return st.floats(0, max_age).map(lambda s: NOW - timedelta(seconds=s))


# Plausible scenarios: valid limits, fresh data, no override or fail-safe, so that most requests
# really act and the power arithmetic is exercised; the wild ones above cover the safe defaults.
PLAUSIBLE_MEASUREMENTS = st.builds(
    Measurements,
    meter_power_w=st.floats(-8000, 12000),
    meter_power_at=fresh_stamp(5),
    current_r_a=st.floats(-40, 70),
    current_t_a=st.one_of(st.none(), st.floats(-40, 70)),
    currents_at=fresh_stamp(5),
    soc_pct=st.floats(0, 100),
    soc_at=fresh_stamp(5),
    battery_power_w=st.floats(-6000, 6000),
    battery_power_at=fresh_stamp(5),
    reverse_flow_ok=MAYBE_BOOL,
    ratings=RATINGS_ST,
    pv_contract=st.sampled_from(PvContract),
)
PLAUSIBLE_LIMITS = st.builds(
    Limits,
    soc_reserve_pct=st.floats(0, 50),
    soc_max_pct=st.floats(50, 100),
    export_limit_w=st.floats(0, 10000),
    breaker_a=st.floats(10, 120),
    breaker_margin_a=st.floats(0, 10),
    meter_stale_s=st.floats(5, 120),
    failsafe_hysteresis_s=st.floats(0, 300),
    min_dwell_s=st.floats(0, 300),
    fit=st.booleans(),
    nominal_voltage_v=st.sampled_from([200.0, 100.0]),
    export_margin_w=st.floats(0, 500),
    unknown_current_charge_w=st.sampled_from([0.0, 500.0]),
)
PLAUSIBLE_SETPOINTS = st.builds(
    Setpoint,
    kind=st.sampled_from(
        [K.BATTERY_CHARGE, K.BATTERY_DISCHARGE] * 3 + [K.BATTERY_STANDBY, K.BATTERY_AUTO]
    ),
    power_w=st.floats(1, 15000),
    allow_export=st.booleans(),
    source=st.just("cmd-1"),
)
PLAUSIBLE_CONTEXTS = st.builds(
    Context,
    applied=st.one_of(st.none(), PLAUSIBLE_SETPOINTS),
    applied_since=fresh_stamp(600),
    failsafe=st.just(NORMAL),
)
SCENARIOS = st.one_of(
    st.tuples(SETPOINTS, MEASUREMENTS, LIMITS, CONTEXTS),
    st.tuples(PLAUSIBLE_SETPOINTS, PLAUSIBLE_MEASUREMENTS, PLAUSIBLE_LIMITS, PLAUSIBLE_CONTEXTS),
)


def sane_limits(lim: Limits) -> bool:
    values = [
        lim.soc_reserve_pct,
        lim.soc_max_pct,
        lim.export_limit_w,
        lim.breaker_a,
        lim.breaker_margin_a,
        lim.meter_stale_s,
        lim.failsafe_hysteresis_s,
        lim.min_dwell_s,
        lim.nominal_voltage_v,
        lim.export_margin_w,
        lim.battery_stale_s,
    ]
    return (
        all(math.isfinite(v) and v >= 0 for v in values)
        and lim.breaker_a > 0
        and lim.nominal_voltage_v > 0
        and lim.meter_stale_s > 0
        and lim.battery_stale_s > 0
        and lim.soc_reserve_pct <= 100
        and lim.soc_max_pct <= 100
    )


def is_num(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def age_ok(when: datetime | None, max_age: float, future: float, now: datetime) -> bool:
    if when is None or when.tzinfo is None:
        return False
    age = (now - when).total_seconds()
    return -future <= age <= max_age


def meter_fresh(m: Measurements, lim: Limits, now: datetime) -> bool:
    stale, fut = lim.meter_stale_s, lim.future_tolerance_s
    return (
        is_num(m.meter_power_w)
        and age_ok(m.meter_power_at, stale, fut, now)
        and age_ok(m.currents_at, stale, fut, now)
    )


def override_active(ctx: Context, now: datetime) -> bool:
    ov = ctx.override
    if ov is None:
        return False
    return ov.until is None or ov.until.tzinfo is None or ov.until > now


def in_window(sp: Setpoint, now: datetime) -> bool:
    if sp.start is not None and (sp.start.tzinfo is None or sp.start > now):
        return False
    return not (sp.end is not None and (sp.end.tzinfo is None or sp.end <= now))


def export_ok(sp: Setpoint, m: Measurements, lim: Limits) -> bool:
    answers = {m.reverse_flow_ok, m.ratings.reverse_flow_ok if m.ratings else None} - {None}
    return (
        lim.fit is False
        and m.pv_contract is not PvContract.FIT
        and answers == {True}
        and sp.allow_export is True
    )


EPS = 1e-6


def check_invariants(
    request: Setpoint, m: Measurements, lim: Limits, now: datetime, ctx: Context, d: Decision
) -> None:
    allowed = d.allowed
    # Totality: the guard for unexpected exceptions never fired.
    assert not any("could not judge" in r.detail for r in d.reasons), d.reasons
    assert not (d.clamped and d.blocked)
    assert all(isinstance(r.rule, Rule) and r.detail for r in d.reasons)
    # Determinism.
    assert evaluate(request, m, lim, now, ctx) == d
    # Never silent: a different mode or less power comes with reasons.
    if request.kind in (K.BATTERY_CHARGE, K.BATTERY_DISCHARGE) and is_num(request.power_w):
        changed = allowed.kind is not request.kind or allowed.power_w < math.floor(request.power_w)
        if changed:
            assert d.reasons
    if d.clamped:
        assert d.reasons and allowed.power_w < request.power_w
    if d.blocked:
        assert d.reasons
    # Stale meter means fail-safe.
    if not meter_fresh(m, lim, now):
        assert d.failsafe.active
    # Override: a remote request never acts; the battery follows the override.
    if override_active(ctx, now) and request.source != "override" and request.kind is not K.NONE:
        assert allowed.kind in (K.BATTERY_AUTO, K.BATTERY_STANDBY, K.NONE)
        assert Rule.OVERRIDE in d.rules and d.blocked
    # Heater starts only with fresh data and inside its window.
    if allowed.kind is K.WATER_HEATER_HEAT:
        assert not d.failsafe.active and in_window(allowed, now) and not override_active(ctx, now)

    # Min dwell: a change to another battery mode waits min_dwell_s, unless it is to auto or
    # imposed by the override.
    applied = ctx.applied
    if (
        allowed.kind in (K.BATTERY_CHARGE, K.BATTERY_DISCHARGE, K.BATTERY_STANDBY)
        and not (override_active(ctx, now) and allowed.source == "override")
        and applied is not None
        and applied.is_battery
        and applied.kind is not allowed.kind
        and ctx.applied_since is not None
        and ctx.applied_since.tzinfo is not None
    ):
        assert (now - ctx.applied_since).total_seconds() >= lim.min_dwell_s

    if allowed.kind not in (K.BATTERY_CHARGE, K.BATTERY_DISCHARGE):
        return
    # Something is forced: every precondition must hold.
    assert sane_limits(lim)
    assert not d.failsafe.active and meter_fresh(m, lim, now)
    assert not override_active(ctx, now)
    assert in_window(allowed, now)
    soc, bp, meter = m.soc_pct, m.battery_power_w, m.meter_power_w
    assert isinstance(soc, float) and 0 <= soc <= 100
    assert age_ok(m.soc_at, lim.battery_stale_s, lim.future_tolerance_s, now)
    assert isinstance(bp, float) and math.isfinite(bp)
    assert age_ok(m.battery_power_at, lim.battery_stale_s, lim.future_tolerance_s, now)
    power = allowed.power_w
    assert power >= 1 and power == int(power)
    held = Rule.MIN_DWELL in d.rules
    source = ctx.applied if held else request
    assert source is not None and source.kind is allowed.kind and power <= source.power_w
    r = m.ratings
    if allowed.kind is K.BATTERY_DISCHARGE:
        assert soc > lim.soc_reserve_pct
        assert isinstance(meter, float)
        if r and r.max_discharge_w is not None:
            assert power <= r.max_discharge_w
        if r and r.min_discharge_w:
            assert power >= r.min_discharge_w
        base = meter - bp  # the house without the battery
        predicted = base - power  # the meter once the battery discharges `power`
        if export_ok(allowed, m, lim):
            # Export stays under the limit minus the margin.
            assert predicted >= lim.export_margin_w - lim.export_limit_w - EPS
        else:
            # No battery export at all (and the margin kept on the import side).
            assert predicted >= lim.export_margin_w - EPS >= -EPS
    else:
        assert soc < lim.soc_max_pct
        if r and r.max_charge_w is not None:
            assert power <= r.max_charge_w
        if r and r.min_charge_w:
            assert power >= r.min_charge_w
        limit_a = lim.breaker_a - lim.breaker_margin_a
        rr, tt = m.current_r_a, m.current_t_a
        if isinstance(rr, float) and is_num(rr) and (tt is None or is_num(tt)):
            volts = 100.0 if tt is None else lim.nominal_voltage_v
            worst = rr if tt is None else max(rr, tt)
            assert worst + (power - bp) / volts <= limit_a + EPS
        else:
            assert power <= lim.unknown_current_charge_w


def props(default: int, slow: int) -> settings:
    """Example counts per test: a few seconds by default, > 100,000 in total with CHISAN_SLOW=1."""
    return settings(
        max_examples=examples(default, slow),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@props(1500, 80_000)
@given(SCENARIOS)
def test_invariants(scenario: tuple[Setpoint, Measurements, Limits, Context]) -> None:
    request_, m, lim, ctx = scenario
    d = evaluate(request_, m, lim, NOW, ctx)
    check_invariants(request_, m, lim, NOW, ctx, d)


@props(400, 10_000)
@given(PLAUSIBLE_SETPOINTS, PLAUSIBLE_MEASUREMENTS, PLAUSIBLE_LIMITS, st.floats(0, 10000))
def test_lower_export_limit_never_allows_more_discharge(
    request_: Setpoint, m: Measurements, lim: Limits, lower: float
) -> None:
    sp = replace(request_, kind=K.BATTERY_DISCHARGE)
    hi = evaluate(sp, m, lim, NOW, CTX)
    lo = evaluate(sp, m, replace(lim, export_limit_w=min(lower, lim.export_limit_w)), NOW, CTX)
    if lo.allowed.kind is K.BATTERY_DISCHARGE:
        assert hi.allowed.kind is K.BATTERY_DISCHARGE
        assert lo.allowed.power_w <= hi.allowed.power_w


@props(400, 10_000)
@given(PLAUSIBLE_SETPOINTS, PLAUSIBLE_MEASUREMENTS, PLAUSIBLE_LIMITS, st.floats(0, 50))
def test_more_current_never_allows_more_charge(
    request_: Setpoint, m: Measurements, lim: Limits, extra_a: float
) -> None:
    sp = replace(request_, kind=K.BATTERY_CHARGE)
    busier = replace(
        m,
        current_r_a=m.current_r_a + extra_a if is_num(m.current_r_a) else m.current_r_a,
        current_t_a=m.current_t_a + extra_a if is_num(m.current_t_a) else m.current_t_a,
    )
    calm = evaluate(sp, m, lim, NOW, CTX)
    busy = evaluate(sp, busier, lim, NOW, CTX)
    if busy.allowed.kind is K.BATTERY_CHARGE:
        assert calm.allowed.kind is K.BATTERY_CHARGE
        assert busy.allowed.power_w <= calm.allowed.power_w


@props(300, 5_000)
@given(SETPOINTS, MEASUREMENTS, LIMITS, CONTEXTS, st.floats(61, 1e6))
def test_stale_meter_forces_nothing(
    request_: Setpoint, m: Measurements, lim: Limits, ctx: Context, age: float
) -> None:
    if math.isfinite(lim.meter_stale_s):
        stale = replace(m, meter_power_at=NOW - timedelta(seconds=age + lim.meter_stale_s))
    else:
        stale = replace(m, meter_power_at=None)
    d = evaluate(request_, stale, lim, NOW, ctx)
    assert d.failsafe.active
    assert d.allowed.kind not in (K.BATTERY_CHARGE, K.BATTERY_DISCHARGE, K.WATER_HEATER_HEAT)
    assert d.allowed.kind is not K.AIRCON_SAVING


FORBID_EXPORT = st.sampled_from(["site_fit", "pv_fit", "reverse_refused", "reverse_unknown", "cmd"])


@props(200, 5_000)
@given(PLAUSIBLE_SETPOINTS, PLAUSIBLE_MEASUREMENTS, PLAUSIBLE_LIMITS, FORBID_EXPORT)
def test_no_battery_export_where_forbidden(
    request_: Setpoint, m: Measurements, lim: Limits, why: str
) -> None:
    sp = replace(request_, kind=K.BATTERY_DISCHARGE, allow_export=why != "cmd")
    if why == "site_fit":
        lim = replace(lim, fit=True)
    elif why == "pv_fit":
        m = replace(m, pv_contract=PvContract.FIT)
    elif why.startswith("reverse"):
        answer = False if why == "reverse_refused" else None
        m = replace(m, reverse_flow_ok=answer, ratings=None)
    d = evaluate(sp, m, lim, NOW, CTX)
    if d.allowed.kind is K.BATTERY_DISCHARGE:
        assert isinstance(m.meter_power_w, float) and isinstance(m.battery_power_w, float)
        base = m.meter_power_w - m.battery_power_w
        assert base - d.allowed.power_w >= lim.export_margin_w - EPS
    cause = {
        "site_fit": "site is under FIT",
        "pv_fit": "PV reports a FIT contract",
        "reverse_refused": "reverse flow not acceptable",
        "reverse_unknown": "reverse flow not known to be acceptable",
        "cmd": "command does not allow export",
    }[why]
    export_rules = {Rule.FIT_NO_EXPORT, Rule.REVERSE_FLOW_NOT_ACCEPTABLE, Rule.EXPORT_LIMIT}
    for reason in d.reasons:
        if reason.rule in export_rules:  # the clamp names every cause, the first one as rule
            assert cause in reason.detail
