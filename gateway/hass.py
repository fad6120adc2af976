"""Home Assistant MQTT discovery: the meter, PV and battery on the resident's own broker.

Read-only by design: the gateway publishes discovery configs, availability and states, and
subscribes only to its own retained configs (to remove stale ones) and to Home Assistant's
birth message; nothing received from this broker can reach control. It is a separate connection
from the market uplink because the market broker confines the gateway to its site's topics, and
the home's detailed power flows are the resident's business, not the market's.

:class:`Layout` (topics and discovery payloads) and :class:`StateLimiter` (what to publish when)
are pure; :class:`HomeAssistant` is the asyncio shell around them.

Topics, with ``P`` the discovery prefix and ``N`` the node id:

* ``P/sensor/N/<device>_<entity>/config`` retained discovery config, unique_id
  ``N_<device>_<entity>`` (stable across restarts: derived from configuration only);
* ``chisan/N/availability`` retained ``online``/``offline`` (``offline`` is also the will);
* ``chisan/N/<device>/<entity>`` retained plain state values.

With several PV inverters the "Solar PV" device shows their sum, and each inverter is a device
of its own (``pv_<name>``, family ``pv:<name>``) with its own power.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import secrets
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from drivers import readings as rk
from drivers.capabilities import BatteryMode
from gateway.clock import Clock
from gateway.config import Config, HomeAssistantConfig
from gateway.logs import get_logger
from gateway.readings import Reading, ReadingsHub

ONLINE = "online"
OFFLINE = "offline"
#: How long to wait for the broker to hand back our retained configs before cleaning up.
SYNC_TIMEOUT_S = 10.0


def _positive(value: float) -> float:
    return max(0.0, value)


def _negative(value: float) -> float:
    return max(0.0, -value)


@dataclass(frozen=True)
class Entity:
    """One Home Assistant sensor, fed by one reading of the hub."""

    device: str
    key: str
    name: str
    reading: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    transform: Callable[[float], float] | None = None
    options: tuple[str, ...] | None = None
    icon: str | None = None

    def value(self, raw: Any) -> str | None:
        """The state payload for a reading, or None when it cannot be shown."""
        if self.options is not None:
            return str(raw) if raw is not None and str(raw) in self.options else None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None
        number = float(raw)
        if not math.isfinite(number):
            return None
        if self.transform is not None:
            number = self.transform(number)
        return str(int(number)) if number.is_integer() else f"{number:.3f}".rstrip("0")


DEVICES: dict[str, tuple[str, str]] = {
    "meter": ("Smart meter", "B-route smart meter"),
    "pv": ("Solar PV", "PV inverter"),
    "battery": ("Storage battery", "Storage battery"),
}
ENTITIES: tuple[Entity, ...] = (
    Entity("meter", "import_power", "Import power", rk.METER_POWER_W, "W", "power",
           "measurement", _positive),
    Entity("meter", "export_power", "Export power", rk.METER_POWER_W, "W", "power",
           "measurement", _negative),
    Entity("meter", "import_energy", "Imported energy", rk.METER_IMPORT_KWH, "kWh", "energy",
           "total_increasing"),
    Entity("meter", "export_energy", "Exported energy", rk.METER_EXPORT_KWH, "kWh", "energy",
           "total_increasing"),
    Entity("pv", "power", "Power", rk.PV_POWER_W, "W", "power", "measurement"),
    Entity("pv", "energy", "Generated energy", rk.PV_GENERATED_WH, "Wh", "energy",
           "total_increasing"),
    Entity("battery", "power", "Power (+ charge, - discharge)", rk.BATTERY_POWER_W, "W",
           "power", "measurement"),
    Entity("battery", "soc", "State of charge", rk.BATTERY_SOC_PCT, "%", "battery",
           "measurement"),
    Entity("battery", "mode", "Mode", rk.BATTERY_MODE, device_class="enum",
           options=tuple(m.value for m in BatteryMode), icon="mdi:battery-sync"),
)  # fmt: skip


#: A family naming one PV inverter among several: ``pv:<device name>``.
PV_FAMILY = "pv:"


def families_of(cfg: Config) -> frozenset[str]:
    """The HA devices this gateway can show: the meter when there is a B-route, and each
    enabled PV and battery (and each PV inverter on its own when there are several)."""
    found = {d.kind for d in cfg.devices if d.enabled and d.kind in DEVICES}
    if cfg.broute is not None:
        found.add("meter")
    inverters = [d.name for d in cfg.devices if d.enabled and d.kind == "pv"]
    if len(inverters) > 1:
        found |= {PV_FAMILY + name for name in inverters}
    return frozenset(found)


def _inverter_entity(name: str) -> Entity:
    """One inverter's power; its ``reading`` is ``pv.power_w@<name>`` (the hub's per-device
    reading of that key)."""
    return Entity(
        "pv_" + name.replace("-", "_"),
        "power",
        "Power",
        f"{rk.PV_POWER_W}@{name}",
        "W",
        "power",
        "measurement",
    )


def _device_info(device: str) -> tuple[str, str]:
    if device in DEVICES:
        return DEVICES[device]
    return (f"Solar PV {device.removeprefix('pv_')}", "PV inverter")


@dataclass(frozen=True)
class Layout:
    """Every topic and discovery payload, from configuration alone (so they never drift)."""

    prefix: str
    node_id: str
    families: frozenset[str]
    version: str = "0"

    @property
    def base(self) -> str:
        return f"chisan/{self.node_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def sync(self) -> str:
        return f"{self.base}/sync"

    @property
    def birth(self) -> str:
        return f"{self.prefix}/status"

    @property
    def config_filter(self) -> str:
        return f"{self.prefix}/+/{self.node_id}/+/config"

    @property
    def entities(self) -> tuple[Entity, ...]:
        inverters = sorted(f[len(PV_FAMILY) :] for f in self.families if f.startswith(PV_FAMILY))
        return tuple(e for e in ENTITIES if e.device in self.families) + tuple(
            _inverter_entity(name) for name in inverters
        )

    def state_topic(self, e: Entity) -> str:
        return f"{self.base}/{e.device}/{e.key}"

    def config_topic(self, e: Entity) -> str:
        return f"{self.prefix}/sensor/{self.node_id}/{e.device}_{e.key}/config"

    def unique_id(self, e: Entity) -> str:
        return f"{self.node_id}_{e.device}_{e.key}"

    def config(self, e: Entity) -> dict[str, Any]:
        name, model = _device_info(e.device)
        doc: dict[str, Any] = {
            "name": e.name,
            "unique_id": self.unique_id(e),
            # Home Assistant 2025.10 replaced ``object_id`` with this (domain included).
            "default_entity_id": f"sensor.{self.unique_id(e)}",
            "state_topic": self.state_topic(e),
            "availability_topic": self.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": {
                "identifiers": [f"{self.node_id}_{e.device}"],
                "name": name,
                "model": model,
                "manufacturer": "chisan",
                "sw_version": self.version,
            },
            "origin": {"name": "chisan", "sw": self.version},
        }
        for k, v in (
            ("unit_of_measurement", e.unit),
            ("device_class", e.device_class),
            ("state_class", e.state_class),
            ("icon", e.icon),
        ):
            if v is not None:
                doc[k] = v
        if e.options is not None:
            doc["options"] = list(e.options)
        return doc

    def discovery(self) -> dict[str, dict[str, Any]]:
        return {self.config_topic(e): self.config(e) for e in self.entities}

    def stale(self, retained: dict[str, bytes]) -> list[tuple[str, bytes]]:
        """Retained topics to clear: configs this node published once but no longer has, and
        the state topics those configs named (when they are this node's)."""
        wanted = set(self.discovery())
        out: list[tuple[str, bytes]] = []
        for topic in sorted(retained):
            if topic in wanted:
                continue
            out.append((topic, b""))
            try:
                state = json.loads(retained[topic]).get("state_topic")
            except (ValueError, AttributeError):
                state = None
            mine = isinstance(state, str) and state.startswith(self.base + "/")
            if mine and state not in {self.state_topic(e) for e in self.entities}:
                out.append((state, b""))
        return out

    def states(self, key: str, raw: Any) -> list[tuple[str, str]]:
        """The state payloads one reading yields."""
        out: list[tuple[str, str]] = []
        for e in self.entities:
            if e.reading == key:
                value = e.value(raw)
                if value is not None:
                    out.append((self.state_topic(e), value))
        return out


@dataclass
class StateLimiter:
    """Publish a state when it changes, but each topic at most once per ``interval_s``."""

    interval_s: float
    _sent: dict[str, tuple[str, float]] = field(default_factory=dict)
    _pending: dict[str, str] = field(default_factory=dict)

    def offer(self, topic: str, value: str) -> None:
        last = self._sent.get(topic)
        if last is not None and last[0] == value:
            self._pending.pop(topic, None)
            return
        self._pending[topic] = value

    def due(self, now: float) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for topic, value in list(self._pending.items()):
            last = self._sent.get(topic)
            if last is None or now - last[1] >= self.interval_s:
                out.append((topic, value))
                self._sent[topic] = (value, now)
                del self._pending[topic]
        return out

    def next_due(self, now: float) -> float | None:
        """Seconds until the next pending state may go out (None: nothing pending)."""
        waits = [
            max(0.0, self._sent[t][1] + self.interval_s - now) if t in self._sent else 0.0
            for t in self._pending
        ]
        return min(waits) if waits else None

    def known(self) -> list[tuple[str, str]]:
        """Everything published so far (to repeat after Home Assistant restarts)."""
        return [(t, v) for t, (v, _) in self._sent.items()]


@dataclass
class HomeAssistant:
    """Daemon component: keeps the discovery and states on the resident's broker."""

    cfg: HomeAssistantConfig
    hub: ReadingsHub
    clock: Clock
    families: frozenset[str]
    version: str = "0"
    password: str | None = None
    name: str = "home_assistant"
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.hass", node=self.cfg.node_id)
        self.layout = Layout(
            self.cfg.discovery_prefix, self.cfg.node_id, self.families, self.version
        )
        self.limiter = StateLimiter(self.cfg.state_interval_s)
        self.removed: list[str] = []
        self.connects = 0
        self._wake = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        if self.password is None and self.cfg.password_file is not None:
            from gateway.secrets import read_secret

            self.password = read_secret(self.cfg.password_file).reveal()
        wanted = {e.reading for e in self.layout.entities}
        self._wanted = wanted
        for key in wanted:
            if "@" in key:
                base, device = key.split("@", 1)
                latest = self.hub.by_device(base).get(device)
            else:
                latest = self.hub.latest(key)
            if latest is not None:
                self._on_reading(key, latest)
        self.hub.subscribe(self._on_reading)
        self.hub.subscribe_devices(
            lambda key, device, reading: self._on_reading(f"{key}@{device}", reading)
        )

    def _on_reading(self, key: str, reading: Reading) -> None:
        if key not in self._wanted:
            return
        for topic, value in self.layout.states(key, reading.value):
            self.limiter.offer(topic, value)
        self._wake.set()

    # ------------------------------------------------------------------ connection

    def _client_for(self) -> aiomqtt.Client:
        parts = urlsplit(self.cfg.url)
        tls: aiomqtt.TLSParameters | None = None
        if parts.scheme == "mqtts":
            tls = aiomqtt.TLSParameters(
                ca_certs=str(self.cfg.ca_file) if self.cfg.ca_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        return aiomqtt.Client(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if tls else 1883),
            identifier=self.cfg.client_id,
            username=self.cfg.username,
            password=self.password,
            will=aiomqtt.Will(self.layout.availability, OFFLINE, qos=1, retain=True),
            keepalive=30,
            tls_params=tls,
            logger=logging.getLogger("chisan.hass.mqtt"),
            timeout=10,
        )

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                async with self._client_for() as client:
                    failures = 0
                    self.connects += 1
                    self._client = client
                    try:
                        await self._session(client)
                        _raise_if_cancelled()  # the session ends only when stopped
                    finally:
                        self._client = None
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(self._goodbye(client), 2)
            except aiomqtt.MqttError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Stopping: the client turned the cancellation into a disconnect error.
                    raise asyncio.CancelledError from exc
                failures += 1
                self.log.warning(
                    "Home Assistant broker unavailable", error=str(exc), failures=failures
                )
            cap = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** min(failures, 10))
            await asyncio.sleep(random.uniform(self.reconnect_min_s / 2, cap))

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """A clean stop says offline itself; the will covers a crash."""
        await client.publish(self.layout.availability, OFFLINE, qos=1, retain=True, timeout=2)

    async def _session(self, client: aiomqtt.Client) -> None:
        layout = self.layout
        retained = await self._retained_configs(client)
        _raise_if_cancelled()
        for topic, payload in layout.stale(retained):
            await _send(client, topic, payload, qos=1)
            if topic.endswith("/config"):
                self.removed.append(topic)
                self.log.info("stale Home Assistant entity removed", topic=topic)
        await client.subscribe(layout.birth, qos=1)
        _raise_if_cancelled()
        await self._announce(client)
        _raise_if_cancelled()
        self.log.info(
            "Home Assistant discovery published",
            url=self.cfg.url,
            entities=len(layout.entities),
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(self._births(client))
            group.create_task(self._pump(client))

    async def _retained_configs(self, client: aiomqtt.Client) -> dict[str, bytes]:
        """This node's retained configs on the broker; a marker published after subscribing
        tells when the broker has handed them all over."""
        layout = self.layout
        token = secrets.token_hex(8)
        await client.subscribe(layout.config_filter, qos=1)
        await client.subscribe(layout.sync, qos=1)
        await client.publish(layout.sync, token, qos=1)
        _raise_if_cancelled()
        found: dict[str, bytes] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SYNC_TIMEOUT_S):
                async for message in client.messages:
                    payload = _bytes(message.payload)
                    if message.topic.matches(layout.sync):
                        if payload == token.encode():
                            break
                    elif message.retain and payload:
                        found[str(message.topic)] = payload
        await client.unsubscribe(layout.sync)
        await client.unsubscribe(layout.config_filter)
        return found

    async def _announce(self, client: aiomqtt.Client) -> None:
        for topic, doc in self.layout.discovery().items():
            await _send(client, topic, json.dumps(doc, sort_keys=True), qos=1)
        await _send(client, self.layout.availability, ONLINE, qos=1)
        for topic, value in self.limiter.known():
            await _send(client, topic, value, qos=1)
        self._wake.set()

    async def _births(self, client: aiomqtt.Client) -> None:
        """Home Assistant announces ``online`` when it (re)starts: discovery again, states too."""
        async for message in client.messages:
            if message.topic.matches(self.layout.birth) and _bytes(message.payload) == b"online":
                self.log.info("Home Assistant restarted: discovery published again")
                await self._announce(client)

    async def _pump(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            now = self.clock.monotonic()
            for topic, value in self.limiter.due(now):
                await _send(client, topic, value, qos=0)
            wait = self.limiter.next_due(self.clock.monotonic())
            sleeper = asyncio.ensure_future(self.clock.sleep(wait if wait is not None else 3600))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    def states(self) -> Iterable[tuple[str, str]]:
        return self.limiter.known()


async def _send(client: aiomqtt.Client, topic: str, payload: str | bytes, qos: int) -> None:
    """Every publish of the bridge is retained: a Home Assistant that connects later sees it."""
    await client.publish(topic, payload, qos=qos, retain=True)
    _raise_if_cancelled()


def _raise_if_cancelled() -> None:
    """Python 3.11's ``asyncio.wait_for``, which the MQTT client awaits every publish with, can
    swallow a cancellation that lands as the publish completes; the request stays counted on the
    task, so the session checks between steps instead of running on after a stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode() if payload is not None else b""
