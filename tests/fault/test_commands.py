"""DR commands under faults, against a real daemon process (``python -m gateway run``).

Duplicate, replayed, late, expired and reordered commands over a real broker; a daemon killed
with SIGKILL while a command is active, a cancellation published while it is down (held by the
broker for its persistent session), and the daemon started again. Pass criterion: each command
acts at most once (one ``started``), every answer is a valid ack with the right status, stale and
replayed ones never reach the battery, older revisions never override newer ones, and after the
restart the queued cancellation is received and the battery is handed back to its own control.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from drivers.broute.sim import (
    DEFAULT_PASSWORD,
    DEFAULT_RBID,
    MeterModelConfig,
    ModuleConfig,
    PtyEmulator,
)
from drivers.echonet.sim import SimNode
from gateway.clock import SystemClock
from gateway.demo import DEMO_CONFIG
from gateway.slots import SLOT, slot_start
from tests.conftest import REPO
from tests.support.backend import FakeBackend, Signer, acks
from tests.support.home import until
from tests.support.mosquitto import Mosquitto

SITE = "demo-0001"
NODE = "127.0.7.3"
BIND = "127.0.7.4"
DISCHARGE, AUTO = 0x43, 0x46
CANCEL_DROPS = ("kind", "start", "end", "power_w", "allow_export", "priority", "randomize_s")


class Daemon:
    def __init__(self, cfg: Path) -> None:
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        log = (self.cfg.parent / f"daemon-{self.starts}.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "run",
            "-c",
            str(self.cfg),
            cwd=REPO,
            stdout=log,
            stderr=log,
        )
        log.close()

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -9

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@asynccontextmanager
async def daemon_home(folder: Path, broker: int) -> AsyncIterator[tuple[Daemon, SimNode]]:
    pw = folder / "broute-password"
    pw.write_text(DEFAULT_PASSWORD)
    pw.chmod(0o600)
    clock = SystemClock()
    module = ModuleConfig(link_delay=0.003, link_jitter=0.0, scan_scale=0.02)
    node = SimNode(NODE, devices=("battery", "pv"), clock=clock, soc_pct=60)
    async with PtyEmulator(module, MeterModelConfig(), clock) as emu, node:
        text = DEMO_CONFIG.format(
            site=SITE, mqtt_port=broker, pty=emu.path, rbid=DEFAULT_RBID, node=NODE
        )
        text = text.replace('name = "ecocute"', 'name = "ecocute"\nenabled = false')
        text = text.replace('"127.0.0.1"\nmulticast', f'"{BIND}"\nmulticast')
        text = text.replace('multicast_interface = "127.0.0.1"', f'multicast_interface = "{BIND}"')
        text = text.replace("[mqtt]\n", "[mqtt]\nkeepalive_s = 5\nreconnect_min_s = 0.2\n")
        text += (
            "\n[limits]\nsoc_reserve_pct = 30\nmeter_stale_s = 120\nmin_dwell_s = 0\n"
            "failsafe_hysteresis_s = 1\n"
        )
        cfg = folder / "chisan.toml"
        cfg.write_text(text)
        daemon = Daemon(cfg)
        try:
            yield daemon, node
        finally:
            await daemon.stop()


def statuses(backend: FakeBackend, cmd_id: str) -> Counter[str]:
    return Counter(acks(backend, cmd_id))


def cancel(signer: Signer, clock: SystemClock, cmd_id: str, rev: int) -> bytes:
    return signer.command(
        clock, id=cmd_id, rev=rev, status="cancelled", **dict.fromkeys(CANCEL_DROPS)
    )


async def test_command_faults_and_a_kill9_during_an_active_command(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = SystemClock()
    signer = Signer(tmp_path)
    async with (
        daemon_home(tmp_path, mosquitto.port) as (daemon, node),
        FakeBackend(mosquitto.port) as backend,
    ):

        def online() -> bool:
            states = backend.of("state")
            return bool(states) and states[-1]["online"] and not states[-1].get("failsafe")

        await daemon.start()
        try:
            await until(online, 60)
        except TimeoutError:
            raise AssertionError(f"daemon never ready: states {backend.of('state')}") from None

        # An active discharge: acts once.
        first = signer.command(clock)
        await backend.send(SITE, "cmd", first)
        await until(lambda: "started" in acks(backend, "dr-1"), 60)
        await until(lambda: node.battery.setting == DISCHARGE, 20)

        # Duplicates (QoS 1 redelivery): the last answer again, never a second start.
        for _ in range(3):
            await backend.send(SITE, "cmd", first)
        await until(lambda: len(acks(backend, "dr-1")) >= 6, 20)

        # A replayed nonce under a new id; a late one (issued long ago); an expired one.
        nonce = json.loads(first)["nonce"]
        await backend.send(SITE, "cmd", signer.command(clock, nonce=nonce))  # dr-2
        old = (clock.now() - timedelta(hours=3)).replace(microsecond=0)
        await backend.send(SITE, "cmd", signer.command(clock, issued_at=old.isoformat()))  # dr-3
        ended = slot_start(clock.now()) - timedelta(hours=2)
        await backend.send(
            SITE,
            "cmd",
            signer.command(clock, start=(ended - SLOT).isoformat(), end=ended.isoformat()),
        )  # dr-4
        await until(lambda: all(acks(backend, f"dr-{n}") for n in (2, 3, 4)), 20)
        await until(
            lambda: "expired" in acks(backend, "dr-4") or "rejected" in acks(backend, "dr-4")
        )

        # Reordered revisions: rev 3 arrives before rev 2; rev 2 must change nothing.
        rev3 = signer.command(clock, id="dr-5", rev=3, power_w=1000, priority=20)
        rev2 = signer.command(clock, id="dr-5", rev=2, power_w=2500, priority=20)
        await backend.send(SITE, "cmd", rev3)
        await until(lambda: "started" in acks(backend, "dr-5"), 30)
        await backend.send(SITE, "cmd", rev2)
        await asyncio.sleep(1.0)
        assert {a["rev"] for a in backend.of("cmd/ack") if a.get("id") == "dr-5"} == {3}

        # The daemon dies with dr-5 active; the backend cancels it while the daemon is down.
        await daemon.kill9()
        await asyncio.sleep(0.5)
        await backend.send(SITE, "cmd", cancel(signer, clock, "dr-5", 4))
        await asyncio.sleep(0.5)
        await daemon.start()
        await until(lambda: "cancelled" in acks(backend, "dr-5"), 60)
        await until(lambda: node.battery.setting == AUTO, 30)
        # The redelivered, already-answered original after the restart: the stored answer.
        await backend.send(SITE, "cmd", first)
        await asyncio.sleep(1.0)

    assert backend.invalid == [], backend.invalid
    for a in backend.of("cmd/ack"):
        print(a.get("id"), a.get("rev"), a["status"], a.get("reason", ""))
    for cmd_id in ("dr-1", "dr-5"):
        # A duplicate delivery is answered with the stored last ack, so "started" may be seen
        # once per duplicate; what must never happen is a second, different start.
        assert statuses(backend, cmd_id)["started"] >= 1, backend.of("cmd/ack")
    # Every "started" after the first is a re-sent answer, identical to the first one.
    for cmd_id in ("dr-1", "dr-5"):
        started = [
            a for a in backend.of("cmd/ack") if a.get("id") == cmd_id and a["status"] == "started"
        ]
        assert all(a == started[0] for a in started), started
    reasons = {
        n: [a.get("reason") for a in backend.of("cmd/ack") if a.get("id") == f"dr-{n}"]
        for n in (2, 3, 4)
    }
    assert reasons[2][-1] == "replayed nonce", reasons
    assert "window" in str(reasons[3][-1]), reasons
    assert acks(backend, "dr-4") == ["received", "expired"], reasons
    assert "started" not in acks(backend, "dr-2") + acks(backend, "dr-3") + acks(backend, "dr-4")
    assert [a["rev"] for a in backend.of("cmd/ack") if a.get("id") == "dr-5"][-1] == 4
    assert daemon.starts == 2
