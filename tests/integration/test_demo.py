"""The README's first command works: ``chisan demo`` as a real subprocess, on both brokers.

Each run is checked against what its reference backend stored (``--records``): the summary's
counts and energies must be those of the records, the records must form the gateway's signed,
gapless chain, and every DR command the backend sent must have been acknowledged. The embedded
broker run finishes on its own after ``--duration``. The mosquitto run goes on past a DR event's
end and its report, then is ended with Ctrl-C (SIGINT): it must still exit 0 with its summary.
Between them they run both batteries: the SunSpec storage inverter and the ECHONET one.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.baseline import Direction, Event, compute
from gateway.demo.broker import mosquitto_binary
from gateway.provenance import parse_public_key, verify_chain

ROOT = Path(__file__).resolve().parents[2]


def demo_command(records: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gateway",
        "demo",
        "--json",
        "--records",
        str(records),
        *args,
    ]


def _lines(stream: Any, into: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)


def wait_for(lines: queue.Queue[str | None], pattern: str, seconds: float) -> Iterator[str]:
    """Yield stderr lines until one matches ``pattern``; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            pytest.fail(f"the demo ended before {pattern!r}")
        yield line
        if re.search(pattern, line):
            return
    pytest.fail(f"no {pattern!r} within {seconds} s")


def check(summary: dict[str, Any], records_file: Path) -> list[dict[str, Any]]:
    """The summary agrees with the stored records; returns them."""
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert records, "the backend stored no record"
    key = parse_public_key(summary["site_public_key"])
    result = verify_chain(records, key, site=summary["site"])
    assert result.ok, str(result)
    assert records[0]["seq"] == 1

    assert summary["slots_published"] == len(records)
    assert summary["slots_acked"] == summary["slots_published"]
    assert summary["gateway_records"] == len(records)
    assert summary["gateway_unacked"] == 0

    start = datetime.fromisoformat(summary["sim_start"])
    newest: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec["slot_start"] not in newest or rec["rev"] >= newest[rec["slot_start"]]["rev"]:
            newest[rec["slot_start"]] = rec
    day = [r for r in newest.values() if datetime.fromisoformat(r["slot_start"]) >= start]
    history = [r for r in newest.values() if datetime.fromisoformat(r["slot_start"]) < start]
    settled = [r for r in day if r["source"] != "missing"]
    assert summary["day_slots"] == len(day) >= 1
    assert summary["history_slots"] == len(history) >= 5 * 48  # the baseline days' slots
    assert summary["import_wh"] == sum(r["import_wh"] or 0 for r in settled) >= 0
    assert summary["export_wh"] == sum(r["export_wh"] or 0 for r in settled) >= 0
    assert summary["import_wh"] + summary["export_wh"] > 0

    # Both PV inverters are in the stored sub-metering: the records' pv_wh is the ECHONET PV's
    # and the SunSpec PV's counters together, each following the same sky at its own rating.
    assert summary["pv_wh"] == sum(r.get("pv_wh") or 0 for r in day)
    per_pv = summary["pv_device_wh"]
    assert set(per_pv) == {"pv", "pv_flex"}
    assert summary["pv_wh"] == per_pv["pv"] + per_pv["pv_flex"]
    if summary["pv_wh"] > 1000:  # a daytime run: enough energy to compare the arrays
        assert 0.3 < per_pv["pv_flex"] / per_pv["pv"] < 0.6  # 2.0 kW vs 4.5 kW of modules

    assert summary["commands_sent"] >= 1
    assert summary["commands_acked"] == summary["commands_sent"]
    for cmd in summary["commands"]:
        assert cmd["statuses"][:2] == ["received", "scheduled"], cmd
        assert "rejected" not in cmd["statuses"], cmd
    clamped = sum(c["statuses"].count("clamped") for c in summary["commands"])
    assert sum(summary["clamps"].values()) == clamped
    return records


def test_demo_on_the_embedded_broker_finishes_on_its_own(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    cmd = demo_command(
        records,
        "--broker=embedded",
        "--battery=sunspec",
        "--start=10:20",
        "--speed=500",
        "--duration=20",
        "--node=127.0.5.20",
        "--bind=127.0.5.1",
    )
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "broker amqtt" in done.stderr and "MQTT 3.1.1" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["interrupted"] is False
    assert summary["broker"] == "amqtt" and summary["mqtt_protocol"] == "3.1.1"
    assert summary["battery"] == "sunspec"
    assert summary["wall_s"] >= 20
    check(summary, records)
    assert summary["commands"][0]["kind"] == "battery_charge"  # 上げDR from 10:30


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_demo_on_mosquitto_runs_a_dr_event_to_its_report_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    records = tmp_path / "records.jsonl"
    cmd = demo_command(
        records,
        "--broker=mosquitto",
        "--battery=echonet",
        "--start=12:00",
        "--speed=600",
        "--duration=60",
        "--node=127.0.5.21",
        "--bind=127.0.5.2",
    )
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    try:
        # The water heating's DR report (12:00-13:00), then the event's last slot (13:00-13:30)
        # stored at the backend: then Ctrl-C.
        seen = list(wait_for(lines, "DR report water_heater_heat", 45))
        last_slot = r"^\d\d:\d\d slot \d\d-\d\d 13:00 "
        if not any(re.search(last_slot, line) for line in seen):
            seen += list(wait_for(lines, last_slot, 15))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(seen)[-3000:]
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert summary["broker"] == "mosquitto" and summary["mqtt_protocol"] == "5"
    assert summary["battery"] == "echonet"
    stored = check(summary, records)

    # The gateway's own report of the 上げDR water heating (12:00-13:00).
    heat = next(c for c in summary["commands"] if c["kind"] == "water_heater_heat")
    assert heat["statuses"][-1] == "completed", heat
    report = heat["report"]
    assert report is not None, "".join(seen)[-3000:]
    assert report["ok"] is True, report
    assert len(report["baseline_days"]) == 4  # High 4 of 5
    assert report["actual_wh"] == sum(s["actual_wh"] for s in report["slots"])

    # The market's view of the whole 上げDR event, recomputed here from the stored records.
    event = next(e for e in summary["events"] if e["direction"] == "up")
    assert event["ok"] is True, event
    newest: dict[datetime, dict[str, Any]] = {}
    for rec in stored:
        at = datetime.fromisoformat(rec["slot_start"])
        if at not in newest or rec["rev"] >= newest[at]["rev"]:
            newest[at] = rec
    start = datetime.fromisoformat(event["start"])
    result = compute(
        {at: r["import_wh"] for at, r in newest.items()},
        {start.date()},
        Event(start, datetime.fromisoformat(event["end"]), Direction.UP),
    )
    assert result.ok, result.reason
    assert event["actual_wh"] == result.actual_total_wh
    assert event["baseline_wh"] == round(result.adjusted_total_wh or 0, 1)
    assert event["delivered_wh"] == round(result.delivered_total_wh or 0, 1)
    # Battery charging and the EcoCute together exceed the midday PV surplus: more import.
    assert event["delivered_wh"] > 0, event
    assert summary["dr_delivered_wh"]["up"] == event["delivered_wh"]


def test_demo_says_why_when_its_node_address_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.5.24", 3610))
        done = subprocess.run(
            demo_command(
                tmp_path / "records.jsonl",
                "--broker=embedded",
                "--duration=5",
                "--node=127.0.5.24",
                "--bind=127.0.5.5",
            ),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2, done.stderr
    assert "cannot start the simulated home" in done.stderr
    assert "--node" in done.stderr
    assert done.stdout == ""
