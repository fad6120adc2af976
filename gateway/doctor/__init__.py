"""``chisan doctor``: every check an installer needs before leaving a home, each with a verdict.

The checks run in a fixed order, each bounded in time; a check whose premise failed is skipped
with the reason (no meter reading without a port), so the first FAIL in the list is the one to
fix first. Each FAIL carries the next step, in words a technician can act on.

A running daemon owns the serial port (opened exclusively) and UDP 3610: the doctor then asks the
daemon over its control socket what it sees of the meter and the devices instead of fighting it
for them. Everything else (config, broker, clock, disk, store) is checked directly either way;
the broker check uses its own client id so the daemon's session is not taken over.
"""

from gateway.doctor.model import (
    CheckResult,
    Checks,
    DoctorOptions,
    Failed,
    Outcome,
    Verdict,
)
from gateway.doctor.runner import Doctor

__all__ = ["CheckResult", "Checks", "Doctor", "DoctorOptions", "Failed", "Outcome", "Verdict"]
