"""The simulated home: smart meter on the B-route, ECHONET node, SunSpec inverters.

Every device that draws or feeds power sits behind the simulated meter, so what the gateway
commands shows on the meter's E7 reading and in the 30-minute counters it settles: the battery
(whichever protocol it speaks), the EcoCute's heat pump while it heats, and the second PV array
(thin flexible modules on a SunSpec inverter; its generation is negative load). The meter's own
household model supplies the house load and the rooftop PV (clear-sky bell, noon peak; morning and
evening load peaks), the same curves the ECHONET PV reports; the SunSpec array sees the same sky,
scaled to its own rating.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from drivers.broute.sim import MeterModelConfig, ModuleConfig, PtyEmulator
from drivers.echonet.sim import SimNode
from drivers.modbus.sim import ModbusSim, SunSpecSim
from drivers.modbus.simdevices import SimPvInverter
from gateway.clock import Clock

#: The rooftop array (on the meter model and the ECHONET PV) and the SunSpec one, in W.
ROOFTOP_PV_W = 4500
SUNSPEC_PV_W = 2000


class BatteryChoice(StrEnum):
    ECHONET = "echonet"
    SUNSPEC = "sunspec"


class SimBatteryView(Protocol):
    """What the demo reads from a simulated battery, whatever protocol it speaks."""

    def power_w(self) -> float: ...  # + charging, − discharging

    def soc_pct(self) -> float: ...


@dataclass
class _EchonetBatteryView:
    node: SimNode

    def power_w(self) -> float:
        return float(self.node.battery.power_w)

    def soc_pct(self) -> float:
        return float(self.node.battery.soc_pct)


@dataclass
class _SunSpecBatteryView:
    """The one place the demo touches the SunSpec simulator's API."""

    sim: SunSpecSim

    def power_w(self) -> float:
        return float(self.sim.battery.power_w())

    def soc_pct(self) -> float:
        return float(self.sim.battery.soc_pct)


@contextlib.asynccontextmanager
async def _sunspec_inverter(clock: Clock, soc_pct: float) -> AsyncIterator[tuple[int, SunSpecSim]]:
    sim = SunSpecSim(clock, soc_pct=soc_pct, capacity_wh=9800, w_cha_max=5000)
    async with sim:
        yield sim.port, sim


@dataclass
class SimHome:
    emu: PtyEmulator
    node: SimNode
    battery: SimBatteryView
    battery_choice: BatteryChoice
    modbus_port: int | None
    #: The SunSpec PV inverter (unit 1 on ``pv_port``), None in a home without one.
    sunspec_pv: SimPvInverter | None = None
    pv_port: int | None = None

    def water_heater_w(self) -> float:
        return float(self.node.water_heater.power_w)

    def sunspec_pv_w(self) -> float:
        return 0.0 if self.sunspec_pv is None else float(self.sunspec_pv.generation_w())

    def behind_the_meter_w(self) -> float:
        return self.battery.power_w() + self.water_heater_w() - self.sunspec_pv_w()


@contextlib.asynccontextmanager
async def simulated_home(
    clock: Clock,
    node_address: str,
    battery: BatteryChoice,
    *,
    soc_pct: float = 35.0,
    sunspec_pv: bool = True,
) -> AsyncIterator[SimHome]:
    """Start the meter emulator, the ECHONET node, the SunSpec PV inverter (unless told not to)
    and, when it is the battery, the SunSpec storage inverter."""
    module = ModuleConfig(link_delay=0.001, link_jitter=0.0, scan_scale=0.02)
    devices: tuple[str, ...] = ("pv", "water_heater")
    if battery is BatteryChoice.ECHONET:
        devices = ("pv", "battery", "water_heater")
    # A 9.8 kWh / 5 kW battery, as the SunSpec inverter: its ratings do not bind the DR setpoints.
    node = SimNode(node_address, devices=devices, clock=clock, soc_pct=soc_pct, battery_max_w=5000)
    meter = MeterModelConfig(pv_peak_w=float(ROOFTOP_PV_W), base_load_w=350.0)
    async with contextlib.AsyncExitStack() as stack:
        emu = await stack.enter_async_context(PtyEmulator(module, meter, clock))
        await stack.enter_async_context(node)
        view: SimBatteryView
        port: int | None = None
        if battery is BatteryChoice.SUNSPEC:
            port, sim = await stack.enter_async_context(_sunspec_inverter(clock, soc_pct))
            view = _SunSpecBatteryView(sim)
        else:
            view = _EchonetBatteryView(node)
        meter_model = emu.meter

        def sky_w() -> float:
            return meter_model.pv_at_minute(int(clock.now().timestamp() // 60))

        pv: SimPvInverter | None = None
        pv_port: int | None = None
        if sunspec_pv:
            pv = SimPvInverter(clock, rated_w=SUNSPEC_PV_W, serial="SIMPV-FLEX1")
            pv.profile = lambda: sky_w() * SUNSPEC_PV_W / ROOFTOP_PV_W
            pv_port = (await stack.enter_async_context(ModbusSim(clock, [pv]))).port
        home = SimHome(emu, node, view, battery, port, pv, pv_port)
        emu.meter.extra_load = home.behind_the_meter_w
        node.pv.profile = sky_w
        yield home
