"""The interlock over time: sequences of readings, requests, overrides and clock steps.

A hypothesis state machine plays the daemon: it feeds readings, lets time pass, asks for
setpoints and keeps the context the way the daemon does (``next_context``). Alongside it keeps
its own, much simpler model of what fail-safe and min dwell must do, and checks every decision
against it and against the single-call invariants of test_interlock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from drivers.capabilities import BatteryRatings
from gateway.interlock import (
    NORMAL,
    Context,
    Decision,
    FailsafeState,
    Limits,
    Measurements,
    Override,
    OverrideMode,
    PvContract,
    Setpoint,
    SetpointKind,
    evaluate,
    next_context,
    update_failsafe,
)
from tests.gateway.test_interlock import (
    SLOW,
    T0,
    check_invariants,
    examples,
    in_window,
    meter_fresh,
    override_active,
)

pytestmark = pytest.mark.timeout(1800 if SLOW else 120)
K = SetpointKind
FORCED = (K.BATTERY_CHARGE, K.BATTERY_DISCHARGE)

LIMITS = st.builds(
    Limits,
    soc_reserve_pct=st.sampled_from([10.0, 30.0]),
    soc_max_pct=st.sampled_from([90.0, 95.0]),
    export_limit_w=st.sampled_from([0.0, 2000.0, 4500.0]),
    breaker_a=st.sampled_from([30.0, 60.0]),
    breaker_margin_a=st.sampled_from([0.0, 5.0]),
    meter_stale_s=st.sampled_from([30.0, 60.0]),
    failsafe_hysteresis_s=st.sampled_from([0.0, 30.0, 120.0]),
    min_dwell_s=st.sampled_from([0.0, 60.0, 300.0]),
    fit=st.booleans(),
)
#: Command start/end relative to now: mostly open, sometimes past or future.


@dataclass(frozen=True)
class Readings:
    meter_w: float
    r_a: float
    t_a: float | None
    soc: float
    battery_w: float


READINGS = st.builds(
    Readings,
    meter_w=st.floats(-6000, 9000),
    r_a=st.floats(-30, 70),
    t_a=st.one_of(st.none(), st.floats(-30, 70)),
    soc=st.floats(0, 100),
    battery_w=st.floats(-5000, 5000),
)
MOSTLY_READINGS = st.integers(0, 3).flatmap(lambda i: st.none() if i == 0 else READINGS)
OFFSET = st.integers(0, 3).flatmap(lambda i: st.floats(-600, 1800) if i == 0 else st.none())


class InterlockMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.limits = Limits()
        self.ctx = Context()  # as at start-up: in fail-safe until the meter has been fresh
        self.meter_w = 1000.0
        self.meter_at: datetime | None = None
        self.currents = (5.0, 5.0)
        self.currents_at: datetime | None = None
        self.soc = 60.0
        self.battery_w = 0.0
        self.battery_at: datetime | None = None
        self.ratings = BatteryRatings(5000, 5000, 100, 100, reverse_flow_ok=True)
        # The model: first fresh observation since the last stale one; last battery mode change.
        self.first_fresh: datetime | None = None
        self.last_kind: SetpointKind | None = None
        self.last_change: datetime | None = None

    @initialize(limits=LIMITS, started_normal=st.booleans())
    def setup(self, limits: Limits, started_normal: bool) -> None:
        """Start as at boot (in fail-safe), or as if the meter had long been fresh."""
        self.limits = limits
        if started_normal:
            self.ctx = replace(self.ctx, failsafe=NORMAL)
            self.first_fresh = T0 - timedelta(days=1)
            self.meter_at = self.currents_at = self.battery_at = T0

    def measurements(self) -> Measurements:
        return Measurements(
            meter_power_w=self.meter_w,
            meter_power_at=self.meter_at,
            current_r_a=self.currents[0],
            current_t_a=self.currents[1],
            currents_at=self.currents_at,
            soc_pct=self.soc,
            soc_at=self.battery_at,
            battery_power_w=self.battery_w,
            battery_power_at=self.battery_at,
            reverse_flow_ok=True,
            ratings=self.ratings,
            pv_contract=PvContract.NON_FIT,
        )

    # ---- the world

    @rule(seconds=st.floats(0, 20), readings=MOSTLY_READINGS)
    def advance(self, seconds: float, readings: Readings | None) -> None:
        """Time passes; usually every device is polled again (as the daemon does every 10 s)."""
        self.now += timedelta(seconds=seconds)
        if readings is not None:
            self.read(readings, with_currents=True)

    @rule(seconds=st.floats(30, 600))
    def long_gap(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(readings=READINGS)
    def meter_power_only(self, readings: Readings) -> None:
        """The meter answers E7 but not E8: its currents age until fail-safe."""
        self.read(readings, with_currents=False)

    def read(self, readings: Readings, *, with_currents: bool) -> None:
        self.meter_w, self.meter_at = readings.meter_w, self.now
        if with_currents:
            self.currents, self.currents_at = (readings.r_a, readings.t_a), self.now
            self.soc, self.battery_w, self.battery_at = readings.soc, readings.battery_w, self.now

    @rule(mode=st.sampled_from(OverrideMode), minutes=st.one_of(st.none(), st.floats(0, 5)))
    def set_override(self, mode: OverrideMode, minutes: float | None) -> None:
        until = None if minutes is None else self.now + timedelta(minutes=minutes)
        self.ctx = replace(self.ctx, override=Override(mode, until))

    @rule()
    def clear_override(self) -> None:
        self.ctx = replace(self.ctx, override=None)

    # ---- the daemon

    @rule()
    def tick(self) -> None:
        """The daemon updates fail-safe on every meter reading, request or not."""
        state = update_failsafe(self.ctx.failsafe, self.measurements(), self.limits, self.now)
        self.observe_failsafe(state)
        self.ctx = replace(self.ctx, failsafe=state)

    @rule(
        kind=st.sampled_from([*FORCED, *FORCED, K.BATTERY_STANDBY, K.BATTERY_AUTO, K.PV_LIMIT]),
        power_w=st.floats(0, 8000),
        allow_export=st.booleans(),
        start=OFFSET,
        end=OFFSET,
        source=st.sampled_from(["cmd-1", "cmd-2", "override"]),
    )
    def request(
        self,
        kind: SetpointKind,
        power_w: float,
        allow_export: bool,
        start: float | None,
        end: float | None,
        source: str,
    ) -> None:
        sp = Setpoint(
            kind,
            power_w,
            limit_w=1000.0 if kind is K.PV_LIMIT else None,
            allow_export=allow_export,
            source=source,
            start=None if start is None else self.now + timedelta(seconds=start),
            end=None if end is None else self.now + timedelta(seconds=end),
        )
        m = self.measurements()
        d = evaluate(sp, m, self.limits, self.now, self.ctx)
        check_invariants(sp, m, self.limits, self.now, self.ctx, d)
        self.check_standby_is_not_held_forever(sp, d)
        self.observe_failsafe(d.failsafe)
        self.observe_dwell(d)
        self.ctx = next_context(self.ctx, d, self.now)

    # ---- the model

    def observe_failsafe(self, state: FailsafeState) -> None:
        """Fail-safe holds exactly while the meter is stale, and for the hysteresis after."""
        if not meter_fresh(self.measurements(), self.limits, self.now):
            self.first_fresh = None
            assert state.active
            return
        if self.first_fresh is None:
            self.first_fresh = self.now
        held_s = (self.now - self.first_fresh).total_seconds()
        assert state.active == (held_s < self.limits.failsafe_hysteresis_s), (state, held_s)

    def observe_dwell(self, d: Decision) -> None:
        """A different battery mode only after min dwell, unless it is auto or the override's."""
        kind = d.allowed.kind
        if not d.allowed.is_battery or kind is self.last_kind:
            return
        by_override = override_active(self.ctx, self.now) and d.allowed.source == "override"
        if kind is not K.BATTERY_AUTO and not by_override and self.last_change is not None:
            waited = (self.now - self.last_change).total_seconds()
            assert waited >= self.limits.min_dwell_s, (self.last_kind, kind, waited)
        self.last_kind, self.last_change = kind, self.now

    def check_standby_is_not_held_forever(self, sp: Setpoint, d: Decision) -> None:
        """Liveness: once dwell has passed, a plain standby request in its window is obeyed."""
        if sp.kind is not K.BATTERY_STANDBY or d.failsafe.active:
            return
        if override_active(self.ctx, self.now) or not in_window(sp, self.now):
            return
        changed = self.last_change
        other_mode = self.last_kind not in (None, K.BATTERY_STANDBY) and changed is not None
        if other_mode and (self.now - changed).total_seconds() < self.limits.min_dwell_s:
            return
        assert d.allowed == sp and not d.reasons

    @invariant()
    def context_is_consistent(self) -> None:
        applied = self.ctx.applied
        if applied is not None:
            assert applied.kind is self.last_kind and self.ctx.applied_since == self.last_change


InterlockMachine.TestCase.settings = settings(
    max_examples=examples(100, 2_000),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestInterlockMachine = InterlockMachine.TestCase
