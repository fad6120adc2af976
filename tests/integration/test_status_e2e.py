"""``chisan status`` against a running gateway: the simulated home (meter emulator on a pty,
ECHONET node, real mosquitto, a backend that acks) and the daemon's real control socket."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.clock import JST, AcceleratedClock
from gateway.slots import slot_start
from tests.conftest import BASE_CONFIG, venv_bin
from tests.support.backend import Signer, acks
from tests.support.home import SITE, simulated_home, until
from tests.support.mosquitto import Mosquitto

NODE = "127.0.4.1"


def own_bind(text: str) -> str:
    """The gateway side on this file's own loopback address (UDP 3610 there is ours alone)."""
    return text.replace('bind = "127.0.0.1"', 'bind = "127.0.4.20"').replace(
        'multicast_interface = "127.0.0.1"', 'multicast_interface = "127.0.4.20"'
    )


@dataclass
class Ran:
    exit_code: int
    output: str


async def _cli(*args: str) -> Ran:
    """``chisan`` as its own process, as an operator runs it beside the daemon."""
    proc = await asyncio.create_subprocess_exec(
        venv_bin("chisan"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "160"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return Ran(proc.returncode or 0, out.decode())


async def test_status_reports_flows_commands_slots_and_alarms(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = AcceleratedClock(30, datetime(2026, 11, 27, 11, 59, 0, tzinfo=JST))
    signer = Signer(tmp_path)
    async with simulated_home(
        tmp_path, mosquitto.port, clock, NODE, ("pv", "battery"), edit_config=own_bind, soc_pct=55
    ) as home:
        app, cfg_path = home.app, str(home.cfg_path)
        await until(lambda: app.hub.latest("meter.power_w") is not None, 30)
        await until(lambda: app.hub.latest("battery.soc_pct") is not None, 30)
        await until(lambda: app.hub.latest("pv.power_w") is not None, 30)
        await until(lambda: app.store.max_seq() > 0, 60)
        await until(lambda: app.control.measurements().pv_contract != "unknown", 30)
        await until(lambda: app.control.measurements().ratings is not None, 30)
        app.alarm_log.add({"kind": "disk_full", "active": True, "message": "test alarm"})

        out = await _cli("status", "-c", cfg_path, "--json")
        assert out.exit_code == 0, out.output
        reply = json.loads(out.output)
        assert reply["ok"] is True and reply["site"] == "demo-0001"
        flows = reply["flows"]
        for key in ("meter_w", "pv_w", "battery_w", "soc_pct"):
            assert isinstance(flows[key]["value"], int | float), key
            assert flows[key]["at"].endswith("+09:00")
        expected = flows["meter_w"]["value"] + flows["pv_w"]["value"] - flows["battery_w"]["value"]
        assert abs(flows["house_w"] - expected) < 0.2
        assert flows["soc_pct"]["value"] == 55
        assert reply["meter_link"]["state"] == "up"
        assert reply["meter_link"]["last_join"]["dialect"] in ("bp35a1", "bp35c0", "rl7023")
        names = {d["name"]: d for d in reply["devices"]}
        assert names["battery"]["answering"] is True and names["pv"]["driven"] is True
        assert names["ecocute"]["enabled"] is False
        assert reply["commands"] == {"active": {}, "pending": []}
        slots = reply["slots"]
        assert 1 <= len(slots) <= 6
        assert [s["seq"] for s in slots] == sorted((s["seq"] for s in slots), reverse=True)
        # The newest records at the time of asking (backfill may have appended more since).
        assert slots[0]["seq"] <= app.store.max_seq()
        stored = app.store.records_by_seq(slots[-1]["seq"], slots[0]["seq"])
        assert [r["slot_start"] for r in reversed(stored)] == [s["slot_start"] for s in slots]
        assert {"slot_start", "import_wh", "export_wh", "delivered", "source"} <= set(slots[0])
        assert reply["outbox"]["depth"] == reply["backlog"]
        if reply["backlog"]:
            assert reply["outbox"]["oldest_seq"] >= 1 and reply["outbox"]["oldest_slot"]
        assert reply["alarms"]["recent"][0]["message"] == "test alarm"
        assert isinstance(reply["alarms"]["active"], list)
        assert reply["override"] is None
        caps = reply["capabilities"]
        assert caps["battery"]["capacity_wh"] == 9800
        assert caps["battery"]["reverse_flow_ok"] is True
        assert caps["pv_contract"] == "non_fit"

        # A DR command in its window: in force for the battery family, and listed.
        # Its window spans several slots: the accelerated clock must not end it before we ask.
        start = slot_start(clock.now())
        window = {"start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat()}
        await home.backend.send(SITE, "cmd", signer.command(clock, power_w=1500, **window))
        await until(lambda: "scheduled" in acks(home.backend, "dr-1"), 20)
        with_cmd = json.loads((await _cli("status", "-c", cfg_path, "--json")).output)
        assert with_cmd["commands"]["active"] == {
            "battery": {"id": "dr-1", "rev": 1, "kind": "battery_discharge"}
        }
        [pending] = with_cmd["commands"]["pending"]
        assert pending["id"] == "dr-1" and pending["power_w"] == 1500
        assert pending["state"] in ("scheduled", "started")
        assert pending["kind"] == "battery_discharge" and pending["end"]

        # An override and acknowledged slots show up in the next answer.
        set_ = await _cli("override", "battery", "standby", "--until", "23:59", "-c", cfg_path)
        assert set_.exit_code == 0, set_.output
        # Ask until the backend has acknowledged everything (a live boundary may add a record).
        async with asyncio.timeout(30):
            while True:
                await until(lambda: app.store.backlog_count() == 0, 30)
                again = json.loads((await _cli("status", "-c", cfg_path, "--json")).output)
                if again["outbox"]["depth"] == 0:
                    break
        assert again["override"]["mode"] == "standby"
        assert again["outbox"] == {
            "depth": 0,
            "oldest_seq": None,
            "oldest_slot": None,
            "attempts": None,
        }
        assert all(s["delivered"] for s in again["slots"])

        # The human view names every section.
        text = await _cli("status", "-c", cfg_path)
        assert text.exit_code == 0, text.output
        for words in (
            "power flows",
            "house",
            "battery SOC",
            "smart meter",
            "standby until",
            "last slot records",
            "acked",
            "devices",
            "test alarm",
        ):
            assert words in text.output, words

        # --watch refreshes: two frames as JSON lines.
        watched = await _cli(
            "status", "-c", cfg_path, "--watch", "--json", "--interval", "0.2", "--count", "2"
        )
        assert watched.exit_code == 0, watched.output
        frames = [json.loads(line) for line in watched.output.splitlines()]
        assert len(frames) == 2 and all(f["ok"] for f in frames)
        live = await _cli("status", "-c", cfg_path, "--watch", "--interval", "0.2", "--count", "2")
        assert live.exit_code == 0 and "power flows" in live.output


def test_status_without_daemon_says_so(
    write_config: Callable[[str], Path], config_dir: Path
) -> None:
    cfg = write_config(BASE_CONFIG + '\n[control]\nsocket = "control.sock"\n')
    out = CliRunner().invoke(main, ["status", "-c", str(cfg)])
    assert out.exit_code == 2
    assert f"no control socket at {config_dir / 'control.sock'}: is chisan running?" in out.output
    # A socket file left behind by a killed daemon: refused, same advice.
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(config_dir / "control.sock"))
    stale.close()
    out = CliRunner().invoke(main, ["status", "-c", str(cfg), "--json"])
    assert out.exit_code == 2 and "is chisan running?" in out.output
