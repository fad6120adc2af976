"""What ``chisan status`` (and ``chisan doctor`` beside a running daemon) learns from the daemon.

The daemon answers a ``status`` request on its local control socket with one JSON object. Its
fields are a contract for installers' scripts (``chisan status --json``):

``flows``      latest meter / PV / battery power with their timestamps, the house load derived
               from them (meter + PV − battery; battery power is positive while charging), SOC
``meter_link`` the B-route link: state, why it is down, the last join (channel, PAN, LQI...)
``devices``    per configured device: kind, protocol, address, polls, failures, answering?
``commands``   stored commands still scheduled or started, and which one is in force per family
``slots``      the last few slot records (newest first) with their delivery state
``outbox``     records not yet acknowledged by the backend: depth and the oldest one
``alarms``     health alarms in force and the last alarms raised (any kind)
``capabilities`` what the interlock knows of the controlled battery (ratings, reverse-flow type)
               and the PV's FIT contract

Everything is read from objects the daemon already keeps; nothing here talks to a device.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from drivers.readings import (
    BATTERY_POWER_W,
    BATTERY_SOC_PCT,
    METER_CURRENTS_A,
    METER_POWER_W,
    PV_POWER_W,
)
from gateway.slots import iso

#: How many slot records and alarms the status answer carries.
RECENT_SLOTS = 6
RECENT_ALARMS = 10


class AlarmLog:
    """The last alarms raised, kept in memory for ``chisan status`` (the store forgets an alarm
    once it is published, which is exactly when an operator may want to see it)."""

    def __init__(self, size: int = RECENT_ALARMS) -> None:
        self._alarms: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, alarm: Mapping[str, Any]) -> None:
        self._alarms.append(dict(alarm))

    def recent(self) -> list[dict[str, Any]]:
        """Newest first."""
        return list(reversed(self._alarms))


def _reading(hub: Any, key: str) -> dict[str, Any] | None:
    reading = hub.latest(key)
    if reading is None:
        return None
    return _entry(reading)


def _entry(reading: Any) -> dict[str, Any]:
    value = reading.value
    if isinstance(value, tuple):
        value = list(value)
    return {"value": value, "at": iso(reading.at)}


def _number(entry: dict[str, Any] | None) -> float | None:
    if entry is None:
        return None
    value = entry["value"]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def flows(hub: Any, *, has_pv: bool, has_battery: bool) -> dict[str, Any]:
    """Power flows; ``house_w`` only when every term it needs is known (a missing device counts
    as 0 W, a configured device without a reading makes the house load unknown)."""
    meter = _reading(hub, METER_POWER_W)
    pv = _reading(hub, PV_POWER_W)
    battery = _reading(hub, BATTERY_POWER_W)
    house: float | None = None
    meter_w = _number(meter)
    pv_w = _number(pv) if has_pv else 0.0
    battery_w = _number(battery) if has_battery else 0.0
    if meter_w is not None and pv_w is not None and battery_w is not None:
        house = round(meter_w + pv_w - battery_w, 1)
    by_device = getattr(hub, "by_device", None)
    per_pv = by_device(PV_POWER_W) if by_device is not None else {}
    return {
        "meter_w": meter,
        "pv_w": pv,
        # Each inverter's own power; ``pv_w`` is their sum, dated by the oldest of them.
        "pv_devices": {name: _entry(r) for name, r in sorted(per_pv.items())},
        "battery_w": battery,
        "house_w": house,
        "soc_pct": _reading(hub, BATTERY_SOC_PCT),
        "currents_a": _reading(hub, METER_CURRENTS_A),
    }


def meter_link(meter: Any) -> dict[str, Any] | None:
    if meter is None:
        return None
    out: dict[str, Any] = {
        "state": str(getattr(meter, "state", "unknown")),
        "reason": getattr(meter, "down_reason", None),
        "joins": getattr(meter, "joins", None),
    }
    join = getattr(meter, "last_join", None)
    if join is not None:
        out["last_join"] = {
            "channel": join.channel,
            "pan_id": f"{join.pan_id:04X}",
            "mac": join.mac,
            "lqi": join.lqi,
            "rssi_dbm": None if join.rssi_dbm is None else round(join.rssi_dbm, 1),
            "dialect": join.dialect.value,
            "data_mode": str(getattr(join.data_mode, "value", join.data_mode)),
            "version": join.version,
        }
    if str(out["state"]) == "up":
        out["reason"] = None
    return out


def devices(configured: Iterable[Any], components: Iterable[Any]) -> list[dict[str, Any]]:
    """Per configured device, what its poller knows (a device without a poller is not driven)."""
    pollers = {
        getattr(c, "name", None): c
        for c in components
        if hasattr(c, "polls") and hasattr(c, "failures")
    }
    out = []
    for dev in configured:
        poller = pollers.get(dev.name)
        entry: dict[str, Any] = {
            "name": dev.name,
            "kind": dev.kind,
            "protocol": dev.protocol,
            "address": dev.host or dev.serial,
            "enabled": dev.enabled,
            "driven": poller is not None,
        }
        if poller is not None:
            entry["polls"] = poller.polls
            entry["failures"] = poller.failures
            entry["answering"] = poller.polls > 0 and not getattr(poller, "_failing", False)
        out.append(entry)
    return out


def commands(store: Any, manager: Any, now: datetime) -> dict[str, Any]:
    pending = [
        {
            "id": c.id,
            "rev": c.rev,
            "state": c.state,
            "kind": c.command.get("kind"),
            "start": c.command.get("start"),
            "end": c.command.get("end"),
            "power_w": c.command.get("power_w"),
        }
        for c in store.commands(("scheduled", "started"))
    ]
    active: dict[str, Any] = {}
    if manager is not None:
        for family, cmd in manager.active(now).items():
            active[str(family)] = {"id": cmd.id, "rev": cmd.rev, "kind": str(cmd.kind)}
    return {"active": active, "pending": pending}


def slots(store: Any, limit: int = RECENT_SLOTS) -> list[dict[str, Any]]:
    out = []
    for record, delivered in store.recent_slots(limit):
        out.append(
            {
                "seq": record.get("seq"),
                "slot_start": record.get("slot_start"),
                "rev": record.get("rev"),
                "source": record.get("source"),
                "import_wh": record.get("import_wh"),
                "export_wh": record.get("export_wh"),
                "delivered": delivered,
            }
        )
    return out


def outbox(store: Any) -> dict[str, Any]:
    depth = store.backlog_count()
    oldest = store.outbox(1) if depth else []
    return {
        "depth": depth,
        "oldest_seq": oldest[0].seq if oldest else None,
        "oldest_slot": oldest[0].record.get("slot_start") if oldest else None,
        "attempts": oldest[0].attempts if oldest else None,
    }


def alarms(health: Any, log: AlarmLog | None) -> dict[str, Any]:
    active = sorted(k for k, on in getattr(health, "active", {}).items() if on)
    return {"active": active, "recent": log.recent() if log is not None else []}


def capabilities(control: Any) -> dict[str, Any]:
    """What the interlock works with: read from the control loop, never asked of a device."""
    if control is None:
        return {"battery": None, "pv_contract": None}
    m = control.measurements()
    ratings = m.ratings
    battery = None
    if ratings is not None:
        battery = {
            "capacity_wh": ratings.capacity_wh,
            "max_charge_w": ratings.max_charge_w,
            "max_discharge_w": ratings.max_discharge_w,
            "reverse_flow_ok": m.reverse_flow_ok,
        }
    contract = getattr(m.pv_contract, "value", m.pv_contract)
    return {"battery": battery, "pv_contract": None if contract is None else str(contract)}
