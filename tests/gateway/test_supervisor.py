"""The supervisor restarts crashed components with backoff and stops everything promptly."""

from __future__ import annotations

import asyncio
import itertools
import socket
from pathlib import Path

import pytest

from gateway.sdnotify import Notifier
from gateway.supervisor import Backoff, FunctionComponent, Supervisor


async def test_crashing_component_is_restarted_with_backoff() -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    async def flaky() -> None:
        runs.append(loop.time())
        if len(runs) < 4:
            raise RuntimeError(f"boom {len(runs)}")
        await asyncio.sleep(3600)

    healthy_ticks = 0

    async def healthy() -> None:
        nonlocal healthy_ticks
        while True:
            healthy_ticks += 1
            await asyncio.sleep(0.01)

    sup = Supervisor(
        [FunctionComponent("flaky", flaky), FunctionComponent("healthy", healthy)],
        backoff=Backoff(initial_s=0.02, cap_s=0.08, jitter=0.0),
    )
    task = asyncio.create_task(sup.run())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(runs) >= 4:
            break
    assert len(runs) == 4
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # 0.02, 0.04, 0.08: exponential, and never past the cap.
    assert gaps[0] >= 0.018 and gaps[1] >= 0.038 and gaps[2] >= 0.075
    assert all(g < 0.5 for g in gaps)
    snap = sup.snapshot()
    assert snap["flaky"]["restarts"] == 3
    assert snap["flaky"]["last_error"] == "RuntimeError: boom 3"
    assert snap["flaky"]["running"] and snap["healthy"]["running"]
    assert healthy_ticks > 5  # the crash loop never disturbed the healthy component
    sup.stop()
    await asyncio.wait_for(task, 2)
    assert not sup.snapshot()["healthy"]["running"]


async def test_backoff_is_capped() -> None:
    b = Backoff(initial_s=1, cap_s=60, jitter=0)
    assert [b.delay(n) for n in (1, 2, 3, 7, 20)] == [1, 2, 4, 60, 60]
    jittered = Backoff(initial_s=10, cap_s=10, jitter=0.2)
    assert all(8 <= jittered.delay(5) <= 12 for _ in range(100))


async def test_no_restart_during_shutdown() -> None:
    starts = 0

    async def crash() -> None:
        nonlocal starts
        starts += 1
        raise ValueError("x")

    sup = Supervisor([FunctionComponent("c", crash)], backoff=Backoff(initial_s=10, jitter=0))
    task = asyncio.create_task(sup.run())
    await asyncio.sleep(0.05)
    sup.stop()
    await asyncio.wait_for(task, 2)
    assert starts == 1


async def test_stuck_component_does_not_block_shutdown() -> None:
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop until released

    sup = Supervisor([FunctionComponent("stubborn", stubborn)], shutdown_timeout_s=0.2)
    task = asyncio.create_task(sup.run())
    await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sup.stop()
    await asyncio.wait_for(task, 2)
    assert loop.time() - t0 < 0.5
    assert sup.snapshot()["stubborn"]["running"]  # still alive, but shutdown went on
    released.set()
    await asyncio.sleep(0.01)


async def test_notify_ready_watchdog_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a real datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms

    async def idle() -> None:
        await asyncio.sleep(3600)

    sup = Supervisor([FunctionComponent("idle", idle)])
    task = asyncio.create_task(sup.run())
    await asyncio.sleep(0.3)
    sup.stop()
    await asyncio.wait_for(task, 2)
    messages = []
    while True:
        try:
            messages.append(server.recv(1024).decode())
        except BlockingIOError:
            break
    server.close()
    assert messages[0].startswith("READY=1")
    assert messages.count("WATCHDOG=1") >= 3
    assert messages[-1] == "STOPPING=1"


def test_notifier_without_systemd_does_nothing() -> None:
    n = Notifier("")
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False
    assert Notifier("/nonexistent/socket").ready() is False
