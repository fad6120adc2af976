"""Simulated ECHONET Lite node (PV, storage battery, water heater, air conditioner, V2H).

``SimNode(bind, devices=..., clock=...)`` is one node on one address; ``chisan sim echonet`` runs
one per process. Tests reach into ``node.battery``/``node.pv``... for state, ``node.faults`` for
misbehaviour and ``node.set_log`` for the Sets the node accepted.
"""

from .devices import SimAircon, SimBattery, SimNodeProfile, SimPv, SimV2h, SimWaterHeater
from .node import DEVICE_KINDS, Faults, SetRecord, SimNode, SimStats
from .objects import SimObject

__all__ = [
    "DEVICE_KINDS",
    "Faults",
    "SetRecord",
    "SimAircon",
    "SimBattery",
    "SimNode",
    "SimNodeProfile",
    "SimObject",
    "SimPv",
    "SimStats",
    "SimV2h",
    "SimWaterHeater",
]
