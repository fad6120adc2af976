"""The gateway assembled from its configuration: one place that wires drivers to the core.

Data flows one way: drivers → readings hub / settlement → store → uplink; commands → interlock →
control → drivers. This module only connects the pieces; each piece knows nothing of the others
beyond the small interfaces it is handed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from drivers.readings import PV_GENERATED_WH, PV_POWER_W, PV_SOLD_WH
from gateway.clock import Clock
from gateway.config import Config
from gateway.logs import get_logger
from gateway.readings import ReadingsHub
from gateway.supervisor import Component

#: PV readings that add up over several inverters (limits and contracts stay per device).
PV_SUMMED = (PV_POWER_W, PV_GENERATED_WH, PV_SOLD_WH)


def gateway_version() -> str:
    try:
        return version("chisan")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+src"


@dataclass
class Gateway:
    cfg: Config
    clock: Clock
    components: list[Component] = field(default_factory=list)
    closers: list[Callable[[], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.app", site=self.cfg.site.id)
        self.hub = ReadingsHub()
        self.store: Any = None
        self.meter: Any = None
        self.settlement: Any = None
        self.uplink: Any = None
        self.devices: dict[str, Any] = {}
        self.commands: Any = None
        self.control: Any = None
        self.device_health: Callable[[], dict[str, Any]] | None = None
        self.health: Any = None
        from gateway.status import AlarmLog

        self.alarm_log = AlarmLog()
        self.metrics: Any = None
        self.home_assistant: Any = None

    # ------------------------------------------------------------------ assembly

    def build(self) -> Gateway:
        self._store()
        self._uplink()
        self._devices()
        self._meter()
        self._control()
        self._observability()
        return self

    def _observability(self) -> None:
        """Metrics and Home Assistant, both off unless configured: observers on the hooks the
        pieces already offer; nothing in the data path knows about them."""
        if self.cfg.metrics.enabled:
            from drivers.poller import DevicePoller
            from gateway.metrics import Metrics, MetricsServer, Sources

            store, uplink, control, commands = self.store, self.uplink, self.control, self.commands
            pollers = [c for c in self.components if isinstance(c, DevicePoller)]
            metrics = self.metrics = Metrics(
                self.clock,
                self.cfg.site.id,
                gateway_version(),
                Sources(
                    outbox_depth=store.backlog_count,
                    uplink_stats=lambda: uplink.stats,
                    pending_command_acks=lambda: int(commands.pending_acks),
                    failsafe=lambda: bool(control.failsafe),
                    pollers=lambda: pollers,
                ),
            )
            self.hub.subscribe(metrics.on_reading)
            uplink.on_slot_acked = metrics.slot_acked
            commands.on_ack = metrics.command_ack
            control.on_decision = metrics.decision
            if self.settlement is not None:
                settled = self.settlement.on_record

                def on_record(record: dict[str, Any]) -> None:
                    if settled is not None:
                        settled(record)
                    metrics.slot_stored(record)

                self.settlement.on_record = on_record
            mc = self.cfg.metrics
            self.components.append(MetricsServer(metrics, mc.listen, mc.port))
        if self.cfg.home_assistant.enabled:
            from gateway.hass import HomeAssistant, families_of

            self.home_assistant = HomeAssistant(
                self.cfg.home_assistant,
                self.hub,
                self.clock,
                families_of(self.cfg),
                version=gateway_version(),
            )
            self.components.append(self.home_assistant)

    def _control(self) -> None:
        from gateway.commands import CommandManager
        from gateway.control import Control
        from gateway.interlock import Limits
        from gateway.localctl import ControlServer, OverrideStore

        store = self.store
        uplink = self.uplink

        async def publish_ack(ack: dict[str, Any]) -> bool:
            return bool(await uplink.publish(uplink.topics.cmd_ack, ack))

        self.commands = CommandManager(
            self.cfg.commands, self.cfg.site.id, store, self.clock, publish_ack
        )
        if self.commands.key_problem:
            self.log.warning("remote commands will be rejected", reason=self.commands.key_problem)

        def queue_alarm(alarm: dict[str, Any]) -> None:
            store.queue_alarm(alarm)
            self.alarm_log.add(alarm)
            uplink.notify()

        self.control = Control(
            Limits.from_config(self.cfg.limits, fit=self.cfg.site.fit),
            self.clock,
            self.hub,
            self.devices,
            commands=self.commands,
            get_override=store.get_override,
            queue_alarm=queue_alarm,
            on_state_change=uplink.publish_state,
            backend_connected=lambda: bool(uplink.connected),
            reassert_s=self.cfg.control.reassert_s,
            declared_reverse_flow=next(
                (d.reverse_flow for d in self.cfg.devices if d.kind == "battery" and d.enabled),
                None,
            ),
        )
        control = self.control

        async def on_command(payload: bytes) -> None:
            await self.commands.handle(payload)
            control.wake()

        uplink.on_command = on_command
        uplink.state_extra = self._state_extra

        def override_changed() -> None:
            control.wake()
            asyncio.get_running_loop().create_task(uplink.publish_state())

        server = ControlServer(
            self.cfg.control.socket,
            OverrideStore(store.put_override, store.get_override, store.clear_override),
            self.clock,
            on_change=override_changed,
            status=self._status,
        )
        from gateway.dr import DrReporter

        async def publish_report(body: dict[str, Any]) -> bool:
            return bool(await uplink.publish(uplink.topics.dr_report, body))

        reporter = DrReporter(store, self.clock, publish_report)
        from gateway.health import HealthMonitor

        meter = self.meter
        health = HealthMonitor(
            self.clock,
            queue_alarm,
            self.cfg.store.path,
            meter_up=(lambda: str(meter.state) == "up") if meter is not None else None,
            store_reserve=store.restore_reserve,
        )
        self.health = health
        self.components.extend([self.control, server, reporter, health])

    def _state_extra(self) -> dict[str, Any]:
        from gateway.localctl import active_override

        extra: dict[str, Any] = {
            "override": active_override(self.store.get_override(), self.clock.now())
        }
        if self.control is not None:
            extra["failsafe"] = self.control.failsafe
        if self.device_health is not None:
            extra["devices"] = self.device_health()
        return extra

    def _status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"site": self.cfg.site.id, "version": gateway_version()}
        if self.control is not None:
            out.update(self.control.status())
        if self.meter is not None:
            out["meter"] = str(getattr(self.meter, "state", "unknown"))
        out["backlog"] = self.store.backlog_count()
        out["broker_connected"] = bool(self.uplink.connected)
        out.update(self._status_detail())
        return out

    def _status_detail(self) -> dict[str, Any]:
        """Flows, devices, commands, slots, outbox and alarms for ``chisan status``."""
        from gateway import status

        kinds = {d.kind for d in self.cfg.devices if d.enabled}
        return {
            "flows": status.flows(self.hub, has_pv="pv" in kinds, has_battery="battery" in kinds),
            "meter_link": status.meter_link(self.meter),
            "devices": status.devices(self.cfg.devices, self.components),
            "commands": status.commands(self.store, self.commands, self.clock.now()),
            "slots": status.slots(self.store),
            "outbox": status.outbox(self.store),
            "alarms": status.alarms(self.health, self.alarm_log),
            "capabilities": status.capabilities(self.control),
        }

    def _devices(self) -> None:
        echonet = [d for d in self.cfg.devices if d.protocol == "echonet" and d.enabled]
        if echonet:
            from drivers.echonet.adapters import build_echonet
            from drivers.echonet.transport import EchonetTransport, TransportSettings

            transport = EchonetTransport(
                TransportSettings.from_config(self.cfg.echonet), self.clock
            )
            setup = build_echonet(
                echonet,
                transport,
                self.clock,
                lambda key, value, at: self.hub.update(key, value, at, "device"),
            )
            self.devices.update(setup.adapters)
            self.components.extend(setup.components)
        modbus = [d for d in self.cfg.devices if d.protocol == "modbus" and d.enabled]
        if modbus:
            from drivers.modbus.adapters import build_modbus

            msetup = build_modbus(
                modbus,
                self.clock,
                lambda key, value, at: self.hub.update(key, value, at, "device"),
                on_health=self._device_health,
            )
            self.devices.update(msetup.adapters)
            self.components.extend(msetup.components)
            self.device_health = msetup.health
        self._per_device_readings()

    def _per_device_readings(self) -> None:
        """Each poller reports under its device's name; a kind's power and energy keys are the
        sum over that kind's devices (two PV inverters must not overwrite each other)."""
        from drivers.poller import DevicePoller

        for poller in self.components:
            if isinstance(poller, DevicePoller):
                poller.on_reading = self._reading_of(poller.name)
        pv = [d.name for d in self.cfg.devices if d.kind == "pv" and d.name in self.devices]
        if pv:
            for key in PV_SUMMED:
                self.hub.sum_over(key, pv)

    def _reading_of(self, name: str) -> Callable[[str, Any, Any], None]:
        hub = self.hub

        def on_reading(key: str, value: Any, at: Any) -> None:
            hub.update(key, value, at, "device", device=name)

        return on_reading

    def _device_health(self, name: str, health: Any) -> None:
        """A device turned faulty (backed off) or answers again: a ``device_lost`` alarm."""
        from gateway.slots import iso

        if health.faulty:
            message = f"{name} not answering, backed off: {health.last_error}"
        else:
            message = f"{name} answers again"
        self.store.queue_alarm(
            {
                "kind": "device_lost",
                "active": bool(health.faulty),
                "at": iso(self.clock.now()),
                "message": message,
                "device": name,
            }
        )
        self.uplink.notify()
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self.uplink.publish_state())

    def _store(self) -> None:
        from gateway.provenance import init_key, load_private, public_key_b64
        from gateway.store import Store

        key_path = self.cfg.store.site_key
        created, public = init_key(key_path)
        if created:
            self.log.warning(
                "created the site signing key; register its public key with the backend "
                "(chisan keys show)",
                key_file=str(key_path),
                public_key=public_key_b64(public),
            )
        self.store = Store(self.cfg.store.path, self.cfg.site.id, load_private(key_path))
        self.closers.append(self.store.close)

    def _uplink(self) -> None:
        from gateway.secrets import read_secret
        from gateway.uplink import Uplink

        mqtt = self.cfg.mqtt
        password = read_secret(mqtt.password_file).reveal() if mqtt.password_file else None
        self.uplink = Uplink(
            mqtt,
            self.cfg.site.id,
            self.store,
            self.clock,
            version=gateway_version(),
            telemetry=self.hub.telemetry,
            password=password,
        )
        self.components.append(self.uplink)

    def _meter(self) -> None:
        if self.cfg.broute is None:
            self.log.warning("no [broute] section: no smart meter, no settlement records")
            return
        from drivers.broute.adapter import BrouteMeter, pan_from_json, pan_to_json
        from gateway.secrets import read_secret
        from gateway.settlement import Settlement

        store = self.store

        async def on_boundary(b: Any) -> None:
            if self.settlement is not None:
                await self.settlement.on_meter_boundary(b)

        self.meter = BrouteMeter(
            self.cfg.broute,
            read_secret(self.cfg.broute.password_file),
            self.clock,
            load_pan=lambda: pan_from_json(store.get_json("broute.pan")),
            save_pan=lambda pan: store.put_json("broute.pan", pan_to_json(pan)),
            on_reading=lambda key, value, at: self.hub.update(key, value, at, "meter"),
            on_boundary=on_boundary,
        )
        self.settlement = Settlement(
            self.cfg.site.id,
            self.meter,
            self.store,
            self.clock,
            backfill_days=self.cfg.store.backfill_days,
            on_record=lambda _record: self.uplink.notify(),
            device_counters=self.device_counters,
            meter_ready=lambda: str(self.meter.state) == "up",
        )
        self.components.extend([self.meter, self.settlement])

    async def device_counters(self) -> dict[str, Any]:
        """Cumulative device energies sampled at a boundary (informational sub-metering).

        With several PV inverters ``pv_wh`` is the sum of their counters, and None when any of
        them did not give one: a partial sum would make a slot's generation jump.
        ``pv_by_device`` keeps each inverter's counter, so settlement never subtracts sums over
        different sets of inverters and each one's share of a slot can be told.
        """
        out: dict[str, Any] = {}
        pv: dict[str, int | None] = {}
        for name, key, getter in self._counter_getters():
            value: int | None = None
            with contextlib.suppress(Exception):
                measured = await getter()
                value = measured.value
            if key == "pv_wh":
                pv[name] = value if isinstance(value, int) else None
            elif value is not None:
                out[key] = value
        if pv:
            parts = [v for v in pv.values() if v is not None]
            out["pv_wh"] = sum(parts) if len(parts) == len(pv) else None
            out["pv_by_device"] = dict(sorted(pv.items()))
        return out

    def _counter_getters(self) -> list[tuple[str, str, Callable[[], Awaitable[Any]]]]:
        getters: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = []
        for name, dev in self.devices.items():
            if hasattr(dev, "generated_wh"):
                getters.append((name, "pv_wh", dev.generated_wh))
            if hasattr(dev, "charged_wh"):
                getters.append((name, "battery_charge_wh", dev.charged_wh))
            if hasattr(dev, "discharged_wh"):
                getters.append((name, "battery_discharge_wh", dev.discharged_wh))
        return getters

    def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()
