"""The control loop with recording fakes (no real peer can stand in for the loop's own timing):
leases, override, backend loss, a device that does not follow, completion with energy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from drivers.capabilities import BatteryMode, BatteryRatings, DeviceError, Measured
from gateway.clock import JST, ManualClock
from gateway.control import BACKEND_LOSS_S, Control
from gateway.interlock import Limits
from gateway.readings import (
    BATTERY_POWER_W,
    BATTERY_SOC_PCT,
    METER_CURRENTS_A,
    METER_POWER_W,
    ReadingsHub,
)
from gateway.slots import iso

T0 = datetime(2026, 11, 27, 17, 0, 5, tzinfo=JST)


@dataclass
class FakeBattery:
    """Implements the battery capabilities; records every call the control loop makes."""

    clock: ManualClock
    calls: list[tuple[str, int | None]] = field(default_factory=list)
    fail: bool = False
    discharged: int = 1000

    async def charge(self, watts: int) -> None:
        self._call("charge", watts)

    async def discharge(self, watts: int) -> None:
        self._call("discharge", watts)

    async def standby(self) -> None:
        self._call("standby", None)

    async def auto(self) -> None:
        self._call("auto", None)

    def _call(self, name: str, watts: int | None) -> None:
        if self.fail and name != "auto":
            raise DeviceError("battery", "CF stayed auto: device did not follow")
        self.calls.append((name, watts))

    async def soc_pct(self) -> Measured[float | None]:
        return Measured(60.0, self.clock.now())

    async def power_w(self) -> Measured[float | None]:
        return Measured(0.0, self.clock.now())

    async def mode(self) -> Measured[BatteryMode | None]:
        return Measured(BatteryMode.AUTO, self.clock.now())

    async def ratings(self) -> BatteryRatings:
        return BatteryRatings(3000, 3000, reverse_flow_ok=True)

    async def charged_wh(self) -> Measured[int | None]:
        return Measured(0, self.clock.now())

    async def discharged_wh(self) -> Measured[int | None]:
        return Measured(self.discharged, self.clock.now())


@dataclass(frozen=True)
class Cmd:
    id: str
    rev: int
    kind: str
    start: datetime
    effective_start: datetime
    end: datetime
    power_w: int | None = 1500
    limit_w: int | None = None
    limit_pct: int | None = None
    allow_export: bool = True
    state: str = "scheduled"


@dataclass
class FakeCommands:
    """The command manager's side as control sees it; records the lifecycle reports."""

    now_active: dict[str, Cmd] = field(default_factory=dict)
    reports: list[tuple[str, ...]] = field(default_factory=list)

    async def tick(self, now: datetime) -> None:
        return None

    def active(self, now: datetime) -> dict[str, Cmd]:
        return {k: c for k, c in self.now_active.items() if c.effective_start <= now < c.end}

    async def started(self, cmd_id: str, rev: int, **kw: Any) -> None:
        self.reports.append(("started", cmd_id, str(kw.get("clamped_by"))))

    async def clamped(self, cmd_id: str, rev: int, rule: str, allowed_w: int, detail: str) -> None:
        self.reports.append(("clamped", cmd_id, rule))

    async def completed(self, cmd_id: str, rev: int, delivered_wh: int | None) -> None:
        self.reports.append(("completed", cmd_id, str(delivered_wh)))

    async def aborted(self, cmd_id: str, rev: int, reason: str) -> None:
        self.reports.append(("aborted", cmd_id, reason))


def setup(
    override: dict[str, Any] | None = None, connected: bool = True
) -> tuple[Control, FakeBattery, FakeCommands, ManualClock, ReadingsHub, dict[str, Any]]:
    clock = ManualClock(T0)
    hub = ReadingsHub()
    battery = FakeBattery(clock)
    commands = FakeCommands()
    state: dict[str, Any] = {"override": override, "connected": connected, "alarms": []}
    limits = Limits(fit=False, min_dwell_s=0, failsafe_hysteresis_s=0, meter_stale_s=60)
    control = Control(
        limits,
        clock,
        hub,
        {"battery": battery},
        commands=commands,
        get_override=lambda: state["override"],
        queue_alarm=state["alarms"].append,
        backend_connected=lambda: bool(state["connected"]),
        reassert_s=30,
    )
    return control, battery, commands, clock, hub, state


def fresh(hub: ReadingsHub, clock: ManualClock) -> None:
    now = clock.now()
    hub.update(METER_POWER_W, 1200.0, now)
    hub.update(METER_CURRENTS_A, (8.0, 6.0), now)
    hub.update(BATTERY_SOC_PCT, 60.0, now)
    hub.update(BATTERY_POWER_W, 0.0, now)


async def step(control: Control) -> None:
    """One decision round, then wait for the device calls it started in the background."""
    await control.step()
    for run in control.running.values():
        if run.task is not None:
            await run.task


def discharge(**kw: Any) -> Cmd:
    start = datetime(2026, 11, 27, 17, 0, tzinfo=JST)
    base: dict[str, Any] = {
        "id": "c1",
        "rev": 1,
        "kind": "battery_discharge",
        "start": start,
        "effective_start": start,
        "end": start + timedelta(minutes=30),
    }
    base.update(kw)
    return Cmd(**base)


async def test_command_runs_as_a_lease_then_completes_with_energy() -> None:
    control, battery, commands, clock, hub, _ = setup()
    fresh(hub, clock)
    await step(control)
    assert battery.calls == [("auto", None)]  # the default when nothing is commanded
    commands.now_active["battery"] = discharge()
    await step(control)
    assert battery.calls[-1] == ("discharge", 1500)
    assert commands.reports == [("started", "c1", "None")]
    for _ in range(3):  # re-asserted every reassert_s while active
        clock.advance(31)
        fresh(hub, clock)
        await step(control)
    assert battery.calls.count(("discharge", 1500)) == 4
    battery.discharged = 1700
    clock.set(datetime(2026, 11, 27, 17, 30, 1, tzinfo=JST))
    fresh(hub, clock)
    await step(control)
    assert commands.reports[-1] == ("completed", "c1", "700")
    assert battery.calls[-1] == ("auto", None)


async def test_override_beats_the_command() -> None:
    until = iso(T0 + timedelta(hours=1))
    control, battery, commands, clock, hub, _ = setup(
        override={"device": "battery", "mode": "standby", "until": until}
    )
    fresh(hub, clock)
    commands.now_active["battery"] = discharge()
    await step(control)
    assert ("discharge", 1500) not in battery.calls
    assert battery.calls[-1] == ("standby", None)
    assert commands.reports == [("started", "c1", "override")]


async def test_backend_loss_starts_nothing_new_but_finishes_running() -> None:
    control, battery, commands, clock, hub, state = setup()
    fresh(hub, clock)
    commands.now_active["battery"] = discharge()
    await step(control)
    assert battery.calls[-1] == ("discharge", 1500)
    state["connected"] = False
    await step(control)  # the loss is measured from when it is first seen
    clock.advance(BACKEND_LOSS_S + 5)
    fresh(hub, clock)
    await step(control)
    assert battery.calls[-1] == ("discharge", 1500)  # the accepted command runs on
    # A new command while the backend is gone does not start.
    commands.now_active["battery"] = discharge(id="c2")
    await step(control)
    assert ("started", "c2", "None") not in commands.reports
    assert battery.calls[-1] == ("auto", None)


async def test_device_not_following_aborts() -> None:
    control, battery, commands, clock, hub, _ = setup()
    fresh(hub, clock)
    battery.fail = True
    commands.now_active["battery"] = discharge()
    await step(control)
    assert commands.reports[0][0] == "aborted" and "did not follow" in commands.reports[0][2]
    assert battery.calls[-1] == ("auto", None)
    await step(control)
    assert len([r for r in commands.reports if r[0] == "aborted"]) == 1


async def test_stale_meter_enters_failsafe_with_alarm() -> None:
    control, battery, commands, clock, hub, state = setup()
    fresh(hub, clock)
    commands.now_active["battery"] = discharge()
    await step(control)
    assert not control.failsafe
    clock.advance(61)  # no fresh meter data for longer than meter_stale_s
    await step(control)
    assert control.failsafe
    assert battery.calls[-1] == ("auto", None)
    assert state["alarms"][-1]["kind"] == "failsafe" and state["alarms"][-1]["active"]
    assert commands.reports[-1][:2] == ("clamped", "c1")


async def test_meter_older_than_the_battery_change_does_not_inflate_the_house() -> None:
    """A fresh discharge reading beside a meter reading taken before the discharge must not make
    the house look bigger (house = meter − battery) and let the battery export."""
    control, battery, commands, clock, hub, _ = setup()
    meter_at = clock.now()
    hub.update(BATTERY_POWER_W, 0.0, meter_at - timedelta(seconds=1))
    hub.update(BATTERY_SOC_PCT, 60.0, meter_at)
    hub.update(METER_POWER_W, 1200.0, meter_at)  # the house, battery idle
    hub.update(METER_CURRENTS_A, (6.0, 6.0), meter_at)
    commands.now_active["battery"] = discharge(allow_export=False, power_w=3000)
    await step(control)
    assert battery.calls[-1] == ("discharge", 1100)  # house 1200 W − margin 100 W
    clock.advance(2)
    hub.update(BATTERY_POWER_W, -1100.0, clock.now())  # the battery now discharges...
    await step(control)  # ...but the meter reading is still the one from before
    assert control.last_decisions["battery"].allowed.power_w == 1100  # not 1200 + 1100 − 100
    clock.advance(2)
    hub.update(METER_POWER_W, 100.0, clock.now())  # the meter now sees the discharge
    await step(control)
    assert control.last_decisions["battery"].allowed.power_w == 1100
