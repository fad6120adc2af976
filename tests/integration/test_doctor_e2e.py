"""``chisan doctor`` against real peers: the B-route module emulator on a pseudo-terminal, a
simulated ECHONET node on loopback, a real mosquitto; then broken setups (missing port, wrong
B-route password, broker down, corrupt store, silent device) and a running daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jsonschema

from drivers.broute.sim import (
    DEFAULT_PASSWORD,
    DEFAULT_RBID,
    MeterModelConfig,
    ModuleConfig,
    PtyEmulator,
)
from drivers.echonet.sim import SimNode
from drivers.modbus.sim import SunSpecSim
from gateway.clock import JST, AcceleratedClock, SystemClock
from gateway.demo import DEMO_CONFIG
from gateway.doctor import CheckResult, Doctor, DoctorOptions, Verdict
from tests.conftest import REPO, venv_bin
from tests.support.home import simulated_home
from tests.support.mosquitto import Mosquitto, free_port

NODE = "127.0.4.2"
SILENT = "127.0.4.3"
LOCAL = "127.0.4.10"
DAEMON_NODE = "127.0.4.4"
SYNCED = DoctorOptions(check_timeout_s=10, join_timeout_s=30, check_clock=lambda: True)


def own_bind(text: str) -> str:
    """The gateway side on this file's own loopback address (UDP 3610 there is ours alone)."""
    return text.replace('bind = "127.0.0.1"', 'bind = "127.0.4.21"').replace(
        'multicast_interface = "127.0.0.1"', 'multicast_interface = "127.0.4.21"'
    )


@dataclass
class Bench:
    folder: Path
    emu: PtyEmulator
    node: SimNode

    def config(self, mqtt_port: int, edit: Callable[[str], str] = lambda t: t) -> Path:
        text = DEMO_CONFIG.format(
            site="doc-0001", mqtt_port=mqtt_port, pty=self.emu.path, rbid=DEFAULT_RBID, node=NODE
        )
        text = text.replace('bind = "127.0.0.1"', f'bind = "{LOCAL}"').replace(
            'multicast_interface = "127.0.0.1"', f'multicast_interface = "{LOCAL}"'
        )
        text = text.replace('name = "ecocute"', 'name = "ecocute"\nenabled = false')
        path = self.folder / "chisan.toml"
        path.write_text(edit(text))
        return path


@contextlib.asynccontextmanager
async def bench(folder: Path, meter_password: str = DEFAULT_PASSWORD) -> AsyncIterator[Bench]:
    pw = folder / "broute-password"
    pw.write_text(DEFAULT_PASSWORD)
    pw.chmod(0o600)
    (folder / "backend.pub.pem").write_text("")  # not read by the doctor
    module = ModuleConfig(
        link_delay=0.003, link_jitter=0.0, scan_scale=0.02, password=meter_password
    )
    clock = SystemClock()
    node = SimNode(NODE, devices=("pv", "battery"), clock=clock, soc_pct=62, fit=False)
    async with PtyEmulator(module, MeterModelConfig(), clock) as emu, node:
        yield Bench(folder, emu, node)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


async def test_doctor_passes_on_a_working_home(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with bench(tmp_path) as b, SunSpecSim(SystemClock(), soc_pct=71) as sunspec:
        modbus = (
            f'\n[[device]]\nname = "inverter"\nkind = "battery"\nprotocol = "modbus"\n'
            f'host = "127.0.0.1"\nport = {sunspec.port}\nsunspec = true\n'
        )
        # One controllable battery: the SunSpec inverter is it, the node's battery is off.
        battery = 'name = "battery"\nkind = "battery"'
        doctor = Doctor(
            b.config(
                mosquitto.port,
                lambda t: t.replace(battery, battery + "\nenabled = false") + modbus,
            ),
            SYNCED,
        )
        results = by_name(await doctor.run())
        # The same home with its ECHONET battery as the one battery.
        plain = Doctor(b.config(mosquitto.port), SYNCED)
        echonet = by_name(await plain.run())
    assert results.pop("disk").verdict in (Verdict.PASS, Verdict.WARN)  # the machine's own disk
    bad = {n: (r.verdict, r.detail) for n, r in results.items() if r.verdict is not Verdict.PASS}
    assert bad == {
        "device:ecocute": (Verdict.SKIP, "enabled = false"),
        "device:battery": (Verdict.SKIP, "enabled = false"),
    }
    assert plain.ok
    assert doctor.ok and not doctor.daemon_running
    module = results["wisun_module"]
    assert module.data["dialect"] == "bp35a1" and module.data["data_mode"] == "hex"
    assert module.data["version"]
    join = results["broute_join"]
    assert join.data["channel"] == 0x21 and join.data["pan_id"] == "8888"
    assert isinstance(results["meter_reading"].data["power_w"], int)
    battery = echonet["device:battery"].data
    assert battery["soc_pct"] == 62 and battery["reverse_flow_ok"] is True
    assert battery["capacity_wh"] == 9800
    assert results["device:pv"].data["fit_contract"] == "non_fit"
    inverter = results["device:inverter"].data
    assert 124 in inverter["models"] and inverter["soc_pct"] == 71
    assert inverter["capacity_wh"] == 9800
    assert "received it back" in results["test_publish"].detail
    assert "not created yet" in results["store"].detail
    assert all(r.seconds < 30 for r in results.values())


async def test_wrong_broute_password_fails_join_with_the_next_step(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with bench(tmp_path, meter_password="OtherPass123") as b:
        results = by_name(await Doctor(b.config(mosquitto.port), SYNCED).run())
    join = results["broute_join"]
    assert join.verdict is Verdict.FAIL
    assert "rejected the B-route ID or password" in join.detail
    assert join.next_step is not None and "grid operator's letter" in join.next_step
    assert results["wisun_module"].verdict is Verdict.PASS
    assert results["meter_reading"].verdict is Verdict.SKIP
    assert results["meter_reading"].detail == "broute_join failed"


async def test_silent_device_and_fit_mismatch(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with bench(tmp_path) as b:

        def edit(text: str) -> str:
            text = text.replace("fit = false", "fit = true", 1)
            return text + (
                f'\n[[device]]\nname = "pv2"\nkind = "pv"\nprotocol = "echonet"\n'
                f'host = "{SILENT}"\neoj = "027901"\n'
            )

        path = b.config(mosquitto.port, edit)
        text = path.read_text().replace("[echonet]\n", "[echonet]\nretries = 0\n")
        path.write_text(text.replace("timeout_s = 2\n", "timeout_s = 0.5\n"))
        results = by_name(await Doctor(path, SYNCED).run())
    silent = results["device:pv2"]
    assert silent.verdict is Verdict.FAIL
    assert (
        silent.next_step
        == f"check the device is on and on this LAN: chisan echonet discover --host {SILENT}"
    )
    pv = results["device:pv"]
    assert pv.verdict is Verdict.WARN and pv.next_step is not None
    assert "site.fit = true" in pv.next_step


async def _chisan(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        venv_bin("chisan"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_broken_setup_json_and_table(tmp_path: Path) -> None:
    """Missing port, broker down and a corrupt store in one run, through the real command."""
    async with bench(tmp_path) as b:
        down = free_port()  # nothing listens there
        path = b.config(down, lambda t: t.replace(b.emu.path, str(tmp_path / "ttyUSB9")))
        (tmp_path / "chisan.db").write_bytes(b"this is not a database" * 100)
        code, out, _ = await _chisan("doctor", "-c", str(path), "--json", "--timeout", "10")
        report = json.loads(out)
        code_text, table, _ = await _chisan("doctor", "-c", str(path), "--timeout", "10")
    assert code == 1 and code_text == 1
    assert set(report) == {"ok", "config", "daemon_running", "summary", "checks"}
    assert report["ok"] is False and report["daemon_running"] is False
    assert report["config"] == str(path)
    checks = {c["name"]: c for c in report["checks"]}
    for c in report["checks"]:
        assert set(c) == {"name", "status", "detail", "next_step", "seconds", "data"}
        assert c["status"] in ("PASS", "WARN", "FAIL", "SKIP")
        assert c["status"] != "FAIL" or c["next_step"]
    assert sum(report["summary"].values()) == len(report["checks"])
    assert report["summary"]["fail"] == sum(c["status"] == "FAIL" for c in report["checks"])
    assert checks["config"]["status"] == "PASS"
    assert checks["serial_port"]["status"] == "FAIL"
    assert "plug the Wi-SUN module in" in checks["serial_port"]["next_step"]
    for dependent in ("wisun_module", "broute_join", "meter_reading"):
        assert checks[dependent]["status"] == "SKIP"
    assert checks["wisun_module"]["detail"] == "serial_port failed"
    assert checks["device:battery"]["status"] == "PASS"
    assert checks["broker"]["status"] == "FAIL"
    assert f"127.0.0.1:{down}" in checks["broker"]["detail"]
    assert "broker runs" in checks["broker"]["next_step"]
    assert [checks[n]["status"] for n in ("broker_tls", "mqtt_session", "test_publish")] == [
        "SKIP"
    ] * 3
    assert checks["store"]["status"] == "FAIL"
    assert "restore the last backup" in checks["store"]["next_step"]
    assert checks["clock"]["status"] in ("PASS", "WARN", "FAIL")
    for words in ("serial_port", "FAIL", "next step", "plug the Wi-SUN", "check(s) failed"):
        assert words in table, words


async def test_doctor_uses_the_running_daemons_view(tmp_path: Path, mosquitto: Mosquitto) -> None:
    clock = AcceleratedClock(30, datetime(2026, 11, 27, 11, 59, 0, tzinfo=JST))
    async with simulated_home(
        tmp_path,
        mosquitto.port,
        clock,
        DAEMON_NODE,
        ("pv", "battery"),
        edit_config=own_bind,
        soc_pct=40,
    ) as home:
        app = home.app
        async with asyncio.timeout(30):
            while (
                app.hub.latest("meter.power_w") is None
                or app.hub.latest("pv.power_w") is None
                or app.hub.latest("battery.soc_pct") is None
                or app.control.measurements().ratings is None
                or app.control.measurements().pv_contract == "unknown"
                or app.store.max_seq() == 0
            ):
                await asyncio.sleep(0.05)
        doctor = Doctor(home.cfg_path, SYNCED)
        results = by_name(await doctor.run())
        await home.backend.wait_for(lambda: home.backend.of("doctor"), timeout=10)
        published = home.backend.of("doctor")[0]
    assert doctor.daemon_running
    assert results["daemon"].verdict is Verdict.PASS
    # The daemon holds the port exclusively: probing it would have failed as "busy".
    for name in ("wisun_module", "broute_join", "meter_reading", "device:battery", "device:pv"):
        assert results[name].verdict is Verdict.PASS, (name, results[name].detail)
        assert "daemon's view" in results[name].detail
    assert results["wisun_module"].data["dialect"] in ("bp35a1", "bp35c0", "rl7023")
    battery = results["device:battery"].data
    assert battery["capacity_wh"] == 9800 and battery["reverse_flow_ok"] is True
    assert results["device:pv"].data["fit_contract"] == "non_fit"
    assert results["test_publish"].verdict is Verdict.PASS
    assert results["store"].verdict is Verdict.PASS and "chain verified" in results["store"].detail
    assert doctor.ok
    doc = json.loads((REPO / "docs" / "schemas" / "doctor.schema.json").read_text())
    jsonschema.validators.validator_for(doc)(doc).validate(published)


async def test_broker_tls_checks(tmp_path: Path) -> None:
    """mqtts:// against a mosquitto that requires client certificates: trusted, wrong CA, and
    no client certificate each end at the right row."""
    from tests.integration.test_uplink_tls import write_pki

    pki = write_pki(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    wrong_ca = write_pki(other)["ca"]
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port)
    broker.conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    broker.start()

    def config(ca: Path, client_cert: bool) -> Path:
        lines = [
            '[site]\nid = "sg-0001"\nfit = false\n',
            f'[mqtt]\nurl = "mqtts://127.0.0.1:{port}"\nca_file = "{ca}"',
        ]
        if client_cert:
            lines.append(f'cert_file = "{pki["client_cert"]}"\nkey_file = "{pki["client_key"]}"')
        lines.append(f'\n[store]\npath = "{tmp_path / "chisan.db"}"\n')
        path = tmp_path / "chisan.toml"
        path.write_text("\n".join(lines))
        return path

    try:
        good = by_name(await Doctor(config(pki["ca"], True), SYNCED).run())
        untrusted = by_name(await Doctor(config(wrong_ca, True), SYNCED).run())
        quick = DoctorOptions(check_timeout_s=4, check_clock=lambda: True)
        anonymous = by_name(await Doctor(config(pki["ca"], False), quick).run())
    finally:
        broker.stop()
    assert good["config"].verdict is Verdict.WARN  # no [broute]: said, not fatal
    for name in ("broker", "broker_tls", "mqtt_session", "test_publish"):
        assert good[name].verdict is Verdict.PASS, (name, good[name].detail)
    assert "certificate verified, with client certificate" in good["broker_tls"].detail
    assert untrusted["broker_tls"].verdict is Verdict.FAIL
    assert "not trusted" in untrusted["broker_tls"].detail
    step = untrusted["broker_tls"].next_step
    assert step is not None and "mqtt.ca_file" in step
    assert untrusted["mqtt_session"].detail == "broker_tls failed"
    assert anonymous["mqtt_session"].verdict is Verdict.FAIL
    step = anonymous["mqtt_session"].next_step
    assert step is not None and "client certificate" in step
    assert anonymous["test_publish"].verdict is Verdict.SKIP
