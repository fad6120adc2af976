from __future__ import annotations

import random

import pytest

from drivers.broute.actions import Notice, StartTimer, Write
from drivers.broute.dialect import Dialect, scan_seconds
from drivers.broute.join import (
    CachedPan,
    JoinConfig,
    Joined,
    JoinFailed,
    JoinFailure,
    JoinMachine,
    JoinResult,
    SetDataMode,
    link_local_from_mac,
)
from drivers.broute.parser import DataMode, Einfo, Ever, Fail, LinkLocal, Ok, RxUdp, SkEvent

from .fake_module import (
    METER_IPV6,
    METER_MAC,
    PASSWORD,
    RBID,
    SELF_IPV6,
    SELF_MAC,
    FakeModule,
    Pan,
    Run,
    drive,
)

SIDELESS = [Dialect.BP35A1, Dialect.RL7023]
EINFO_A1 = Einfo(
    SELF_IPV6, SELF_MAC, 0x21, 0x8888, 0xFFFE, None, (SELF_IPV6, SELF_MAC, "21", "8888", "FFFE")
)
BOTH = [Dialect.BP35A1, Dialect.BP35C0]


def config(**kw: object) -> JoinConfig:
    return JoinConfig(RBID, PASSWORD, **kw)  # type: ignore[arg-type]


def joined(run: Run) -> JoinResult:
    last = run.actions[-1]
    assert isinstance(last, Joined), run.actions[-6:]
    return last.result


def failed(run: Run) -> JoinFailed:
    last = run.actions[-1]
    assert isinstance(last, JoinFailed), run.actions[-6:]
    return last


def notices(run: Run) -> list[str]:
    return [a.message for a in run.actions if isinstance(a, Notice)]


# --- helpers ------------------------------------------------------------------------------------


def test_link_local_from_mac_flips_the_universal_local_bit() -> None:
    assert link_local_from_mac("001C6400030C12A4") == "FE80:0000:0000:0000:021C:6400:030C:12A4"
    assert link_local_from_mac(bytes.fromhex("021D129012345678")) == (
        "FE80:0000:0000:0000:001D:1290:1234:5678"
    )
    with pytest.raises(ValueError):
        link_local_from_mac("0011")


def test_config_keeps_secrets_out_of_repr_and_validates() -> None:
    text = repr(config())
    assert PASSWORD not in text and RBID not in text
    with pytest.raises(ValueError):
        JoinConfig(RBID, "has space")
    with pytest.raises(ValueError):
        JoinConfig("", PASSWORD)
    with pytest.raises(ValueError):
        config(scan_durations=())
    with pytest.raises(ValueError):
        CachedPan(0x21, 0x8888, "XYZ")


# --- fresh scan ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", BOTH)
def test_fresh_join_with_auto_detection(dialect: Dialect) -> None:
    module = FakeModule(dialect)
    run = drive(JoinMachine(config()), module)
    result = joined(run)
    scan = "SKSCAN 2 FFFFFFFF 6" + (" 0" if dialect.has_side else "")
    assert run.commands == [
        "SKVER",
        "SKINFO",
        "SKSREG SFE 0",
        "ROPT",
        "SKSETPWD ****",
        "SKSETRBID ****",
        scan,
        f"SKLL64 {METER_MAC}",
        "SKSREG S2 21",
        "SKSREG S3 8888",
        f"SKJOIN {METER_IPV6}",
    ]
    assert module.written[4] == f"SKSETPWD C {PASSWORD}"  # the length in hex
    assert result.dialect is dialect
    assert (result.channel, result.pan_id, result.mac) == (0x21, 0x8888, METER_MAC)
    assert result.ipv6 == METER_IPV6
    assert result.used_cached_pan is False
    assert result.data_mode is DataMode.HEX and result.wopt_written is False
    assert result.lqi == 0xE1 and result.rssi_dbm == pytest.approx(0.275 * 0xE1 - 104.27)
    assert result.version == "1.2.10"
    assert result.cached_pan == CachedPan(0x21, 0x8888, METER_MAC)
    assert SetDataMode(DataMode.HEX) in run.actions
    assert module.wopt_writes == 0


def test_every_write_is_followed_by_a_timer() -> None:
    run = drive(JoinMachine(config()), FakeModule(Dialect.BP35C0))
    for i, action in enumerate(run.actions):
        if isinstance(action, Write):
            assert isinstance(run.actions[i + 1], StartTimer)
            assert action.data.endswith(b"\r\n")
    scan_timer = run.timers[run.commands.index("SKSCAN 2 FFFFFFFF 6 0")]
    assert scan_timer == pytest.approx(scan_seconds(6) + 10)
    assert run.timers[-1] == 60.0


def test_secrets_never_appear_in_displays_or_notices() -> None:
    run = drive(JoinMachine(config()), FakeModule(Dialect.BP35A1))
    text = " ".join(run.commands + notices(run))
    assert PASSWORD not in text and RBID not in text


@pytest.mark.parametrize("seed", range(5))
def test_chunked_module_output_gives_the_same_join(seed: int) -> None:
    plain = drive(JoinMachine(config()), FakeModule(Dialect.BP35C0))
    chunked = drive(JoinMachine(config()), FakeModule(Dialect.BP35C0), rng=random.Random(seed))
    assert chunked.actions == plain.actions


def test_scan_duration_grows_until_the_pan_is_found() -> None:
    module = FakeModule(Dialect.BP35A1, pans=[Pan(found_from=8)])
    run = drive(JoinMachine(config()), module)
    joined(run)
    scans = [c for c in run.commands if c.startswith("SKSCAN")]
    assert scans == ["SKSCAN 2 FFFFFFFF 6", "SKSCAN 2 FFFFFFFF 7", "SKSCAN 2 FFFFFFFF 8"]
    assert any("scanning again with 7" in n for n in notices(run))


def test_best_lqi_wins() -> None:
    weak = Pan(channel=0x3B, pan_id=0x1111, mac="001C640000000001", lqi=0x20)
    strong = Pan(channel=0x21, pan_id=0x8888, mac=METER_MAC, lqi=0xA0)
    run = drive(JoinMachine(config()), FakeModule(Dialect.BP35C0, pans=[weak, strong]))
    result = joined(run)
    assert result.mac == METER_MAC and result.lqi == 0xA0
    assert any("strongest of 2" in n for n in notices(run))


def test_no_pan_found_gives_up_after_the_last_duration() -> None:
    run = drive(JoinMachine(config()), FakeModule(Dialect.BP35C0, pans=[]))
    failure = failed(run)
    assert failure.reason is JoinFailure.NO_PAN
    assert "no PAN found" in failure.message and "6, 7, 8" in failure.message
    assert failure.retryable
    assert len([c for c in run.commands if c.startswith("SKSCAN")]) == 3


def test_scan_that_never_ends_moves_on_when_the_timer_fires() -> None:
    run = drive(
        JoinMachine(config(scan_durations=(6, 7))), FakeModule(Dialect.BP35A1, silent_scan=True)
    )
    assert failed(run).reason is JoinFailure.NO_PAN
    assert any("did not finish in time" in n for n in notices(run))


# --- cached PAN ---------------------------------------------------------------------------------


def test_cached_pan_skips_the_scan() -> None:
    cached = CachedPan(0x21, 0x8888, METER_MAC)
    run = drive(JoinMachine(config(cached_pan=cached)), FakeModule(Dialect.BP35A1))
    result = joined(run)
    assert result.used_cached_pan is True
    assert not any(c.startswith("SKSCAN") for c in run.commands)
    assert result.lqi is None and result.rssi_dbm is None


@pytest.mark.parametrize("silent", [False, True])
def test_stale_cached_pan_falls_back_to_a_scan(silent: bool) -> None:
    # The meter moved to channel 0x3B; the cached channel 0x21 gets EVENT 24 (or nothing).
    module = FakeModule(Dialect.BP35C0, pans=[Pan(channel=0x3B)])
    stale = CachedPan(0x21, 0x8888, METER_MAC)
    machine = JoinMachine(config(cached_pan=stale, credentials_proven=False))
    if silent:
        module.silent_join = True
        run = drive(machine, module, limit=60)
        # the scan happened, then the (still silent) join timed out: not a credentials verdict
        assert any(c.startswith("SKSCAN") for c in run.commands)
        assert failed(run).reason is JoinFailure.JOIN_TIMEOUT
        return
    run = drive(machine, module)
    result = joined(run)
    assert result.used_cached_pan is False and result.channel == 0x3B
    assert run.commands.count(f"SKJOIN {METER_IPV6}") == 2
    assert any("cached PAN failed" in n for n in notices(run))


# --- PANA failures ------------------------------------------------------------------------------


def test_event_24_on_first_join_says_credentials_rejected() -> None:
    module = FakeModule(Dialect.BP35A1, password="SOMETHINGELS")
    run = drive(JoinMachine(config()), module)
    failure = failed(run)
    assert failure.reason is JoinFailure.CREDENTIALS_REJECTED
    assert failure.message.startswith("B-route ID or password rejected")
    assert not failure.retryable
    assert run.commands.count(f"SKJOIN {METER_IPV6}") == 1


def test_event_24_with_proven_credentials_retries_then_reports_a_weak_link() -> None:
    module = FakeModule(Dialect.BP35A1, pana_failures=5)
    run = drive(JoinMachine(config(credentials_proven=True, pana_retries=2)), module)
    failure = failed(run)
    assert failure.reason is JoinFailure.PANA_FAILED and "weak" in failure.message
    assert run.commands.count(f"SKJOIN {METER_IPV6}") == 3


def test_event_24_with_proven_credentials_then_success() -> None:
    module = FakeModule(Dialect.BP35C0, pana_failures=1)
    run = drive(JoinMachine(config(credentials_proven=True)), module)
    joined(run)
    assert run.commands.count(f"SKJOIN {METER_IPV6}") == 2


def test_join_timeout_without_cache() -> None:
    run = drive(JoinMachine(config()), FakeModule(Dialect.BP35A1, silent_join=True))
    failure = failed(run)
    assert failure.reason is JoinFailure.JOIN_TIMEOUT and "60 s" in failure.message


# --- ROPT / WOPT --------------------------------------------------------------------------------


def test_wopt_written_only_when_ropt_says_binary() -> None:
    module = FakeModule(Dialect.BP35A1, ropt=0)
    machine = JoinMachine(config())
    run = drive(machine, module)
    result = joined(run)
    assert "WOPT 01" in run.commands and module.wopt_writes == 1
    assert machine.wopt_written and result.wopt_written
    assert result.data_mode is DataMode.HEX
    assert any("flash" in n for n in notices(run))


def test_wopt_never_written_twice() -> None:
    module = FakeModule(Dialect.BP35C0, ropt=0)
    machine = JoinMachine(config(wopt_allowed=False))
    run = drive(machine, module)
    result = joined(run)
    assert "WOPT 01" not in run.commands and module.wopt_writes == 0
    assert not machine.wopt_written
    assert result.data_mode is DataMode.BINARY
    assert SetDataMode(DataMode.BINARY) in run.actions
    # PANA traffic came back in binary and was parsed by length
    assert any(isinstance(e, RxUdp) and not e.hex_mode for e in run.events)


def test_wopt_not_written_when_already_hex() -> None:
    module = FakeModule(Dialect.BP35A1, ropt=1)
    run = drive(JoinMachine(config()), module)
    joined(run)
    assert "WOPT 01" not in run.commands


def test_ropt_unsupported_continues_with_per_frame_detection() -> None:
    run = drive(JoinMachine(config()), FakeModule(Dialect.BP35A1, ropt_supported=False))
    assert joined(run).data_mode is DataMode.AUTO
    assert any("ROPT not supported" in n for n in notices(run))


def test_failed_wopt_falls_back_to_binary() -> None:
    machine = JoinMachine(config())
    machine.start()
    for event in (Ever("1.2.10"), Ok()):
        machine.handle(event)
    machine.handle(EINFO_A1)
    machine.handle(Ok())  # SKINFO done
    machine.handle(Ok())  # SFE 0 done
    assert [type(a) for a in machine.handle(Ok("00"))] == [Write, StartTimer]  # WOPT
    actions = machine.handle(Fail("ER10"))
    assert SetDataMode(DataMode.BINARY) in actions
    assert any(isinstance(a, Write) and a.display == "SKSETPWD ****" for a in actions)


# --- dialects -----------------------------------------------------------------------------------


def test_configured_wrong_dialect_fails_with_a_clear_message() -> None:
    module = FakeModule(Dialect.BP35C0)
    run = drive(JoinMachine(config(dialect=Dialect.BP35A1)), module)
    failure = failed(run)
    assert failure.reason is JoinFailure.WRONG_DIALECT and not failure.retryable
    assert failure.message.startswith("module rejected the 3-argument SKSCAN (FAIL ER05)")
    assert 'set broute.dialect = "bp35c0" or "auto"' in failure.message
    # detection already warned that the configuration looked wrong
    assert any("looks like another family" in n for n in notices(run))


@pytest.mark.parametrize("dialect", SIDELESS)
def test_configured_sideless_dialects(dialect: Dialect) -> None:
    run = drive(JoinMachine(config(dialect=dialect)), FakeModule(Dialect.BP35A1))
    assert joined(run).dialect is dialect
    assert "SKSCAN 2 FFFFFFFF 6" in run.commands


def test_auto_switches_once_when_detection_was_wrong() -> None:
    # A module whose EINFO cannot be read: AUTO starts with the C-series forms and switches.
    module = FakeModule(Dialect.BP35A1, einfo_override=f"EINFO {SELF_IPV6} {SELF_MAC} 21 8888 ZZ")
    run = drive(JoinMachine(config()), module)
    result = joined(run)
    assert result.dialect is Dialect.BP35A1
    scans = [c for c in run.commands if c.startswith("SKSCAN")]
    assert scans == ["SKSCAN 2 FFFFFFFF 6 0", "SKSCAN 2 FFFFFFFF 6"]
    assert "switched from bp35c0 to bp35a1" in result.dialect_message


def test_auto_switch_happens_only_once() -> None:
    module = FakeModule(Dialect.BP35A1, reject_all_scans=True)
    run = drive(JoinMachine(config()), module)
    assert failed(run).reason is JoinFailure.WRONG_DIALECT
    assert len([c for c in run.commands if c.startswith("SKSCAN")]) == 2


# --- robustness ---------------------------------------------------------------------------------


def test_command_timeout() -> None:
    machine = JoinMachine(config())
    machine.start()
    (failure,) = machine.timeout()
    assert isinstance(failure, JoinFailed) and failure.reason is JoinFailure.TIMEOUT
    assert "SKVER" in failure.message and machine.done
    assert machine.handle(Ok()) == [] and machine.timeout() == []


def test_stale_ok_before_ever_is_ignored() -> None:
    machine = JoinMachine(config())
    machine.start()
    assert machine.handle(Ok()) == []
    assert machine.handle(Ever("1.2.10")) == []
    actions = machine.handle(Ok())
    assert isinstance(actions[0], Write) and actions[0].display == "SKINFO"


def test_plain_ok_does_not_answer_ropt() -> None:
    machine = JoinMachine(config(dialect=Dialect.BP35A1))
    machine.start()
    machine.handle(Ever("1"))
    machine.handle(Ok())
    machine.handle(EINFO_A1)
    machine.handle(Ok())
    assert machine.waiting_for == "SKSREG SFE 0"
    machine.handle(Ok())
    assert machine.waiting_for == "ROPT"
    assert machine.handle(Ok()) == []  # an OK without a value is not ROPT's answer
    assert machine.waiting_for == "ROPT"


def test_command_failure_is_reported_with_secrets_masked() -> None:
    machine = JoinMachine(config(dialect=Dialect.BP35A1))
    actions = machine.start()
    for event in (Ever("1"), Ok(), EINFO_A1, Ok()):
        actions = machine.handle(event)
    machine.handle(Ok())  # SFE
    machine.handle(Ok("01"))  # ROPT
    (failure,) = machine.handle(Fail("ER06"))
    assert isinstance(failure, JoinFailed) and failure.reason is JoinFailure.COMMAND_FAILED
    assert failure.message == "SKSETPWD **** failed with FAIL ER06"
    del actions


def test_skll64_answer_that_differs_is_used_with_a_notice() -> None:
    machine = JoinMachine(config(dialect=Dialect.BP35A1, cached_pan=CachedPan(1, 2, METER_MAC)))
    machine.start()
    for event in (Ever("1"), Ok(), EINFO_A1, Ok()):
        machine.handle(event)
    for event in (Ok(), Ok("01"), Ok()):
        machine.handle(event)
    actions = machine.handle(Ok())  # SKSETRBID → SKLL64
    assert any(isinstance(a, Write) and a.display.startswith("SKLL64") for a in actions)
    odd = "FE80:0000:0000:0000:0000:0000:0000:0001"
    actions = machine.handle(LinkLocal(odd))
    assert isinstance(actions[0], Notice)
    for event in (Ok(), Ok()):
        actions = machine.handle(event)
    assert any(isinstance(a, Write) and a.display == f"SKJOIN {odd}" for a in actions)
    (done,) = machine.handle(SkEvent(0x25, odd))
    assert isinstance(done, Joined) and done.result.ipv6 == odd


def test_start_twice_is_an_error() -> None:
    machine = JoinMachine(config())
    machine.start()
    with pytest.raises(RuntimeError):
        machine.start()


def test_reset_first_when_asked() -> None:
    run = drive(JoinMachine(config(reset=True)), FakeModule(Dialect.BP35A1))
    assert run.commands[:2] == ["SKRESET", "SKVER"]
    joined(run)
