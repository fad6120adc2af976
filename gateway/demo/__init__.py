"""``chisan demo``: the gateway's whole job on a simulated home, a private broker and a reference
market backend, on an accelerated clock (see :mod:`gateway.demo.run`)."""

from __future__ import annotations

from gateway.demo.broker import BrokerChoice
from gateway.demo.config import DEMO_CONFIG
from gateway.demo.home import BatteryChoice
from gateway.demo.run import DEMO_NODE, DEMO_SITE, DemoOptions, main, run_demo
from gateway.demo.summary import Summary

__all__ = [
    "DEMO_CONFIG",
    "DEMO_NODE",
    "DEMO_SITE",
    "BatteryChoice",
    "BrokerChoice",
    "DemoOptions",
    "Summary",
    "main",
    "run_demo",
]
