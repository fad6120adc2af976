"""Disk full: a small tmpfs holds the database, and a filler file takes every free block.

Pass criterion: no exception escapes and no component restarts; low-priority writes (device
counter samples) and info logs are shed first; settlement records still get written from the
store's reserve; the ``disk_full`` alarm is raised; when space returns the reserve is taken back,
the alarm clears and everything recovers on its own, with an intact, gapless chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import JST, ManualClock
from gateway.health import HealthMonitor
from gateway.logs import logs_shed, shed_logs
from gateway.provenance import init_key, load_private
from gateway.settlement import Settlement
from gateway.slots import iso
from gateway.store import DiskFull, Store
from tests.gateway.test_settlement import ScriptedMeter

SITE = "sg-0001"
DAY = datetime(2026, 11, 27, tzinfo=JST)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> Path:
    """Take every free block of the file system; returns the filler to delete later."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 512, 1):  # big chunks, then the last partial blocks
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def record(n: int) -> dict[str, Any]:
    return {
        "site": SITE,
        "slot_start": iso(DAY + timedelta(minutes=30 * n)),
        "import_wh": 400 + n,
        "export_wh": 150,
        "source": "meter_boundary",
        "rev": 1,
    }


def test_disk_full_sheds_first_and_recovers_by_itself(small_disk: Path, tmp_path: Path) -> None:
    init_key(tmp_path / "k.pem")
    store = Store(
        small_disk / "chisan.db", SITE, load_private(tmp_path / "k.pem"), reserve_bytes=512 * 1024
    )
    assert store.reserve_path.stat().st_size == 512 * 1024 and not store.low_space
    for n in range(10):
        store.append_slot(record(n))
    clock = ManualClock(DAY + timedelta(hours=6))
    alarms: list[dict[str, Any]] = []

    def queue_alarm(alarm: dict[str, Any]) -> None:
        store.queue_alarm(alarm)
        alarms.append(alarm)

    health = HealthMonitor(
        clock,
        queue_alarm,
        store.path,
        disk_min_free=0.0,
        check_clock=lambda: True,
        store_reserve=store.restore_reserve,
    )
    logging.getLogger().addHandler(handler := logging.NullHandler())
    try:
        health.check()
        assert alarms == [] and not logs_shed()

        filler = fill(small_disk)
        # Low-priority data is refused outright, without touching the reserve.
        with pytest.raises(DiskFull, match="shed"):
            store.put_json("devices.counters.x", {"pv_wh": 1}, critical=False)
        assert store.reserve_path.exists()
        # Settlement data takes the reserve.
        for n in range(10, 58):  # a whole day more
            store.append_slot(record(n))
        assert store.low_space and not store.reserve_path.exists()
        health.check()
        assert [(a["kind"], a["active"]) for a in alarms] == [("disk_full", True)]
        assert logs_shed()
        with pytest.raises(DiskFull):
            store.put_json("devices.counters.y", {"pv_wh": 1}, critical=False)
        # Truly exhausted: a clear error, nothing half-written.
        with pytest.raises(DiskFull):
            for n in range(58, 100_000):
                store.append_slot(record(n))
        stored = store.max_seq()
        assert store.integrity_check() == "ok"

        # A settlement component on the full disk logs and carries on (no crash, no restart).
        meter = ScriptedMeter(clock, origin=DAY)
        settlement = Settlement(SITE, meter, store, clock, backfill_days=1)
        asyncio.run(settlement._settle_logged())  # would raise if the error escaped
        assert store.max_seq() == stored

        filler.unlink()  # space returns
        health.check()
        assert [(a["kind"], a["active"]) for a in alarms][-1] == ("disk_full", False)
        assert not store.low_space and store.reserve_path.stat().st_size == 512 * 1024
        assert not logs_shed()
        store.put_json("devices.counters.x", {"pv_wh": 1}, critical=False)
        nxt = store.append_slot(record(stored))
        assert nxt["seq"] == stored + 1
        assert store.integrity_check() == "ok"
        result = store.verify()
        assert result.ok and result.checked == stored + 1, result.reason
        assert len(store.pending_alarms()) == 2
    finally:
        logging.getLogger().removeHandler(handler)
        shed_logs(False)
        store.close()


def test_a_full_disk_at_start_up_is_not_fatal(small_disk: Path, tmp_path: Path) -> None:
    """The daemon restarted on a full disk opens its store by giving up the reserve."""
    init_key(tmp_path / "k.pem")
    key = load_private(tmp_path / "k.pem")
    Store(small_disk / "chisan.db", SITE, key, reserve_bytes=512 * 1024).close()
    filler = fill(small_disk)
    with Store(small_disk / "chisan.db", SITE, key, reserve_bytes=512 * 1024) as store:
        assert store.low_space and not store.reserve_path.exists()
        store.append_slot(record(0))
        with pytest.raises(DiskFull):
            store.put_json("devices.counters.x", {}, critical=False)
        filler.unlink()
        assert store.restore_reserve() and not store.low_space
        assert store.integrity_check() == "ok" and store.verify().ok
