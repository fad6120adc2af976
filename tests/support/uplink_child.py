"""A gateway process reduced to store + uplink, for kill -9 tests.

Usage: python -m tests.support.uplink_child DB KEY PORT [APPEND]
Appends APPEND more slot records (one every few ms) while draining, so a kill can land in the
middle of an append, a publish or an ack.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path

from gateway.clock import JST, SystemClock
from gateway.config import MqttConfig
from gateway.provenance import load_private
from gateway.slots import iso
from gateway.store import Store
from gateway.uplink import Uplink

SITE = "sg-0001"
START = datetime(2026, 10, 1, tzinfo=JST)


async def main(db: Path, key: Path, port: int, append: int) -> None:
    store = Store(db, SITE, load_private(key))
    cfg = MqttConfig(
        url=f"mqtt://127.0.0.1:{port}",
        client_id=SITE,
        keepalive_s=5,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        resend_per_s=100_000,
        ack_timeout_s=2,
    )
    uplink = Uplink(cfg, SITE, store, SystemClock())
    task = asyncio.create_task(uplink.run())
    print("ready", flush=True)
    for _ in range(append):
        n = store.max_seq()
        store.append_slot(
            {
                "site": SITE,
                "slot_start": iso(START + timedelta(minutes=30 * n)),
                "import_wh": n,
                "export_wh": 0,
                "source": "meter_boundary",
                "rev": 1,
            }
        )
        uplink.notify()
        await asyncio.sleep(0.002)
    await task


if __name__ == "__main__":
    append = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), append))
