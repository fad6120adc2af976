"""The gateway's only persistent state: one SQLite database, opened once by the daemon.

A settlement record is only published after its write is committed and fsync'ed (WAL with
``synchronous=FULL``), and only forgotten once the *backend* acknowledges it: a broker's PUBACK is
one hop and can be lost. So the store is also the outbox. Records are sealed into a hash chain
(:mod:`gateway.provenance`) in the same transaction that assigns their ``seq``, so a crash can
never leave a gap or a record outside the chain.

The API is synchronous and each call is one short transaction; the event loop wraps calls in
``asyncio.to_thread`` (a lock serialises them, since one connection is shared). Times are ISO 8601
strings in JST (or aware datetimes, converted to JST); instants used as keys (``at``,
``slot_start``) are stored in one canonical form so text order is time order.

Schema changes are ordered :data:`MIGRATIONS`; a shipped step is never edited, only appended to.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway import provenance
from gateway.clock import JST, Clock
from gateway.logs import get_logger

Record = dict[str, Any]

SOURCES = ("meter_boundary", "meter_history", "missing")
BOUNDARY_SOURCES = ("boundary", "history")
#: Energy fields of a slot record: non-negative integers, or None when unknown.
ENERGY_FIELDS = ("import_wh", "export_wh", "pv_wh", "battery_charge_wh", "battery_discharge_wh")
_REQUIRED = ("site", "slot_start", "rev", "source", "import_wh", "export_wh")
#: Every field a record may carry besides the seal. The slot contract
#: (docs/schemas/slot.schema.json) admits no others, and a record the backend refuses would stay
#: signed in the chain forever.
FIELDS = frozenset((*_REQUIRED, *ENERGY_FIELDS, "created_at"))
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+09:00$")
_KEY_PREFIX = "store.public_key."
#: Bytes kept free beside the database for settlement data only (see Store._make_room).
RESERVE_BYTES = 4 * 1024 * 1024
#: Below this much free space a write may fail mid-transaction: release the reserve first.
TRANSACTION_ROOM = 256 * 1024
#: WAL auto-checkpoint interval (pages) while space is short, instead of SQLite's 1000.
LOW_SPACE_CHECKPOINT_PAGES = 8


class StoreError(Exception):
    """Anything the store cannot do; SQLite's own errors are wrapped in it."""


class SchemaTooNew(StoreError):
    """The database was written by a newer chisan: reading it could misinterpret it."""


class RevisionError(StoreError):
    """A slot or command revision that is not newer than the stored one (and not a retry)."""


class KeyMismatch(StoreError):
    """The signing key differs from the key that signed the records already stored."""


class DiskFull(StoreError):
    """No room to write: a low-priority write shed to save space, or the disk truly exhausted.

    The daemon keeps running: settlement data wait in the meter's history and are settled once
    space returns; nothing already stored is touched.
    """


class UnknownSeq(StoreError):
    """An acknowledgement for a seq this store never assigned.

    The backend claims records we do not have: the database was replaced or restored from an old
    backup, or the ack belongs to another gateway. The caller logs it; nothing is marked.
    """

    def __init__(self, seq: int, max_seq: int) -> None:
        super().__init__(f"ack for unknown seq {seq} (highest stored seq is {max_seq})")
        self.seq = seq
        self.max_seq = max_seq


# ------------------------------------------------------------------------------------ schema


@dataclass(frozen=True)
class Migration:
    version: int
    why: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "base tables",
        (
            """CREATE TABLE boundary (
                at          TEXT PRIMARY KEY,
                import_wh   INTEGER,
                export_wh   INTEGER,
                modulus_wh  INTEGER NOT NULL,
                source      TEXT NOT NULL CHECK (source IN ('boundary', 'history')),
                received_at TEXT
            ) WITHOUT ROWID""",
            """CREATE TABLE slot_record (
                site       TEXT NOT NULL,
                seq        INTEGER NOT NULL CHECK (seq >= 1),
                slot_start TEXT NOT NULL,
                rev        INTEGER NOT NULL,
                hash       TEXT NOT NULL,
                json       TEXT NOT NULL,
                delivered  INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1)),
                PRIMARY KEY (site, seq),
                UNIQUE (site, slot_start, rev)
            )""",
            "CREATE TABLE kv (key TEXT PRIMARY KEY, json TEXT NOT NULL)",
            """CREATE TABLE alarm (
                id        INTEGER PRIMARY KEY AUTOINCREMENT,
                json      TEXT NOT NULL,
                queued_at TEXT
            )""",
            """CREATE TABLE command (
                id            TEXT PRIMARY KEY,
                rev           INTEGER NOT NULL,
                json          TEXT NOT NULL,
                state         TEXT NOT NULL,
                last_ack_json TEXT,
                received_at   TEXT NOT NULL,
                updated_at    TEXT NOT NULL
            )""",
            "CREATE TABLE nonce (nonce TEXT PRIMARY KEY, seen_at TEXT NOT NULL)",
            "CREATE INDEX nonce_by_time ON nonce (seen_at)",
            """CREATE TABLE override (
                id     INTEGER PRIMARY KEY CHECK (id = 1),
                json   TEXT NOT NULL,
                set_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "delivery attempts: re-send timing and a small index over the undelivered backlog",
        (
            "ALTER TABLE slot_record ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE slot_record ADD COLUMN last_sent_at TEXT",
            "ALTER TABLE slot_record ADD COLUMN acked_at TEXT",
            "CREATE INDEX slot_record_outbox ON slot_record (site, seq) WHERE delivered = 0",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring an autocommit connection's database up to ``target``; return (from, to).

    Each step runs in its own transaction together with its ``user_version`` bump, so a crash
    mid-upgrade leaves the database at the previous version, never between two.
    """
    start = schema_version(conn)
    if start > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {start} is newer than this chisan understands "
            f"({SCHEMA_VERSION}): upgrade chisan, or restore the backup taken before the upgrade"
        )
    for step in MIGRATIONS:
        if step.version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= step.version:  # another opener got here first
                conn.execute("ROLLBACK")
                continue
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(step.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return start, schema_version(conn)


# ------------------------------------------------------------------------------ value types


#: A boundary reading as stored: at, import_wh, export_wh, modulus_wh, source, received_at.
BoundaryRow = dict[str, Any]
_BOUNDARY_COLUMNS = ("at", "import_wh", "export_wh", "modulus_wh", "source", "received_at")


@dataclass(frozen=True)
class BoundaryPut:
    """What :meth:`Store.put_boundary` did; ``disagrees`` is for the caller to log.

    ``inserted``: first reading of this instant. ``filled``: the stored reading had no value
    (None) where this one has one, and now has it. ``disagrees``: a value differs from the stored
    one, which is kept. ``stored``: the reading now in the database.
    """

    inserted: bool
    filled: bool
    disagrees: bool
    stored: BoundaryRow


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    attempts: int
    last_sent_at: str | None
    record: Record


@dataclass(frozen=True)
class StoredCommand:
    id: str
    rev: int
    command: dict[str, Any]
    state: str
    last_ack: dict[str, Any] | None
    received_at: str
    updated_at: str


# ------------------------------------------------------------------------------------- store


class Store:
    """The daemon's database. Open it once (single writer); readers may use :meth:`open_readonly`.

    ``site`` scopes the record chain: seq and hashes are per site. ``key`` signs new records; the
    store remembers its public half and refuses a different key once records exist, since records
    signed by two keys could not be verified as one chain.
    """

    def __init__(
        self,
        path: Path,
        site: str,
        key: Ed25519PrivateKey | None = None,
        *,
        clock: Clock | None = None,
        readonly: bool = False,
        reserve_bytes: int = RESERVE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.site = site
        self.readonly = readonly
        self.reserve_path = self.path.with_name(self.path.name + ".reserve")
        self.reserve_bytes = reserve_bytes
        #: The reserve had to be given up: low-priority writes are shed until space returns.
        self.low_space = False
        self._key = key
        self._clock = clock
        self._lock = threading.RLock()
        self._log = get_logger("chisan.store", site=site)
        try:
            try:
                self._conn = self._connect_ro() if readonly else self._connect_rw()
            except sqlite3.Error:
                # Restarted on a full disk: even opening needs a little room (the -shm file,
                # recovering the WAL). That is what the reserve is for.
                if readonly or not self.reserve_path.exists():
                    raise
                self._release_reserve()
                self._conn = self._connect_rw()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            self._check_schema()
            if key is not None and not readonly:
                self._bind_key(key)
        except BaseException:
            self._conn.close()
            raise
        if not readonly:
            self._shrink_wal()
            self.restore_reserve()

    @classmethod
    def open_readonly(cls, path: Path, site: str) -> Store:
        """A reader beside the running daemon (WAL lets it read while the daemon writes)."""
        return cls(path, site, readonly=True)

    def _connect_rw(self) -> sqlite3.Connection:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)
        if not self.path.exists():
            # Household consumption is personal data; the -wal/-shm files inherit this mode.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            provenance._fsync_dir(parent)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            before, after = migrate(conn)
        except BaseException:
            conn.close()
            raise
        if before and before != after:
            self._log.info("store schema migrated", path=str(self.path), old=before, new=after)
        return conn

    def _connect_ro(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no database here")
        uri = self.path.absolute().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10.0)
        conn.isolation_level = None
        conn.execute("PRAGMA query_only=1")
        return conn

    def _check_schema(self) -> None:
        with self._read() as conn:
            version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path}: database schema version {version} is newer than this chisan "
                f"understands ({SCHEMA_VERSION}): upgrade chisan"
            )
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: database schema version {version} is older than {SCHEMA_VERSION};"
                " start the daemon once to migrate it"
            )

    def _bind_key(self, key: Ed25519PrivateKey) -> None:
        with self._write() as conn:
            self._bind(conn, key)

    def _bind(self, conn: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
        """Remember which key signs this site's chain; refuse another once records exist."""
        mine = provenance.public_key_b64(key)
        known = self._get_json(conn, _KEY_PREFIX + self.site)
        if known == mine:
            return
        if known is not None and self._max_seq(conn) > 0:
            raise KeyMismatch(
                f"{self.path}: records of site {self.site} are signed by key {known}, "
                f"but the signing key is {mine}; restore the original site key file"
            )
        self._put_json(conn, _KEY_PREFIX + self.site, mine)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions

    @contextlib.contextmanager
    def _write(self, critical: bool = True) -> Iterator[sqlite3.Connection]:
        """One short IMMEDIATE transaction; COMMIT returns only after the WAL is fsync'ed.

        ``critical`` writes (settlement data, acks, alarms, commands) may use the reserve; others
        are refused with :class:`DiskFull` once space is short, so they never take the last
        free blocks from a settlement record.
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        with self._lock:
            self._make_room(critical)
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise DiskFull(f"{self.path}: disk full: {exc}") from exc
                raise StoreError(f"{self.path}: {exc}") from exc

    # -- disk space

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _make_room(self, critical: bool) -> None:
        """Shed a low-priority write, or give up the reserve to a critical one, when space is short.

        The reserve is a file of ``reserve_bytes`` beside the database: space that logs, other
        programs or our own low-priority data cannot take, released only for settlement data.
        """
        free = self.free_bytes()
        short = free is not None and free < TRANSACTION_ROOM
        if not critical:
            if self.low_space or short:
                raise DiskFull(
                    f"{self.path}: disk nearly full: low-priority write shed to keep room for "
                    "settlement data"
                )
            return
        if short and not self.low_space:
            self._release_reserve()

    def _release_reserve(self) -> None:
        self.low_space = True
        with contextlib.suppress(FileNotFoundError):
            self.reserve_path.unlink()
        self._shrink_wal()

    def _shrink_wal(self) -> None:
        """The WAL only reuses its space after a checkpoint (by default every 1000 pages, 4 MB):
        keep it short while space is scarce, and give its file back now."""
        conn = getattr(self, "_conn", None)
        if conn is None or not self.low_space:
            return
        with contextlib.suppress(sqlite3.Error):
            conn.execute(f"PRAGMA wal_autocheckpoint={LOW_SPACE_CHECKPOINT_PAGES}")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._log.warning(
            "disk nearly full: released the space reserve for settlement data; "
            "low-priority writes are shed",
            path=str(self.path),
            reserve_bytes=self.reserve_bytes,
        )

    def restore_reserve(self) -> bool:
        """Take the reserve back once there is room for it; True when the store has its reserve.

        Called at open and by the health check, so the store recovers by itself when space returns.
        """
        if self.reserve_bytes <= 0:
            self.low_space = False
            return True
        with self._lock:
            try:
                if self.reserve_path.stat().st_size >= self.reserve_bytes:
                    self.low_space = False
                    return True
            except FileNotFoundError:
                pass
            free = self.free_bytes()
            if free is not None and free < self.reserve_bytes + 2 * TRANSACTION_ROOM:
                if not self.low_space:
                    self._release_reserve()
                return False
            try:
                fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.reserve_bytes)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    self.reserve_path.unlink()
                if not self.low_space:
                    self._release_reserve()
                self._log.debug("space reserve not restored", error=str(exc))
                return False
            if self.low_space:
                self._log.info("disk space back: space reserve restored", path=str(self.path))
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_autocheckpoint=1000")
            self.low_space = False
            return True

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    # -- maintenance

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return schema_version(conn)

    def integrity_check(self) -> str:
        """SQLite's own check: ``"ok"`` or its list of problems, one per line."""
        with self._read() as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def public_key_b64(self) -> str | None:
        """The public key that signs this site's records (as remembered by the store)."""
        with self._read() as conn:
            value = self._get_json(conn, _KEY_PREFIX + self.site)
        return value if isinstance(value, str) else None

    def verify(self, public_key: Ed25519PublicKey | None = None) -> provenance.VerifyResult:
        """Verify this site's whole chain from seq 1 (e.g. at start-up, or after a restore)."""
        if public_key is None:
            if self._key is not None:
                public_key = self._key.public_key()
            else:
                known = self.public_key_b64()
                if known is None:
                    raise StoreError(f"{self.path}: no public key known for site {self.site}")
                public_key = provenance.parse_public_key(known)
        return provenance.verify_chain(
            self.records_by_seq(1, self.max_seq()), public_key, site=self.site
        )

    # -- boundaries

    def put_boundary(
        self,
        at: str | datetime,
        import_wh: int | None,
        export_wh: int | None,
        modulus_wh: int,
        source: str,
        received_at: str | datetime | None = None,
    ) -> BoundaryPut:
        """Record the meter's counters at ``at``; idempotent, the first reading of an instant wins.

        Boundary and history readings of one instant come from the same meter registers and must
        agree; if they do not, the stored one is kept (it may already be settled on) and
        ``disagrees`` tells the caller to log it. A value the stored reading lacks (None: the meter
        had no data) is filled in from a later reading, since that overwrites nothing; the source
        then becomes ``history`` if either part came from history. ``received_at`` defaults to
        the store's clock.
        """
        if source not in BOUNDARY_SOURCES:
            raise ValueError(f"source must be one of {BOUNDARY_SOURCES}, not {source!r}")
        if not _is_int(modulus_wh) or modulus_wh <= 0:
            raise ValueError(f"modulus_wh must be a positive integer, not {modulus_wh!r}")
        for name, value in (("import_wh", import_wh), ("export_wh", export_wh)):
            if value is not None and (not _is_int(value) or not 0 <= value < modulus_wh):
                raise ValueError(f"{name} must be an integer in [0, {modulus_wh}), not {value!r}")
        if received_at is None and self._clock is not None:
            received_at = self._clock.now()
        new = dict(
            zip(
                _BOUNDARY_COLUMNS,
                (
                    _instant(at, "at"),
                    import_wh,
                    export_wh,
                    modulus_wh,
                    source,
                    _stamp(received_at, "received_at") if received_at is not None else None,
                ),
                strict=True,
            )
        )
        with self._write() as conn:
            row = conn.execute("SELECT * FROM boundary WHERE at = ?", (new["at"],)).fetchone()
            if row is None:
                conn.execute("INSERT INTO boundary VALUES (?, ?, ?, ?, ?, ?)", tuple(new.values()))
                return BoundaryPut(True, False, False, new)
            stored = _boundary(row)
            if stored["modulus_wh"] != modulus_wh or any(
                stored[k] is not None and new[k] is not None and stored[k] != new[k]
                for k in ("import_wh", "export_wh")
            ):
                return BoundaryPut(False, False, True, stored)
            holes = [
                k for k in ("import_wh", "export_wh") if stored[k] is None and new[k] is not None
            ]
            if not holes:
                return BoundaryPut(False, False, False, stored)
            merged = {**stored, **{k: new[k] for k in holes}}
            if source == "history":
                merged["source"] = "history"
            conn.execute(
                "UPDATE boundary SET import_wh = ?, export_wh = ?, source = ? WHERE at = ?",
                (merged["import_wh"], merged["export_wh"], merged["source"], merged["at"]),
            )
            return BoundaryPut(False, True, False, merged)

    def boundary(self, at: str | datetime) -> BoundaryRow | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM boundary WHERE at = ?", (_instant(at, "at"),)
            ).fetchone()
        return _boundary(row) if row else None

    def boundaries(self, from_at: str | datetime, to_at: str | datetime) -> list[BoundaryRow]:
        """Readings with ``from_at <= at < to_at``, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM boundary WHERE at >= ? AND at < ? ORDER BY at",
                (_stamp(from_at, "from_at"), _stamp(to_at, "to_at")),
            ).fetchall()
        return [_boundary(r) for r in rows]

    # -- slot records

    def append_slot(
        self, fields: Mapping[str, Any], key: Ed25519PrivateKey | None = None
    ) -> Record:
        """Seal ``fields`` as this site's next record and commit it; return the full record.

        seq, prev_hash, hash and sig are assigned in the same transaction as the insert, so the
        chain has no gaps whatever moment the process dies. Appending identical fields for a
        (slot_start, rev) already stored returns the stored record (a retry after a crash);
        different fields, or a rev not newer than the slot's latest, raise :class:`RevisionError`.
        """
        signer = key or self._key
        if signer is None:
            raise StoreError("no signing key: pass key= to Store or to append_slot")
        body = self._checked_fields(fields)
        body_json = _dumps(body)
        with self._write() as conn:
            self._bind(conn, signer)
            row = conn.execute(
                "SELECT rev, json FROM slot_record WHERE site = ? AND slot_start = ? "
                "ORDER BY rev DESC LIMIT 1",
                (self.site, body["slot_start"]),
            ).fetchone()
            if row is not None:
                same = conn.execute(
                    "SELECT json FROM slot_record WHERE site = ? AND slot_start = ? AND rev = ?",
                    (self.site, body["slot_start"], body["rev"]),
                ).fetchone()
                if same is not None:
                    stored: Record = json.loads(same[0])
                    unsealed = {k: v for k, v in stored.items() if k not in provenance.SEAL_FIELDS}
                    if _dumps(unsealed) == body_json:
                        return stored
                    raise RevisionError(
                        f"slot {body['slot_start']} rev {body['rev']} is already stored "
                        "with different fields"
                    )
                if int(row[0]) > body["rev"]:
                    raise RevisionError(
                        f"slot {body['slot_start']}: rev {body['rev']} is older than the stored "
                        f"rev {row[0]}"
                    )
            last = conn.execute(
                "SELECT seq, hash FROM slot_record WHERE site = ? ORDER BY seq DESC LIMIT 1",
                (self.site,),
            ).fetchone()
            seq, prev_hash = (
                (int(last[0]) + 1, str(last[1])) if last else (1, provenance.GENESIS_HASH)
            )
            record = provenance.seal(json.loads(body_json), prev_hash, seq, signer)
            conn.execute(
                "INSERT INTO slot_record (site, seq, slot_start, rev, hash, json, delivered) "
                "VALUES (?, ?, ?, ?, ?, ?, 0)",
                (
                    self.site,
                    seq,
                    record["slot_start"],
                    record["rev"],
                    record["hash"],
                    _dumps(record),
                ),
            )
        return record

    def _checked_fields(self, fields: Mapping[str, Any]) -> Record:
        """Refuse a record that could not be settled on: it would be signed and kept forever."""
        body = dict(fields)
        sealed = [k for k in provenance.SEAL_FIELDS if k in body]
        if sealed:
            raise ValueError(f"fields must not contain {sealed}: the store assigns them")
        missing = [k for k in _REQUIRED if k not in body]
        if missing:
            raise ValueError(f"fields lack {missing}")
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {unknown}: the slot contract has no such field")
        if body["site"] != self.site:
            raise ValueError(f"record for site {body['site']!r} in the store of {self.site!r}")
        start = body["slot_start"]
        if not isinstance(start, str) or _instant(start, "slot_start") != start:
            raise ValueError(f"slot_start must look like 2026-11-27T09:30:00+09:00, not {start!r}")
        parsed = datetime.fromisoformat(start)
        if parsed.minute not in (0, 30) or parsed.second:
            raise ValueError(f"slot_start {start} is not on a 30-minute boundary")
        if not _is_int(body["rev"]) or body["rev"] < 1:
            raise ValueError(f"rev must be a positive integer, not {body['rev']!r}")
        if body["source"] not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {body['source']!r}")
        for name in ENERGY_FIELDS:
            value = body.get(name)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, not {value!r}")
        if body["source"] == "missing" and (
            body["import_wh"] is not None or body["export_wh"] is not None
        ):
            raise ValueError("a 'missing' record has import_wh and export_wh None")
        if body["source"] != "missing" and body["import_wh"] is None and body["export_wh"] is None:
            raise ValueError(f"a {body['source']} record needs import_wh or export_wh")
        if "created_at" in body:
            if not isinstance(body["created_at"], str):
                raise ValueError("created_at must be an ISO 8601 string")
            _stamp(body["created_at"], "created_at")
        provenance.canonical_json(body)  # raises ValueError for NaN, TypeError for non-JSON
        return body

    def latest_rev(self, slot_start: str | datetime) -> tuple[int, Record] | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT rev, json FROM slot_record WHERE site = ? AND slot_start = ? "
                "ORDER BY rev DESC LIMIT 1",
                (self.site, _instant(slot_start, "slot_start")),
            ).fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def slot_records(self, from_date: date | str, to_date: date | str) -> list[Record]:
        """Every revision of the slots starting on JST dates ``from_date..to_date`` (inclusive)."""
        lo = _day(from_date, "from_date")
        hi = _day(to_date, "to_date") + timedelta(days=1)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT json FROM slot_record WHERE site = ? AND slot_start >= ? "
                "AND slot_start < ? ORDER BY seq",
                (self.site, _midnight(lo), _midnight(hi)),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def records_by_seq(self, from_seq: int, to_seq: int) -> list[Record]:
        """Records with ``from_seq <= seq <= to_seq`` in chain order."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT json FROM slot_record WHERE site = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                (self.site, from_seq, to_seq),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def max_seq(self) -> int:
        """The last assigned seq, 0 before the first record."""
        with self._read() as conn:
            return self._max_seq(conn)

    def _max_seq(self, conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT MAX(seq) FROM slot_record WHERE site = ?", (self.site,)
        ).fetchone()
        return int(row[0] or 0)

    # -- outbox

    def undelivered(self, limit: int = 100) -> list[Record]:
        """Records the backend has not acknowledged, oldest seq first."""
        return [e.record for e in self.outbox(limit)]

    def outbox(self, limit: int = 100) -> list[OutboxEntry]:
        """Like :meth:`undelivered`, with attempts and last send time for re-send timing."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT seq, attempts, last_sent_at, json FROM slot_record "
                "WHERE site = ? AND delivered = 0 ORDER BY seq LIMIT ?",
                (self.site, limit),
            ).fetchall()
        return [OutboxEntry(int(r[0]), int(r[1]), r[2], json.loads(r[3])) for r in rows]

    def mark_sent(self, seqs: Iterable[int], at: str | datetime) -> int:
        """Count a publish attempt of still-undelivered records; returns how many were updated."""
        when = _stamp(at, "at")
        with self._write() as conn:
            cur = conn.executemany(
                "UPDATE slot_record SET attempts = attempts + 1, last_sent_at = ? "
                "WHERE site = ? AND seq = ? AND delivered = 0",
                [(when, self.site, int(s)) for s in seqs],
            )
            return max(cur.rowcount, 0)

    def ack_upto(self, seq: int, at: str | datetime | None = None) -> int:
        """The backend has stored every record up to ``seq``: mark them delivered.

        Returns how many were newly acknowledged (0 for a repeated ack). An ack beyond the last
        assigned seq raises :class:`UnknownSeq` and changes nothing.
        """
        when = _stamp(at, "at") if at is not None else None
        with self._write() as conn:
            top = self._max_seq(conn)
            if seq > top:
                raise UnknownSeq(seq, top)
            cur = conn.execute(
                "UPDATE slot_record SET delivered = 1, acked_at = ? "
                "WHERE site = ? AND seq <= ? AND delivered = 0",
                (when, self.site, seq),
            )
            return cur.rowcount

    def ack(self, seqs: Collection[int], at: str | datetime | None = None) -> int:
        """Per-record acks, all or nothing: one unknown seq raises :class:`UnknownSeq`."""
        when = _stamp(at, "at") if at is not None else None
        with self._write() as conn:
            top = self._max_seq(conn)
            for s in seqs:
                if not 1 <= s <= top:
                    raise UnknownSeq(s, top)
            cur = conn.executemany(
                "UPDATE slot_record SET delivered = 1, acked_at = ? "
                "WHERE site = ? AND seq = ? AND delivered = 0",
                [(when, self.site, int(s)) for s in seqs],
            )
            return max(cur.rowcount, 0)

    def recent_slots(self, limit: int = 6) -> list[tuple[Record, bool]]:
        """The last ``limit`` records appended (newest first), each with its delivered flag."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT json, delivered FROM slot_record WHERE site = ? ORDER BY seq DESC LIMIT ?",
                (self.site, limit),
            ).fetchall()
        return [(json.loads(r[0]), bool(r[1])) for r in rows]

    def backlog_count(self) -> int:
        with self._read() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM slot_record WHERE site = ? AND delivered = 0", (self.site,)
            ).fetchone()
        return int(row[0])

    # -- key/value

    def get_json(self, key: str, default: Any = None) -> Any:
        with self._read() as conn:
            return self._get_json(conn, key, default)

    def put_json(self, key: str, value: Any, critical: bool = True) -> None:
        """Store a cached value; ``critical=False`` ones are shed (:class:`DiskFull`) first."""
        with self._write(critical) as conn:
            self._put_json(conn, key, value)

    def delete_json(self, key: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount == 1

    @staticmethod
    def _get_json(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
        row = conn.execute("SELECT json FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    @staticmethod
    def _put_json(conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute(
            "INSERT INTO kv (key, json) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET json = excluded.json",
            (key, _dumps(value)),
        )

    # -- alarms

    def queue_alarm(self, alarm: Mapping[str, Any], at: str | datetime | None = None) -> int:
        """Keep an alarm until it is published; returns its id, which is never reused.

        ``alarm`` must not have an ``id`` key: :meth:`pending_alarms` adds the store's id there.
        """
        if "id" in alarm:
            raise ValueError("an alarm's 'id' is assigned by the store")
        if at is None and self._clock is not None:
            at = self._clock.now()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO alarm (json, queued_at) VALUES (?, ?)",
                (_dumps(dict(alarm)), _stamp(at, "at") if at is not None else None),
            )
            return int(cur.lastrowid or 0)

    def pending_alarms(self, limit: int = 100) -> list[dict[str, Any]]:
        """Unpublished alarms, oldest first, each as queued plus its ``id``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, json FROM alarm ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [{**json.loads(r[1]), "id": int(r[0])} for r in rows]

    def alarm_sent(self, alarm_id: int) -> bool:
        """Forget a published alarm; False if it was already gone."""
        with self._write() as conn:
            return conn.execute("DELETE FROM alarm WHERE id = ?", (alarm_id,)).rowcount == 1

    # -- DR commands

    def get_command(self, command_id: str) -> StoredCommand | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT id, rev, json, state, last_ack_json, received_at, updated_at "
                "FROM command WHERE id = ?",
                (command_id,),
            ).fetchone()
        return _command(row) if row else None

    def commands(self, states: Collection[str] | None = None) -> list[StoredCommand]:
        """Stored commands (optionally only those in ``states``), oldest received first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, rev, json, state, last_ack_json, received_at, updated_at "
                "FROM command ORDER BY received_at, id"
            ).fetchall()
        found = [_command(r) for r in rows]
        return [c for c in found if states is None or c.state in states]

    def put_command(
        self,
        command_id: str,
        rev: int,
        command: Mapping[str, Any],
        state: str,
        at: str | datetime,
        last_ack: Mapping[str, Any] | None = None,
    ) -> StoredCommand:
        """Store a command revision or its new state.

        A higher rev replaces the stored command (and restarts its received_at); the same rev
        updates state and last acknowledgement; a lower rev raises :class:`RevisionError`, so a
        replayed old revision can never overwrite a newer one.
        """
        if not _is_int(rev) or rev < 0:
            raise ValueError(f"rev must be a non-negative integer, not {rev!r}")
        when = _stamp(at, "at")
        ack_json = _dumps(dict(last_ack)) if last_ack is not None else None
        with self._write() as conn:
            row = conn.execute(
                "SELECT rev, received_at FROM command WHERE id = ?", (command_id,)
            ).fetchone()
            if row is not None and int(row[0]) > rev:
                raise RevisionError(f"command {command_id}: rev {rev} is older than {row[0]}")
            received = row[1] if row is not None and int(row[0]) == rev else when
            conn.execute(
                "INSERT INTO command VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "rev = excluded.rev, json = excluded.json, state = excluded.state, "
                "last_ack_json = excluded.last_ack_json, received_at = excluded.received_at, "
                "updated_at = excluded.updated_at",
                (command_id, rev, _dumps(dict(command)), state, ack_json, received, when),
            )
        return StoredCommand(
            command_id,
            rev,
            json.loads(_dumps(dict(command))),
            state,
            json.loads(ack_json) if ack_json else None,
            received,
            when,
        )

    def remember_nonce(self, nonce: str, at: str | datetime, keep_s: float = 86400.0) -> bool:
        """True the first time ``nonce`` is seen, False for a replay.

        Nonces older than ``keep_s`` are pruned on the way; keep them longer than the commands'
        issued-at window, since that window is what rejects a replay of a pruned nonce.
        """
        when = _stamp(at, "at")
        cutoff = (datetime.fromisoformat(when) - timedelta(seconds=keep_s)).isoformat()
        with self._write() as conn:
            conn.execute("DELETE FROM nonce WHERE seen_at < ?", (cutoff,))
            cur = conn.execute(
                "INSERT OR IGNORE INTO nonce (nonce, seen_at) VALUES (?, ?)", (nonce, when)
            )
            return cur.rowcount == 1

    def prune_nonces(self, before: str | datetime) -> int:
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM nonce WHERE seen_at < ?", (_stamp(before, "before"),)
            ).rowcount

    # -- local override

    def put_override(self, override: Mapping[str, Any], at: str | datetime) -> None:
        """Persist the resident's override so it outlives a restart (it beats remote commands)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO override (id, json, set_at) VALUES (1, ?, ?) ON CONFLICT (id) "
                "DO UPDATE SET json = excluded.json, set_at = excluded.set_at",
                (_dumps(dict(override)), _stamp(at, "at")),
            )

    def get_override(self) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute("SELECT json FROM override WHERE id = 1").fetchone()
        return dict(json.loads(row[0])) if row else None

    def clear_override(self) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM override WHERE id = 1").rowcount == 1


# ----------------------------------------------------------------------------------- helpers


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dumps(value: Any) -> str:
    return provenance.canonical_json(value).decode("utf-8")


def _aware(value: str | datetime, name: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, datetime):
        raise TypeError(f"{name}: expected an ISO string or datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: time without a UTC offset: {value.isoformat()}")
    return value.astimezone(JST)


def _stamp(value: str | datetime, name: str) -> str:
    """A timestamp in one JST ISO form, so that text comparison is time comparison."""
    return _aware(value, name).isoformat()


def _instant(value: str | datetime, name: str) -> str:
    """A whole-second instant used as a key, e.g. ``2026-11-27T09:30:00+09:00``."""
    moment = _aware(value, name)
    if moment.microsecond:
        raise ValueError(f"{name}: {value!r} is not a whole second")
    text = moment.isoformat()
    assert _INSTANT.match(text), text
    return text


def _day(value: date | str, name: str) -> date:
    if isinstance(value, datetime):
        raise TypeError(f"{name}: expected a date, not a datetime")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: expected YYYY-MM-DD, not {value!r}") from None


def _midnight(day: date) -> str:
    return datetime(day.year, day.month, day.day, tzinfo=JST).isoformat()


def _boundary(row: tuple[Any, ...]) -> BoundaryRow:
    return dict(zip(_BOUNDARY_COLUMNS, row, strict=True))


def _command(row: tuple[Any, ...]) -> StoredCommand:
    return StoredCommand(
        id=str(row[0]),
        rev=int(row[1]),
        command=json.loads(row[2]),
        state=str(row[3]),
        last_ack=json.loads(row[4]) if row[4] else None,
        received_at=str(row[5]),
        updated_at=str(row[6]),
    )
