"""Upgrade with a backlog: a schema-v1 database holding records the backend never acknowledged.

Pass criterion: the daemon's store migrates it to the current schema, the chain still verifies,
and the uplink drains every unacknowledged record to the backend through a real broker, oldest
first, with nothing lost and nothing already acknowledged sent again. 2,000 records (500 of them
delivered before the upgrade) in CI, 20,000 with ``CHISAN_SLOW=1``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway import provenance, store
from gateway.clock import SystemClock
from gateway.uplink import Uplink
from tests.gateway.test_store import KEY, SITE, fields
from tests.integration.test_uplink import mqtt_cfg, running
from tests.support.backend import FakeBackend
from tests.support.faults import size
from tests.support.mosquitto import Mosquitto


def write_v1(db: Path, total: int, delivered: int) -> list[dict[str, object]]:
    """A database as schema version 1 wrote it (no attempts/last_sent_at/acked_at columns)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    store.migrate(conn, target=1)
    prev = provenance.GENESIS_HASH
    records = []
    conn.execute("BEGIN")
    for seq in range(1, total + 1):
        record = provenance.seal(fields(seq), prev, seq, KEY)
        prev = record["hash"]
        records.append(record)
        conn.execute(
            "INSERT INTO slot_record (site, seq, slot_start, rev, hash, json, delivered) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                SITE,
                seq,
                record["slot_start"],
                1,
                record["hash"],
                provenance.canonical_json(record).decode(),
                int(seq <= delivered),
            ),
        )
    conn.execute(
        "INSERT INTO kv VALUES (?, ?)",
        (f"store.public_key.{SITE}", '"' + provenance.public_key_b64(KEY) + '"'),
    )
    conn.execute("COMMIT")
    assert store.schema_version(conn) == 1
    conn.close()
    return records


@pytest.mark.timeout(900)
async def test_v1_backlog_drains_after_upgrade(tmp_path: Path, mosquitto: Mosquitto) -> None:
    total, delivered = size(2000, 20000), 500
    db = tmp_path / "chisan.db"
    records = write_v1(db, total, delivered)
    st = store.Store(db, SITE, KEY)  # what the daemon does at start: migrate
    assert st.schema_version == store.SCHEMA_VERSION
    assert st.integrity_check() == "ok"
    assert st.backlog_count() == total - delivered
    result = st.verify()
    assert result.ok and result.checked == total, result.reason
    uplink = Uplink(mqtt_cfg(mosquitto.port), SITE, st, SystemClock())
    async with FakeBackend(mosquitto.port) as backend:
        for r in records[:delivered]:  # the backend already holds what it acknowledged
            backend.by_seq[int(str(r["seq"]))] = r
            backend.records[(SITE, str(r["slot_start"]), 1)] = r
        backend.acked_upto = delivered
        async with running(uplink):
            await backend.wait_for(lambda: st.backlog_count() == 0, timeout=size(100, 800))
    assert backend.acked_upto == total
    assert sorted(backend.by_seq) == list(range(1, total + 1))
    sent = [doc["seq"] for sub, doc in backend.messages if sub == "slot"]
    assert min(sent) == delivered + 1, "a record acknowledged before the upgrade was re-sent"
    firsts = list(dict.fromkeys(sent))
    assert firsts == sorted(firsts), "the backlog did not drain oldest first"
    assert backend.conflicts == [] and backend.invalid == []
    assert all(backend.by_seq[s] == r for s, r in enumerate(records, start=1))
    st.close()
