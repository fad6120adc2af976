"""A gateway process reduced to store + uplink, for kill -9 tests.

Usage: python -m tests.support.uplink_child DB KEY PORT [APPEND]
Appends APPEND more slot records (one every few ms) while draining, so a kill can land in the
middle of an append, a publish or an ack.

``python -m tests.support.uplink_child --zygote DB KEY PORT`` imports everything once and then
forks one such gateway per line read on stdin, so hundreds of kill -9 rounds do not each pay the
interpreter's start-up. A line is ``APPEND [POINT COUNT]``: with a POINT the child kills itself
with SIGKILL at the COUNT-th time it reaches that point (see :data:`POINTS`), so the kills land
exactly between the steps of a delivery, not only where a random delay happens to fall. The
zygote answers ``pid N`` when it forks and ``exit N STATUS`` once the child is gone; the child
writes ``ready`` once its store is open and ``seq N`` after each append has committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.clock import JST, SystemClock
from gateway.config import MqttConfig
from gateway.provenance import load_private
from gateway.slots import iso
from gateway.store import Store
from gateway.uplink import Uplink

SITE = "sg-0001"
#: Far before the records the tests prepare (from 2026-11-26): 1,000 kills append ~10,000 slots.
START = datetime(2025, 1, 1, tzinfo=JST)

#: Where a child may kill itself: after an append committed (not yet published); after the
#: broker's PUBACK of a record (the backend may not have it yet); on the backend's ack before it
#: is written; after the ack is committed to the store.
POINTS = ("appended", "published", "ack_received", "ack_stored")


class KillSwitch:
    def __init__(self, point: str | None, count: int) -> None:
        self.point = point
        self.left = count

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.left -= 1
        if self.left <= 0:
            os.kill(os.getpid(), signal.SIGKILL)


class FaultyStore(Store):
    """The real store, with a kill point right after an ack has been committed."""

    kill: KillSwitch = KillSwitch(None, 0)

    def ack_upto(self, seq: int, at: Any = None) -> int:
        newly = super().ack_upto(seq, at)
        if newly:
            self.kill.reached("ack_stored")
        return newly


class FaultyUplink(Uplink):
    """The real uplink, with kill points after a PUBACK and on a backend ack."""

    kill: KillSwitch = KillSwitch(None, 0)

    async def _publish_record(self, client: Any, seq: int, record: dict[str, Any]) -> None:
        await super()._publish_record(client, seq, record)
        self.kill.reached("published")

    def _handle_ack(self, data: bytes) -> None:
        self.kill.reached("ack_received")
        super()._handle_ack(data)


def say(line: str) -> None:
    """One write per line: a kill can then never leave half a line in the pipe."""
    os.write(1, line.encode() + b"\n")


async def main(db: Path, key: Path, port: int, append: int, kill: KillSwitch) -> None:
    FaultyStore.kill = FaultyUplink.kill = kill
    store = FaultyStore(db, SITE, load_private(key))
    cfg = MqttConfig(
        url=f"mqtt://127.0.0.1:{port}",
        client_id=SITE,
        keepalive_s=5,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        resend_per_s=100_000,
        ack_timeout_s=2,
    )
    uplink = FaultyUplink(cfg, SITE, store, SystemClock())
    task = asyncio.create_task(uplink.run())
    say("ready")
    for _ in range(append):
        n = store.max_seq()
        record = store.append_slot(
            {
                "site": SITE,
                "slot_start": iso(START + timedelta(minutes=30 * n)),
                "import_wh": n,
                "export_wh": 0,
                "source": "meter_boundary",
                "rev": 1,
            }
        )
        say(f"seq {record['seq']}")
        kill.reached("appended")
        uplink.notify()
        await asyncio.sleep(0.002)
    await task


def zygote(db: Path, key: Path, port: int) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        append = int(words[0])
        kill = KillSwitch(words[1], int(words[2])) if len(words) > 2 else KillSwitch(None, 0)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(main(db, key, port, append, kill))
            finally:
                os._exit(1)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        append = int(sys.argv[4]) if len(sys.argv) > 4 else 0
        asyncio.run(
            main(
                Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), append, KillSwitch(None, 0)
            )
        )
