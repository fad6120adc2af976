"""What ``chisan setup`` writes when discovery finds more than one battery."""

from __future__ import annotations

from pathlib import Path

from gateway.config import load
from gateway.installer import Answers, FoundDevice, render_config


def test_a_second_battery_found_is_written_disabled(tmp_path: Path) -> None:
    answers = Answers(
        site="site-0001",
        broker="mqtt://192.0.2.1",
        fit=False,
        serial=None,
        devices=[
            FoundDevice("battery", "echonet", "192.0.2.20", eoj="027D01", name="battery"),
            FoundDevice("pv", "echonet", "192.0.2.20", eoj="027901", name="pv"),
            FoundDevice("battery", "modbus", "192.0.2.30", port=502, unit_id=1, name="battery-2"),
            FoundDevice("pv", "modbus", "192.0.2.31", port=502, unit_id=1, name="pv-2"),
        ],
    )
    path = tmp_path / "chisan.toml"
    path.write_text(render_config(answers, "2026-11-27T12:00:00+09:00"))
    cfg = load(path)
    enabled = {d.name: d.enabled for d in cfg.devices}
    assert enabled == {"battery": True, "pv": True, "battery-2": False, "pv-2": True}
