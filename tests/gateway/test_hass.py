"""Home Assistant discovery: payloads HA accepts (the Energy dashboard's classes), ids stable across
restarts, states rate-limited, stale entities removed, availability right on start, stop and
kill -9, all against a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest

from gateway.clock import JST, SystemClock
from gateway.config import HomeAssistantConfig, load
from gateway.hass import ENTITIES, HomeAssistant, Layout, StateLimiter, families_of
from gateway.readings import ReadingsHub
from tests.conftest import BASE_CONFIG, REPO
from tests.gateway.test_config import issues_of
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.observe import Watcher, watching

NODE = "chisan_sg_0001"
ALL = frozenset({"meter", "pv", "battery"})
REQUIRED = {"name", "unique_id", "state_topic", "availability_topic", "device"}
AVAIL = f"chisan/{NODE}/availability"


def now() -> datetime:
    return datetime.now(JST)


# ---------------------------------------------------------------------- pure parts


def test_discovery_payloads() -> None:
    layout = Layout("homeassistant", NODE, ALL, "1.0")
    docs = layout.discovery()
    assert len(docs) == len(ENTITIES) == 9
    for topic, doc in docs.items():
        assert set(doc) >= REQUIRED, topic
        assert topic == f"homeassistant/sensor/{NODE}/{doc['unique_id'][len(NODE) + 1 :]}/config"
        assert doc["availability_topic"] == AVAIL
        assert doc["default_entity_id"] == f"sensor.{doc['unique_id']}"
        assert "object_id" not in doc  # no longer accepted by Home Assistant
        assert doc["device"]["identifiers"][0].startswith(NODE + "_")
    energy = [d for d in docs.values() if d.get("device_class") == "energy"]
    assert {d["unique_id"] for d in energy} == {
        f"{NODE}_meter_import_energy",
        f"{NODE}_meter_export_energy",
        f"{NODE}_pv_energy",
    }
    for doc in energy:  # what the Energy dashboard requires
        assert doc["state_class"] == "total_increasing"
        assert doc["unit_of_measurement"] in ("kWh", "Wh")
    mode = docs[f"homeassistant/sensor/{NODE}/battery_mode/config"]
    assert mode["device_class"] == "enum" and "discharge" in mode["options"]
    assert len({d["unique_id"] for d in docs.values()}) == 9
    # Derived from configuration alone: the same on every start.
    assert Layout("homeassistant", NODE, ALL, "2.0").discovery().keys() == docs.keys()


def test_states_from_readings() -> None:
    layout = Layout("ha", NODE, ALL)
    assert layout.states("meter.power_w", -1500) == [
        (f"chisan/{NODE}/meter/import_power", "0"),
        (f"chisan/{NODE}/meter/export_power", "1500"),
    ]
    assert layout.states("meter.power_w", 320.5)[0][1] == "320.5"
    assert layout.states("meter.power_w", None) == []
    assert layout.states("meter.power_w", float("nan")) == []
    assert layout.states("battery.mode", "standby") == [(f"chisan/{NODE}/battery/mode", "standby")]
    assert layout.states("battery.mode", "warp") == []
    assert Layout("ha", NODE, frozenset({"meter"})).states("pv.power_w", 10) == []


def test_stale_configs_and_their_states() -> None:
    layout = Layout("ha", NODE, frozenset({"meter"}))
    old = Layout("ha", NODE, ALL)
    retained = {t: json.dumps(d).encode() for t, d in old.discovery().items()}
    retained["ha/sensor/x/odd/config"] = b"not json"
    out = dict(layout.stale(retained))
    assert f"ha/sensor/{NODE}/battery_soc/config" in out
    assert f"chisan/{NODE}/battery/soc" in out
    assert f"ha/sensor/{NODE}/meter_import_energy/config" not in out
    assert f"chisan/{NODE}/meter/import_energy" not in out
    assert "ha/sensor/x/odd/config" in out
    assert set(out.values()) == {b""}


def test_limiter_publishes_changes_at_most_once_per_interval() -> None:
    lim = StateLimiter(10)
    lim.offer("a", "1")
    assert lim.due(0) == [("a", "1")]
    lim.offer("a", "1")  # unchanged: nothing
    assert lim.due(1) == [] and lim.next_due(1) is None
    lim.offer("a", "2")
    lim.offer("a", "3")
    assert lim.due(5) == []
    assert lim.next_due(5) == 5
    assert lim.due(10) == [("a", "3")]  # the newest value, once
    lim.offer("a", "4")
    lim.offer("a", "3")  # back to what was sent: nothing pending
    assert lim.due(30) == []
    assert lim.known() == [("a", "3")]


def test_families_from_config(write_config: Callable[..., Path]) -> None:
    cfg = load(write_config())
    assert families_of(cfg) == {"meter", "battery"}


# ---------------------------------------------------------------------- config


def test_home_assistant_config(write_config: Callable[..., Path]) -> None:
    cfg = load(write_config())
    assert not cfg.home_assistant.enabled
    text = BASE_CONFIG + '\n[home_assistant]\nenabled = true\nurl = "mqtt://192.168.1.10"\n'
    ha = load(write_config(text)).home_assistant
    assert ha.node_id == NODE and ha.discovery_prefix == "homeassistant"
    assert ha.client_id == f"{NODE}-ha"


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ("enabled = true", "home_assistant.url", "missing"),
        ('enabled = true\nurl = "http://x"', "home_assistant.url", "mqtt://"),
        ('enabled = true\nurl = "mqtt://127.0.0.1:1883"', "home_assistant.url", "market broker"),
        ('url = "mqtt://h"\npassword = "x"', "home_assistant.password", "own file"),
        ('url = "mqtt://h"\nnode_id = "a b"', "home_assistant.node_id", "A-Z"),
        ('url = "mqtt://h"\ndiscovery_prefix = "ha/#"', "home_assistant.discovery_prefix", ""),
        ('url = "mqtt://h"\nstate_interval_s = 0', "home_assistant.state_interval_s", ""),
    ],
)
def test_bad_home_assistant_config(
    write_config: Callable[..., Path], body: str, key: str, words: str
) -> None:
    [issue] = issues_of(write_config(BASE_CONFIG + f"\n[home_assistant]\n{body}\n"))
    assert issue.path == key and words in issue.message


# ---------------------------------------------------------------------- against mosquitto


def ha_cfg(port: int, **over: object) -> HomeAssistantConfig:
    fields: dict[str, object] = {
        "enabled": True,
        "url": f"mqtt://127.0.0.1:{port}",
        "client_id": f"{NODE}-ha",
        "node_id": NODE,
        "state_interval_s": 0.3,
    }
    fields.update(over)
    return HomeAssistantConfig(**fields)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def bridge(
    port: int, hub: ReadingsHub, families: frozenset[str] = ALL
) -> AsyncIterator[HomeAssistant]:
    ha = HomeAssistant(
        ha_cfg(port), hub, SystemClock(), families, reconnect_min_s=0.1, reconnect_max_s=0.3
    )
    task = asyncio.create_task(ha.run())
    try:
        yield ha
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def configs(w: Watcher) -> dict[str, dict[str, object]]:
    return {
        t: json.loads(p)
        for t, p in w.last.items()
        if t.startswith("homeassistant/") and t.endswith("/config") and p
    }


async def test_discovery_states_and_availability(mosquitto: Mosquitto) -> None:
    hub = ReadingsHub()
    hub.update("battery.soc_pct", 64, now(), "device")  # known before the bridge starts
    async with watching(mosquitto.port, "homeassistant/#", f"chisan/{NODE}/#") as w:
        async with bridge(mosquitto.port, hub):
            await w.wait(lambda: w.last.get(AVAIL) == b"online")
            await w.wait(lambda: len(configs(w)) == 9)
            soc = f"chisan/{NODE}/battery/soc"
            await w.wait(lambda: w.last.get(soc) == b"64")
            # A burst of readings: the newest value arrives, not every one of them.
            power = f"chisan/{NODE}/meter/import_power"
            for watts in range(1000, 1020):
                hub.update("meter.power_w", watts, now(), "meter")
                await asyncio.sleep(0.005)
            await w.wait(lambda: w.last.get(power) == b"1019")
            sent = [p for t, p in w.history if t == power]
            assert len(sent) <= 3, sent
            # Home Assistant restarts and says so: discovery again.
            before = sum(1 for t, _ in w.history if t.endswith("/config"))
            await mosquitto_publish(mosquitto.port, "homeassistant/status", b"online")
            await w.wait(
                lambda: sum(1 for t, _ in w.history if t.endswith("/config")) >= before + 9
            )
        await w.wait(lambda: w.last.get(AVAIL) == b"offline")  # a clean stop says offline


async def test_restart_keeps_ids_and_removes_what_is_gone(mosquitto: Mosquitto) -> None:
    hub = ReadingsHub()
    hub.update("battery.soc_pct", 50, now(), "device")
    async with bridge(mosquitto.port, hub), watching(mosquitto.port, "homeassistant/#") as w:
        await w.wait(lambda: len(configs(w)) == 9)
    first = configs(w)
    # The battery and PV were removed from the config: only the meter is left.
    async with (
        watching(mosquitto.port, "homeassistant/#", f"chisan/{NODE}/#") as w2,
        bridge(mosquitto.port, ReadingsHub(), frozenset({"meter"})) as ha,
    ):
        await w2.wait(lambda: w2.last.get(f"chisan/{NODE}/battery/soc") == b"", 10)
        await w2.wait(lambda: len(configs(w2)) == 4)
        assert len(ha.removed) == 5
    kept = configs(w2)
    assert {t: d["unique_id"] for t, d in kept.items()} == {t: first[t]["unique_id"] for t in kept}
    assert all(d["device"] == first[t]["device"] for t, d in kept.items())  # type: ignore[index]
    # A Home Assistant connecting now sees only the meter's four, retained.
    async with watching(mosquitto.port, "homeassistant/#") as late:
        await asyncio.sleep(0.3)
        assert set(configs(late)) == set(kept)


async def test_kill_minus_nine_leaves_offline(mosquitto: Mosquitto) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.hass_child",
        str(mosquitto.port),
        NODE,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with watching(mosquitto.port, AVAIL) as w:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 20)
            assert line.strip() == b"ready"
            await w.wait(lambda: w.last.get(AVAIL) == b"online")
            child.kill()  # SIGKILL: no goodbye, the broker publishes the will
            await asyncio.wait_for(child.wait(), 5)
            await w.wait(lambda: w.last.get(AVAIL) == b"offline", 10)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_broker_down_at_start_then_up(tmp_path: Path) -> None:
    port = free_port()
    async with bridge(port, ReadingsHub(), frozenset({"meter"})) as ha:
        await asyncio.sleep(0.5)
        assert ha.connects == 0
        broker = Mosquitto(tmp_path / "late", port=port)
        broker.start()
        try:
            async with watching(port, AVAIL) as w:
                await w.wait(lambda: w.last.get(AVAIL) == b"online", 10)
        finally:
            broker.stop()


async def mosquitto_publish(port: int, topic: str, payload: bytes) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, payload, qos=1)


def test_each_pv_inverter_is_a_device_when_there_are_several(
    write_config: Callable[..., Path],
) -> None:
    two = BASE_CONFIG + (
        '\n[[device]]\nname = "roof"\nkind = "pv"\nprotocol = "echonet"\nhost = "127.0.0.21"\n'
        'eoj = "027901"\n\n[[device]]\nname = "pv-flex"\nkind = "pv"\nprotocol = "modbus"\n'
        'host = "192.0.2.30"\nsunspec = true\n'
    )
    families = families_of(load(write_config(two)))
    assert families == {"meter", "battery", "pv", "pv:roof", "pv:pv-flex"}
    layout = Layout("ha", NODE, families)
    docs = layout.discovery()
    flex = docs[f"ha/sensor/{NODE}/pv_pv_flex_power/config"]
    assert flex["unique_id"] == f"{NODE}_pv_pv_flex_power"
    assert flex["device"]["name"] == "Solar PV pv_flex"
    assert flex["state_topic"] == f"chisan/{NODE}/pv_pv_flex/power"
    assert layout.states("pv.power_w@roof", 3000) == [(f"chisan/{NODE}/pv_roof/power", "3000")]
    assert layout.states("pv.power_w", 4200) == [(f"chisan/{NODE}/pv/power", "4200")]


async def test_several_pv_inverters_show_their_sum_and_each(mosquitto: Mosquitto) -> None:
    hub = ReadingsHub()
    hub.sum_over("pv.power_w", ["roof", "flex"])
    hub.update("pv.power_w", 3000, now(), "device", device="roof")  # before the bridge starts
    families = frozenset({"pv", "pv:roof", "pv:flex"})
    async with (
        watching(mosquitto.port, "homeassistant/#", f"chisan/{NODE}/#") as w,
        bridge(mosquitto.port, hub, families),
    ):
        await w.wait(lambda: w.last.get(AVAIL) == b"online")
        await w.wait(lambda: w.last.get(f"chisan/{NODE}/pv_roof/power") == b"3000")
        hub.update("pv.power_w", 1200, now(), "device", device="flex")
        await w.wait(lambda: w.last.get(f"chisan/{NODE}/pv_flex/power") == b"1200")
        await w.wait(lambda: w.last.get(f"chisan/{NODE}/pv/power") == b"4200")
