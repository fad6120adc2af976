"""The safety interlock: every setpoint, from any source, passes ``evaluate`` before a device.

A pure, deterministic, total function of (request, measurements, limits, time, context); the rules,
formulas and rule ids are in docs/interlock.md. Callers keep the context between calls with
``next_context`` and may run ``update_failsafe`` on every meter reading to drive the alarm.
"""

from gateway.interlock.failsafe import Freshness, meter_freshness, update_failsafe
from gateway.interlock.model import (
    AUTO,
    BATTERY_KINDS,
    FORCED_BATTERY_KINDS,
    NORMAL,
    NOTHING,
    SOURCE_DEFAULT,
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
from gateway.interlock.rules import (
    SINGLE_PHASE_2W_V,
    active_override,
    evaluate,
    export_blockers,
    limit_problems,
    next_context,
    phase_model,
    reverse_flow_acceptable,
)

__all__ = [
    "AUTO",
    "BATTERY_KINDS",
    "FORCED_BATTERY_KINDS",
    "NORMAL",
    "NOTHING",
    "SINGLE_PHASE_2W_V",
    "SOURCE_DEFAULT",
    "SOURCE_OVERRIDE",
    "Context",
    "Decision",
    "FailsafeState",
    "Freshness",
    "Limits",
    "Measurements",
    "Override",
    "OverrideMode",
    "PvContract",
    "Reason",
    "Rule",
    "Setpoint",
    "SetpointKind",
    "active_override",
    "evaluate",
    "export_blockers",
    "limit_problems",
    "meter_freshness",
    "next_context",
    "phase_model",
    "reverse_flow_acceptable",
    "update_failsafe",
]
