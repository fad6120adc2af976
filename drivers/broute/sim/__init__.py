"""The simulated peer of the B-route driver: a smart meter behind an SKSTACK Wi-SUN module.

* :mod:`.meter_model`: ``MeterModel``, a pure meter (household demand, PV export, counters,
  boundaries and history) driven by the time it is given;
* :mod:`.module`: ``ModuleEmulator``, the SKSTACK IP module in either dialect, with faults;
* :mod:`.pty`: ``PtyEmulator``/``ThreadedEmulator``, the emulator on a pseudo-terminal.

``chisan sim broute`` runs it for installers and the demo.
"""

from drivers.broute.sim.meter_model import MeterModel, MeterModelConfig
from drivers.broute.sim.module import (
    DEFAULT_PASSWORD,
    DEFAULT_RBID,
    EmulatorStats,
    ModuleConfig,
    ModuleEmulator,
    NeighbourPan,
    Notify,
)
from drivers.broute.sim.pty import PtyEmulator, PtyPort, ThreadedEmulator

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_RBID",
    "EmulatorStats",
    "MeterModel",
    "MeterModelConfig",
    "ModuleConfig",
    "ModuleEmulator",
    "NeighbourPan",
    "Notify",
    "PtyEmulator",
    "PtyPort",
    "ThreadedEmulator",
]
