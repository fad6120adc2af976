"""The vocabulary of DR commands: kinds, families, states, acks, and a command as held.

Values here are frozen so a decision about a command can be logged, compared and replayed. Enum
values are the wire names of ``docs/schemas/cmd.schema.json`` and ``cmd-ack.schema.json``; the
kinds deliberately share their values with the interlock's ``SetpointKind`` so the control loop can
map one onto the other by value without a table that could drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.clock import JST


class CommandKind(StrEnum):
    BATTERY_CHARGE = "battery_charge"
    BATTERY_DISCHARGE = "battery_discharge"
    BATTERY_STANDBY = "battery_standby"
    BATTERY_AUTO = "battery_auto"
    PV_LIMIT = "pv_limit"
    WATER_HEATER_HEAT = "water_heater_heat"
    AIRCON_SAVING = "aircon_saving"


class Family(StrEnum):
    """Commands of one family drive the same device, so at most one of them may be in force."""

    BATTERY = "battery"
    PV = "pv"
    WATER_HEATER = "water_heater"
    AIRCON = "aircon"


FAMILY: dict[CommandKind, Family] = {
    CommandKind.BATTERY_CHARGE: Family.BATTERY,
    CommandKind.BATTERY_DISCHARGE: Family.BATTERY,
    CommandKind.BATTERY_STANDBY: Family.BATTERY,
    CommandKind.BATTERY_AUTO: Family.BATTERY,
    CommandKind.PV_LIMIT: Family.PV,
    CommandKind.WATER_HEATER_HEAT: Family.WATER_HEATER,
    CommandKind.AIRCON_SAVING: Family.AIRCON,
}


class CommandState(StrEnum):
    """What the store remembers about a revision (``received`` and ``rejected`` are never stored:
    the first is passed through on the way to ``scheduled``, the second keeps nothing)."""

    SCHEDULED = "scheduled"
    STARTED = "started"
    COMPLETED = "completed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    ABORTED = "aborted"


#: States in which a command may still act; every other state is final.
LIVE_STATES = frozenset({CommandState.SCHEDULED, CommandState.STARTED})


class AckStatus(StrEnum):
    RECEIVED = "received"
    SCHEDULED = "scheduled"
    STARTED = "started"
    CLAMPED = "clamped"
    COMPLETED = "completed"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    ABORTED = "aborted"


@dataclass(frozen=True)
class ActiveCommand:
    """One accepted command revision, as the control loop sees it.

    ``power_w`` / ``limit_w`` / ``limit_pct`` are whole, non-negative magnitudes (``None`` where
    the kind takes none). ``effective_start`` is ``start`` plus the randomisation drawn once on
    receipt; the command acts in [effective_start, end). ``state`` tells the control loop whether
    it has already reported ``started`` (e.g. after a restart it resumes a started command and
    must not report it again).
    """

    id: str
    rev: int
    kind: CommandKind
    family: Family
    start: datetime
    effective_start: datetime
    end: datetime
    power_w: int | None
    limit_w: int | None
    limit_pct: int | None
    allow_export: bool
    priority: int
    issued_at: datetime
    test: bool
    state: CommandState = CommandState.SCHEDULED

    def in_window(self, now: datetime) -> bool:
        return self.effective_start <= now < self.end

    def overlaps(self, other: ActiveCommand) -> bool:
        """Nominal windows intersect (randomisation does not let two commands share a slot)."""
        return self.start < other.end and other.start < self.end

    def beats(self, other: ActiveCommand) -> bool:
        """Higher priority wins, then the newer issue; a full tie keeps the command already held
        (``other``), so a repeated tie never flaps a device between two setpoints."""
        return (self.priority, self.issued_at) > (other.priority, other.issued_at)

    @property
    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "rev": self.rev}


def iso(when: datetime) -> str:
    """The wire form of an instant: ISO 8601 in JST (``+09:00``)."""
    return when.astimezone(JST).isoformat()


def ack(
    cmd_id: str | None,
    rev: int | None,
    status: AckStatus,
    at: datetime,
    *,
    test: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """An acknowledgement; fields that are ``None`` are left out, except ``delivered_wh``, whose
    null means "unknown" in the contract."""
    out: dict[str, Any] = {"id": cmd_id, "rev": rev, "status": status.value, "at": iso(at)}
    if test:
        out["test"] = True
    for name, value in fields.items():
        if value is not None or name == "delivered_wh":
            out[name] = value
    return out
