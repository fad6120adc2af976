"""The smart meter's checks: serial port, Wi-SUN module, B-route join and one reading.

Without a daemon the module is probed with read-only commands (SKVER, SKAPPVER, SKINFO, ROPT)
and joined with WOPT forbidden, so a check never writes the module's flash. Beside a running
daemon, which holds the port exclusively, the same rows come from the daemon's own view.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from dataclasses import dataclass
from typing import Any

from gateway.doctor.model import Checks, Failed, Outcome, Verdict


@dataclass
class ModuleInfo:
    """The Wi-SUN module's own answers (SKVER, SKAPPVER, SKINFO, ROPT)."""

    version: str | None
    app_version: str | None
    dialect: str
    dialect_message: str
    data_mode: str


class MeterChecks(Checks):
    """Rows ``serial_port``, ``wisun_module``, ``broute_join``, ``meter_reading``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._link: Any = None  # the joined module link, between the join and the reading

    async def serial_port(self) -> Outcome:
        assert self.cfg.broute is not None
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

    async def module(self) -> Outcome:
        from drivers.broute.errors import PortError

        assert self.cfg.broute is not None
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

    async def join(self) -> Outcome:
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

        assert self.cfg.broute is not None
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
                cached_pan=self.cached_pan(),
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

    def cached_pan(self) -> Any:
        """The PAN the daemon remembered, so a check does not need a full scan."""
        from drivers.broute.adapter import pan_from_json
        from gateway.store import Store, StoreError

        if not self.cfg.store.path.is_file():
            return None
        try:
            with Store.open_readonly(self.cfg.store.path, self.cfg.site.id) as store:
                return pan_from_json(store.get_json("broute.pan"))
        except (StoreError, ValueError, OSError):
            return None

    async def reading(self) -> Outcome:
        from drivers.broute.errors import BrouteError
        from drivers.broute.meter import MeterSession
        from drivers.capabilities import DeviceError
        from drivers.echonet.properties import PropertyError
        from gateway.clock import SystemClock
        from gateway.slots import iso

        assert self.cfg.broute is not None
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

    async def close_link(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        with contextlib.suppress(Exception):
            await link.terminate(2.0)
        with contextlib.suppress(Exception):
            await link.close()

    def daemon_link(self) -> dict[str, Any]:
        if self.daemon is None:
            raise Failed(
                "the daemon runs but its view cannot be read",
                "run chisan doctor as root or as a member of the chisan group",
            )
        link = self.daemon.get("meter_link")
        if not isinstance(link, dict):
            raise Failed("the daemon reports no meter link", "check [broute] in the config")
        return link

    async def daemon_module(self) -> Outcome:
        link = self.daemon_link()
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

    async def daemon_join(self) -> Outcome:
        link = self.daemon_link()
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

    async def daemon_reading(self) -> Outcome:
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


def _port_next_step(message: str) -> str:
    if "dialout" in message:
        return "sudo usermod -aG dialout <user>, then log in again"
    if "busy" in message:
        return "stop the other program using the port (systemctl stop chisan / ModemManager)"
    return "check broute.port and that the module is plugged in"


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
