"""Turns meter boundaries into signed slot records in the store, filling gaps from history.

After every 30-minute boundary it reads EA/EB (or takes the meter's own INF of them), stores the
boundary, and settles every slot whose two boundaries are known. Slots whose boundaries are
missing (gateway off, meter unreachable, a boundary missed) are filled from the meter's history;
what still cannot be measured after a grace period is published as ``missing``, and later becomes
a new revision if history turns up. Never guessed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from drivers.capabilities import Boundary, DeviceError, IntervalMeter
from gateway.clock import JST, Clock
from gateway.logs import get_logger
from gateway.slots import (
    SLOT,
    BoundaryPoint,
    Source,
    boundaries_needed,
    day_start,
    improves,
    iso,
    missing,
    plan_history,
    slot_start,
    slot_value,
    slots_between,
)
from gateway.store import DiskFull, StoreError

#: The meter updates EA/EB shortly after each boundary; read a little later.
READ_DELAY = timedelta(seconds=20)
#: A slot still unmeasured this long after its end is published as missing.
MISSING_GRACE = timedelta(minutes=15)
EPOCH_KEY = "settlement.epoch"
#: A system clock before this has not been set yet (a board without a battery-backed clock,
#: booted before NTP): no slot is judged by it until the meter has told us its time.
CLOCK_FLOOR = datetime(2025, 1, 1, tzinfo=JST)
#: Boundaries are looked up up to and including "now": judged by the meter's time, now can be
#: exactly the boundary just read.
_INCLUSIVE = timedelta(seconds=1)


class SettlementStore(Protocol):
    def put_boundary(
        self, at: str, import_wh: int | None, export_wh: int | None, modulus_wh: int, source: str
    ) -> Any: ...

    def boundaries(self, start: str, end: str) -> list[dict[str, Any]]: ...

    def latest_rev(self, slot_start: str) -> tuple[int, dict[str, Any]] | None: ...

    def append_slot(self, fields: dict[str, Any]) -> dict[str, Any]: ...

    def get_json(self, key: str) -> Any: ...

    def put_json(self, key: str, value: Any, critical: bool = True) -> None: ...


DeviceCounters = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class Settlement:
    site: str
    meter: IntervalMeter
    store: SettlementStore
    clock: Clock
    backfill_days: int = 7
    on_record: Callable[[dict[str, Any]], None] | None = None
    device_counters: DeviceCounters | None = None
    meter_ready: Callable[[], bool] | None = None
    startup_grace_s: float = 600.0
    name: str = "settlement"
    appended: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.settlement", site=self.site)
        self._lock = asyncio.Lock()
        #: The newest boundary the meter reported live, and the monotonic time we heard it.
        self._meter_seen: tuple[datetime, float] | None = None
        self._clock_warned = False

    # ------------------------------------------------------------------ component

    async def run(self) -> None:
        await self._await_meter()
        await self._settle_logged()
        while True:
            now = self.now()
            boundary = slot_start(now) + SLOT
            await self.clock.sleep(max(0.0, (boundary + READ_DELAY - now).total_seconds()))
            try:
                await self.read_boundary(boundary)
            except StoreError as exc:
                self.log.error("boundary not stored", boundary=iso(boundary), error=str(exc))
            await self._settle_logged()

    async def _settle_logged(self) -> None:
        """Settle; a store that cannot write (disk full) is logged and retried next boundary.

        Restarting the component would not help and would only hammer a full disk: the meter
        keeps its history, so every slot missed meanwhile is settled once space returns.
        """
        try:
            await self.settle()
        except StoreError as exc:
            self.log.error("settlement postponed: store cannot write", error=str(exc))

    async def _await_meter(self) -> None:
        """Give the meter time to join before judging any slot: a fresh start must not publish
        today's slots as missing only because the Wi-SUN link is still coming up."""
        if self.meter_ready is None:
            return
        deadline = self.clock.monotonic() + self.startup_grace_s
        while not self.meter_ready() and self.clock.monotonic() < deadline:
            await self.clock.sleep(1.0)

    async def read_boundary(self, at: datetime, attempts: int = 3) -> bool:
        """Poll EA/EB until the meter reports the boundary ``at``; the INF may also bring it."""
        for attempt in range(attempts):
            try:
                b = await self.meter.boundary()
            except DeviceError as exc:
                self.log.warning("boundary read failed", boundary=iso(at), error=str(exc))
                b = None
            if b is not None:
                self.accept(b, history=False)
                self._saw_meter_time(b.at)
                if b.at >= at:
                    await self._sample_devices(at)
                    return True
            if attempt + 1 < attempts:
                await self.clock.sleep(60)
        return False

    def accept(self, b: Boundary, history: bool) -> None:
        """Store a boundary reading (from a poll, the meter's INF, or history)."""
        at = b.at.astimezone(JST)
        if at.minute not in (0, 30) or at.second or at.microsecond:
            self.log.warning("boundary not on a half hour ignored", at=iso(at))
            return
        source = "history" if history else "boundary"
        self.store.put_boundary(iso(at), b.import_wh, b.export_wh, b.modulus_wh, source)

    async def on_meter_boundary(self, b: Boundary) -> None:
        """The meter's own INF of EA/EB: store it and settle at once."""
        self.accept(b, history=False)
        self._saw_meter_time(b.at)
        await self._sample_devices(b.at)
        await self.settle()

    async def _sample_devices(self, at: datetime) -> None:
        if self.device_counters is None:
            return
        key = f"devices.counters.{iso(at)}"
        if self.store.get_json(key) is not None:
            return
        try:
            counters = await self.device_counters()
        except DeviceError as exc:
            self.log.info("device counters unavailable", error=str(exc))
            return
        try:
            # Informational sub-metering: the first thing shed when the disk is nearly full.
            self.store.put_json(key, counters, critical=False)
        except DiskFull as exc:
            self.log.warning("device counters not stored", error=str(exc))

    # ------------------------------------------------------------------ time

    def _saw_meter_time(self, at: datetime) -> None:
        at = at.astimezone(JST)
        if self._meter_seen is None or at >= self._meter_seen[0]:
            self._meter_seen = (at, self.clock.monotonic())

    def now(self) -> datetime:
        """The time slots are judged by: the system clock, kept within what the meter says.

        The meter's fixed-time readings carry its own clock. The newest one, plus the monotonic
        time since we heard it, proves how late it is at least; one slot more is the latest it
        can be. So a system clock stepped backwards does not hold back settled slots, and
        one stepped forwards (or a board booted at 1970 and then synchronised) cannot declare a
        slot missing before the meter has even reached its end.
        """
        now = self.clock.now().astimezone(JST)
        if self._meter_seen is None:
            return now
        at, heard = self._meter_seen
        since = timedelta(seconds=max(0.0, self.clock.monotonic() - heard))
        bounded = min(max(now, at + since), at + SLOT + since)
        if bounded != now and not self._clock_warned:
            self._clock_warned = True
            self.log.warning(
                "system clock disagrees with the meter; settling by the meter's time",
                system=iso(now),
                meter_boundary=iso(at),
            )
        elif bounded == now:
            self._clock_warned = False
        return bounded

    async def _clock_known(self) -> bool:
        """False while neither the system clock nor the meter can say what time it is."""
        if self._meter_seen is not None or self.clock.now() >= CLOCK_FLOOR:
            return True
        try:
            b = await self.meter.boundary()
        except DeviceError as exc:
            self.log.warning("system clock not set and meter silent", error=str(exc))
            return False
        if b is None:
            return False
        self.accept(b, history=False)
        self._saw_meter_time(b.at)
        return True

    # ------------------------------------------------------------------ settling

    def epoch(self) -> datetime:
        """The first slot this gateway accounts for: today's midnight on its very first start."""
        raw = self.store.get_json(EPOCH_KEY)
        if isinstance(raw, str):
            return datetime.fromisoformat(raw)
        first = day_start(self.now().date())
        self.store.put_json(EPOCH_KEY, iso(first))
        return first

    def _known(self, start: datetime, end: datetime) -> dict[datetime, BoundaryPoint]:
        rows = self.store.boundaries(iso(start), iso(end))
        out: dict[datetime, BoundaryPoint] = {}
        for row in rows:
            at = datetime.fromisoformat(str(row["at"]))
            out[at] = BoundaryPoint(
                at,
                row["import_wh"],
                row["export_wh"],
                int(row["modulus_wh"]),
                from_history=row["source"] == "history",
            )
        return out

    def _window(self, now: datetime) -> datetime:
        oldest = day_start(now.date() - timedelta(days=self.backfill_days))
        return max(self.epoch(), oldest)

    def _published(self, slots: list[datetime]) -> dict[datetime, tuple[int, dict[str, Any]]]:
        out = {}
        for s in slots:
            found = self.store.latest_rev(iso(s))
            if found is not None:
                out[s] = found
        return out

    async def settle(self) -> list[dict[str, Any]]:
        """Publish every slot that can be measured or improved; fill gaps; declare missing ones."""
        async with self._lock:
            if not await self._clock_known():
                return []
            now = self.now()
            first = self._window(now)
            slots = slots_between(first, now)
            if not slots:
                return []
            published = self._published(slots)
            known = self._known(first, now + _INCLUSIVE)
            sources = {s: str(rec["source"]) for s, (_, rec) in published.items()}
            needed = boundaries_needed(sources, known, first, now)
            if needed:
                await self._fill(needed, now)
                known = self._known(first, now + _INCLUSIVE)
            out = []
            for s in slots:
                rec = self._settle_slot(s, known, published.get(s), now)
                if rec is not None:
                    out.append(rec)
            return out

    def _settle_slot(
        self,
        s: datetime,
        known: Mapping[datetime, BoundaryPoint],
        published: tuple[int, dict[str, Any]] | None,
        now: datetime,
    ) -> dict[str, Any] | None:
        start, end = known.get(s), known.get(s + SLOT)
        value = slot_value(start, end) if start and end else missing(s)
        if published is None:
            if value.source is Source.MISSING and now < s + SLOT + MISSING_GRACE:
                return None  # still time for the boundary or history to arrive
            return self._append(value.fields(), 1, s)
        rev, rec = published
        if improves(value, str(rec["source"]), rec.get("import_wh"), rec.get("export_wh")):
            return self._append(value.fields(), rev + 1, s)
        return None

    def _append(self, fields: dict[str, Any], rev: int, s: datetime) -> dict[str, Any]:
        fields = {"site": self.site, **fields, "rev": rev, "created_at": iso(self.now())}
        fields.update(self._device_energy(s))
        record = self.store.append_slot(fields)
        self.appended.append(record)
        self.log.info(
            "slot settled",
            slot=fields["slot_start"],
            rev=rev,
            source=fields["source"],
            import_wh=fields["import_wh"],
            export_wh=fields["export_wh"],
            seq=record.get("seq"),
        )
        if self.on_record is not None:
            self.on_record(record)
        return record

    def _device_energy(self, s: datetime) -> dict[str, int]:
        a = self.store.get_json(f"devices.counters.{iso(s)}")
        b = self.store.get_json(f"devices.counters.{iso(s + SLOT)}")
        if not isinstance(a, dict) or not isinstance(b, dict):
            return {}
        out: dict[str, int] = {}
        for key in ("pv_wh", "battery_charge_wh", "battery_discharge_wh"):
            if key == "pv_wh" and _inverters(a) != _inverters(b):
                continue  # sums over different inverters (the config changed): not comparable
            x, y = a.get(key), b.get(key)
            if isinstance(x, int) and isinstance(y, int) and y >= x:
                out[key] = y - x
        return out

    async def _fill(self, needed: list[datetime], now: datetime) -> None:
        plan = plan_history(needed, now, self.backfill_days)
        try:
            if plan.recent_end is not None:
                for b in await self.meter.history_recent(plan.recent_end, plan.recent_count):
                    self.accept(b, history=True)
            for day in plan.days:
                for b in await self.meter.history_day(day):
                    self.accept(b, history=True)
        except DeviceError as exc:
            self.log.warning("meter history unavailable", error=str(exc))


def _inverters(counters: dict[str, Any]) -> set[str]:
    by_device = counters.get("pv_by_device")
    return set(by_device) if isinstance(by_device, dict) else set()
