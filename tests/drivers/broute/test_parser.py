from __future__ import annotations

import pytest

from drivers.broute.dialect import Dialect, format_epandesc, format_erxudp, format_event
from drivers.broute.errors import ParseError
from drivers.broute.parser import (
    AddressTable,
    DataMode,
    EappVer,
    Echo,
    Einfo,
    Esreg,
    Event,
    EventCode,
    Ever,
    Fail,
    LineParser,
    LinkLocal,
    Neighbour,
    NeighbourTable,
    Ok,
    PanDescriptor,
    PortTable,
    RxUdp,
    SkEvent,
    Unrecognised,
)

METER = "FE80:0000:0000:0000:021C:6400:030C:12A4"
SELF = "FE80:0000:0000:0000:021D:1290:1234:5678"
METER_MAC = "001C6400030C12A4"
# The meter's boot announcement (INF of 0x0EF001 EPC D5), and a Get_Res for E7 that happens to
# contain 0D 0A: exactly what breaks line-based readers in binary mode.
INF = bytes.fromhex("1081 0000 0EF001 0EF001 73 01 D5 04 01 028801")
E7_CRLF = bytes.fromhex("1081 0001 028801 05FF01 72 01 E7 04 00000D0A")


def feed_all(parser: LineParser, data: bytes, chunk: int | None = None) -> list[Event]:
    if chunk is None:
        return parser.feed(data)
    out: list[Event] = []
    for i in range(0, len(data), chunk):
        out += parser.feed(data[i : i + chunk])
    return out


def rx_line(
    dialect: Dialect,
    data: bytes,
    *,
    hex_mode: bool = True,
    lqi: int | None = None,
    rport: int = 0x0E1A,
    secured: int = 1,
    side: int = 0,
) -> bytes:
    return format_erxudp(
        dialect,
        sender=METER,
        dest=SELF,
        rport=rport,
        lport=rport,
        sender_mac=METER_MAC,
        secured=secured,
        data=data,
        hex_mode=hex_mode,
        side=side,
        lqi=lqi,
    )


def test_e7_fixture_really_contains_crlf() -> None:
    assert b"\r\n" in E7_CRLF


# --- simple answers -----------------------------------------------------------------------------


def test_basic_answers_with_echo_on() -> None:
    p = LineParser()
    p.command_sent(b"SKVER\r\n")
    assert p.feed(b"SKVER\r\nEVER 1.2.10\r\nOK\r\n") == [
        Echo("SKVER", expected=True),
        Ever("1.2.10"),
        Ok(),
    ]
    p.command_sent(b"SKAPPVER\r\n")
    assert p.feed(b"SKAPPVER\r\nEAPPVER rev26e\r\nOK\r\n")[1] == EappVer("rev26e")
    p.command_sent(b"SKSREG S2\r\n")
    assert p.feed(b"SKSREG S2\r\nESREG 21\r\nOK\r\n")[1:] == [Esreg("21"), Ok()]


def test_echo_off_answers_are_not_mistaken_for_echo() -> None:
    p = LineParser()
    p.command_sent(b"SKVER\r\n")
    assert p.feed(b"EVER 1.2.10\r\nOK\r\n") == [Ever("1.2.10"), Ok()]


def test_ropt_answer_with_bare_cr_is_delivered_without_waiting_for_lf() -> None:
    p = LineParser()
    p.command_sent(b"ROPT\r")
    assert p.feed(b"ROPT\rOK 01\r") == [Echo("ROPT", True), Ok("01")]
    assert p.feed(b"\n") == []  # the late LF is just a blank line
    assert p.feed(b"OK 00\r\n") == [Ok("00")]


def test_fail_codes() -> None:
    p = LineParser()
    events = p.feed(b"FAIL ER05\r\nFAIL ER10\r\nFAIL\r\nFAIL EX05\r\n")
    assert events[:2] == [Fail("ER05"), Fail("ER10")]
    assert events[0].number == 5 and events[1].number == 10  # type: ignore[union-attr]
    assert all(isinstance(e, Unrecognised) for e in events[2:])


def test_stray_blank_lines_and_whitespace() -> None:
    p = LineParser()
    assert p.feed(b"\r\n\r\n\n\r  \r\nOK  \r\n\r\n") == [Ok()]


def test_einfo_both_layouts() -> None:
    p = LineParser()
    a1, c0 = p.feed(
        f"EINFO {SELF} 001D129012345678 21 8888 FFFE\r\n"
        f"EINFO {SELF} 001D129012345678 21 8888 FFFE 0\r\n".encode()
    )
    assert isinstance(a1, Einfo) and isinstance(c0, Einfo)
    assert (a1.channel, a1.pan_id, a1.addr16, a1.side) == (0x21, 0x8888, 0xFFFE, None)
    assert (c0.addr16, c0.side) == (0xFFFE, 0)
    assert len(a1.fields) == 5 and len(c0.fields) == 6
    (bad,) = p.feed(b"EINFO nonsense\r\n")
    assert isinstance(bad, Unrecognised)


def test_skll64_answer_is_a_bare_ipv6_line() -> None:
    p = LineParser()
    p.command_sent(b"SKLL64 001C6400030C12A4\r\n")
    assert p.feed(f"SKLL64 001C6400030C12A4\r\n{METER}\r\n".encode()) == [
        Echo("SKLL64 001C6400030C12A4", True),
        LinkLocal(METER),
    ]


def test_secrets_are_masked_in_echo_events() -> None:
    p = LineParser()
    p.command_sent(b"SKSETPWD C ABCDEFGHJKLM\r\n")
    assert p.feed(b"SKSETPWD C ABCDEFGHJKLM\r\nOK\r\n")[0] == Echo("SKSETPWD ****", True)
    # also when the parser was not told (an unexpected echo)
    assert p.feed(b"SKSETRBID 00112233\r\n") == [Echo("SKSETRBID ****", expected=False)]


def test_unexpected_echo_is_recognised_by_command_word() -> None:
    p = LineParser()
    assert p.feed(b"SKSREG SFE 0\r\nOK\r\nWOPT 01\r\n") == [
        Echo("SKSREG SFE 0", False),
        Ok(),
        Echo("WOPT 01", False),
    ]


def test_report_echo_false_drops_echo() -> None:
    p = LineParser(report_echo=False)
    p.command_sent(b"SKVER\r\n")
    assert p.feed(b"SKVER\r\nEVER 1.2.10\r\nOK\r\nSKINFO\r\n") == [Ever("1.2.10"), Ok()]


def test_unknown_and_non_ascii_lines() -> None:
    p = LineParser()
    events = p.feed(b"HELLO WORLD\r\n\xff\xfeOK\r\n\x00\r\nOK\r\n")
    assert [type(e) for e in events] == [Unrecognised, Unrecognised, Unrecognised, Ok]


# --- EVENT --------------------------------------------------------------------------------------

ALL_CODES = [0x01, 0x02, 0x05, 0x1F, 0x20, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29]
ALL_CODES += [0x32, 0x33, 0x45]  # 45 stands for codes this driver has no name for


@pytest.mark.parametrize("dialect", [Dialect.BP35A1, Dialect.BP35C0])
@pytest.mark.parametrize("code", ALL_CODES)
def test_every_event_code_in_both_layouts(dialect: Dialect, code: int) -> None:
    param = 0x01 if code == 0x21 else None
    line = format_event(dialect, code, METER, param, side=0)
    (event,) = LineParser().feed(line.encode() + b"\r\n")
    assert event == SkEvent(code, METER, 0 if dialect.has_side else None, param)
    if code == 0x45:
        assert event.known is None
    else:
        assert event.known == EventCode(code)


def test_event_side_and_param_are_told_apart_by_width() -> None:
    p = LineParser()
    assert p.feed(
        f"EVENT 21 {METER} 02\r\nEVENT 21 {METER} 1 00\r\nEVENT 25 {METER} 1\r\n".encode()
    ) == [
        SkEvent(0x21, METER, None, 2),
        SkEvent(0x21, METER, 1, 0),
        SkEvent(0x25, METER, 1, None),
    ]


@pytest.mark.parametrize(
    "line", [b"EVENT", b"EVENT XYZ", b"EVENT 21 GHIJ", b"EVENT 21 A 1 2 3 4", b"EVENT 21 A 123"]
)
def test_malformed_events(line: bytes) -> None:
    (event,) = LineParser().feed(line + b"\r\n")
    assert isinstance(event, Unrecognised)


# --- EPANDESC -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [Dialect.BP35A1, Dialect.BP35C0])
def test_scan_transcript(dialect: Dialect) -> None:
    lines = ["SKSCAN 2 FFFFFFFF 6" + (" 0" if dialect.has_side else ""), "OK"]
    lines.append(format_event(dialect, 0x20, METER))
    lines += format_epandesc(
        dialect, channel=0x21, pan_id=0x8888, mac=METER_MAC, lqi=0xE1, pair_id="0012ABCD"
    )
    lines.append(format_event(dialect, 0x20, METER))
    lines += format_epandesc(
        dialect, channel=0x3B, pan_id=0x1234, mac="001C640000000001", lqi=0x30, pair_id="1"
    )
    lines.append(format_event(dialect, 0x22, SELF))
    data = ("\r\n".join(lines) + "\r\n").encode()
    side = 0 if dialect.has_side else None
    p = LineParser()
    p.command_sent(lines[0].encode() + b"\r\n")
    events = p.feed(data)
    pans = [e for e in events if isinstance(e, PanDescriptor)]
    assert pans == [
        PanDescriptor(0x21, 0x8888, METER_MAC, 0xE1, 9, side, "0012ABCD"),
        PanDescriptor(0x3B, 0x1234, "001C640000000001", 0x30, 9, side, "1"),
    ]
    assert pans[0].rssi_dbm == pytest.approx(0.275 * 225 - 104.27)
    assert [type(e) for e in events] == [
        Echo,
        Ok,
        SkEvent,
        PanDescriptor,
        SkEvent,
        PanDescriptor,
        SkEvent,
    ]


def test_epandesc_without_pairid_ends_at_the_next_line() -> None:
    p = LineParser()
    block = b"EPANDESC\r\n  Channel:21\r\n  Pan ID:8888\r\n  Addr:001C6400030C12A4\r\n  LQI:40\r\n"
    assert p.feed(block) == []
    (pan, event) = p.feed(f"EVENT 22 {SELF}\r\n".encode())
    assert pan == PanDescriptor(0x21, 0x8888, METER_MAC, 0x40)
    assert isinstance(event, SkEvent)


def test_incomplete_or_bad_epandesc_is_unrecognised() -> None:
    p = LineParser()
    events = p.feed(b"EPANDESC\r\n  Channel:21\r\n  PairID:00\r\n")
    assert len(events) == 1 and isinstance(events[0], Unrecognised)
    assert "Pan ID" in events[0].reason
    events = p.feed(
        b"EPANDESC\r\n  Channel:ZZ\r\n  Pan ID:1\r\n  Addr:00\r\n  LQI:1\r\n  PairID:1\r\n"
    )
    assert isinstance(events[0], Unrecognised)
    # a field line without a block
    assert isinstance(p.feed(b"  Channel:21\r\n")[0], Unrecognised)


def test_epandesc_interrupted_by_erxudp_is_flushed_first() -> None:
    p = LineParser()
    block = b"EPANDESC\r\n  Channel:21\r\n  Pan ID:8888\r\n  Addr:001C6400030C12A4\r\n  LQI:40\r\n"
    events = p.feed(block + rx_line(Dialect.BP35A1, b"\x01"))
    assert [type(e) for e in events] == [PanDescriptor, RxUdp]


# --- ERXUDP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [Dialect.BP35A1, Dialect.BP35C0])
@pytest.mark.parametrize("hex_mode", [True, False])
@pytest.mark.parametrize("payload", [INF, E7_CRLF, b"\r\n", b"\r\n\r\nERXUDP \r\n", b"1081"])
@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_erxudp_layouts_modes_and_chunking(
    dialect: Dialect, hex_mode: bool, payload: bytes, chunk: int | None
) -> None:
    lqi = 0x9C if dialect.has_side else None
    data = rx_line(dialect, payload, hex_mode=hex_mode, lqi=lqi) + b"OK\r\n"
    events = feed_all(LineParser(), data, chunk)
    assert events == [
        RxUdp(
            sender=METER,
            dest=SELF,
            rport=0x0E1A,
            lport=0x0E1A,
            sender_mac=METER_MAC,
            secured=1,
            data=payload,
            side=0 if dialect.has_side else None,
            lqi=lqi,
            hex_mode=hex_mode,
        ),
        Ok(),
    ]
    rx = events[0]
    assert isinstance(rx, RxUdp)
    assert rx.rssi_dbm == (None if lqi is None else pytest.approx(0.275 * lqi - 104.27))


def test_c_series_erxudp_without_signal_field() -> None:
    (rx,) = LineParser().feed(rx_line(Dialect.BP35C0, INF, side=1))
    assert isinstance(rx, RxUdp) and rx.side == 1 and rx.lqi is None and rx.data == INF


@pytest.mark.parametrize("mode", [DataMode.HEX, DataMode.BINARY])
def test_forced_data_modes(mode: DataMode) -> None:
    p = LineParser(data_mode=mode)
    (rx,) = p.feed(rx_line(Dialect.BP35A1, E7_CRLF, hex_mode=mode is DataMode.HEX))
    assert isinstance(rx, RxUdp) and rx.data == E7_CRLF


def test_binary_mode_accepts_data_without_trailing_crlf() -> None:
    p = LineParser(data_mode=DataMode.BINARY)
    line = rx_line(Dialect.BP35A1, b"\r\n\x00").removesuffix(b"\r\n")
    line = line.replace(b"0D0A00", b"\r\n\x00")
    events = p.feed(line + b"OK\r\n")
    assert [type(e) for e in events] == [RxUdp, Ok]


def test_hex_mode_rejects_binary_data() -> None:
    p = LineParser(data_mode=DataMode.HEX)
    events = p.feed(rx_line(Dialect.BP35A1, b"\x10\x81", hex_mode=False) + b"OK\r\n")
    assert isinstance(events[0], Unrecognised)
    assert events[-1] == Ok()


def test_zero_length_erxudp() -> None:
    p = LineParser()
    base = f"ERXUDP {METER} {SELF} 0E1A 0E1A {METER_MAC} 1 0000".encode()
    events = p.feed(base + b" \r\n" + base + b"\r\nOK\r\n")
    assert [type(e) for e in events] == [RxUdp, RxUdp, Ok]
    assert all(e.data == b"" for e in events if isinstance(e, RxUdp))


def test_echo_glued_to_erxudp() -> None:
    p = LineParser()
    p.command_sent(b"SKSREG SFE 0\r\n")
    data = b"SKSREG SFE 0" + rx_line(Dialect.BP35A1, E7_CRLF, hex_mode=False) + b"OK\r\n"
    events = feed_all(p, data, 3)
    assert [type(e) for e in events] == [Echo, RxUdp, Ok]
    assert events[0] == Echo("SKSREG SFE 0", True)


def test_unannounced_echo_glued_to_erxudp() -> None:
    data = b"SKINFO" + rx_line(Dialect.BP35C0, INF, hex_mode=False) + b"OK\r\n"
    events = LineParser().feed(data)
    assert events[0] == Echo("SKINFO", False)
    assert isinstance(events[1], RxUdp) and events[1].data == INF


def test_erxudp_before_the_echo_keeps_the_echo_expected() -> None:
    p = LineParser()
    p.command_sent(b"SKSREG SFE 0\r\n")
    data = rx_line(Dialect.BP35A1, INF) + b"SKSREG SFE 0\r\nOK\r\n"
    events = p.feed(data)
    assert [type(e) for e in events] == [RxUdp, Echo, Ok]
    assert events[1] == Echo("SKSREG SFE 0", True)


@pytest.mark.parametrize("echo_data", [True, False])
def test_sksendto_echo_with_or_without_the_data(echo_data: bool) -> None:
    header = f"SKSENDTO 1 {METER} 0E1A 1 0 0012".encode()
    written = header + b" " + E7_CRLF
    p = LineParser()
    p.command_sent(written)
    echo = written if echo_data else header + b" "
    reply = format_event(Dialect.BP35C0, 0x21, METER, 0).encode() + b"\r\nOK\r\n"
    events = feed_all(p, echo + b"\r\n" + reply, 2)
    assert events == [Echo(header.decode(), True), SkEvent(0x21, METER, 0, 0), Ok()]


def test_sksendto_echo_glued_to_erxudp() -> None:
    header = f"SKSENDTO 1 {METER} 0E1A 1 0012".encode()
    p = LineParser()
    p.command_sent(header + b" " + E7_CRLF)
    data = header + b" " + rx_line(Dialect.BP35A1, INF, hex_mode=False) + b"OK\r\n"
    events = p.feed(data)
    assert [type(e) for e in events] == [Echo, RxUdp, Ok]


@pytest.mark.parametrize(
    "header",
    [
        b"ERXUDP nonsense\r\n",
        b"ERXUDP FE80::1 FE80::2 0E1A\r\n",
        b"ERXUDP FE80::1 FE80::2 0E1A 0E1A 001C6400030C12A4 0002 1081\r\n",  # no secured
        b"ERXUDP FE80::1 FE80::2 0E1A 0E1A 001C6400030C12A4 1 2 3 4 0002 1081\r\n",
        b"ERXUDP FE80::1 FE80::2 0E1A 0E1A 001C6400030C12A4 1 FFFF 00\r\n",  # too long
        b"ERXUDP FE80::1 FE80::2 0E1A 0E1A 001C6400030C12A4 1 0002\r\n",
        b"ERXUDP GGGG::1 FE80::2 0E1A 0E1A 001C6400030C12A4 1 0001 00\r\n",
    ],
)
def test_malformed_erxudp_headers_are_unrecognised(header: bytes) -> None:
    p = LineParser()
    events = feed_all(p, header + b"OK\r\n", 1)
    assert isinstance(events[0], Unrecognised) and events[-1] == Ok()
    assert "ERXUDP" in events[0].reason


def test_bare_erxudp_word_is_unrecognised() -> None:
    events = LineParser().feed(b"ERXUDP\r\n ERXUDP x\r\nOK\r\n")
    assert [type(e) for e in events] == [Unrecognised, Unrecognised, Ok]


def test_erxudp_data_that_is_neither_hex_nor_terminated_binary() -> None:
    p = LineParser()
    data = f"ERXUDP {METER} {SELF} 0E1A 0E1A {METER_MAC} 1 0002 10ZZ\r\nOK\r\n".encode()
    events = p.feed(data)
    assert isinstance(events[0], Unrecognised) and "neither" in events[0].reason
    assert events[-1] == Ok()


# --- SKTABLE blocks -----------------------------------------------------------------------------


def test_table_blocks() -> None:
    p = LineParser()
    data = (
        f"EADDR\r\n{SELF}\r\nFE80:0000:0000:0000:0000:0000:0000:0001\r\nOK\r\n"
        f"ENEIGHBOR\r\n{METER} {METER_MAC} FFFF\r\n{SELF} 001D129012345678\r\nOK\r\n"
        "EPORT\r\n3610\r\n716\r\n0\r\n0\r\n0\r\n0\r\n\r\n0\r\n0\r\n0\r\n0\r\nOK\r\n"
        "ENEIGHBOR\r\nOK\r\n"
    ).encode()
    assert p.feed(data) == [
        AddressTable((SELF, "FE80:0000:0000:0000:0000:0000:0000:0001")),
        Ok(),
        NeighbourTable(
            (Neighbour(METER, METER_MAC, "FFFF"), Neighbour(SELF, "001D129012345678", None))
        ),
        Ok(),
        PortTable((3610, 716, 0, 0, 0, 0), (0, 0, 0, 0)),
        Ok(),
        NeighbourTable(()),
        Ok(),
    ]


def test_table_entry_on_the_header_line() -> None:
    assert LineParser().feed(f"EADDR {SELF}\r\nOK\r\n".encode()) == [AddressTable((SELF,)), Ok()]
    (bad, ok) = LineParser().feed(b"EPANDESC 21\r\nOK\r\n")
    assert isinstance(bad, Unrecognised) and ok == Ok()


# --- bounds and misuse --------------------------------------------------------------------------


def test_overlong_line_is_reported_once_and_skipped() -> None:
    p = LineParser(max_line=100)
    events = p.feed(b"x" * 50)
    assert events == [] and p.buffered == 50
    events = p.feed(b"x" * 5000)
    assert len(events) == 1 and isinstance(events[0], Unrecognised)
    assert "longer than 100" in events[0].reason
    assert p.buffered == 0  # discarding, nothing kept
    assert p.feed(b"y" * 5000 + b"\r\nOK\r\n") == [Ok()]


def test_line_of_exactly_max_line_is_fine() -> None:
    p = LineParser(max_line=64)
    events = p.feed(b"Z" * 64 + b"\r\n")
    assert len(events) == 1 and events[0] == Unrecognised(b"Z" * 64, "unknown line")


def test_feed_rejects_str_with_parse_error() -> None:
    with pytest.raises(ParseError):
        LineParser().feed("OK\r\n")  # type: ignore[arg-type]


def test_reset_forgets_partial_input() -> None:
    p = LineParser()
    p.feed(rx_line(Dialect.BP35A1, INF, hex_mode=False)[:-8])
    assert p.buffered > 0
    p.reset()
    assert p.buffered == 0
    assert p.feed(b"OK\r\n") == [Ok()]


def test_max_line_must_be_sane() -> None:
    with pytest.raises(ValueError):
        LineParser(max_line=10)
