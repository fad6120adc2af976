"""Metrics and Home Assistant discovery on the whole gateway: a simulated home (meter on a pty,
ECHONET battery + PV on loopback), the market broker with a backend, and a second mosquitto as
the resident's broker. The scrape follows the simulation: readings equal what the devices
answer, the outbox fills while the backend does not ack and drains when it does, a command is
counted by ack status and a clamp by interlock rule, a broker crash by a reconnect; Home
Assistant sees the same values."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from gateway.clock import JST, AcceleratedClock
from tests.support.backend import Signer, acks
from tests.support.home import simulated_home, until
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.observe import scrape, value, watching

SITE = "demo-0001"
NODE = "127.0.6.1"
NODE_ID = "chisan_demo_0001"


async def test_metrics_and_home_assistant_follow_the_simulated_home(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = AcceleratedClock(20, datetime(2026, 11, 27, 16, 1, 0, tzinfo=JST))
    signer = Signer(tmp_path)
    resident = Mosquitto(tmp_path / "resident")
    resident.start()
    port = free_port()
    extra = (
        "\n[limits]\nsoc_reserve_pct = 30\nexport_limit_w = 4500\nmin_dwell_s = 0\n"
        f"\n[metrics]\nenabled = true\nport = {port}\n"
        f'\n[home_assistant]\nenabled = true\nurl = "mqtt://127.0.0.1:{resident.port}"\n'
        "state_interval_s = 1\n"
    )
    try:
        async with (
            watching(resident.port, "homeassistant/#", f"chisan/{NODE_ID}/#") as ha,
            simulated_home(
                tmp_path,
                mosquitto.port,
                clock,
                NODE,
                ("battery", "pv"),
                edit_config=lambda text: text + extra,
                soc_pct=60,
                mode_delay_s=0.5,
            ) as home,
        ):
            app, node, backend = home.app, home.node, home.backend
            backend.ack = False
            await until(lambda: app.metrics is not None and _listening(app), 30)

            # Readings: the scrape shows what the devices answered.
            await until(lambda: app.uplink.connected and not app.control.failsafe, 60)
            m = await scrape(port)
            soc = value(m, "chisan_battery_soc_percent")
            assert soc == round(node.battery.soc_pct) == app.hub.latest("battery.soc_pct").value
            assert value(m, "chisan_meter_power_watts") == app.hub.latest("meter.power_w").value
            assert value(m, "chisan_pv_power_watts") == app.hub.latest("pv.power_w").value
            assert (value(m, "chisan_meter_import_energy_kwh") or 0) > 0
            assert value(m, "chisan_mqtt_connected") == 1
            assert value(m, "chisan_device_up", device="battery") == 1
            per_device = value(m, "chisan_device_reading", device="battery", key="battery.soc_pct")
            assert per_device == soc
            assert value(m, "chisan_build_info", version=_v(m), site=SITE) == 1
            assert (value(m, "process_resident_memory_bytes") or 0) > 0

            # Outbox: records pile up while the backend does not ack, drain when it does.
            await until(lambda: app.store.backlog_count() >= 20, 60)
            m = await scrape(port)
            depth = value(m, "chisan_outbox_depth")
            assert depth is not None and depth >= 20
            assert value(m, "chisan_slot_records_total", source="meter_history") == depth
            backend.ack = True
            await until(lambda: app.store.backlog_count() == 0, 60)
            m = await scrape(port)
            assert value(m, "chisan_outbox_depth") == 0
            assert (value(m, "chisan_slot_acked_total") or 0) >= depth
            assert (
                value(m, "chisan_slot_acked_delay_seconds_count", source="meter_history") or 0
            ) > 0
            # History records are hours old when stored: they land in the high buckets.
            assert (
                value(
                    m, "chisan_slot_stored_delay_seconds_bucket", source="meter_history", le="60.0"
                )
                == 0
            )

            # A discharge: counted by ack status, and the battery power follows on the scrape.
            await backend.send(SITE, "cmd", signer.command(clock, power_w=2000))
            await until(lambda: "started" in acks(backend, "dr-1"), 30)
            m = await scrape(port)
            for status in ("received", "scheduled", "started"):
                assert value(m, "chisan_command_acks_total", status=status) == 1
            await until(lambda: round(node.battery.power_w) == -2000, 30)
            await until(lambda: _battery_power(app) == -2000, 30)
            m = await scrape(port)
            assert value(m, "chisan_battery_power_watts") == -2000

            # 10 kW: the interlock clamps it; the scrape names the rule the ack names.
            await backend.send(SITE, "cmd", signer.command(clock, power_w=10000, priority=20))
            await until(lambda: "clamped" in acks(backend, "dr-2") or _clamped_start(backend), 30)
            rule = _clamp_rule(backend)
            m = await scrape(port)
            assert (
                value(
                    m,
                    "chisan_interlock_clamps_total",
                    family="battery",
                    rule=rule,
                    outcome="clamped",
                )
                or 0
            ) >= 1
            assert value(m, "chisan_command_acks_total", status="superseded") == 1
            assert backend.invalid == []

            # The market broker crashes and comes back: one reconnect.
            assert value(m, "chisan_mqtt_reconnects_total") == 0
            mosquitto.kill9()
            await until(lambda: not app.uplink.connected, 20)
            assert value(await scrape(port), "chisan_mqtt_connected") == 0
            mosquitto.start()
            await until(lambda: app.uplink.connected, 30)
            m = await scrape(port)
            assert value(m, "chisan_mqtt_reconnects_total") == 1
            assert value(m, "chisan_mqtt_connected") == 1

            # Home Assistant: discovery for the meter, PV and battery, states as on the scrape.
            await ha.wait(lambda: ha.last.get(f"chisan/{NODE_ID}/availability") == b"online")
            configs = {
                t: json.loads(p)
                for t, p in ha.last.items()
                if t.startswith("homeassistant/") and t.endswith("/config")
            }
            devices = {c["device"]["identifiers"][0] for c in configs.values()}
            assert devices == {f"{NODE_ID}_meter", f"{NODE_ID}_pv", f"{NODE_ID}_battery"}
            energy = configs[f"homeassistant/sensor/{NODE_ID}/meter_import_energy/config"]
            assert energy["device_class"] == "energy"
            assert energy["state_class"] == "total_increasing"
            for entity, key in (
                ("battery/soc", "battery.soc_pct"),
                ("battery/power", "battery.power_w"),
            ):
                topic = f"chisan/{NODE_ID}/{entity}"
                await ha.wait(
                    lambda t=topic, k=key: _number(ha.last.get(t)) == app.hub.latest(k).value
                )
            # A Home Assistant that connects later gets the same configs, retained.
            async with watching(resident.port, "homeassistant/#") as late:
                await late.wait(lambda: set(late.last) >= set(configs))
                assert all(late.retained[t] for t in configs)
        # A clean stop says offline.
        await ha_offline(resident.port)
    finally:
        resident.stop()


async def ha_offline(port: int) -> None:
    async with watching(port, f"chisan/{NODE_ID}/availability") as after:
        await after.wait(lambda: after.last.get(f"chisan/{NODE_ID}/availability") == b"offline")


def _number(payload: bytes | None) -> float | None:
    return None if payload is None else float(payload)


def _listening(app: object) -> bool:
    return any(getattr(c, "bound_port", None) for c in getattr(app, "components", []))


def _battery_power(app: object) -> object:
    reading = app.hub.latest("battery.power_w")  # type: ignore[attr-defined]
    return None if reading is None else reading.value


def _v(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> str:
    for name, labels in samples:
        if name == "chisan_build_info":
            return dict(labels)["version"]
    return ""


def _clamped_start(backend: object) -> bool:
    return any(
        a.get("id") == "dr-2" and a["status"] == "started" and a.get("clamped_by")
        for a in backend.of("cmd/ack")  # type: ignore[attr-defined]
    )


def _clamp_rule(backend: object) -> str:
    for a in backend.of("cmd/ack"):  # type: ignore[attr-defined]
        if a.get("id") == "dr-2" and a.get("clamped_by"):
            return str(a["clamped_by"])
    raise AssertionError("no clamp ack for dr-2")
