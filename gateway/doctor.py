"""``chisan doctor``: every check an installer needs before leaving a home, each with a verdict.

The checks run in a fixed order, each bounded in time; a check whose premise failed is skipped
with the reason (no meter reading without a port), so the first FAIL in the list is the one to
fix first. Each FAIL carries the next step, in words a technician can act on.

A running daemon owns the serial port (opened exclusively) and UDP 3610: the doctor then asks the
daemon over its control socket what it sees of the meter and the devices instead of fighting it
for them. Everything else (config, broker, clock, disk, store) is checked directly either way;
the broker check uses its own client id so the daemon's session is not taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.config import Config, DeviceConfig, load
from gateway.config_errors import ConfigError


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass
class CheckResult:
    """One row of the report. ``name`` is stable (scripts match on it); ``detail`` says what was
    found; ``next_step`` what to do about a FAIL or WARN."""

    name: str
    verdict: Verdict
    detail: str
    next_step: str | None = None
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.verdict.value,
            "detail": self.detail,
            "next_step": self.next_step,
            "seconds": round(self.seconds, 3),
            "data": self.data,
        }


class Failed(Exception):
    """A check found a problem: FAIL with this detail and next step."""

    def __init__(self, detail: str, next_step: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.next_step = next_step
        self.data = data or {}


@dataclass
class Outcome:
    """What a check function returns when it did not fail."""

    detail: str
    verdict: Verdict = Verdict.PASS
    next_step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DoctorOptions:
    check_timeout_s: float = 20.0
    join_timeout_s: float = 180.0
    publish_wait_s: float = 3.0
    disk_fail_below: float = 0.05
    disk_warn_below: float = 0.15
    #: Whether the system clock is synchronised (None: cannot tell); the kernel's answer.
    check_clock: Callable[[], bool | None] | None = None


@dataclass
class ModuleInfo:
    """The Wi-SUN module's own answers (SKVER, SKAPPVER, SKINFO, ROPT)."""

    version: str | None
    app_version: str | None
    dialect: str
    dialect_message: str
    data_mode: str


class Doctor:
    """Runs the checks of one config file; :attr:`results` fills as they finish."""

    def __init__(self, config_path: Path, options: DoctorOptions | None = None) -> None:
        self.config_path = config_path
        self.options = options or DoctorOptions()
        self.results: list[CheckResult] = []
        self.cfg: Config | None = None
        self.daemon: dict[str, Any] | None = None
        self.daemon_running = False
        self.on_result: Callable[[CheckResult], None] | None = None
        self._link: Any = None

    # ------------------------------------------------------------------ engine

    @property
    def ok(self) -> bool:
        return not any(r.verdict is Verdict.FAIL for r in self.results)

    def verdict_of(self, name: str) -> Verdict | None:
        for r in self.results:
            if r.name == name:
                return r.verdict
        return None

    def _add(self, result: CheckResult) -> CheckResult:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    async def check(
        self,
        name: str,
        run: Callable[[], Awaitable[Outcome]],
        *,
        needs: tuple[str, ...] = (),
        timeout_s: float | None = None,
    ) -> CheckResult:
        """Run one check bounded in time, unless a check it needs did not pass."""
        for dep in needs:
            verdict = self.verdict_of(dep)
            if verdict not in (Verdict.PASS, Verdict.WARN):
                why = "was skipped" if verdict is Verdict.SKIP else "failed"
                return self._add(CheckResult(name, Verdict.SKIP, f"{dep} {why}"))
        limit = self.options.check_timeout_s if timeout_s is None else timeout_s
        began = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                outcome = await run()
        except Failed as exc:
            return self._add(
                CheckResult(
                    name,
                    Verdict.FAIL,
                    exc.detail,
                    exc.next_step,
                    time.monotonic() - began,
                    exc.data,
                )
            )
        except TimeoutError:
            return self._add(
                CheckResult(
                    name,
                    Verdict.FAIL,
                    f"no result within {limit:g} s",
                    "see the detail of the checks before it; run again with a longer --timeout "
                    "if the network or radio is slow",
                    time.monotonic() - began,
                )
            )
        except Exception as exc:  # a check's own bug must not hide the other checks
            return self._add(
                CheckResult(
                    name,
                    Verdict.FAIL,
                    f"{type(exc).__name__}: {exc}",
                    "unexpected error: report it with this output",
                    time.monotonic() - began,
                )
            )
        return self._add(
            CheckResult(
                name,
                outcome.verdict,
                outcome.detail,
                outcome.next_step,
                time.monotonic() - began,
                outcome.data,
            )
        )

    def skip(self, name: str, why: str) -> CheckResult:
        return self._add(CheckResult(name, Verdict.SKIP, why))

    async def run(self) -> list[CheckResult]:
        await self.check("config", self._config)
        cfg = self.cfg
        if cfg is None:
            for name in ("daemon", "serial_port", "wisun_module", "broute_join", "meter_reading"):
                self.skip(name, "config failed")
            for name in ("broker", "broker_tls", "mqtt_session", "test_publish"):
                self.skip(name, "config failed")
            await self.check("clock", self._clock)
            self.skip("disk", "config failed")
            self.skip("store", "config failed")
            return self.results
        await self.check("daemon", self._daemon, timeout_s=8)
        await self._meter_checks(cfg)
        for device in cfg.devices:
            await self._device_check(cfg, device)
        await self.check("broker", self._broker)
        await self.check("broker_tls", self._broker_tls, needs=("broker",))
        await self.check("mqtt_session", self._mqtt_session, needs=("broker", "broker_tls"))
        await self.check("test_publish", self._test_publish, needs=("mqtt_session",))
        await self.check("clock", self._clock)
        await self.check("disk", self._disk)
        await self.check("store", self._store, timeout_s=max(60.0, self.options.check_timeout_s))
        return self.results

    # ------------------------------------------------------------------ config and daemon

    async def _config(self) -> Outcome:
        try:
            self.cfg = load(self.config_path)
        except ConfigError as err:
            lines = [str(i) for i in err.issues]
            shown = "; ".join(lines[:3]) + (
                f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
            )
            raise Failed(
                f"{len(lines)} error(s): {shown}",
                f"fix them: chisan check-config -c {self.config_path} lists every one",
                {"errors": lines},
            ) from None
        cfg = self.cfg
        enabled = [d.name for d in cfg.devices if d.enabled]
        detail = f"site {cfg.site.id}, {len(enabled)} device(s)"
        if cfg.broute is None:
            return Outcome(
                detail + ", no [broute] section",
                Verdict.WARN,
                "without a smart meter no settlement slots are produced: add [broute]",
            )
        return Outcome(detail, data={"site": cfg.site.id, "devices": enabled})

    async def _daemon(self) -> Outcome:
        from gateway.localctl import ControlError, request

        assert self.cfg is not None
        path = self.cfg.control.socket
        if not path.exists():
            return Outcome(
                f"not running (no control socket at {path}): checking the hardware directly",
                data={"running": False},
            )
        try:
            reply = await request(path, {"op": "status"}, 5.0)
        except ControlError as exc:
            if "permission denied" in str(exc):
                self.daemon_running = True
                return Outcome(
                    f"running, but its socket cannot be read: {exc}",
                    Verdict.WARN,
                    "run chisan doctor as root or as a member of the chisan group to see "
                    "the daemon's view of the meter and devices",
                    {"running": True},
                )
            return Outcome(
                f"not running ({exc}); a stale socket file is left at {path}",
                Verdict.WARN,
                "start the daemon (systemctl start chisan) or ignore if stopped on purpose",
                {"running": False},
            )
        self.daemon_running = True
        if not reply.get("ok"):
            return Outcome(
                f"running, but its status failed: {reply.get('error')}",
                Verdict.WARN,
                "see journalctl -u chisan; the meter and devices are not checked meanwhile",
                {"running": True},
            )
        self.daemon = reply
        return Outcome(
            f"running (chisan {reply.get('version')}): meter and devices are taken from its view",
            data={"running": True},
        )

    # ------------------------------------------------------------------ meter

    async def _meter_checks(self, cfg: Config) -> None:
        if cfg.broute is None:
            for name in ("serial_port", "wisun_module", "broute_join", "meter_reading"):
                self.skip(name, "no [broute] section in the config")
            return
        await self.check("serial_port", self._serial_port)
        if self.daemon_running:
            await self.check("wisun_module", self._daemon_module)
            await self.check("broute_join", self._daemon_join, needs=("wisun_module",))
            await self.check("meter_reading", self._daemon_reading, needs=("broute_join",))
            return
        await self.check("wisun_module", self._module, needs=("serial_port",))
        try:
            await self.check(
                "broute_join",
                self._join,
                needs=("wisun_module",),
                timeout_s=self.options.join_timeout_s,
            )
            await self.check("meter_reading", self._reading, needs=("broute_join",))
        finally:
            await self._close_link()

    async def _serial_port(self) -> Outcome:
        assert self.cfg is not None and self.cfg.broute is not None
        port = self.cfg.broute.port
        if "://" in port:
            return Outcome(f"{port} is a URL: not a local device, nothing to check")
        try:
            st = os.stat(port)
        except FileNotFoundError:
            raise Failed(
                f"no such port {port}",
                "plug the Wi-SUN module in; ls -l /dev/serial/by-id/ shows its stable name: "
                "set broute.port to it",
            ) from None
        except OSError as exc:
            raise Failed(f"{port}: {exc.strerror or exc}", "check broute.port") from None
        if not stat.S_ISCHR(st.st_mode):
            raise Failed(
                f"{port} is not a serial device",
                "set broute.port to the module's device (ls -l /dev/serial/by-id/)",
            )
        if not os.access(port, os.R_OK | os.W_OK):
            raise Failed(
                f"permission denied on {port} for this user",
                "add the user to the dialout group: sudo usermod -aG dialout <user> "
                "(the chisan service runs with SupplementaryGroups=dialout)",
            )
        return Outcome(f"{port} present, readable and writable")

    async def _module(self) -> Outcome:
        from drivers.broute.errors import PortError

        assert self.cfg is not None and self.cfg.broute is not None
        b = self.cfg.broute
        try:
            info = await probe_module(b.port, b.baudrate, min(b.timeout_s, 10.0))
        except PortError as exc:
            raise Failed(str(exc), _port_next_step(str(exc))) from None
        except TimeoutError:
            raise Failed(
                f"the module on {b.port} did not answer SKVER",
                "check that this port is the Wi-SUN module, its baud rate (broute.baudrate, "
                "usually 115200) and its power; unplug and plug it in again",
            ) from None
        detail = (
            f"{info.version or 'unknown version'}"
            f"{f' (app {info.app_version})' if info.app_version else ''}, dialect "
            f"{info.dialect} ({info.dialect_message}), data mode {info.data_mode}"
        )
        data = {
            "version": info.version,
            "app_version": info.app_version,
            "dialect": info.dialect,
            "data_mode": info.data_mode,
        }
        configured = b.dialect
        if configured != "auto" and info.dialect not in ("auto", configured):
            same_family = {configured, info.dialect} <= {"bp35a1", "rl7023"}
            if not same_family:
                return Outcome(
                    detail,
                    Verdict.WARN,
                    f'broute.dialect is "{configured}" but the module looks like '
                    f'{info.dialect}: set broute.dialect = "auto"',
                    data,
                )
        return Outcome(detail, data=data)

    async def _join(self) -> Outcome:
        from drivers.broute.dialect import Dialect
        from drivers.broute.errors import (
            BrouteError,
            CredentialsRejected,
            NoPanFound,
            PortError,
            WrongDialect,
        )
        from drivers.broute.join import JoinConfig
        from drivers.broute.transport import ModuleLink, SessionParams
        from gateway.clock import SystemClock
        from gateway.secrets import SecretFileError, read_secret

        assert self.cfg is not None and self.cfg.broute is not None
        b = self.cfg.broute
        try:
            password = read_secret(b.password_file).reveal()
        except SecretFileError as exc:
            raise Failed(
                f"B-route password file {exc}",
                f"write the 12-character password alone into {b.password_file}, chmod 600",
            ) from None
        try:
            config = JoinConfig(
                b.id,
                password,
                dialect=Dialect(b.dialect),
                cached_pan=self._cached_pan(),
                wopt_allowed=False,  # a check must not write the module's flash
                scan_durations=b.scan_durations,
                command_timeout=b.timeout_s,
            )
        except ValueError as exc:
            raise Failed(str(exc), "check broute.id and the password file") from None
        try:
            link = await ModuleLink.open(b.port, clock=SystemClock(), baudrate=b.baudrate)
        except PortError as exc:
            raise Failed(str(exc), _port_next_step(str(exc))) from None
        self._link = link
        try:
            result = await link.join(config, SessionParams(send_timeout=b.timeout_s))
        except CredentialsRejected as exc:
            raise Failed(
                f"the meter rejected the B-route ID or password ({exc})",
                "compare broute.id (32 characters) and the password file (12 characters) with "
                "the grid operator's letter; a new ID takes effect only after the operator "
                "enables it",
            ) from None
        except NoPanFound as exc:
            raise Failed(
                str(exc),
                f"the meter is out of range or its B-route is not enabled: chisan broute scan "
                f"--port {b.port} shows what the module hears; move the module or the antenna",
            ) from None
        except WrongDialect as exc:
            raise Failed(str(exc), 'set broute.dialect = "auto"') from None
        except BrouteError as exc:
            raise Failed(
                str(exc), "run chisan broute read --port … -v to see the exchange"
            ) from None
        rssi = None if result.rssi_dbm is None else round(result.rssi_dbm, 1)
        data = {
            "channel": result.channel,
            "pan_id": f"{result.pan_id:04X}",
            "mac": result.mac,
            "lqi": result.lqi,
            "rssi_dbm": rssi,
            "used_cached_pan": result.used_cached_pan,
        }
        detail = f"joined channel {result.channel}, PAN {result.pan_id:04X}, MAC {result.mac}" + (
            f", LQI {result.lqi} ({rssi} dBm)" if result.lqi is not None else ""
        )
        if rssi is not None and rssi < -85:
            return Outcome(
                detail + ": weak signal",
                Verdict.WARN,
                "move the module or use an extension cable towards the meter",
                data,
            )
        return Outcome(detail, data=data)

    def _cached_pan(self) -> Any:
        """The PAN the daemon remembered, so a check does not need a full scan."""
        from drivers.broute.adapter import pan_from_json
        from gateway.store import Store, StoreError

        assert self.cfg is not None
        if not self.cfg.store.path.is_file():
            return None
        try:
            with Store.open_readonly(self.cfg.store.path, self.cfg.site.id) as store:
                return pan_from_json(store.get_json("broute.pan"))
        except (StoreError, ValueError, OSError):
            return None

    async def _reading(self) -> Outcome:
        from drivers.broute.errors import BrouteError
        from drivers.broute.meter import MeterSession
        from drivers.capabilities import DeviceError
        from drivers.echonet.properties import PropertyError
        from gateway.clock import SystemClock
        from gateway.slots import iso

        assert self.cfg is not None and self.cfg.broute is not None
        b = self.cfg.broute
        meter = MeterSession(
            self._link, SystemClock(), min_interval_s=b.min_interval_s, timeout_s=b.timeout_s
        )
        try:
            await meter.start()
            instant, boundary = await meter.read_all()
        except (BrouteError, DeviceError, PropertyError) as exc:
            raise Failed(
                f"joined, but the meter did not give a reading: {exc}",
                "the link is weak or the meter is busy: move the module closer and try again",
            ) from None
        energy = instant.energy
        data = {
            "at": iso(instant.at),
            "power_w": instant.power_w,
            "current_a": list(instant.currents_a) if instant.currents_a else None,
            "import_kwh": energy.import_kwh if energy else None,
            "export_kwh": energy.export_kwh if energy else None,
            "boundary": None if boundary is None else iso(boundary.at),
        }
        if instant.power_w is None:
            return Outcome(
                "the meter answered without instantaneous power",
                Verdict.WARN,
                "try again in a minute; report the meter model if it persists",
                data,
            )
        detail = f"power {instant.power_w} W"
        if energy is not None:
            detail += f", import {energy.import_kwh} kWh, export {energy.export_kwh} kWh"
        return Outcome(detail, data=data)

    async def _close_link(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        with contextlib.suppress(Exception):
            await link.terminate(2.0)
        with contextlib.suppress(Exception):
            await link.close()

    # --- the same three rows from the daemon's point of view

    def _daemon_link(self) -> dict[str, Any]:
        if self.daemon is None:
            raise Failed(
                "the daemon runs but its view cannot be read",
                "run chisan doctor as root or as a member of the chisan group",
            )
        link = self.daemon.get("meter_link")
        if not isinstance(link, dict):
            raise Failed("the daemon reports no meter link", "check [broute] in the config")
        return link

    async def _daemon_module(self) -> Outcome:
        link = self._daemon_link()
        join = link.get("last_join")
        if not isinstance(join, dict):
            return Outcome(
                f"the daemon has not joined yet ({link.get('state')}: {link.get('reason')}); "
                "the module is in use by the daemon",
                Verdict.WARN,
                "wait for the join, or stop the daemon and run chisan doctor again to probe "
                "the module directly",
            )
        return Outcome(
            f"{join.get('version') or 'unknown version'}, dialect {join.get('dialect')}, data "
            f"mode {join.get('data_mode')} (daemon's view)",
            data={k: join.get(k) for k in ("version", "dialect", "data_mode")},
        )

    async def _daemon_join(self) -> Outcome:
        link = self._daemon_link()
        state = str(link.get("state"))
        if state != "up":
            reason = str(link.get("reason") or state)
            step = "see journalctl -u chisan for the join attempts"
            if "reject" in reason.lower() or "password" in reason.lower():
                step = "compare broute.id and the password file with the grid operator's letter"
            raise Failed(f"the daemon's B-route link is {state}: {reason}", step, link)
        join = link.get("last_join") or {}
        return Outcome(
            f"up (daemon's view): channel {join.get('channel')}, PAN {join.get('pan_id')}, "
            f"LQI {join.get('lqi')}, {link.get('joins')} join(s) since start",
            data=link,
        )

    async def _daemon_reading(self) -> Outcome:
        assert self.daemon is not None
        flows = self.daemon.get("flows") or {}
        meter = flows.get("meter_w")
        if not isinstance(meter, dict) or meter.get("value") is None:
            return Outcome(
                "the daemon has no meter reading yet",
                Verdict.WARN,
                "wait one poll period (broute.poll_s) and run chisan doctor again",
            )
        return Outcome(
            f"power {meter['value']} W at {meter['at']} (daemon's view)", data={"meter_w": meter}
        )

    # ------------------------------------------------------------------ devices

    async def _device_check(self, cfg: Config, device: DeviceConfig) -> None:
        name = f"device:{device.name}"
        if not device.enabled:
            self.skip(name, "enabled = false")
            return
        if self.daemon_running:
            await self.check(name, lambda: self._daemon_device(device))
            return
        if device.protocol == "echonet":
            await self.check(name, lambda: self._echonet_device(cfg, device))
        else:
            await self.check(name, lambda: self._modbus_device(device))

    async def _daemon_device(self, device: DeviceConfig) -> Outcome:
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
                return self._daemon_capabilities(device, dev)
            raise Failed(
                f"not answering the daemon ({dev.get('failures')} failed polls)",
                _device_next_step(device),
                dev,
            )
        raise Failed(
            "the daemon does not know this device",
            "restart the daemon after editing the config: systemctl restart chisan",
        )

    def _daemon_capabilities(self, device: DeviceConfig, dev: dict[str, Any]) -> Outcome:
        """An answering device, with what the daemon's interlock knows of its capabilities
        (the control loop drives one battery and one PV: only then is it unambiguous)."""
        assert self.daemon is not None and self.cfg is not None
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

    async def _echonet_device(self, cfg: Config, device: DeviceConfig) -> Outcome:
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

    async def _modbus_device(self, device: DeviceConfig) -> Outcome:
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

    # ------------------------------------------------------------------ broker

    async def _broker(self) -> Outcome:
        assert self.cfg is not None
        m = self.cfg.mqtt
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(m.host, m.port), 10)
        except (OSError, TimeoutError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise Failed(
                f"cannot reach {m.host}:{m.port}: {why}",
                "check mqtt.url, that the broker runs, and the network/firewall "
                f"(nc -vz {m.host} {m.port})",
            ) from None
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return Outcome(f"{m.host}:{m.port} reachable")

    async def _broker_tls(self) -> Outcome:
        assert self.cfg is not None
        m = self.cfg.mqtt
        if not m.tls:
            if _loopback(m.host):
                return Outcome("plain mqtt:// on this machine (no TLS needed)")
            return Outcome(
                f"mqtt:// to {m.host} is not encrypted",
                Verdict.WARN,
                "use mqtts:// with mqtt.ca_file (and a client certificate) outside a test bench",
            )
        try:
            ctx = ssl.create_default_context(cafile=str(m.ca_file) if m.ca_file else None)
            if m.cert_file and m.key_file:
                ctx.load_cert_chain(str(m.cert_file), str(m.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise Failed(
                f"cannot load the TLS files: {exc}",
                "check mqtt.ca_file, mqtt.cert_file and mqtt.key_file",
            ) from None
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(m.host, m.port, ssl=ctx, server_hostname=m.host), 10
            )
        except ssl.SSLCertVerificationError as exc:
            raise Failed(
                f"the broker's certificate is not trusted: {exc.verify_message}",
                "mqtt.ca_file must hold the CA that signed the broker's certificate, and the "
                "certificate must name the host of mqtt.url",
            ) from None
        except (OSError, TimeoutError) as exc:
            raise Failed(
                f"TLS handshake with {m.host}:{m.port} failed: {exc}",
                "check that the port speaks TLS and that the client certificate is accepted",
            ) from None
        sslobj = writer.get_extra_info("ssl_object")
        version = sslobj.version() if sslobj is not None else "TLS"
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        who = "with client certificate" if m.cert_file else "server authenticated"
        return Outcome(f"{version}, certificate verified, {who}")

    async def _mqtt_session(self) -> Outcome:
        import aiomqtt

        client = self._mqtt_client()
        step = (
            "check mqtt.username / mqtt.password_file or the client certificate, and that "
            "the broker's ACL knows this site"
        )
        # A broker that drops a refused client without a CONNACK leaves the client waiting:
        # give up before the check's own limit so the row says why.
        limit = max(1.0, min(10.0, self.options.check_timeout_s - 2))
        try:
            async with asyncio.timeout(limit), client:
                pass
        except aiomqtt.MqttError as exc:
            raise Failed(f"the broker refused the session: {exc}", step) from None
        except TimeoutError:
            raise Failed(
                f"no CONNACK within {limit:g} s: the broker dropped the connection", step
            ) from None
        assert self.cfg is not None
        return Outcome(f"MQTT {self.cfg.mqtt.protocol} session accepted")

    async def _test_publish(self) -> Outcome:
        import aiomqtt

        from gateway.app import gateway_version
        from gateway.provenance import canonical_json
        from gateway.slots import iso

        assert self.cfg is not None
        topic = doctor_topic(self.cfg)
        marker = os.urandom(6).hex()
        body = canonical_json({"doctor": marker, "at": iso(_now()), "version": gateway_version()})
        client = self._mqtt_client()
        echoed = False
        try:
            async with client:
                await client.subscribe(topic, qos=1)
                await client.publish(topic, body, qos=1, timeout=10)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.publish_wait_s):
                        async for message in client.messages:
                            payload = message.payload
                            if (
                                isinstance(payload, bytes | bytearray)
                                and marker.encode() in payload
                            ):
                                echoed = True
                                break
        except aiomqtt.MqttError as exc:
            raise Failed(
                f"publishing on {topic} failed: {exc}",
                f"the broker's ACL must let this client publish under "
                f"{self.cfg.mqtt.topic_prefix}/{self.cfg.site.id}/",
            ) from None
        if not echoed:
            return Outcome(
                f"published on {topic} (acknowledged) but not received back",
                Verdict.WARN,
                f"the ACL may not allow subscribing to {topic}; the gateway only needs its cmd "
                "and slot/ack topics, so this is harmless if those are allowed",
            )
        return Outcome(f"published on {topic} and received it back", data={"topic": topic})

    def _mqtt_client(self) -> Any:
        import aiomqtt

        from gateway.secrets import read_secret

        assert self.cfg is not None
        m = self.cfg.mqtt
        tls = None
        if m.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(m.ca_file) if m.ca_file else None,
                certfile=str(m.cert_file) if m.cert_file else None,
                keyfile=str(m.key_file) if m.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        password = read_secret(m.password_file).reveal() if m.password_file else None
        return aiomqtt.Client(
            m.host,
            m.port,
            # Its own id: the daemon's session (same id) must not be taken over.
            identifier=f"{m.client_id}-doctor",
            username=m.username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5
            if m.protocol == "5"
            else aiomqtt.ProtocolVersion.V311,
            tls_params=tls,
            timeout=10,
        )

    # ------------------------------------------------------------------ host

    async def _clock(self) -> Outcome:
        from gateway.health import clock_synchronised

        synced = (self.options.check_clock or clock_synchronised)()
        if synced is None:
            return Outcome(
                "the kernel cannot tell whether the clock is synchronised",
                Verdict.WARN,
                "check timedatectl: 'System clock synchronized: yes'",
            )
        if not synced:
            raise Failed(
                "the system clock is not NTP-synchronised: slot times may be wrong",
                "enable time sync: sudo timedatectl set-ntp true (and allow UDP 123 out)",
            )
        return Outcome("synchronised (NTP)")

    async def _disk(self) -> Outcome:
        import shutil

        assert self.cfg is not None
        path = self.cfg.store.path
        probe = path if path.exists() else path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
        except OSError as exc:
            raise Failed(f"{probe}: {exc.strerror or exc}", "check store.path") from None
        free = usage.free / usage.total if usage.total else 0.0
        detail = f"{usage.free / 1e9:.1f} GB free ({free * 100:.0f} %) at {probe}"
        data = {"free_bytes": usage.free, "free_fraction": round(free, 4)}
        if free < self.options.disk_fail_below:
            raise Failed(
                detail, "free space: old logs (journalctl --vacuum-size=50M), apt clean", data
            )
        if free < self.options.disk_warn_below:
            return Outcome(detail, Verdict.WARN, "free some space before it runs out", data)
        return Outcome(detail, data=data)

    async def _store(self) -> Outcome:
        from gateway.store import Store, StoreError

        assert self.cfg is not None
        path = self.cfg.store.path
        if not path.exists():
            return Outcome(f"{path} not created yet (the daemon creates it on its first start)")
        if not os.access(path, os.R_OK):
            return Outcome(
                f"{path} is not readable by this user",
                Verdict.WARN,
                "run chisan doctor as root or as the chisan user to check the store",
            )

        def check() -> Outcome:
            assert self.cfg is not None
            try:
                with Store.open_readonly(path, self.cfg.site.id) as store:
                    integrity = store.integrity_check()
                    if integrity != "ok":
                        raise Failed(
                            f"SQLite integrity check failed: {integrity.splitlines()[0]}",
                            _STORE_STEP,
                        )
                    records = store.max_seq()
                    backlog = store.backlog_count()
                    if records == 0:
                        return Outcome("intact, no slot records yet", data={"records": 0})
                    result = store.verify()
            except StoreError as exc:
                raise Failed(str(exc), _STORE_STEP) from None
            except Exception as exc:  # sqlite3.DatabaseError from a file that is not a database
                raise Failed(f"{path}: {exc}", _STORE_STEP) from None
            data = {"records": records, "backlog": backlog}
            if not result.ok:
                raise Failed(f"signed record chain broken: {result.reason}", _STORE_STEP, data)
            return Outcome(
                f"intact: {result.checked} records, chain verified, {backlog} not yet acknowledged",
                data=data,
            )

        return await asyncio.to_thread(check)


_STORE_STEP = (
    "stop the daemon, move the database aside (and keep it for analysis), restore the last "
    "backup or let the daemon create a new one and backfill from the meter"
)


def _port_next_step(message: str) -> str:
    if "dialout" in message:
        return "sudo usermod -aG dialout <user>, then log in again"
    if "busy" in message:
        return "stop the other program using the port (systemctl stop chisan / ModemManager)"
    return "check broute.port and that the module is plugged in"


def _device_next_step(device: DeviceConfig) -> str:
    if device.protocol == "echonet":
        return (
            f"check the device is on and on this LAN: chisan echonet discover --host {device.host}"
        )
    where = device.host or device.serial
    return f"check the device is on, its Modbus TCP/RTU settings and unit id ({where})"


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _now() -> Any:
    from gateway.clock import SystemClock

    return SystemClock().now()


def doctor_topic(cfg: Config) -> str:
    """The site's own topic the doctor's test publish goes to (the backend ignores it)."""
    return f"{cfg.mqtt.topic_prefix}/{cfg.site.id}/doctor"


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


async def probe_module(port: str, baudrate: int, timeout_s: float) -> ModuleInfo:
    """Ask the module who it is: SKVER, SKAPPVER, SKINFO, ROPT (read-only commands only)."""
    from drivers.broute.dialect import Dialect, detect_with_reason
    from drivers.broute.parser import EappVer, Einfo, Ever, Fail, LineParser, Ok, Unrecognised
    from drivers.broute.transport import open_serial

    reader, writer = await open_serial(port, baudrate)
    parser = LineParser()
    pending: list[Any] = []

    async def ask(command: str) -> list[Any]:
        """Events up to and including the OK / FAIL that ends the answer."""
        writer.write(command.encode("ascii") + b"\r\n")
        await writer.drain()
        got: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while True:
                while pending:
                    event = pending.pop(0)
                    got.append(event)
                    if isinstance(event, Ok | Fail):
                        return got
                data = await reader.read(512)
                if not data:
                    raise TimeoutError
                pending.extend(parser.feed(data))

    try:
        ever = next((e.version for e in await ask("SKVER") if isinstance(e, Ever)), None)
        app: str | None = None
        with contextlib.suppress(TimeoutError):
            app = next((e.version for e in await ask("SKAPPVER") if isinstance(e, EappVer)), None)
        fields: list[str] = []
        for event in await ask("SKINFO"):
            if isinstance(event, Einfo):
                fields = list(event.fields)
            elif isinstance(event, Unrecognised) and event.raw.startswith(b"EINFO"):
                fields = event.raw.decode("latin-1").split()[1:]
        mode = "unknown (ROPT not supported: detected per frame)"
        with contextlib.suppress(TimeoutError):
            for event in await ask("ROPT"):
                if isinstance(event, Ok) and event.value:
                    try:
                        hex_mode = int(event.value, 16) & 1 == 1
                    except ValueError:
                        break
                    mode = "hex" if hex_mode else "binary (WOPT 01 switches it to hex once)"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)
    detection = detect_with_reason(ever or "", fields)
    dialect = detection.dialect.value if detection.dialect is not Dialect.AUTO else "auto"
    return ModuleInfo(ever, app, dialect, detection.message, mode)
