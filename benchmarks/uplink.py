"""Drain 30 days of slot records (1,440) end-to-end through a real mosquitto, acked by a backend.

Measures the time from starting the uplink with a full backlog until the backend has stored and
acknowledged every record and the store shows an empty outbox. Run:

    .venv/bin/python benchmarks/uplink.py [--records 1440] [--rate 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import Row, add_json_option, emit  # noqa: E402
from gateway.clock import JST, SystemClock  # noqa: E402
from gateway.config import MqttConfig  # noqa: E402
from gateway.provenance import init_key, load_private  # noqa: E402
from gateway.slots import iso  # noqa: E402
from gateway.store import Store  # noqa: E402
from gateway.uplink import Uplink  # noqa: E402
from tests.support.backend import FakeBackend  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

SITE = "bench-0001"


async def run(records: int, rate: float, tmp: Path) -> tuple[float, float, int]:
    broker = Mosquitto(tmp / "broker")
    broker.start()
    try:
        init_key(tmp / "site.pem")
        store = Store(tmp / "chisan.db", SITE, load_private(tmp / "site.pem"))
        t_fill = time.perf_counter()
        start = datetime(2026, 10, 28, tzinfo=JST)
        for i in range(records):
            store.append_slot(
                {
                    "site": SITE,
                    "slot_start": iso(start + timedelta(minutes=30 * i)),
                    "import_wh": 100 + i % 400,
                    "export_wh": (i * 37) % 900,
                    "source": "meter_boundary",
                    "rev": 1,
                }
            )
        fill = time.perf_counter() - t_fill
        cfg = MqttConfig(
            url=broker.url,
            client_id=SITE,
            resend_per_s=rate,
            ack_timeout_s=30,
            reconnect_min_s=0.05,
            reconnect_max_s=0.5,
        )
        uplink = Uplink(cfg, SITE, store, SystemClock())
        async with FakeBackend(broker.port) as backend:
            t0 = time.perf_counter()
            task = asyncio.create_task(uplink.run())
            await backend.wait_for(lambda: store.backlog_count() == 0, timeout=600)
            drain = time.perf_counter() - t0
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert len(backend.records) == records, len(backend.records)
            assert not backend.invalid, backend.invalid[:3]
        return drain, fill, uplink.stats.resent
    finally:
        broker.stop()


def main() -> None:
    from gateway import logs

    logs.configure("warning", "console")
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1440)
    parser.add_argument("--rate", type=float, default=10_000.0, help="mqtt.resend_per_s")
    add_json_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        drain, fill, resent = asyncio.run(run(args.records, args.rate, Path(tmp)))
    print(
        f"store: appended {args.records} signed records in {fill:.2f} s "
        f"({args.records / fill:,.0f} records/s, each fsync'ed)"
    )
    print(
        f"uplink: drained {args.records} records end-to-end acked in {drain:.2f} s "
        f"({args.records / drain:,.0f} records/s; re-sent {resent}; rate limit {args.rate:g}/s)"
    )
    emit(
        args.json_out,
        [
            Row("uplink", f"drain {args.records} slot records, acked", drain, "s"),
            Row("uplink", "drain rate", args.records / drain, "records/s"),
            Row("store", "signed fsync'ed appends", args.records / fill, "records/s"),
        ],
    )


if __name__ == "__main__":
    main()
