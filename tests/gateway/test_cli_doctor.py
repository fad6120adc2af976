"""``chisan doctor`` without hardware: a broken config, the time bound of each check, skipped
dependants, and a control socket left behind by a dead daemon."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.config import load
from gateway.doctor import CheckResult, Doctor, DoctorOptions, Failed, Outcome, Verdict
from gateway.doctor.host import HostChecks, clock_check
from tests.conftest import BASE_CONFIG


def test_invalid_config_fails_and_skips_the_rest(write_config: Callable[[str], Path]) -> None:
    path = write_config(BASE_CONFIG.replace('id = "sg-0001"', 'id = "Not Valid!"'))
    out = CliRunner().invoke(main, ["doctor", "-c", str(path), "--json"])
    assert out.exit_code == 1
    report = json.loads(out.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["config"]["status"] == "FAIL"
    assert "site.id" in checks["config"]["detail"]
    assert (
        checks["config"]["next_step"] == f"fix them: chisan check-config -c {path} lists every one"
    )
    assert checks["config"]["data"]["errors"]
    for name in ("daemon", "serial_port", "broker", "test_publish", "store", "disk"):
        assert checks[name] == {
            "name": name,
            "status": "SKIP",
            "detail": "config failed",
            "next_step": None,
            "seconds": 0.0,
            "data": {},
        }
    assert report["summary"]["fail"] >= 1 and report["ok"] is False


def test_missing_config_file(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["doctor", "-c", str(tmp_path / "nope.toml")])
    assert out.exit_code == 1
    assert "config" in out.stdout and "FAIL" in out.stdout and "check-config" in out.stdout


async def test_each_check_is_bounded_and_dependants_skip(tmp_path: Path) -> None:
    doctor = Doctor(tmp_path / "x.toml", DoctorOptions(check_timeout_s=0.2))

    async def hangs() -> Outcome:
        await asyncio.sleep(30)
        return Outcome("never")

    async def fails() -> Outcome:
        raise Failed("broken", "fix it")

    async def fine() -> Outcome:
        return Outcome("fine")

    slow = await doctor.check("slow", hangs)
    assert slow.verdict is Verdict.FAIL and slow.detail == "no result within 0.2 s"
    assert slow.seconds < 2
    assert (await doctor.check("after", fine, needs=("slow",))).detail == "slow failed"
    assert (await doctor.check("chain", fine, needs=("after",))).detail == "after was skipped"
    bad = await doctor.check("bad", fails)
    assert (bad.verdict, bad.next_step) == (Verdict.FAIL, "fix it")
    assert (await doctor.check("ok", fine)).verdict is Verdict.PASS
    assert not doctor.ok


async def test_stale_socket_means_no_daemon(
    write_config: Callable[[str], Path], config_dir: Path
) -> None:
    path = write_config(
        BASE_CONFIG.replace('"/dev/ttyUSB0"', f'"{config_dir / "ttyNONE"}"').replace(
            'eoj = "027D01"', 'eoj = "027D01"\nenabled = false'
        )
        + '\n[control]\nsocket = "control.sock"\n'
    )
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(config_dir / "control.sock"))
    stale.close()
    doctor = Doctor(path, DoctorOptions(check_timeout_s=5, check_clock=lambda: True))
    results = {r.name: r for r in await doctor.run()}
    assert not doctor.daemon_running
    assert results["daemon"].verdict is Verdict.WARN
    assert "stale socket" in results["daemon"].detail
    # So the port is checked directly (and is missing here).
    assert results["serial_port"].verdict is Verdict.FAIL
    assert results["clock"].verdict is Verdict.PASS


async def test_disk_thresholds_and_a_clock_that_cannot_tell(
    write_config: Callable[[str], Path], config_dir: Path
) -> None:
    path = write_config(BASE_CONFIG.replace('eoj = "027D01"', 'eoj = "027D01"\nenabled = false'))

    async def run(options: DoctorOptions) -> tuple[CheckResult, CheckResult]:
        doctor = Doctor(path, options)
        host = HostChecks(load(path), options)
        disk = await doctor.check("disk", host.disk)
        return disk, await doctor.check("clock", lambda: clock_check(options))

    disk, clock = await run(DoctorOptions(disk_fail_below=1.01, check_clock=lambda: False))
    assert disk.verdict is Verdict.FAIL
    assert disk.next_step is not None and "journalctl --vacuum-size" in disk.next_step
    assert clock.verdict is Verdict.FAIL
    assert clock.next_step is not None and "timedatectl set-ntp true" in clock.next_step
    disk, clock = await run(
        DoctorOptions(disk_fail_below=0.0, disk_warn_below=1.01, check_clock=lambda: None)
    )
    assert (disk.verdict, clock.verdict) == (Verdict.WARN, Verdict.WARN)
    assert str(config_dir) in disk.detail
