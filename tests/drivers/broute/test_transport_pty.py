"""The asyncio shell against the module emulator on a real pseudo-terminal."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from drivers.broute.dialect import Dialect
from drivers.broute.errors import (
    CredentialsRejected,
    NoPanFound,
    PortError,
    SendError,
    WrongDialect,
)
from drivers.broute.join import CachedPan
from drivers.broute.parser import DataMode
from drivers.broute.scan import ScanConfig
from drivers.broute.sim import DEFAULT_PASSWORD, PtyEmulator
from drivers.broute.transport import ModuleLink, open_serial, port_error

from .emulated import (
    RecordingLog,
    clock,
    join_config,
    joined_meter,
    meter,
    module,
    session_params,
)

CRLF_POWER = 0x0D0A  # E7 = 00 00 0D 0A: a CR LF inside the binary ERXUDP data


@pytest.mark.parametrize("dialect", [Dialect.BP35A1, Dialect.BP35C0])
@pytest.mark.parametrize("echo", [True, False], ids=["echo-on", "echo-off"])
@pytest.mark.parametrize("hex_data", [True, False], ids=["hex", "binary"])
async def test_join_and_read_every_dialect_echo_and_data_mode(
    dialect: Dialect, echo: bool, hex_data: bool
) -> None:
    clk = clock()
    config = module(dialect=dialect, echo=echo, hex_data=hex_data)
    async with PtyEmulator(config, meter(fixed_power_w=CRLF_POWER), clk) as emu:
        link, session = await joined_meter(emu, clk, wopt_allowed=False)
        try:
            assert link.result is not None
            assert link.result.dialect.has_side == dialect.has_side  # detected from EINFO
            assert link.parser.data_mode is (DataMode.HEX if hex_data else DataMode.BINARY)
            instant = await session.read_instant(energy=True)
            assert instant.power_w == CRLF_POWER
            assert instant.currents_a == (18.4, 15.0)
            assert instant.energy is not None
            assert instant.energy.import_raw == emu.meter.import_raw
            assert emu.module.stats.wopt_writes == 0
            assert emu.module.stats.overlapping == 0
        finally:
            await link.close()


async def test_wopt_is_written_once_when_the_module_prints_binary() -> None:
    clk = clock()
    async with PtyEmulator(module(hex_data=False), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        result = await link.join(join_config(), session_params())
        assert result.wopt_written and emu.module.stats.wopt_writes == 1
        assert link.parser.data_mode is DataMode.HEX
        await link.close()
        link = await ModuleLink.open(emu.path, clock=clk)
        result = await link.join(join_config(), session_params())
        assert not result.wopt_written and emu.module.stats.wopt_writes == 1  # ROPT now says 01
        await link.close()


async def test_c_series_einfo_with_the_side_in_place_of_addr16_is_detected() -> None:
    clk = clock()
    async with PtyEmulator(module(dialect=Dialect.BP35C0, einfo_addr16=False), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        result = await link.join(join_config(), session_params())
        assert result.dialect is Dialect.BP35C0
        assert emu.module.stats.commands[6] == "SKSCAN 2 FFFFFFFF 6 0"
        await link.close()


async def test_wrong_dialect_is_one_clear_error() -> None:
    clk = clock()
    async with PtyEmulator(module(dialect=Dialect.BP35C0), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        with pytest.raises(WrongDialect, match="C-series module") as info:
            await link.join(join_config(dialect=Dialect.BP35A1), session_params())
        assert not info.value.retryable
        await link.close()


async def test_wrong_password_on_the_first_join_says_so() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        with pytest.raises(CredentialsRejected, match="B-route ID or password rejected"):
            await link.join(join_config(password="WRONGPASSWRD"), session_params())
        assert emu.module.stats.joins == 1
        await link.close()


async def test_no_pan_found_after_the_configured_scans() -> None:
    clk = clock()
    async with PtyEmulator(module(visible_from=99), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        with pytest.raises(NoPanFound, match="no PAN found"):
            await link.join(join_config(scan_durations=(4, 5)), session_params())
        assert emu.module.stats.scans == 2
        await link.close()


async def test_scan_retries_with_a_longer_duration_until_the_meter_answers() -> None:
    clk = clock()
    async with PtyEmulator(module(visible_from=7), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        result = await link.join(join_config(scan_durations=(6, 7)), session_params())
        assert result.lqi == 0xB4 and emu.module.stats.scans == 2
        await link.close()


async def test_cached_pan_skips_the_scan_and_a_stale_one_falls_back_to_it() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        good = CachedPan(0x21, 0x8888, emu.module_config.meter_mac)
        link = await ModuleLink.open(emu.path, clock=clk)
        result = await link.join(join_config(cached_pan=good), session_params())
        assert result.used_cached_pan and emu.module.stats.scans == 0
        await link.close()
        stale = CachedPan(0x2A, 0x1234, emu.module_config.meter_mac)
        link = await ModuleLink.open(emu.path, clock=clk)
        result = await link.join(join_config(cached_pan=stale), session_params())
        assert not result.used_cached_pan and result.channel == 0x21
        assert emu.module.stats.scans == 1
        await link.close()


async def test_scan_only_lists_the_pan_with_its_lqi() -> None:
    clk = clock()
    async with PtyEmulator(module(dialect=Dialect.BP35C0, lqi=0x50), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        seen = []
        link.on_progress = seen.append
        done = await link.scan(ScanConfig(durations=(3,)))
        assert [p.lqi for p in done.pans] == [0x50]
        assert done.dialect is Dialect.BP35C0 and [s.duration for s in seen] == [3]
        assert round(done.pans[0].rssi_dbm, 1) == -82.3
        await link.close()


async def test_scan_auto_switches_dialect_after_fail_er05() -> None:
    clk = clock()
    # An EINFO that fits no layout leaves the dialect open: the C-series forms are tried first,
    # this side-less module answers FAIL ER05, and the scan goes on in the other dialect.
    odd = "EINFO FE80:0000:0000:0000:021D:1290:1234:5678 001D129012345678 21 8888"
    async with PtyEmulator(module(dialect=Dialect.BP35A1, einfo_text=odd), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        done = await link.scan(ScanConfig(dialect=Dialect.AUTO, durations=(3,)))
        assert done.dialect is Dialect.BP35A1 and done.pans and done.durations == (3,)
        assert emu.module.stats.commands[-2:] == ["SKSCAN 2 FFFFFFFF 3 0", "SKSCAN 2 FFFFFFFF 3"]
        await link.close()


async def test_join_auto_switches_dialect_after_fail_er05() -> None:
    clk = clock()
    odd = "EINFO FE80:0000:0000:0000:021D:1290:1234:5678 001D129012345678 21 8888"
    async with PtyEmulator(module(dialect=Dialect.BP35A1, einfo_text=odd), meter(), clk) as emu:
        link, session = await joined_meter(emu, clk)
        assert link.result is not None and link.result.dialect is Dialect.BP35A1
        assert (await session.read_instant()).power_w is not None
        await link.close()


async def test_secrets_never_reach_the_log() -> None:
    clk = clock()
    log = RecordingLog()
    async with PtyEmulator(module(echo=True), meter(), clk) as emu:
        link, _ = await joined_meter(emu, clk, log=log)
        await link.close()
    text = log.text()
    assert "SKSETPWD ****" in text and "SKSETRBID ****" in text
    assert DEFAULT_PASSWORD not in text
    assert emu.module_config.rbid not in text
    assert all(DEFAULT_PASSWORD not in c for c in link.commands)


async def test_terminate_ends_the_session_politely() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link, _ = await joined_meter(emu, clk)
        await link.terminate(2.0)
        assert link.ended.is_set() and "EVENT 27" in (link.end_reason or "")
        with pytest.raises(Exception, match="no PANA session"):
            link.send(b"\x10\x81")
        await link.close()


async def test_port_lost_fails_pending_sends() -> None:
    clk = clock()
    emu = await PtyEmulator(module(link_delay=0.2), meter(), clk).start()
    link, _ = await joined_meter(emu, clk)
    future = link.send(bytes.fromhex("1081000105FF010288016201E700"))
    await emu.stop()  # the dongle is pulled out
    with pytest.raises((SendError, PortError)):
        await future
    await link.close()


# --- opening errors -----------------------------------------------------------------------------


async def test_missing_port_message() -> None:
    with pytest.raises(PortError, match="no such port /dev/ttyUSB9: is the Wi-SUN"):
        await open_serial("/dev/ttyUSB9")


async def test_not_a_serial_port(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(PortError, match="is not a serial port"):
        await open_serial(str(path))


async def test_busy_port_message() -> None:
    clk = clock()
    async with PtyEmulator(module(), meter(), clk) as emu:
        link = await ModuleLink.open(emu.path, clock=clk)
        with pytest.raises(PortError, match="is busy"):
            await open_serial(emu.path)
        await link.close()


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (errno.EACCES, "permission denied on /dev/ttyUSB0: add the user to the dialout group"),
        (errno.ENOENT, "no such port /dev/ttyUSB0"),
        (errno.EBUSY, "port /dev/ttyUSB0 is busy"),
        (errno.ENOTTY, "/dev/ttyUSB0 is not a serial port"),
        (errno.EIO, "cannot open /dev/ttyUSB0: "),
    ],
)
def test_port_error_messages(number: int, expected: str) -> None:
    import serial

    exc = serial.SerialException(number, f"could not open port: [Errno {number}] x")
    assert port_error("/dev/ttyUSB0", exc).args[0].startswith(expected)


async def test_permission_denied_message(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root opens anything; the errno mapping is tested above")
    import pty

    master, slave = pty.openpty()
    path = os.ttyname(slave)
    os.chmod(path, 0)
    try:
        with pytest.raises(PortError, match="dialout"):
            await open_serial(path)
    finally:
        os.close(master)
        os.close(slave)
