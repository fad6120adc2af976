"""Several PV inverters driven as the one PV family the control loop and the interlock know.

A DR ``pv_limit`` is a ceiling on the home's PV output, so it must reach every inverter:

- ``limit_pct`` is a share of rated output, the same for each inverter;
- ``limit_w`` is split in proportion to the inverters' rated outputs (each asked with
  ``rated_w()``); when any rating is unknown it is split equally. Shares are rounded down, so
  their sum never exceeds the limit the interlock allowed.

Every inverter is told even when one refuses; the first refusal is then raised, so the command
gets one outcome (aborted, naming that device) and control releases them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from drivers.capabilities import DeviceError, Measured


class PvGroup:
    """PvLimit over several inverters (and their FIT contract, read conservatively)."""

    def __init__(self, members: Sequence[Any]) -> None:
        if len(members) < 2:
            raise ValueError("a PV group has two inverters or more")
        self.members = list(members)
        self.name = "+".join(str(getattr(m, "name", "pv")) for m in self.members)

    async def limit_pct(self, pct: int | None) -> None:
        await self._each("limit_pct", [pct] * len(self.members))

    async def limit_w(self, watts: int | None) -> None:
        if watts is None:
            await self._each("limit_w", [None] * len(self.members))
            return
        await self._each("limit_w", list(await self.shares(watts)))

    async def shares(self, watts: int) -> list[int]:
        """Each inverter's part of ``watts``: by rated output, else equal; never more in total."""
        ratings: list[float] = []
        for member in self.members:
            rated = await _rated(member)
            if rated is None:
                break
            ratings.append(rated)
        if len(ratings) == len(self.members):
            total = sum(ratings)
            return [int(watts * r // total) for r in ratings]
        return [int(watts // len(self.members))] * len(self.members)

    async def fit_contract(self) -> Measured[str | None]:
        """ "fit" when any inverter says so, "non_fit" only when all of them do."""
        found: list[str | None] = []
        at: datetime | None = None
        for member in self.members:
            reader = getattr(member, "fit_contract", None)
            if reader is None:
                found.append(None)
                continue
            measured = await reader()
            found.append(measured.value)
            at = measured.at if at is None else min(at, measured.at)
        if "fit" in found:
            value: str | None = "fit"
        elif all(v == "non_fit" for v in found):
            value = "non_fit"
        else:
            value = None
        if at is None:
            raise DeviceError(self.name, "no inverter reports its FIT contract")
        return Measured(value, at)

    async def _each(self, method: str, values: Sequence[int | None]) -> None:
        first: DeviceError | None = None
        for member, value in zip(self.members, values, strict=True):
            try:
                await getattr(member, method)(value)
            except DeviceError as exc:
                first = first or exc
        if first is not None:
            raise first


async def _rated(member: Any) -> float | None:
    reader = getattr(member, "rated_w", None)
    if reader is None:
        return None
    try:
        value = await reader()
    except DeviceError:
        return None
    if isinstance(value, Measured):
        value = value.value
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
