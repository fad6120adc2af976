"""The gateway assembled from its configuration: one place that wires drivers to the core.

Data flows one way: drivers → readings hub / settlement → store → uplink; commands → interlock →
control → drivers. This module only connects the pieces; each piece knows nothing of the others
beyond the small interfaces it is handed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from gateway.clock import Clock
from gateway.config import Config
from gateway.logs import get_logger
from gateway.readings import ReadingsHub
from gateway.supervisor import Component


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

    # ------------------------------------------------------------------ assembly

    def build(self) -> Gateway:
        self._store()
        self._uplink()
        self._devices()
        self._meter()
        return self

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
        for dev in self.cfg.devices:
            if dev.protocol == "modbus" and dev.enabled:
                self.log.warning(
                    "modbus devices are not supported yet; device ignored", device=dev.name
                )

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

    async def device_counters(self) -> dict[str, int | None]:
        """Cumulative device energies sampled at a boundary (informational sub-metering)."""
        out: dict[str, int | None] = {}
        for key, getter in self._counter_getters():
            with contextlib.suppress(Exception):
                measured = await getter()
                out[key] = measured.value
        return out

    def _counter_getters(self) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        getters: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        for dev in self.devices.values():
            if hasattr(dev, "generated_wh"):
                getters.append(("pv_wh", dev.generated_wh))
            if hasattr(dev, "charged_wh"):
                getters.append(("battery_charge_wh", dev.charged_wh))
            if hasattr(dev, "discharged_wh"):
                getters.append(("battery_discharge_wh", dev.discharged_wh))
        return getters

    def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()
