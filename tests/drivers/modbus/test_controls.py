"""SunSpec controls against the simulator on a real pymodbus server: revert timers, restoring
the state before a command, and installer limits a command does not concern."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drivers.capabilities import BatteryMode
from drivers.modbus.adapters import ModbusSetpointError
from drivers.modbus.simdevices import SimBatteryInverter, SimPvInverter
from gateway.clock import ManualClock
from tests.drivers.modbus.simnet import drive, sim_battery, sim_pv


def noon() -> ManualClock:
    clock = ManualClock()
    clock.set(clock.now().replace(hour=12))
    return clock


def storage(unit: SimBatteryInverter) -> dict[str, object]:
    return {k: v.value for k, v in unit.image.decode(124).points.items()}


async def test_storage_command_keeps_other_limits_and_auto_restores_them() -> None:
    async with sim_battery(revert_s=600) as (sim, battery, clock):
        unit = sim.battery
        # The installer's settings: charge capped at 80 %, discharge at 50 %, 20 % reserve.
        unit.image.set(124, InWRte=80.0, OutWRte=50.0, MinRsvPct=20, InOutWRte_WinTms=5)
        await drive(clock, battery.charge(2000))
        s = storage(unit)
        assert s["StorCtl_Mod"] == 1 and s["InWRte"] == pytest.approx(40.0)
        assert s["OutWRte"] == pytest.approx(50.0)  # not this command's concern
        assert s["MinRsvPct"] == 20 and s["WChaMax"] == 5000 and s["InOutWRte_WinTms"] == 5
        assert s["InOutWRte_RvrtTms"] == 600
        await drive(clock, battery.discharge(1000))  # a second command: the first save stands
        assert storage(unit)["OutWRte"] == pytest.approx(20.0)
        await drive(clock, battery.auto())
        s = storage(unit)
        assert (s["StorCtl_Mod"], s["InWRte"], s["OutWRte"]) == (0, 80.0, 50.0)
        assert s["InOutWRte_RvrtTms"] == 0 and s["MinRsvPct"] == 20
        assert (await battery.mode()).value is BatteryMode.AUTO


async def test_storage_revert_timer_hands_control_back() -> None:
    async with sim_battery(revert_s=120) as (sim, battery, clock):
        await drive(clock, battery.charge(2500))
        assert (await battery.power_w()).value == 2500
        clock.advance(100)
        assert (await battery.mode()).value is BatteryMode.CHARGE
        clock.advance(30)
        assert (await battery.mode()).value is BatteryMode.AUTO
        assert (await battery.power_w()).value == 0
        # 120 s at 2500 W went in, then nothing: the timer ended the command on time.
        assert sim.battery.charged_wh == pytest.approx(2500 * 120 / 3600, abs=1)
        await drive(clock, battery.charge(2500))  # re-asserting restarts the timer
        clock.advance(100)
        assert (await battery.mode()).value is BatteryMode.CHARGE


async def test_der_battery_uses_absolute_watts_and_reverts() -> None:
    async with sim_battery(variant="802", revert_s=120) as (sim, battery, clock):
        unit = sim.battery
        unit.image.set(704, WSetMod=1, WSet=-300, WSetEna=0)  # installer's idle setpoint
        assert await battery.uses_wset()
        await drive(clock, battery.discharge(1500))
        c = unit.image.decode(704)
        assert (c["WSetEna"], c["WSetMod"], c["WSet"], c["WSetRvrtTms"]) == (1, 1, 1500, 120)
        assert (await battery.power_w()).value == -1500
        assert (await battery.mode()).value is BatteryMode.DISCHARGE
        clock.advance(60)
        await battery.soc_pct()  # the simulator runs its physics at each request
        assert unit.image.decode(704)["WSetRvrtRem"] == pytest.approx(60, abs=2)
        clock.advance(61)
        assert (await battery.mode()).value is BatteryMode.AUTO
        await drive(clock, battery.charge(1000))
        assert unit.image.decode(704)["WSet"] == -1000
        assert (await battery.power_w()).value == 1000
        await drive(clock, battery.auto())
        c = unit.image.decode(704)
        assert (c["WSetEna"], c["WSet"], c["WSetRvrtTms"]) == (0, -300, 0)
        ratings = await battery.ratings()
        assert (ratings.max_charge_w, ratings.capacity_wh) == (5000, 9800)
        readings = {k: m.value for k, m in (await battery.poll()).items()}
        assert readings["battery.mode"] == "auto" and readings["battery.power_w"] == 0
        assert readings["battery.remaining_wh"] == round(9800 * readings["battery.soc_pct"] / 100)
        assert "battery.charge_source" not in readings  # a 124-only point
        assert (await battery.soc_pct()).value == pytest.approx(50.0, abs=0.5)
        with pytest.raises(ModbusSetpointError, match="rating"):
            await battery.charge(6000)


async def test_pv_limit_with_revert_timer() -> None:
    clock = noon()
    async with sim_pv(clock, revert_s=120) as (unit, pv):
        await drive(clock, pv.limit_pct(40))
        c = unit.image.decode(123)
        assert (c["WMaxLimPct"], c["WMaxLimPct_RvrtTms"], c["WMaxLim_Ena"]) == (40.0, 120, 1)
        assert (await pv.generation_w()).value == 1800
        assert (await pv.limits()).value == (40.0, 1800)
        readings = await pv.poll()
        assert readings["pv.limit_pct"].value == 40.0 and readings["pv.limit_w"].value == 1800
        clock.advance(121)
        assert ((await pv.generation_w()).value or 0) > 3000
        assert unit.image.decode(123)["WMaxLim_Ena"] == 0
        assert (await pv.limits()).value == (100.0, 4500)


async def test_pv_limit_never_loosens_the_installers_and_restores_it() -> None:
    clock = noon()
    async with sim_pv(clock, revert_s=300) as (unit, pv):
        unit.image.set(123, WMaxLimPct=60.0, WMaxLim_Ena=1)  # export cap set at installation
        await drive(clock, pv.limit_pct(80))
        assert unit.image.decode(123)["WMaxLimPct"] == 60.0
        await drive(clock, pv.limit_w(900))  # 20 % of 4500 W: tighter, so it applies
        assert unit.image.decode(123)["WMaxLimPct"] == 20.0
        assert (await pv.generation_w()).value == 900
        await drive(clock, pv.limit_pct(None))
        c = unit.image.decode(123)
        assert (c["WMaxLimPct"], c["WMaxLimPct_RvrtTms"], c["WMaxLim_Ena"]) == (60.0, 0, 1)
        assert (await pv.generation_w()).value == 2700
        await drive(clock, pv.limit_pct(None))  # nothing of ours in force: nothing written
        assert unit.image.decode(123)["WMaxLim_Ena"] == 1


async def test_pv_limit_through_model_704() -> None:
    clock = noon()
    async with sim_pv(clock, revert_s=60, limit_model=704) as (unit, pv):
        assert await pv.limit_model() == 704
        await drive(clock, pv.limit_w(1500))
        c = unit.image.decode(704)
        assert c["WMaxLimPctEna"] == 1 and c["WMaxLimPctRvrtTms"] == 60
        assert c["WMaxLimPct"] == pytest.approx(33.3)
        assert (await pv.generation_w()).value == pytest.approx(1500, abs=3)
        clock.advance(61)
        assert (await pv.limits()).value[0] == 100.0
        await drive(clock, pv.limit_pct(10))
        await drive(clock, pv.limit_pct(None))
        c = unit.image.decode(704)
        assert (c["WMaxLimPctEna"], c["WMaxLimPctRvrtTms"]) == (0, 0)


async def test_pv_without_limit_model_says_so() -> None:
    clock = noon()
    unit = SimPvInverter(clock)
    assert unit.limit_model == 123
    with pytest.raises(ValueError, match="123 or 704"):
        SimPvInverter(clock, limit_model=122)


async def test_dr_pv_limit_reaches_a_modbus_inverter_through_control() -> None:
    """The control loop finds the SunSpec PV as its PvLimit device and actuates it the way a
    DR pv_limit command does (watts, then percent, then the end of the command)."""
    from gateway.control import Control, Running
    from gateway.interlock import Limits
    from gateway.interlock.model import Setpoint, SetpointKind
    from gateway.readings import ReadingsHub

    clock = noon()
    async with sim_pv(clock, revert_s=300) as (unit, pv):
        control = Control(Limits(), clock, ReadingsHub(), {"pv": pv})
        assert control.pv is pv
        run = Running()
        limit = Setpoint(SetpointKind.PV_LIMIT, limit_w=1350)
        await drive(clock, control._actuate("pv", pv, limit, run))
        assert unit.limit_pct == 30.0
        run.pv_pct = True
        await drive(clock, control._actuate("pv", pv, replace(limit, limit_w=50), run))
        assert unit.limit_pct == 50.0
        await drive(clock, control._actuate("pv", pv, Setpoint(SetpointKind.NONE), run))
        assert unit.limit_pct is None
