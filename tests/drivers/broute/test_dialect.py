from __future__ import annotations

import pytest

from drivers.broute.dialect import (
    Dialect,
    detect,
    detect_with_reason,
    format_einfo,
    format_erxudp,
    format_event,
    full_ipv6,
    mask_secrets,
    other_family,
    same_address,
    scan_seconds,
    skscan_command,
    sksendto_header,
    wrong_dialect_hint,
)

IP = "FE80:0000:0000:0000:021C:6400:030C:12A4"
MAC = "001D129012345678"


def test_values_match_the_config_strings() -> None:
    assert [d.value for d in Dialect] == ["bp35a1", "bp35c0", "rl7023", "auto"]
    assert Dialect("rl7023") is Dialect.RL7023


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (Dialect.BP35A1, "SKSCAN 2 FFFFFFFF 6"),
        (Dialect.RL7023, "SKSCAN 2 FFFFFFFF 6"),
        (Dialect.BP35C0, "SKSCAN 2 FFFFFFFF 6 0"),
    ],
)
def test_skscan_forms(dialect: Dialect, expected: str) -> None:
    assert skscan_command(dialect, 6) == expected


def test_skscan_duration_is_hex_and_bounded() -> None:
    assert skscan_command(Dialect.BP35A1, 10) == "SKSCAN 2 FFFFFFFF A"
    with pytest.raises(ValueError):
        skscan_command(Dialect.BP35A1, 15)


def test_auto_has_no_command_forms() -> None:
    with pytest.raises(ValueError):
        skscan_command(Dialect.AUTO, 6)
    assert Dialect.AUTO.modules == "undetermined module"


def test_sksendto_forms() -> None:
    assert sksendto_header(Dialect.BP35A1, IP, 14) == f"SKSENDTO 1 {IP} 0E1A 1 000E"
    assert sksendto_header(Dialect.RL7023, IP, 14) == f"SKSENDTO 1 {IP} 0E1A 1 000E"
    assert sksendto_header(Dialect.BP35C0, IP, 14) == f"SKSENDTO 1 {IP} 0E1A 1 0 000E"
    assert sksendto_header(Dialect.BP35C0, IP, 1232, secured=False, side=1).endswith("0 1 04D0")


def test_other_family() -> None:
    assert other_family(Dialect.BP35A1) is Dialect.BP35C0
    assert other_family(Dialect.RL7023) is Dialect.BP35C0
    assert other_family(Dialect.BP35C0) is Dialect.BP35A1
    assert other_family(Dialect.AUTO) is Dialect.BP35C0


def test_scan_seconds_matches_the_documented_estimates() -> None:
    assert scan_seconds(6) == pytest.approx(17.5, abs=0.1)
    assert scan_seconds(7) == pytest.approx(34.7, abs=0.1)
    assert scan_seconds(8) == pytest.approx(69.1, abs=0.1)


# --- detection ----------------------------------------------------------------------------------


def test_detects_sideless_from_einfo_with_addr16() -> None:
    line = format_einfo(Dialect.BP35A1, IP, MAC, 0x21, 0x8888)
    result = detect_with_reason("EVER 1.2.10", line.split())
    assert result.dialect is Dialect.BP35A1
    assert "no side field" in result.message and "1.2.10" in result.message
    assert "RL7023 Stick-D/IPS" in result.message


def test_sideless_with_a_short_address_is_not_mistaken_for_a_side() -> None:
    # After a join the fifth field is the 16-bit short address, e.g. 0001: still side-less.
    fields = [IP, MAC, "21", "8888", "0001"]
    assert detect("1.2.10", fields) is Dialect.BP35A1


def test_detects_c_series_from_side_field() -> None:
    line = format_einfo(Dialect.BP35C0, IP, MAC, 0x21, 0x8888)
    assert len(line.split()) == 7
    result = detect_with_reason("1.0.2", line.split()[1:])
    assert result.dialect is Dialect.BP35C0
    assert "side field" in result.message


def test_detects_c_series_that_prints_side_instead_of_addr16() -> None:
    assert detect("1.0.2", [IP, MAC, "21", "8888", "0"]) is Dialect.BP35C0


@pytest.mark.parametrize("fields", [[], [IP], [IP, MAC, "21"], [IP, MAC, "21", "8888", "XYZ"]])
def test_undetermined(fields: list[str]) -> None:
    result = detect_with_reason("", fields)
    assert result.dialect is Dialect.AUTO
    assert "could not tell" in result.message and "FAIL ER05" in result.message


# --- FAIL ER05 explanations ---------------------------------------------------------------------


def test_three_argument_skscan_rejected_names_c_series() -> None:
    message = wrong_dialect_hint(skscan_command(Dialect.BP35A1, 6), "ER05")
    assert message == (
        "module rejected the 3-argument SKSCAN (FAIL ER05): this looks like a C-series module "
        '(BP35C0/BP35C2 or RL7023 Stick-D/DSS); set broute.dialect = "bp35c0" or "auto"'
    )


def test_four_argument_skscan_rejected_names_sideless() -> None:
    message = wrong_dialect_hint(skscan_command(Dialect.BP35C0, 6), "FAIL ER05")
    assert message is not None
    assert message.startswith("module rejected the 4-argument SKSCAN (FAIL ER05)")
    assert '"bp35a1"' in message and '"rl7023"' in message and '"auto"' in message


def test_sksendto_rejections() -> None:
    a1 = wrong_dialect_hint(sksendto_header(Dialect.BP35A1, IP, 4) + " \x10\x81", "ER05")
    c0 = wrong_dialect_hint(sksendto_header(Dialect.BP35C0, IP, 4), "ER05")
    assert a1 is not None and "without the side argument" in a1 and '"bp35c0"' in a1
    assert c0 is not None and "with the side argument" in c0 and '"bp35a1"' in c0


@pytest.mark.parametrize(
    ("command", "code"),
    [("SKSCAN 2 FFFFFFFF 6", "ER04"), ("SKJOIN " + IP, "ER05"), ("SKSCAN 2", "ER05"), ("", "ER05")],
)
def test_no_hint_for_other_failures(command: str, code: str) -> None:
    assert wrong_dialect_hint(command, code) is None


# --- module-side formats ------------------------------------------------------------------------


def test_event_layouts() -> None:
    assert format_event(Dialect.BP35A1, 0x21, IP, 0) == f"EVENT 21 {IP} 00"
    assert format_event(Dialect.BP35C0, 0x21, IP, 0) == f"EVENT 21 {IP} 0 00"
    assert format_event(Dialect.BP35C0, 0x25, IP) == f"EVENT 25 {IP} 0"
    assert format_event(Dialect.RL7023, 0x25, IP) == f"EVENT 25 {IP}"


def _rx(dialect: Dialect, data: bytes, *, hex_mode: bool = True, lqi: int | None = None) -> bytes:
    return format_erxudp(
        dialect,
        sender=IP,
        dest=IP,
        rport=0x0E1A,
        lport=0x0E1A,
        sender_mac=MAC,
        secured=1,
        data=data,
        hex_mode=hex_mode,
        lqi=lqi,
    )


def test_erxudp_layouts() -> None:
    a1 = _rx(Dialect.BP35A1, b"\x10\x81")
    assert a1 == f"ERXUDP {IP} {IP} 0E1A 0E1A {MAC} 1 0002 1081\r\n".encode()
    c0 = _rx(Dialect.BP35C0, b"\r\n", hex_mode=False, lqi=0x5A)
    assert c0 == f"ERXUDP {IP} {IP} 0E1A 0E1A {MAC} 5A 1 0 0002 ".encode() + b"\r\n\r\n"
    with pytest.raises(ValueError):
        _rx(Dialect.BP35A1, b"", lqi=1)


def test_mask_secrets() -> None:
    assert mask_secrets("SKSETPWD C ABCDEFGHJKLM") == "SKSETPWD ****"
    assert mask_secrets("SKSETRBID 0000003A00000000000000000012ABCD") == "SKSETRBID ****"
    assert mask_secrets("SKVER") == "SKVER"


def test_addresses() -> None:
    assert full_ipv6("fe80::21c:6400:30c:12a4") == IP
    assert same_address("fe80::21c:6400:30c:12a4", IP)
    assert not same_address("nonsense", IP)
