"""The store: durable, chained slot records, the outbox, and the small tables around them."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import provenance, store
from gateway.clock import JST, ManualClock
from gateway.store import (
    SCHEMA_VERSION,
    DiskFull,
    KeyMismatch,
    RevisionError,
    SchemaTooNew,
    Store,
    StoreError,
    UnknownSeq,
)
from tests.conftest import REPO

SITE = "sg-0001"
SEED = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
T0 = datetime(2026, 11, 27, 0, 0, tzinfo=JST)


def slot(n: int, day: datetime = T0) -> str:
    return (day + timedelta(minutes=30 * n)).isoformat()


def fields(n: int = 0, rev: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "site": SITE,
        "slot_start": slot(n),
        "rev": rev,
        "source": "meter_boundary",
        "import_wh": 100 + n,
        "export_wh": 0,
        **extra,
    }


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "var" / "chisan.db"


@pytest.fixture
def st(db: Path) -> Iterator[Store]:
    with Store(db, SITE, KEY) as s:
        yield s


# -------------------------------------------------------------------------------- opening


def test_new_database_is_private_wal_and_fully_synchronous(st: Store, db: Path) -> None:
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert st._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert st._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert st.schema_version == SCHEMA_VERSION == len(store.MIGRATIONS)
    assert st.integrity_check() == "ok"


def test_database_newer_than_the_code_is_refused(db: Path) -> None:
    Store(db, SITE).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match=r"schema version 3 is newer .* \(2\): upgrade chisan"):
        Store(db, SITE)
    with pytest.raises(SchemaTooNew):
        Store.open_readonly(db, SITE)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a database"):
        Store(path, SITE)


def test_a_failed_migration_step_leaves_the_previous_version(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(db, SITE).close()
    broken = store.Migration(3, "broken", ("CREATE TABLE half (a)", "NOT SQL AT ALL"))
    monkeypatch.setattr(store, "MIGRATIONS", (*store.MIGRATIONS, broken))
    monkeypatch.setattr(store, "SCHEMA_VERSION", 3)
    conn = sqlite3.connect(db, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        store.migrate(conn, target=3)
    assert store.schema_version(conn) == 2
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half" not in tables
    conn.close()


def test_migration_from_v1_keeps_the_backlog_undelivered(db: Path) -> None:
    """A gateway upgraded with records still waiting for the backend loses none of them."""
    db.parent.mkdir()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    store.migrate(conn, target=1)
    assert store.schema_version(conn) == 1
    prev = provenance.GENESIS_HASH
    for seq in range(1, 11):
        record = provenance.seal(fields(seq), prev, seq, KEY)
        prev = record["hash"]
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
                1 if seq <= 4 else 0,
            ),
        )
    conn.execute("INSERT INTO boundary VALUES (?, 1, 2, 100000, 'boundary', ?)", (slot(0), slot(0)))
    conn.execute('INSERT INTO alarm (json) VALUES (\'{"kind":"meter_lost"}\')')
    conn.execute("INSERT INTO kv VALUES ('broute.pan', '{\"channel\":33}')")
    conn.close()

    with Store(db, SITE, KEY) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.backlog_count() == 6
        entries = s.outbox(100)
        assert [e.seq for e in entries] == [5, 6, 7, 8, 9, 10]
        assert all(e.attempts == 0 and e.last_sent_at is None for e in entries)
        assert entries[0].record["import_wh"] == 105
        assert s.verify().ok and s.verify().checked == 10
        assert s.boundary(slot(0)) is not None
        assert s.pending_alarms()[0]["kind"] == "meter_lost"
        assert s.get_json("broute.pan") == {"channel": 33}
        record = s.append_slot(fields(20))
        assert record["seq"] == 11 and record["prev_hash"] == prev
        assert s.ack_upto(8) == 4
        assert s.verify().checked == 11


def test_space_reserve_goes_to_settlement_data_only(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The free-space probe is replaced: the real thing is in tests/fault/test_disk_full.py."""
    s = Store(db, SITE, KEY, reserve_bytes=64 * 1024)
    assert s.reserve_path.stat().st_size == 64 * 1024 and not s.low_space
    free = {"bytes": 1000}
    monkeypatch.setattr(s, "free_bytes", lambda: free["bytes"])
    with pytest.raises(DiskFull, match="shed"):
        s.put_json("devices.counters.x", {}, critical=False)
    assert s.reserve_path.exists() and not s.low_space  # shedding keeps the reserve
    s.append_slot(fields(0))
    assert s.low_space and not s.reserve_path.exists()
    with pytest.raises(DiskFull):
        s.put_json("devices.counters.x", {}, critical=False)
    assert not s.restore_reserve()
    free["bytes"] = 100 * 1024 * 1024
    assert s.restore_reserve() and not s.low_space
    assert s.reserve_path.stat().st_size == 64 * 1024
    s.put_json("devices.counters.x", {}, critical=False)
    assert s.get_json("devices.counters.x") == {}
    s.close()


# ----------------------------------------------------------------------------- slot records


def test_append_assigns_gapless_seq_and_chains(st: Store) -> None:
    first = st.append_slot(fields(0, created_at="2026-11-27T00:30:20.123456+09:00"))
    second = st.append_slot(fields(1, pv_wh=300, battery_charge_wh=0))
    assert first["seq"] == 1 and first["prev_hash"] == provenance.GENESIS_HASH
    assert second["seq"] == 2 and second["prev_hash"] == first["hash"]
    assert second["pv_wh"] == 300
    assert provenance.record_hash(second) == second["hash"]
    assert st.records_by_seq(1, 2) == [first, second]
    assert st.max_seq() == 2 and st.backlog_count() == 2
    assert st.verify().ok


def test_records_meet_the_published_slot_contract(st: Store) -> None:
    schema_file = REPO / "docs" / "schemas" / "slot.schema.json"
    if not schema_file.exists():
        pytest.skip("no slot schema in this tree")
    import jsonschema

    schema = json.loads(schema_file.read_text())
    records = [
        st.append_slot(fields(0, created_at="2026-11-27T00:30:20+09:00", pv_wh=3)),
        st.append_slot(fields(1, source="missing", import_wh=None, export_wh=None)),
        st.append_slot(fields(1, rev=2, battery_charge_wh=None, battery_discharge_wh=0)),
    ]
    for record in records:
        jsonschema.validate(record, schema)


def test_append_accepts_missing_and_history_records(st: Store) -> None:
    st.append_slot(fields(0, source="missing", import_wh=None, export_wh=None))
    st.append_slot(fields(0, rev=2, source="meter_history", import_wh=None, export_wh=12))
    assert st.latest_rev(slot(0)) is not None
    rev, record = st.latest_rev(slot(0))  # type: ignore[misc]
    assert rev == 2 and record["source"] == "meter_history" and record["export_wh"] == 12


def test_retrying_an_append_returns_the_stored_record(st: Store) -> None:
    first = st.append_slot(fields(0))
    assert st.append_slot(fields(0)) == first
    assert st.max_seq() == 1


def test_revisions(st: Store) -> None:
    st.append_slot(fields(0, rev=1))
    st.append_slot(fields(1, rev=1))
    newer = st.append_slot(fields(0, rev=3, import_wh=7))
    assert newer["seq"] == 3
    assert st.latest_rev(slot(0)) == (3, newer)
    assert st.latest_rev(datetime.fromisoformat(slot(0))) == (3, newer)
    assert st.latest_rev(slot(5)) is None
    with pytest.raises(RevisionError, match="already stored with different fields"):
        st.append_slot(fields(0, rev=3, import_wh=8))
    with pytest.raises(RevisionError, match="rev 2 is older than the stored rev 3"):
        st.append_slot(fields(0, rev=2, import_wh=8))
    assert st.max_seq() == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slot_start": "2026-11-27T00:15:00+09:00"}, "not on a 30-minute boundary"),
        ({"slot_start": "2026-11-26T15:00:00+00:00"}, "must look like"),
        ({"slot_start": "2026-11-27T00:00:00"}, "without a UTC offset"),
        ({"slot_start": "2026-11-27T00:00+09:00"}, "must look like"),
        ({"slot_start": "yesterday"}, "not an ISO 8601 time"),
        ({"source": "guess"}, "source must be one of"),
        ({"rev": True}, "rev must be"),
        ({"rev": 0}, "rev must be a positive integer"),
        ({"import_wh": -5}, "import_wh must be a non-negative integer"),
        ({"pv_wh": 1.5}, "pv_wh must be"),
        ({"source": "missing"}, "'missing' record has import_wh and export_wh None"),
        ({"import_wh": None, "export_wh": None}, "needs import_wh or export_wh"),
        ({"site": "sg-0002"}, "record for site 'sg-0002'"),
        ({"seq": 4}, "must not contain"),
        ({"hash": "x"}, "must not contain"),
        ({"created_at": "soon"}, "created_at"),
        ({"created_at": T0}, "created_at must be an ISO 8601 string"),
        ({"note": "hi", "extra": 1}, "unknown fields \\['extra', 'note'\\]"),
    ],
)
def test_append_refuses_records_that_cannot_be_settled(
    st: Store, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        st.append_slot({**fields(0), **change})
    assert st.max_seq() == 0


def test_append_refuses_missing_fields(st: Store) -> None:
    body = fields(0)
    del body["export_wh"]
    with pytest.raises(ValueError, match="lack \\['export_wh'\\]"):
        st.append_slot(body)


def test_append_needs_a_key(db: Path) -> None:
    with Store(db, SITE) as s:
        with pytest.raises(StoreError, match="no signing key"):
            s.append_slot(fields(0))
        record = s.append_slot(fields(0), key=KEY)
        assert record["seq"] == 1


def test_the_store_refuses_a_second_signing_key(db: Path) -> None:
    other = Ed25519PrivateKey.generate()
    Store(db, SITE, other).close()  # no records yet: a new key may replace it
    with Store(db, SITE, KEY) as s:
        s.append_slot(fields(0))
        assert s.public_key_b64() == provenance.public_key_b64(KEY)
        with pytest.raises(KeyMismatch):
            s.append_slot(fields(1), key=other)
    with pytest.raises(KeyMismatch, match="restore the original site key"):
        Store(db, SITE, other)


def test_slot_records_by_jst_date(st: Store) -> None:
    day2 = T0 + timedelta(days=1)
    st.append_slot(fields(47))  # 23:30 on day 1
    st.append_slot({**fields(0), "slot_start": slot(0, day2)})  # 00:00 on day 2
    st.append_slot(fields(3))
    st.append_slot(fields(3, rev=2, import_wh=1))
    st.append_slot({**fields(0), "slot_start": slot(0, day2 + timedelta(days=1))})
    day1 = st.slot_records(date(2026, 11, 27), date(2026, 11, 27))
    assert [(r["seq"], r["slot_start"][11:16], r["rev"]) for r in day1] == [
        (1, "23:30", 1),
        (3, "01:30", 1),
        (4, "01:30", 2),
    ]
    assert [r["seq"] for r in st.slot_records("2026-11-27", "2026-11-28")] == [1, 2, 3, 4]
    assert st.slot_records("2026-11-30", "2026-12-31") == []
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        st.slot_records("27/11/2026", "2026-11-28")


def test_records_by_seq(st: Store) -> None:
    for n in range(6):
        st.append_slot(fields(n))
    assert [r["seq"] for r in st.records_by_seq(2, 4)] == [2, 3, 4]
    assert st.records_by_seq(7, 9) == []


async def test_concurrent_appends_from_threads_stay_gapless(st: Store) -> None:
    await asyncio.gather(*(asyncio.to_thread(st.append_slot, fields(n)) for n in range(40)))
    assert [r["seq"] for r in st.records_by_seq(1, 100)] == list(range(1, 41))
    assert st.verify().ok


# ------------------------------------------------------------------------------------ outbox


def test_outbox_oldest_first_with_attempts(st: Store) -> None:
    assert st.max_seq() == 0 and st.undelivered() == []
    for n in range(5):
        st.append_slot(fields(n))
    assert [r["seq"] for r in st.undelivered(3)] == [1, 2, 3]
    assert st.mark_sent([1, 2], "2026-11-27T10:00:00+09:00") == 2
    assert st.mark_sent([2], datetime(2026, 11, 27, 10, 1, tzinfo=JST)) == 1
    entries = {e.seq: e for e in st.outbox()}
    assert entries[1].attempts == 1 and entries[2].attempts == 2 and entries[3].attempts == 0
    assert entries[2].last_sent_at == "2026-11-27T10:01:00+09:00"


def test_ack_upto(st: Store) -> None:
    for n in range(5):
        st.append_slot(fields(n))
    assert st.ack_upto(3, "2026-11-27T10:00:00+09:00") == 3
    assert st.ack_upto(3) == 0
    assert st.ack_upto(2) == 0
    assert st.ack_upto(0) == 0
    assert [r["seq"] for r in st.undelivered()] == [4, 5]
    assert st.backlog_count() == 2
    assert st.mark_sent([1, 4], "2026-11-27T10:00:00+09:00") == 1, "delivered ones are not sent"
    with pytest.raises(UnknownSeq) as err:
        st.ack_upto(6)
    assert (err.value.seq, err.value.max_seq) == (6, 5)
    assert str(err.value) == "ack for unknown seq 6 (highest stored seq is 5)"
    assert st.backlog_count() == 2, "a rejected ack changes nothing"
    assert st.ack_upto(5) == 2 and st.backlog_count() == 0


def test_ack_of_single_records(st: Store) -> None:
    for n in range(5):
        st.append_slot(fields(n))
    assert st.ack([2, 4]) == 2
    assert st.ack([2]) == 0
    assert [r["seq"] for r in st.undelivered()] == [1, 3, 5]
    with pytest.raises(UnknownSeq):
        st.ack([1, 9])
    assert st.backlog_count() == 3
    with pytest.raises(UnknownSeq):
        Store(st.path, "sg-0002").ack_upto(1)  # another site has no records


# -------------------------------------------------------------------------------- boundaries


def put(st: Store, n: int, imp: int | None, exp: int | None, source: str = "boundary") -> Any:
    return st.put_boundary(slot(n), imp, exp, 1_000_000, source, "2026-11-27T10:00:00+09:00")


def test_boundary_first_reading_wins(st: Store) -> None:
    first = put(st, 0, 500, 20)
    assert first.inserted and not first.disagrees
    same = put(st, 0, 500, 20, "history")
    assert not same.inserted and not same.filled and not same.disagrees
    assert same.stored["source"] == "boundary"
    other = put(st, 0, 501, 20, "history")
    assert other.disagrees and not other.inserted
    assert (
        st.boundary(slot(0))
        == first.stored
        == {
            "at": "2026-11-27T00:00:00+09:00",
            "import_wh": 500,
            "export_wh": 20,
            "modulus_wh": 1_000_000,
            "source": "boundary",
            "received_at": "2026-11-27T10:00:00+09:00",
        }
    )
    assert st.put_boundary(slot(0), 500, 20, 100_000, "history").disagrees


def test_boundary_holes_are_filled_not_overwritten(st: Store) -> None:
    put(st, 1, None, 30)
    filled = put(st, 1, 700, 30, "history")
    assert filled.filled and not filled.disagrees
    assert st.boundary(slot(1)) == {**filled.stored, "import_wh": 700, "source": "history"}
    assert put(st, 1, 700, 31).disagrees


def test_boundaries_range_and_received_at_from_clock(db: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 12, 0, 5, tzinfo=JST))
    with Store(db, SITE, KEY, clock=clock) as s:
        for n in range(4):
            s.put_boundary(datetime.fromisoformat(slot(n)), n, 0, 1000, "boundary")
        got = s.boundaries(slot(1), "2026-11-27T01:30:00.5+09:00")
        assert [b["at"] for b in got] == [slot(1), slot(2), slot(3)]
        assert [b["at"] for b in s.boundaries(slot(1), slot(3))] == [slot(1), slot(2)]
        assert got[0]["received_at"] == "2026-11-27T12:00:05+09:00"
        assert s.boundary(slot(9)) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((slot(0), 10, 0, 0, "boundary"), "modulus_wh"),
        ((slot(0), 1000, 0, 1000, "boundary"), "import_wh must be an integer in"),
        ((slot(0), 1, -1, 1000, "boundary"), "export_wh"),
        ((slot(0), 1, 1, 1000, "meter"), "source"),
        (("2026-11-27T00:00:00.5+09:00", 1, 1, 1000, "boundary"), "whole second"),
    ],
)
def test_boundary_validation(st: Store, args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        st.put_boundary(*args)


# ---------------------------------------------------------------------- kv, alarms, commands


def test_json_values(st: Store) -> None:
    assert st.get_json("broute.pan") is None
    assert st.get_json("broute.pan", {}) == {}
    pan = {"channel": 33, "pan_id": "8A1C", "mac": "001D129012345678"}
    st.put_json("broute.pan", pan)
    assert st.get_json("broute.pan") == pan
    st.put_json("broute.pan", {"channel": 59})
    assert st.get_json("broute.pan") == {"channel": 59}
    assert st.delete_json("broute.pan") and not st.delete_json("broute.pan")
    st.put_json("list", [1, "二", None])
    assert st.get_json("list") == [1, "二", None]


def test_alarms_survive_restart_and_ids_are_never_reused(db: Path) -> None:
    with Store(db, SITE) as s:
        a = s.queue_alarm({"kind": "failsafe", "at": "2026-11-27T10:00:00+09:00"})
        b = s.queue_alarm({"kind": "meter_lost"}, at="2026-11-27T10:00:01+09:00")
        with pytest.raises(ValueError, match="assigned by the store"):
            s.queue_alarm({"id": 5})
    with Store(db, SITE) as s:
        pending = s.pending_alarms()
        assert pending == [
            {"kind": "failsafe", "at": "2026-11-27T10:00:00+09:00", "id": a},
            {"kind": "meter_lost", "id": b},
        ]
        assert s.alarm_sent(b) and not s.alarm_sent(b)
        c = s.queue_alarm({"kind": "again"})
        assert c > b, "an id once published is never given to another alarm"
        assert [p["id"] for p in s.pending_alarms()] == [a, c]


def test_commands(st: Store) -> None:
    cmd = {"kind": "down", "setpoint_w": -2000}
    first = st.put_command("c-1", 1, cmd, "received", "2026-11-27T10:00:00+09:00")
    assert st.get_command("c-1") == first
    assert first.received_at == first.updated_at == "2026-11-27T10:00:00+09:00"
    ack = {"state": "scheduled", "start": "2026-11-27T11:00:00+09:00"}
    st.put_command("c-1", 1, cmd, "scheduled", "2026-11-27T10:00:02+09:00", last_ack=ack)
    got = st.get_command("c-1")
    assert got is not None
    assert (got.state, got.last_ack, got.received_at) == ("scheduled", ack, first.received_at)
    assert got.updated_at == "2026-11-27T10:00:02+09:00"
    st.put_command("c-1", 2, {"kind": "cancel"}, "cancelled", "2026-11-27T10:05:00+09:00")
    got = st.get_command("c-1")
    assert got is not None and got.rev == 2 and got.last_ack is None
    assert got.received_at == "2026-11-27T10:05:00+09:00"
    with pytest.raises(RevisionError, match="rev 1 is older than 2"):
        st.put_command("c-1", 1, cmd, "received", "2026-11-27T10:06:00+09:00")
    st.put_command("c-2", 1, cmd, "started", "2026-11-27T10:07:00+09:00")
    assert [c.id for c in st.commands()] == ["c-1", "c-2"]
    assert [c.id for c in st.commands({"started", "scheduled"})] == ["c-2"]
    assert st.get_command("nope") is None


def test_nonces_detect_replays_and_are_pruned(st: Store) -> None:
    assert st.remember_nonce("n1", "2026-11-27T10:00:00+09:00")
    assert not st.remember_nonce("n1", "2026-11-27T10:05:00+09:00")
    assert st.remember_nonce("n2", "2026-11-27T10:06:00+09:00")
    # a day later n1 is pruned (the issued-at window rejects such an old command anyway)
    assert st.remember_nonce("n1", "2026-11-28T10:00:01+09:00")
    assert not st.remember_nonce("n2", "2026-11-28T10:00:02+09:00")
    assert st.remember_nonce("n2", "2026-11-28T10:00:03+09:00", keep_s=60)
    assert st.prune_nonces("2026-11-29T00:00:00+09:00") == 2


def test_override(db: Path) -> None:
    with Store(db, SITE) as s:
        assert s.get_override() is None
        s.put_override({"mode": "standby", "until": "2026-11-27T18:00:00+09:00"}, T0)
        s.put_override({"mode": "auto", "until": "2026-11-27T19:00:00+09:00"}, T0)
    with Store(db, SITE) as s:
        assert s.get_override() == {"mode": "auto", "until": "2026-11-27T19:00:00+09:00"}
        assert s.clear_override() and not s.clear_override()
        assert s.get_override() is None


# ---------------------------------------------------------------------------------- readers


def test_reader_beside_the_writer(st: Store, db: Path) -> None:
    st.append_slot(fields(0))
    with Store.open_readonly(db, SITE) as reader:
        assert reader.max_seq() == 1
        st.append_slot(fields(1))
        assert [r["seq"] for r in reader.slot_records("2026-11-27", "2026-11-27")] == [1, 2]
        assert reader.public_key_b64() == provenance.public_key_b64(KEY)
        assert reader.verify().ok
        with pytest.raises(StoreError, match="read-only"):
            reader.put_json("x", 1)


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database here"):
        Store.open_readonly(tmp_path / "none.db", SITE)
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    store.migrate(conn, target=1)
    conn.close()
    with pytest.raises(StoreError, match="start the daemon once to migrate"):
        Store.open_readonly(tmp_path / "old.db", SITE)


# --------------------------------------------------------------------------------- kill -9

CHILD = """
import sys
from datetime import datetime, timedelta
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway.clock import JST
from gateway.store import Store

key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sys.argv[2]))
store = Store(Path(sys.argv[1]), "sg-0001", key)
print("ready", store.max_seq(), flush=True)
base = datetime(2026, 1, 1, tzinfo=JST)
while True:
    n = store.max_seq() + 1
    at = base + timedelta(minutes=30 * n)
    record = store.append_slot({
        "site": "sg-0001", "slot_start": at.isoformat(), "rev": 1,
        "source": "meter_boundary", "import_wh": n, "export_wh": 0,
    })
    if n % 3 == 0:
        store.mark_sent([n], at)
    if n % 5 == 0:
        store.put_boundary(at, n, 0, 10**9, "boundary", at)
    if n % 7 == 0:
        store.ack_upto(n - 4)
    print(record["seq"], flush=True)
"""


def _kill_at_random(db: Path, rng: random.Random) -> tuple[int, bool]:
    """Run the child, SIGKILL it at a random moment; returns the last seq it saw committed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), SEED.hex()],
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    assert child.stdout is not None
    during_open = rng.random() < 0.3
    try:
        if during_open:  # may land in start-up, creation or migration of the database
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            line = b""
            while not line.startswith(b"ready"):  # structlog may print a line first
                line = child.stdout.readline()
                assert line, "child died before it was ready"
            time.sleep(rng.uniform(0.0, 0.12))
    finally:
        child.send_signal(signal.SIGKILL)
        out = child.stdout.read().decode()
        child.wait()
    seqs = [int(x) for x in out.splitlines() if x.isdigit()]
    return (seqs[-1] if seqs else 0), during_open


def test_kill_9_at_random_moments_loses_nothing_committed(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHISAN_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    rounds = 100 if os.environ.get("CHISAN_SLOW") == "1" else 10
    db = tmp_path / "chisan.db"
    for i in range(rounds):
        last_committed, _ = _kill_at_random(db, rng)
        where = f"round {i}, CHISAN_SEED={seed}"
        if not db.exists():
            continue
        with Store(db, SITE, KEY) as s:
            assert s.integrity_check() == "ok", where
            top = s.max_seq()
            assert top >= last_committed, f"{where}: committed seq {last_committed} lost"
            records = s.records_by_seq(1, top)
            assert [r["seq"] for r in records] == list(range(1, top + 1)), where
            result = s.verify()
            assert result.ok and result.checked == top, f"{where}: {result.reason}"
            delivered = [
                row[0]
                for row in s._conn.execute(
                    "SELECT seq FROM slot_record WHERE delivered = 1 ORDER BY seq"
                )
            ]
            assert delivered == list(range(1, len(delivered) + 1)), f"{where}: acks not a prefix"
            assert s.backlog_count() == top - len(delivered), where
    with Store(db, SITE, KEY) as s:
        assert s.max_seq() > 0, f"no record was ever written (CHISAN_SEED={seed})"
