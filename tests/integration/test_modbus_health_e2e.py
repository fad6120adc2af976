"""A Modbus device that stops answering, seen from the backend: the whole gateway from its config
file, a register-map PV inverter on a real pymodbus server, real mosquitto. The device is marked
faulty in ``<p>/state`` and raises a ``device_lost`` alarm naming it; both clear when it answers
again, and everything matches the published schemas."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.clock import JST, AcceleratedClock
from tests.drivers.modbus.mapsim import PV_REGISTERS, MapSim, device_toml, tcp_server
from tests.support.home import simulated_home
from tests.support.mosquitto import Mosquitto

NODE = "127.0.2.1"


def _lost(backend: Any, active: bool) -> list[dict[str, Any]]:
    return [
        a
        for a in backend.of("alarm")
        if a["kind"] == "device_lost" and a.get("device") == "roof2" and a["active"] is active
    ]


def _status(backend: Any) -> str | None:
    for state in reversed(backend.of("state")):
        if "devices" in state:
            return str(state["devices"].get("roof2", {}).get("status"))
    return None


async def test_faulty_modbus_device_in_state_and_alarms(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = AcceleratedClock(30, datetime(2026, 11, 27, 11, 0, 0, tzinfo=JST))
    sim = MapSim(clock, pv_w=1500)
    sim.mute()
    async with tcp_server(sim.device(4)) as served:
        where = f'host = "{served.host}"\nport = {served.port}\ntimeout_s = 0.2\nretries = 0'
        extra = device_toml("roof2", "pv", PV_REGISTERS, where=where, unit_id=4)
        async with simulated_home(
            tmp_path,
            mosquitto.port,
            clock,
            NODE,
            ("battery",),
            edit_config=lambda text: text + "\n" + extra,
        ) as home:
            backend = home.backend
            await backend.wait_for(lambda: _lost(backend, True), timeout=30)
            await backend.wait_for(lambda: _status(backend) == "faulty", timeout=30)
            alarm = _lost(backend, True)[0]
            assert "roof2 not answering" in alarm["message"]
            assert "no answer within 0.2 s" in alarm["message"]
            sim.mute(False)
            await backend.wait_for(lambda: _lost(backend, False), timeout=30)
            await backend.wait_for(lambda: _status(backend) == "ok", timeout=30)
            await backend.wait_for(
                lambda: any("pv.power_w" in t for t in backend.of("telemetry")), timeout=30
            )
    assert backend.invalid == []
