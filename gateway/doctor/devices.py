"""Each configured device: does it answer, and what can it do (ratings, reverse-flow type, FIT
contract)? Read directly over ECHONET Lite or SunSpec Modbus, or from the running daemon."""

from __future__ import annotations

import contextlib
from typing import Any

from gateway.config import DeviceConfig
from gateway.doctor.model import Checks, Failed, Outcome, Verdict


class DeviceChecks(Checks):
    """Rows ``device:<name>``."""

    async def daemon_device(self, device: DeviceConfig) -> Outcome:
        if self.daemon is None:
            raise Failed(
                "the daemon runs but its view cannot be read",
                "run chisan doctor as root or as a member of the chisan group",
            )
        for dev in self.daemon.get("devices") or []:
            if dev.get("name") != device.name:
                continue
            if not dev.get("driven"):
                return Outcome(
                    "configured but not driven by the daemon",
                    Verdict.WARN,
                    "see journalctl -u chisan for why it was skipped",
                )
            if dev.get("answering"):
                return self.daemon_capabilities(device, dev)
            raise Failed(
                f"not answering the daemon ({dev.get('failures')} failed polls)",
                _device_next_step(device),
                dev,
            )
        raise Failed(
            "the daemon does not know this device",
            "restart the daemon after editing the config: systemctl restart chisan",
        )

    def daemon_capabilities(self, device: DeviceConfig, dev: dict[str, Any]) -> Outcome:
        """An answering device, with what the daemon's interlock knows of its capabilities
        (the control loop drives one battery and one PV: only then is it unambiguous)."""
        assert self.daemon is not None
        detail = f"answering ({dev.get('polls')} polls, daemon's view)"
        caps = self.daemon.get("capabilities") or {}
        same_kind = [d for d in self.cfg.devices if d.enabled and d.kind == device.kind]
        data = dict(dev)
        if len(same_kind) != 1:
            return Outcome(detail, data=data)
        battery = caps.get("battery")
        if device.kind == "battery" and isinstance(battery, dict):
            data.update(battery)
            flow = {True: "allowed", False: "not allowed", None: "unknown"}[
                battery.get("reverse_flow_ok")
            ]
            detail += (
                f"; capacity {_q(battery.get('capacity_wh'), 'Wh')}, charge ≤ "
                f"{_q(battery.get('max_charge_w'), 'W')}, discharge ≤ "
                f"{_q(battery.get('max_discharge_w'), 'W')}; reverse flow {flow}"
            )
        contract = caps.get("pv_contract")
        if device.kind == "pv" and contract:
            data["fit_contract"] = contract
            detail += f"; FIT contract {contract}"
            if contract in ("fit", "non_fit") and (contract == "fit") != self.cfg.site.fit:
                return Outcome(detail, Verdict.WARN, _fit_step(contract, self.cfg.site.fit), data)
        return Outcome(detail, data=data)

    async def echonet_device(self, device: DeviceConfig) -> Outcome:
        cfg = self.cfg
        from drivers.capabilities import DeviceError
        from drivers.echonet.adapters import adapter_for
        from drivers.echonet.transport import EchonetTimeout, EchonetTransport, TransportSettings
        from gateway.clock import SystemClock

        transport = EchonetTransport(TransportSettings.from_config(cfg.echonet), SystemClock())
        try:
            adapter = adapter_for(device, transport, SystemClock())
        except ValueError as exc:
            raise Failed(str(exc), "fix the device's eoj in the config") from None
        try:
            async with transport:
                try:
                    return await describe_device(adapter, device.kind, cfg.site.fit)
                except EchonetTimeout as exc:
                    from gateway.cli.echonet import _explain_timeout

                    reason = await _explain_timeout(transport, adapter.host, adapter.eoj)
                    raise Failed(reason or str(exc), _device_next_step(device)) from None
        except DeviceError as exc:
            message = str(exc)
            if "Address already in use" in message:
                raise Failed(
                    message,
                    f"another program uses UDP 3610 on {cfg.echonet.bind}: stop it (or the "
                    "chisan daemon) and run chisan doctor again",
                ) from None
            raise Failed(message, _device_next_step(device)) from None

    async def modbus_device(self, device: DeviceConfig) -> Outcome:
        from drivers.capabilities import DeviceError
        from gateway.clock import SystemClock

        adapter = modbus_adapter(device, SystemClock())
        if isinstance(adapter, str):
            return Outcome(f"not driven: {adapter}", Verdict.WARN, "use a SunSpec device")
        try:
            models = await adapter.models()
            outcome = await describe_device(adapter, device.kind, None)
        except DeviceError as exc:
            raise Failed(str(exc), _device_next_step(device)) from None
        finally:
            with contextlib.suppress(Exception):
                await adapter.transport.close()
        outcome.detail = f"SunSpec models {sorted(models)}; " + outcome.detail
        outcome.data["models"] = sorted(models)
        return outcome


def _device_next_step(device: DeviceConfig) -> str:
    if device.protocol == "echonet":
        return (
            f"check the device is on and on this LAN: chisan echonet discover --host {device.host}"
        )
    where = device.host or device.serial
    return f"check the device is on, its Modbus TCP/RTU settings and unit id ({where})"


def modbus_adapter(device: DeviceConfig, clock: Any) -> Any:
    """The SunSpec adapter for ``device``, or why there is none (one place to re-point)."""
    from drivers.modbus.adapters import adapter_for

    try:
        return adapter_for(device, clock)
    except ValueError as exc:
        return str(exc)


async def describe_device(adapter: Any, kind: str, site_fit: bool | None) -> Outcome:
    """Read what the installer must see of a device: its state and its capabilities
    (ratings, reverse-flow type, FIT contract). Works for ECHONET and SunSpec adapters."""
    data: dict[str, Any] = {}
    parts: list[str] = []
    verdict, step = Verdict.PASS, None
    if kind in ("battery", "ev") and hasattr(adapter, "soc_pct"):
        soc = (await adapter.soc_pct()).value
        data["soc_pct"] = soc
        parts.append(f"SOC {soc:g} %" if soc is not None else "SOC unknown")
    if hasattr(adapter, "ratings"):
        r = await adapter.ratings()
        data.update(
            capacity_wh=r.capacity_wh,
            max_charge_w=r.max_charge_w,
            max_discharge_w=r.max_discharge_w,
            reverse_flow_ok=r.reverse_flow_ok,
        )
        parts.append(
            f"capacity {_q(r.capacity_wh, 'Wh')}, charge ≤ {_q(r.max_charge_w, 'W')}, "
            f"discharge ≤ {_q(r.max_discharge_w, 'W')}"
        )
        flow = {True: "allowed", False: "not allowed", None: "unknown"}[r.reverse_flow_ok]
        parts.append(f"reverse flow {flow}")
    if kind == "pv":
        if hasattr(adapter, "generation_w"):
            watts = (await adapter.generation_w()).value
            data["power_w"] = watts
            parts.append(f"generating {_q(watts, 'W')}")
        if hasattr(adapter, "fit_contract"):
            contract = (await adapter.fit_contract()).value
            data["fit_contract"] = contract
            parts.append(f"FIT contract {contract or 'unknown'}")
            if site_fit is not None and contract in ("fit", "non_fit"):
                says_fit = contract == "fit"
                if says_fit != site_fit:
                    verdict, step = Verdict.WARN, _fit_step(contract, site_fit)
    if kind == "water_heater" and hasattr(adapter, "heating"):
        heating = (await adapter.heating()).value
        data["heating"] = heating
        parts.append("heating" if heating else "not heating")
    if kind == "aircon" and hasattr(adapter, "power_w"):
        watts = (await adapter.power_w()).value
        data["power_w"] = watts
        parts.append(f"drawing {_q(watts, 'W')}")
    if not parts:
        readings = await adapter.poll()
        parts.append(f"{len(readings)} readings")
    return Outcome("; ".join(parts), verdict, step, data)


def _fit_step(contract: str, site_fit: bool) -> str:
    return (
        f"the PV reports a {contract} contract but site.fit = {str(site_fit).lower()}: confirm "
        "the resident's contract and set site.fit (under FIT the battery must never export)"
    )


def _q(value: Any, unit: str) -> str:
    return "unknown" if value is None else f"{value:g} {unit}"
