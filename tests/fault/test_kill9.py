"""The gateway killed with SIGKILL at random points and between the steps of a delivery.

Pass criterion, checked after every kill: SQLite's integrity check is ``ok``, every seq the
child saw committed is still there, the records marked delivered are a prefix the backend has
acknowledged; every 20 kills and at the end the whole chain verifies. At the end a surviving
gateway drains everything, and the backend holds each (site, slot_start, rev) once, with every
duplicate delivery identical to the first.

200 kills in CI (half after a random delay, half at a named point: after an append committed,
after a PUBACK, on the backend's ack before it is written, after it is written), 1,000 with
``CHISAN_SLOW=1``. Children are forked from a zygote that imported everything once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections import Counter, deque
from pathlib import Path

import pytest

from gateway.store import Store
from tests.conftest import REPO
from tests.integration.test_uplink import SITE, add_slots, open_store
from tests.support.backend import FakeBackend
from tests.support.faults import seeded_rng, size
from tests.support.mosquitto import Mosquitto
from tests.support.uplink_child import POINTS


class Zygote:
    """The forking parent: one line in, one gateway child out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.committed = 0  # highest seq a child reported as committed
        # One reader task owns the pipe: a readline() cancelled by a timeout can lose the line
        # it had just read, so waits time out on an event instead.
        self._lines: deque[list[str]] = deque()
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            self._lines.append(raw.decode().split())
            self._arrived.set()
        self._lines.append(["eof"])
        self._arrived.set()

    async def closed(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 10)

    async def line(self, timeout: float = 20) -> list[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._lines:
            self._arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        words = self._lines.popleft()
        if words == ["eof"]:
            raise RuntimeError("zygote exited")
        if words and words[0] == "seq":
            self.committed = max(self.committed, int(words[1]))
        return words

    async def spawn(self, request: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(request.encode() + b"\n")
        await self.proc.stdin.drain()
        pid = 0
        ready = False
        while not (pid and ready):
            words = await self.line()
            if words[0] == "pid":
                pid = int(words[1])
            elif words[0] == "ready":
                ready = True
            elif words[0] == "exit":
                raise AssertionError(f"child exited before it was ready: {words}")
        return pid

    async def exited(self, pid: int, timeout: float) -> int | None:
        """The child's exit code once the zygote has reaped it; None if it is still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                words = await self.line(left)
            except TimeoutError:
                return None
            if words[0] == "exit" and int(words[1]) == pid:
                return int(words[2])


def delivered_seqs(db: Path) -> list[int]:
    conn = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT seq FROM slot_record WHERE site = ? AND delivered = 1 ORDER BY seq", (SITE,)
        ).fetchall()
    finally:
        conn.close()
    return [int(r[0]) for r in rows]


@pytest.mark.timeout(900)
async def test_daemon_kill9_at_random_points_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    rounds = size(200, 1000)
    rng = seeded_rng("kill9")
    db = tmp_path / "chisan.db"
    errors = tmp_path / "children.stderr"
    store = open_store(tmp_path)
    add_slots(store, 300)
    store.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.uplink_child",
        "--zygote",
        str(db),
        str(tmp_path / "site.pem"),
        str(mosquitto.port),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=errors.open("wb"),
    )
    zygote = Zygote(proc)
    hit: Counter[str] = Counter()
    try:
        async with FakeBackend(mosquitto.port) as backend:
            for n in range(rounds):
                point = rng.choice(POINTS) if n % 2 else None
                request = f"10 {point} {rng.randint(1, 4)}" if point else "10"
                pid = await zygote.spawn(request)
                code = await zygote.exited(pid, rng.uniform(0.0, 0.25) if not point else 1.0)
                if code is None:
                    proc_kill(pid)
                    code = await zygote.exited(pid, 10)
                elif point:
                    hit[point] += 1
                assert code == -9, (
                    f"round {n}: child ended with {code}, not by SIGKILL; its stderr ends with:\n"
                    + errors.read_text(errors="replace")[-3000:]
                )
                check = Store.open_readonly(db, SITE)
                try:
                    assert check.integrity_check() == "ok", f"round {n}"
                    assert check.max_seq() >= zygote.committed, f"round {n}: a record was lost"
                    if n % 20 == 19:
                        result = check.verify()
                        assert result.ok, f"round {n}: {result.reason}"
                finally:
                    check.close()
                delivered = delivered_seqs(db)
                assert delivered == list(range(1, len(delivered) + 1)), f"round {n}"
                assert len(delivered) <= backend.acked_upto, f"round {n}: marked before the ack"
            # One gateway left running until the backend has acknowledged everything.
            pid = await zygote.spawn("0")
            check = Store.open_readonly(db, SITE)
            try:
                await backend.wait_for(lambda: check.backlog_count() == 0, timeout=60)
            finally:
                check.close()
                proc_kill(pid)
                await zygote.exited(pid, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await zygote.closed()
    print(f"kills at named points: {dict(hit)}; records: {zygote.committed}")
    assert set(hit) == set(POINTS), f"some kill points were never reached: {dict(hit)}"
    store = open_store(tmp_path)
    assert store.integrity_check() == "ok"
    result = store.verify()
    assert result.ok, result.reason
    total = store.max_seq()
    assert total >= zygote.committed >= 300
    expected = {(SITE, r["slot_start"], r["rev"]) for r in store.records_by_seq(1, total)}
    assert set(backend.records) == expected
    assert sorted(backend.by_seq) == list(range(1, total + 1))
    assert backend.conflicts == []
    assert backend.invalid == []
    assert max(backend.deliveries.values()) >= 2  # the kills did force re-sends


def proc_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have reached its kill point first
        os.kill(pid, signal.SIGKILL)
