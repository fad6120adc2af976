"""DR commands from the market backend: validation, lifecycle and acknowledgements.

The wire contract is ``docs/schemas/cmd.schema.json`` (``<p>/cmd``) and
``docs/schemas/cmd-ack.schema.json`` (``<p>/cmd/ack``), described in ``docs/mqtt-api.md``.
"""

from gateway.commands.manager import COMPLETE_GRACE, CommandManager, PublishAck
from gateway.commands.model import (
    FAMILY,
    LIVE_STATES,
    AckStatus,
    ActiveCommand,
    CommandKind,
    CommandState,
    Family,
)
from gateway.commands.validate import signed_bytes

__all__ = [
    "COMPLETE_GRACE",
    "FAMILY",
    "LIVE_STATES",
    "AckStatus",
    "ActiveCommand",
    "CommandKind",
    "CommandManager",
    "CommandState",
    "Family",
    "PublishAck",
    "signed_bytes",
]
