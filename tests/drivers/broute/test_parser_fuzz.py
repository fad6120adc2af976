"""Property tests: the parser never raises on module output, and chunking never changes events.

Sizes are kept small enough for the whole file to run in a couple of seconds; set CHISAN_SLOW=1
for a longer run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.broute.dialect import Dialect, format_epandesc, format_erxudp, format_event
from drivers.broute.parser import (
    DataMode,
    Event,
    Fail,
    LineParser,
    Ok,
    PanDescriptor,
    RxUdp,
    SkEvent,
)

SLOW = os.environ.get("CHISAN_SLOW") == "1"
FUZZ = settings(
    max_examples=2000 if SLOW else 150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

METER = "FE80:0000:0000:0000:021C:6400:030C:12A4"
SELF = "FE80:0000:0000:0000:021D:1290:1234:5678"
METER_MAC = "001C6400030C12A4"

# Pieces of real output, so random data often looks almost right, which is where bugs hide.
FRAGMENTS = [
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"OK",
    b"OK 01",
    b"FAIL ER05",
    b"EVENT 21 ",
    b"EVENT 22 ",
    b"EPANDESC",
    b"  Channel:21",
    b"  Pan ID:8888",
    b"  Addr:001C6400030C12A4",
    b"  LQI:E1",
    b"  PairID:0012ABCD",
    b"ERXUDP ",
    b"ERXUDP ",
    METER.encode() + b" ",
    b"0E1A ",
    METER_MAC.encode() + b" ",
    b"1 ",
    b"0 ",
    b"0012 ",
    b"0002 ",
    b"0000",
    b"1081",
    b"SKSENDTO ",
    b"SKVER",
    b"EADDR",
    b"ENEIGHBOR",
    b"EPORT",
    b"3610",
    b"EINFO ",
    b"\x00\xff",
]

noise = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=12)), max_size=60).map(
    b"".join
)
modes = st.sampled_from(list(DataMode))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def run(
    data_chunks: list[bytes], mode: DataMode, echo: bytes | None, max_line: int = 256
) -> list[Event]:
    parser = LineParser(data_mode=mode, max_line=max_line, max_datagram=64)
    if echo is not None:
        parser.command_sent(echo)
    out: list[Event] = []
    for chunk in data_chunks:
        out += parser.feed(chunk)
        assert parser.buffered <= max(max_line + 8, 256)
    return out


@FUZZ
@given(st.binary(max_size=2000), modes)
def test_random_bytes_never_raise(data: bytes, mode: DataMode) -> None:
    run([data], mode, None)


ECHOES = [
    None,
    b"SKVER\r\n",
    b"SKSENDTO 1 " + METER.encode() + b" 0E1A 1 0002 \r\n\r\n",
    b"OK",
    b"ERXUDP ",
]


@FUZZ
@given(
    noise,
    modes,
    st.lists(st.integers(min_value=0), max_size=30),
    st.one_of(st.sampled_from(ECHOES), st.binary(max_size=16)),
    st.sampled_from([64, 100, 256]),
)
def test_chunking_never_changes_the_events(
    data: bytes, mode: DataMode, cuts: list[int], echo: bytes | None, max_line: int
) -> None:
    whole = run([data], mode, echo, max_line)
    assert run(split(data, cuts), mode, echo, max_line) == whole
    assert run([bytes([b]) for b in data], mode, echo, max_line) == whole


# --- valid transcripts --------------------------------------------------------------------------


@st.composite
def transcripts(draw: st.DrawFn) -> tuple[bytes, list[type], list[bytes], bool]:
    """A valid transcript, the event types it must produce, its payloads and its data mode."""
    dialect = draw(st.sampled_from([Dialect.BP35A1, Dialect.BP35C0]))
    hex_mode = draw(st.booleans())
    parts: list[bytes] = []
    kinds: list[type] = []
    payloads: list[bytes] = []
    for _ in range(draw(st.integers(1, 8))):
        choice = draw(st.integers(0, 4))
        if choice == 0:
            payload = draw(st.binary(min_size=1, max_size=48))
            lqi = draw(st.one_of(st.none(), st.integers(0, 255))) if dialect.has_side else None
            parts.append(
                format_erxudp(
                    dialect,
                    sender=METER,
                    dest=SELF,
                    rport=0x0E1A,
                    lport=0x0E1A,
                    sender_mac=METER_MAC,
                    secured=1,
                    data=payload,
                    hex_mode=hex_mode,
                    lqi=lqi,
                )
            )
            kinds.append(RxUdp)
            payloads.append(payload)
        elif choice == 1:
            code = draw(st.sampled_from([0x21, 0x22, 0x24, 0x25, 0x29, 0x32, 0x33]))
            param = 0 if code == 0x21 else None
            parts.append(format_event(dialect, code, METER, param).encode() + b"\r\n")
            kinds.append(SkEvent)
        elif choice == 2:
            lines = format_epandesc(
                dialect, channel=0x21, pan_id=0x8888, mac=METER_MAC, lqi=0x80, pair_id="00"
            )
            parts.append(("\r\n".join(lines) + "\r\n").encode())
            kinds.append(PanDescriptor)
        elif choice == 3:
            parts.append(draw(st.sampled_from([b"OK\r\n", b"OK 01\r", b"\r\n\r\nOK\r\n"])))
            kinds.append(Ok)
        else:
            parts.append(b"FAIL ER05\r\n")
            kinds.append(Fail)
    return b"".join(parts), kinds, payloads, hex_mode


@FUZZ
@given(transcripts(), st.booleans(), st.lists(st.integers(min_value=0), max_size=40))
def test_valid_transcripts_survive_any_chunking(
    transcript: tuple[bytes, list[type], list[bytes], bool], forced: bool, cuts: list[int]
) -> None:
    data, kinds, payloads, hex_mode = transcript
    mode = DataMode.AUTO
    if forced:  # the mode ROPT reported, as the join machine would set it
        mode = DataMode.HEX if hex_mode else DataMode.BINARY
    events = run(split(data, cuts), mode, None, max_line=4096)
    assert [type(e) for e in events] == kinds
    assert [e.data for e in events if isinstance(e, RxUdp)] == payloads
    assert run([data], mode, None, max_line=4096) == events
