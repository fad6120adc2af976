"""Control: the active setpoint of each device family, through the interlock, onto the devices.

Each tick (and at once when a command arrives or an override changes) the loop builds the
request for every family from the winning command (or the default: the battery's own automatic
mode), passes it through :func:`gateway.interlock.evaluate`, and applies what is allowed through
the device adapters. Remote setpoints are leases: while active they are re-asserted every
``control.reassert_s``. Adapters confirm by read-back (battery CF and the sign of D3); a device
that does not follow aborts the command. Nothing reaches a device without passing the interlock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from drivers.capabilities import (
    AirconSaving,
    BatteryControl,
    BatteryCounters,
    BatteryInfo,
    DeviceError,
    PvLimit,
    WaterHeaterControl,
)
from gateway import readings as rk
from gateway.clock import Clock
from gateway.interlock import (
    AUTO,
    NOTHING,
    Context,
    Decision,
    Limits,
    Measurements,
    Override,
    OverrideMode,
    PvContract,
    Setpoint,
    SetpointKind,
    evaluate,
    next_context,
)
from gateway.localctl import active_override
from gateway.logs import get_logger
from gateway.readings import ReadingsHub
from gateway.slots import iso

FAMILIES = ("battery", "pv", "water_heater", "aircon")
#: Without the backend this long, commands not yet started do not start.
BACKEND_LOSS_S = 120.0


@dataclass
class Running:
    """What control is doing for one family."""

    key: tuple[str, int] | None = None  # (command id, rev) now executed, None = default
    end: datetime | None = None
    started: bool = False
    clamp_reported: bool = False
    aborted: bool = False
    applied: Setpoint | None = None
    applied_mono: float = -1e18
    counter_start: int | None = None
    counter_kind: str = ""
    pv_pct: bool = False  # the PV limit is a percentage of rated output, not watts
    task: asyncio.Task[None] | None = None


@dataclass
class Control:
    limits: Limits
    clock: Clock
    hub: ReadingsHub
    devices: dict[str, Any]
    commands: Any | None = None
    get_override: Callable[[], dict[str, Any] | None] = lambda: None
    queue_alarm: Callable[[dict[str, Any]], None] | None = None
    on_state_change: Callable[[], Awaitable[None]] | None = None
    backend_connected: Callable[[], bool] = lambda: True
    reassert_s: float = 30.0
    #: The installer's ``reverse_flow`` for the battery: used only when the device cannot say.
    declared_reverse_flow: bool | None = None
    #: Hears every interlock decision (family, decision) and every setpoint a device refused
    #: (family, None); metrics count clamps by rule from it.
    on_decision: Callable[[str, Decision | None], None] | None = None
    tick_s: float = 1.0
    name: str = "control"
    running: dict[str, Running] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.control")
        self.ctx = Context()
        self._wake = asyncio.Event()
        self._backend_lost_at: float | None = None
        self._failsafe_alarmed = False
        self._battery_seen: list[tuple[datetime, float]] = []
        self._battery_changed_at: datetime | None = None
        self._ratings: Any = None
        self._reverse_flow: bool | None = None
        self._pv_contract = PvContract.UNKNOWN
        self._info_mono = -1e18
        self.battery = self._find(BatteryControl)
        self.pv = self._pv()
        self.water_heater = self._find(WaterHeaterControl)
        self.aircon = self._find(AirconSaving)
        self.last_decisions: dict[str, Decision] = {}
        for fam in FAMILIES:
            self.running.setdefault(fam, Running())

    def _pv(self) -> Any:
        """The PV family: the one inverter, or every inverter together (a ``pv_limit`` caps the
        home's PV, so it reaches them all)."""
        inverters = [d for d in self.devices.values() if isinstance(d, PvLimit)]
        if len(inverters) > 1:
            from gateway.pvgroup import PvGroup

            return PvGroup(inverters)
        return inverters[0] if inverters else None

    def _find(self, capability: type) -> Any:
        for dev in self.devices.values():
            if isinstance(dev, capability):
                return dev
        return None

    # ------------------------------------------------------------------ component

    def wake(self) -> None:
        """A command arrived or an override changed: decide now, not at the next tick."""
        self._wake.set()

    @property
    def failsafe(self) -> bool:
        return self.ctx.failsafe.active

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"failsafe": self.failsafe}
        for fam, run in self.running.items():
            if run.key is not None:
                out[f"{fam}_command"] = {"id": run.key[0], "rev": run.key[1]}
        return out

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                await self.step()
                sleeper = asyncio.ensure_future(self.clock.sleep(self.tick_s))
                waker = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    waker.cancel()
        finally:
            for run in self.running.values():
                if run.task is not None:
                    run.task.cancel()

    # ------------------------------------------------------------------ one decision round

    async def step(self) -> None:
        now = self.clock.now()
        await self._refresh_info()
        m = self.measurements()
        if self.commands is not None:
            await self.commands.tick(now)
        active = self.commands.active(now) if self.commands is not None else {}
        override = self._override(now)
        self.ctx = replace(self.ctx, override=override)
        backend_ok = self._backend_ok()
        was_failsafe = self.ctx.failsafe.active
        for fam in FAMILIES:
            device = getattr(self, fam)
            if device is None:
                continue
            cmd = active.get(fam) if active else None
            await self._family(fam, device, cmd, m, now, backend_ok)
        if was_failsafe != self.ctx.failsafe.active:
            await self._failsafe_changed(now)

    def measurements(self) -> Measurements:
        def get(key: str) -> tuple[Any, datetime | None]:
            r = self.hub.latest(key)
            return (r.value, r.at) if r is not None else (None, None)

        power, power_at = get(rk.METER_POWER_W)
        currents, currents_at = get(rk.METER_CURRENTS_A)
        soc, soc_at = get(rk.BATTERY_SOC_PCT)
        bpower, bpower_at = get(rk.BATTERY_POWER_W)
        self._remember_battery(bpower, bpower_at)
        r_a = t_a = None
        if isinstance(currents, tuple | list) and len(currents) == 2:
            r_a, t_a = currents[0], currents[1]
        return Measurements(
            meter_power_w=power,
            meter_power_at=power_at,
            current_r_a=r_a,
            current_t_a=t_a,
            currents_at=currents_at,
            soc_pct=soc,
            soc_at=soc_at,
            battery_power_w=bpower,
            battery_power_at=bpower_at,
            reverse_flow_ok=self._reverse_flow,
            ratings=self._ratings,
            pv_contract=self._pv_contract,
        )

    def _remember_battery(self, value: Any, at: datetime | None) -> None:
        if at is None or not isinstance(value, int | float):
            return
        if not self._battery_seen or self._battery_seen[-1][0] != at:
            self._battery_seen.append((at, float(value)))
            del self._battery_seen[:-32]

    def _as_seen_by_meter(self, m: Measurements, request: Setpoint) -> Measurements:
        """The battery power the meter's reading contains, judged conservatively.

        The meter and the battery are polled at different moments. A meter reading taken before
        the battery started discharging, combined with a fresh battery reading, would make the
        house look bigger than it is and let the battery export: the interlock's arithmetic
        (house = meter − battery) needs the battery power *inside* that meter reading. That is
        the battery reading taken at or before the meter reading, unless the battery was told
        something new since; when it cannot be known, the value that allows less is used
        (the larger one for a discharge, the smaller one for a charge).
        """
        meter_at = m.meter_power_at
        current = m.battery_power_w
        if meter_at is None or current is None:
            return m
        before = [(at, v) for at, v in self._battery_seen if at <= meter_at]
        changed = self._battery_changed_at
        if before:
            seen_at, seen = before[-1]
            if changed is None or not seen_at < changed <= meter_at:
                return replace(m, battery_power_w=seen, battery_power_at=seen_at)
            candidates = [seen, float(current), 0.0]
        else:
            candidates = [float(current), 0.0]
        if request.kind is SetpointKind.BATTERY_CHARGE:
            return replace(m, battery_power_w=min(candidates))
        return replace(m, battery_power_w=max(candidates))

    async def _refresh_info(self) -> None:
        """Ratings, reverse-flow type and FIT contract change rarely: read them hourly."""
        if self.clock.monotonic() - self._info_mono < 3600:
            return
        self._info_mono = self.clock.monotonic()
        if isinstance(self.battery, BatteryInfo):
            try:
                self._ratings = await self.battery.ratings()
                self._reverse_flow = self._reverse_flow_of(self._ratings.reverse_flow_ok)
            except DeviceError as exc:
                self._info_mono -= 3600 - 60  # retry in a minute
                self.log.info("battery ratings unavailable", error=str(exc))
        fit = getattr(self.pv, "fit_contract", None)
        if fit is not None:
            try:
                value = (await fit()).value
                self._pv_contract = {
                    "fit": PvContract.FIT,
                    "non_fit": PvContract.NON_FIT,
                }.get(str(value), PvContract.UNKNOWN)
            except DeviceError:
                pass

    def _reverse_flow_of(self, reported: bool | None) -> bool | None:
        """The device's own answer when it has one (config never overrides it), else the
        installer's declaration, else unknown (which the interlock treats as not acceptable)."""
        declared = self.declared_reverse_flow
        if reported is None:
            return declared
        if declared is not None and declared != reported:
            self.log.warning(
                "battery reports a reverse-flow type other than the config declares; "
                "the device's own value is used",
                reported=reported,
                declared=declared,
            )
        return reported

    def _override(self, now: datetime) -> Override | None:
        raw = active_override(self.get_override(), now)
        if raw is None:
            return None
        return Override(OverrideMode(raw["mode"]), datetime.fromisoformat(raw["until"]))

    def _backend_ok(self) -> bool:
        if self.backend_connected():
            self._backend_lost_at = None
            return True
        if self._backend_lost_at is None:
            self._backend_lost_at = self.clock.monotonic()
        return self.clock.monotonic() - self._backend_lost_at < BACKEND_LOSS_S

    # ------------------------------------------------------------------ per family

    def _request(self, fam: str, cmd: Any) -> Setpoint:
        if cmd is None:
            return AUTO if fam == "battery" else NOTHING
        kind = SetpointKind(str(cmd.kind.value if hasattr(cmd.kind, "value") else cmd.kind))
        return Setpoint(
            kind,
            power_w=float(cmd.power_w or 0),
            limit_w=float(cmd.limit_w) if getattr(cmd, "limit_w", None) is not None else None,
            allow_export=bool(getattr(cmd, "allow_export", False)),
            source=str(cmd.id),
            start=getattr(cmd, "effective_start", None) or cmd.start,
            end=cmd.end,
        )

    async def _family(
        self, fam: str, device: Any, cmd: Any, m: Measurements, now: datetime, backend_ok: bool
    ) -> None:
        run = self.running[fam]
        key = (str(cmd.id), int(cmd.rev)) if cmd is not None else None
        if key != run.key:
            await self._finish(fam, run, now)
            run = self.running[fam] = Running(key=key, end=cmd.end if cmd is not None else None)
            # A command started before a restart resumes without a second "started" ack.
            run.started = cmd is not None and str(getattr(cmd, "state", "")) == "started"
        if run.aborted:
            cmd = None
        if cmd is not None and not run.started and not backend_ok:
            cmd = None  # backend lost: nothing new starts
        request = self._request(fam, cmd)
        if request.kind is SetpointKind.PV_LIMIT and request.limit_w is None and cmd is not None:
            # A percentage limit passes the interlock as a number (curtailment needs no bound)
            # and reaches the inverter as A0 (% of rated output).
            pct = getattr(cmd, "limit_pct", None)
            run.pv_pct = pct is not None
            request = replace(request, limit_w=None if pct is None else float(pct))
        if fam == "battery":
            m = self._as_seen_by_meter(m, request)
        decision = evaluate(request, m, self.limits, now, self.ctx)
        if fam == "battery":
            self.ctx = next_context(self.ctx, decision, now)
        else:
            self.ctx = replace(self.ctx, failsafe=decision.failsafe)
        self.last_decisions[fam] = decision
        self._observe(fam, decision)
        allowed = decision.allowed
        due = allowed != run.applied or (
            allowed.kind is not SetpointKind.NONE
            and self.clock.monotonic() - run.applied_mono >= self.reassert_s
        )
        if due and (run.task is None or run.task.done()):
            run.task = asyncio.create_task(self._apply(fam, device, run, allowed, decision, cmd))
            if cmd is not None and not run.started:
                await asyncio.shield(run.task)  # the first actuation is awaited: acks in order

    def _observe(self, fam: str, decision: Decision | None) -> None:
        if self.on_decision is None:
            return
        try:
            self.on_decision(fam, decision)
        except Exception as exc:  # an observer's bug must not stop control
            self.log.warning("decision observer failed", error=str(exc))

    async def _apply(
        self, fam: str, device: Any, run: Running, allowed: Setpoint, decision: Decision, cmd: Any
    ) -> None:
        log = self.log.bind(family=fam, command=run.key[0] if run.key else None)
        first = allowed != run.applied
        try:
            if allowed.kind is SetpointKind.NONE and run.applied is None:
                pass  # nothing was ever set: nothing to release
            else:
                await self._actuate(fam, device, allowed, run)
        except DeviceError as exc:
            log.warning("device did not take the setpoint", setpoint=allowed.kind, error=str(exc))
            self._observe(fam, None)
            if cmd is not None and self.commands is not None and run.key and not run.aborted:
                run.aborted = True
                await self.commands.aborted(run.key[0], run.key[1], f"device: {exc}")
                with contextlib.suppress(DeviceError):
                    await self._actuate(fam, device, AUTO if fam == "battery" else NOTHING, run)
            return
        if first and fam == "battery":
            self._battery_changed_at = self.clock.now()
        run.applied = allowed
        run.applied_mono = self.clock.monotonic()
        if first:
            log.info(
                "setpoint applied",
                kind=str(allowed.kind),
                power_w=allowed.power_w,
                limit_w=allowed.limit_w,
                reasons=[f"{r.rule}: {r.detail}" for r in decision.reasons],
            )
        key = run.key
        if cmd is None or self.commands is None or key is None:
            return
        if not run.started and allowed.kind is not SetpointKind.NONE and not decision.blocked:
            run.started = True
            await self._counter_start(run, allowed)
            clamp = decision.reasons[0] if decision.clamped and decision.reasons else None
            await self.commands.started(
                key[0],
                key[1],
                clamped_by=str(clamp.rule) if clamp else None,
                allowed_w=int(allowed.power_w) if clamp else None,
                detail=clamp.detail if clamp else "",
            )
            run.clamp_reported = clamp is not None
        elif decision.blocked and not run.clamp_reported and decision.reasons:
            # Blocked (fail-safe, override, SOC reserve...): the command stays in force and
            # acts again when the rule allows; the backend hears why it delivers nothing now.
            reason = decision.reasons[0]
            run.clamp_reported = True
            if run.started:
                await self.commands.clamped(key[0], key[1], str(reason.rule), 0, reason.detail)
            else:
                run.started = True
                await self.commands.started(
                    key[0], key[1], clamped_by=str(reason.rule), allowed_w=0, detail=reason.detail
                )
        elif decision.clamped and not run.clamp_reported and decision.reasons:
            reason = decision.reasons[0]
            run.clamp_reported = True
            await self.commands.clamped(
                key[0], key[1], str(reason.rule), int(allowed.power_w), reason.detail
            )

    async def _actuate(self, fam: str, device: Any, sp: Setpoint, run: Running) -> None:
        kind = sp.kind
        if fam == "battery":
            if kind is SetpointKind.BATTERY_CHARGE and sp.power_w >= 1:
                await device.charge(int(sp.power_w))
            elif kind is SetpointKind.BATTERY_DISCHARGE and sp.power_w >= 1:
                await device.discharge(int(sp.power_w))
            elif kind in (SetpointKind.BATTERY_STANDBY,) or (
                kind in (SetpointKind.BATTERY_CHARGE, SetpointKind.BATTERY_DISCHARGE)
            ):
                await device.standby()
            else:
                await device.auto()
        elif fam == "pv":
            if kind is SetpointKind.PV_LIMIT and sp.limit_w is not None:
                if run.pv_pct:
                    await device.limit_pct(int(sp.limit_w))
                else:
                    await device.limit_w(int(sp.limit_w))
            else:
                await device.limit_pct(None)
        elif fam == "water_heater":
            if kind is SetpointKind.WATER_HEATER_HEAT:
                if run.applied is None or run.applied.kind is not kind:
                    await device.start_heating()
            else:
                release = getattr(device, "auto", None) or device.stop_heating
                await release()
        elif fam == "aircon":
            await device.power_saving(kind is SetpointKind.AIRCON_SAVING)

    async def _counter_start(self, run: Running, sp: Setpoint) -> None:
        if not isinstance(self.battery, BatteryCounters):
            return
        try:
            if sp.kind is SetpointKind.BATTERY_DISCHARGE:
                run.counter_kind = "discharged"
                run.counter_start = (await self.battery.discharged_wh()).value
            elif sp.kind is SetpointKind.BATTERY_CHARGE:
                run.counter_kind = "charged"
                run.counter_start = (await self.battery.charged_wh()).value
        except DeviceError:
            run.counter_start = None

    async def _delivered(self, run: Running) -> int | None:
        if run.counter_start is None or not isinstance(self.battery, BatteryCounters):
            return None
        try:
            getter = (
                self.battery.discharged_wh
                if run.counter_kind == "discharged"
                else self.battery.charged_wh
            )
            end = (await getter()).value
        except DeviceError:
            return None
        if end is None or end < run.counter_start:
            return None
        return int(end - run.counter_start)

    async def _finish(self, fam: str, run: Running, now: datetime) -> None:
        """The command this family executed is over (ended, superseded, cancelled, aborted)."""
        if run.task is not None and not run.task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(run.task), 5)
        if run.key is None or self.commands is None or run.aborted:
            return
        if run.started and run.end is not None and now >= run.end:
            delivered = await self._delivered(run) if fam == "battery" else None
            await self.commands.completed(run.key[0], run.key[1], delivered)

    async def _failsafe_changed(self, now: datetime) -> None:
        fs = self.ctx.failsafe
        if not fs.active and not self._failsafe_alarmed:
            # The start-up wait for fresh meter data is not an incident worth an alarm.
            self.log.info("meter data fresh: forced control and DR enabled")
            # No alarm, but the retained state said fail-safe since start-up: correct it.
            if self.on_state_change is not None:
                await self.on_state_change()
            return
        self._failsafe_alarmed = fs.active
        decision = self.last_decisions.get("battery")
        why = "; ".join(r.detail for r in decision.reasons) if decision else ""
        if fs.active:
            self.log.error("fail-safe entered: forced control stopped, DR suspended", why=why)
        else:
            self.log.warning("fail-safe left: fresh meter data for the hysteresis period")
        if self.queue_alarm is not None:
            self.queue_alarm(
                {
                    "kind": "failsafe",
                    "active": fs.active,
                    "at": iso(now),
                    "message": (
                        f"fail-safe entered: {why or 'meter data stale'}"
                        if fs.active
                        else "fail-safe left: meter data fresh again"
                    ),
                }
            )
        if self.on_state_change is not None:
            await self.on_state_change()
