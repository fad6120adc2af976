"""The doctor's engine: runs the checks in order, each bounded in time, skipping the ones whose
premise failed, and keeps the rows of the report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.config import Config, DeviceConfig, load
from gateway.config_errors import ConfigError
from gateway.doctor.broker import BrokerChecks
from gateway.doctor.devices import DeviceChecks
from gateway.doctor.host import HostChecks, clock_check
from gateway.doctor.meter import MeterChecks
from gateway.doctor.model import CheckResult, DoctorOptions, Failed, Outcome, Verdict


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
            await self.check("clock", lambda: clock_check(self.options))
            self.skip("disk", "config failed")
            self.skip("store", "config failed")
            return self.results
        await self.check("daemon", self._daemon, timeout_s=8)
        await self._meter(MeterChecks(cfg, self.options, self.daemon))
        devices = DeviceChecks(cfg, self.options, self.daemon)
        for device in cfg.devices:
            await self._device(devices, device)
        broker = BrokerChecks(cfg, self.options)
        await self.check("broker", broker.broker)
        await self.check("broker_tls", broker.broker_tls, needs=("broker",))
        await self.check("mqtt_session", broker.mqtt_session, needs=("broker", "broker_tls"))
        await self.check("test_publish", broker.test_publish, needs=("mqtt_session",))
        host = HostChecks(cfg, self.options)
        await self.check("clock", lambda: clock_check(self.options))
        await self.check("disk", host.disk)
        await self.check("store", host.store, timeout_s=max(60.0, self.options.check_timeout_s))
        return self.results

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

    async def _meter(self, meter: MeterChecks) -> None:
        assert self.cfg is not None
        if self.cfg.broute is None:
            for name in ("serial_port", "wisun_module", "broute_join", "meter_reading"):
                self.skip(name, "no [broute] section in the config")
            return
        await self.check("serial_port", meter.serial_port)
        if self.daemon_running:
            await self.check("wisun_module", meter.daemon_module)
            await self.check("broute_join", meter.daemon_join, needs=("wisun_module",))
            await self.check("meter_reading", meter.daemon_reading, needs=("broute_join",))
            return
        await self.check("wisun_module", meter.module, needs=("serial_port",))
        try:
            await self.check(
                "broute_join",
                meter.join,
                needs=("wisun_module",),
                timeout_s=self.options.join_timeout_s,
            )
            await self.check("meter_reading", meter.reading, needs=("broute_join",))
        finally:
            await meter.close_link()

    async def _device(self, checks: DeviceChecks, device: DeviceConfig) -> None:
        name = f"device:{device.name}"
        if not device.enabled:
            self.skip(name, "enabled = false")
            return
        run: Callable[[], Awaitable[Outcome]]
        if self.daemon_running:
            run = lambda: checks.daemon_device(device)  # noqa: E731
        elif device.protocol == "echonet":
            run = lambda: checks.echonet_device(device)  # noqa: E731
        else:
            run = lambda: checks.modbus_device(device)  # noqa: E731
        await self.check(name, run)
