"""Sans-I/O parser for what an SKSTACK IP module prints on its serial port.

Feed it bytes as they arrive, in chunks of any size; it returns typed events. The design goals,
each from a field failure:

* **Chunking never changes the result.** Every decision depends only on bytes already received,
  never on where a read happened to stop, so a frame split over forty reads parses as one.
* **Binary ERXUDP is read by its declared length**, never split on CR LF (in ``ROPT`` 00 mode the
  data is raw and may contain 0D 0A). In ``AUTO`` data mode the parser tells hex from binary per
  frame: with N declared bytes, binary data is followed by CR/LF at offset N, while hex data has
  a hex digit there.
* **Echo is expected**: until ``SKSREG SFE 0`` every command comes back, sometimes with an
  ``ERXUDP`` glued to it without a line break. The shell tells the parser what it wrote
  (:meth:`LineParser.command_sent`); a line beginning with a command word is an echo too.
* **Lines end at CR or LF**, not only CR LF: ``ROPT`` answers ``OK 01`` with a bare CR on some
  firmware, and waiting for an LF that never comes would stall the join. Empty lines are dropped.
* **Nothing raises on bad input.** Garbage becomes :class:`Unrecognised`; a line longer than
  ``max_line`` bytes without a line end is reported once and skipped up to the next line end, so
  the buffer stays bounded.

Multi-line answers (``EPANDESC`` blocks, ``SKTABLE`` tables) are assembled into one event, emitted
when the block's last line (``PairID:``) or the first line outside the block arrives.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import TypeAlias

from drivers.broute.dialect import mask_secrets
from drivers.broute.errors import ParseError

__all__ = [
    "AddressTable",
    "DataMode",
    "EappVer",
    "Echo",
    "Einfo",
    "Esreg",
    "Event",
    "EventCode",
    "Ever",
    "Fail",
    "LineParser",
    "LinkLocal",
    "Neighbour",
    "NeighbourTable",
    "Ok",
    "PanDescriptor",
    "ParseError",
    "PortTable",
    "RxUdp",
    "SkEvent",
    "Unrecognised",
    "lqi_to_rssi",
]

_CR = 0x0D
_LF = 0x0A
_ERXUDP = b"ERXUDP "
_MAX_IPV6_TEXT = 39

_HEX_BYTES = re.compile(rb"[0-9A-Fa-f]*")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_IPV6_CHARS = re.compile(rb"[0-9A-Fa-f:]*")
_IPV6_TEXT = re.compile(r"[0-9A-Fa-f:]{2,39}")
_MAC = re.compile(r"[0-9A-Fa-f]{16}")
_FAIL = re.compile(r"ER[0-9A-Fa-f]{2}")
_COMMAND_WORD = re.compile(r"SK[A-Z0-9]+|ROPT|WOPT|RUART|WUART")
_PAN_FIELD = re.compile(r"\s*(Channel Page|Channel|Pan ID|Addr|LQI|Side|PairID):\s*(\S*)\s*")
_DECIMAL = re.compile(r"[0-9]{1,5}")


def lqi_to_rssi(lqi: int) -> float:
    """Approximate received power in dBm from the module's LQI byte (0.275 × LQI − 104.27)."""
    return 0.275 * lqi - 104.27


class DataMode(Enum):
    """How the module prints ERXUDP data: ``ROPT`` 01 is hex, 00 is raw binary."""

    AUTO = "auto"
    HEX = "hex"
    BINARY = "binary"


class EventCode(IntEnum):
    """Known ``EVENT`` numbers; :class:`SkEvent` keeps unknown ones as plain ints."""

    NS_RECEIVED = 0x01
    NA_RECEIVED = 0x02
    ECHO_REQUEST = 0x05
    ED_SCAN_DONE = 0x1F
    BEACON_RECEIVED = 0x20
    UDP_SENT = 0x21
    SCAN_DONE = 0x22
    PANA_FAILED = 0x24
    PANA_CONNECTED = 0x25
    END_REQUESTED = 0x26
    SESSION_ENDED = 0x27
    END_TIMED_OUT = 0x28
    SESSION_EXPIRED = 0x29
    DUTY_LIMITED = 0x32
    DUTY_RELEASED = 0x33


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Echo:
    """A command coming back while echo is on; ``expected`` if it matched what the shell wrote.

    Secrets in it are masked, so the event can be logged as is.
    """

    text: str
    expected: bool


@dataclass(frozen=True, slots=True)
class Ok:
    """``OK``, or ``OK <value>`` (``ROPT`` answers ``OK 00`` / ``OK 01``)."""

    value: str | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """``FAIL ERxx``."""

    code: str

    @property
    def number(self) -> int:
        """The error number as the manuals write it (ER10 is ten)."""
        digits = self.code[2:]
        return int(digits) if digits.isdigit() else int(digits, 16)


@dataclass(frozen=True, slots=True)
class Ever:
    version: str


@dataclass(frozen=True, slots=True)
class EappVer:
    version: str


@dataclass(frozen=True, slots=True)
class Einfo:
    """``SKINFO``'s answer. ``fields`` keeps the raw fields for dialect detection."""

    ipv6: str
    mac: str
    channel: int
    pan_id: int
    addr16: int | None
    side: int | None
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Esreg:
    """``SKSREG <reg>`` read-back, the value as printed."""

    value: str


@dataclass(frozen=True, slots=True)
class SkEvent:
    """``EVENT nn <addr> [side] [param]``.

    The side is told from the param by width, which makes the event readable without knowing the
    dialect: a side is one digit, a param (``EVENT 21``'s result) two.
    """

    code: int
    address: str
    side: int | None = None
    param: int | None = None

    @property
    def known(self) -> EventCode | None:
        try:
            return EventCode(self.code)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class PanDescriptor:
    """One ``EPANDESC`` block: a PAN (a meter) found by ``SKSCAN``."""

    channel: int
    pan_id: int
    mac: str
    lqi: int
    channel_page: int | None = None
    side: int | None = None
    pair_id: str | None = None

    @property
    def rssi_dbm(self) -> float:
        return lqi_to_rssi(self.lqi)


@dataclass(frozen=True, slots=True)
class RxUdp:
    """A received UDP datagram (``ERXUDP``).

    ``lqi`` is the C-series signal byte printed with ``SKSREG SA2 1``; ``side`` is None on
    side-less modules. ``hex_mode`` says how the data was printed, for diagnostics only.
    """

    sender: str
    dest: str
    rport: int
    lport: int
    sender_mac: str
    secured: int
    data: bytes
    side: int | None = None
    lqi: int | None = None
    hex_mode: bool = True

    @property
    def rssi_dbm(self) -> float | None:
        return None if self.lqi is None else lqi_to_rssi(self.lqi)


@dataclass(frozen=True, slots=True)
class LinkLocal:
    """``SKLL64``'s answer: a bare IPv6 line."""

    ipv6: str


@dataclass(frozen=True, slots=True)
class AddressTable:
    """``EADDR`` block (``SKTABLE 1``)."""

    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Neighbour:
    ipv6: str
    mac: str
    addr16: str | None = None


@dataclass(frozen=True, slots=True)
class NeighbourTable:
    """``ENEIGHBOR`` block (``SKTABLE 2``)."""

    entries: tuple[Neighbour, ...]


@dataclass(frozen=True, slots=True)
class PortTable:
    """``EPORT`` block (``SKTABLE E``): the first six numbers are UDP handles, the rest TCP."""

    udp: tuple[int, ...]
    tcp: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unrecognised:
    """Output the parser could not read; ``raw`` is at most the first 256 bytes of it."""

    raw: bytes
    reason: str


Event: TypeAlias = (
    Echo
    | Ok
    | Fail
    | Ever
    | EappVer
    | Einfo
    | Esreg
    | SkEvent
    | PanDescriptor
    | RxUdp
    | LinkLocal
    | AddressTable
    | NeighbourTable
    | PortTable
    | Unrecognised
)

_RAW_KEEP = 256
_UDP_HANDLES = 6


# --- internal state -----------------------------------------------------------------------------


@dataclass(slots=True)
class _RxHeader:
    raw: bytes
    sender: str
    dest: str
    rport: int
    lport: int
    sender_mac: str
    secured: int
    side: int | None
    lqi: int | None
    length: int
    hex_only: bool = False
    checked: int = 0


@dataclass(slots=True)
class _Malformed:
    reason: str


_WAIT = None


@dataclass(slots=True)
class _Block:
    """An open multi-line answer: ``kind`` is pan, addr, neigh or port."""

    kind: str
    lines: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    items: list[str] = field(default_factory=list)


def _first_terminator(buf: bytearray, start: int = 0) -> int:
    cr = buf.find(b"\r", start)
    lf = buf.find(b"\n", start)
    if cr == -1:
        return lf
    if lf == -1:
        return cr
    return min(cr, lf)


def _is_ipv6(text: str) -> bool:
    if not _IPV6_TEXT.fullmatch(text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _hex(text: str) -> int | None:
    return int(text, 16) if _HEX.fullmatch(text) else None


def _token_prefix_ok(token: bytes, index: int) -> bool:
    """Whether an incomplete header token can still become valid (keeps decisions monotone)."""
    if index <= 1:
        return len(token) <= _MAX_IPV6_TEXT and bool(_IPV6_CHARS.fullmatch(token))
    limit = {2: 4, 3: 4, 4: 16}.get(index, 4)
    return len(token) <= limit and bool(_HEX_BYTES.fullmatch(token))


class LineParser:
    """Turns module output into :data:`Event` values; see the module docstring for the rules.

    ``data_mode`` may be changed at any time (the join machine learns it from ``ROPT``);
    ``max_line`` bounds a line without a line end; ``max_datagram`` bounds a declared ERXUDP
    length (the largest UDP payload over 6LoWPAN is 1232 bytes); ``report_echo`` False drops
    :class:`Echo` events instead of returning them.
    """

    def __init__(
        self,
        *,
        data_mode: DataMode = DataMode.AUTO,
        max_line: int = 4096,
        max_datagram: int = 1280,
        report_echo: bool = True,
    ) -> None:
        if max_line < 64:
            raise ValueError("max_line must be at least 64 bytes")
        self.data_mode = data_mode
        self.max_line = max_line
        self.max_datagram = max_datagram
        self.report_echo = report_echo
        self._buf = bytearray()
        self._out: list[Event] = []
        self._discarding = False
        self._rx: _RxHeader | None = None
        self._echo: bytes | None = None
        self._echo_text_len = 0
        self._block: _Block | None = None

    # --- public API -----------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a line or datagram."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget everything buffered, e.g. after the port was reopened or the module reset."""
        self._buf.clear()
        self._discarding = False
        self._rx = None
        self._echo = None
        self._block = None

    def command_sent(self, data: bytes) -> None:
        """Tell the parser what was just written, so its echo is recognised.

        For ``SKSENDTO`` the echo may or may not include the data bytes (modules differ); both
        forms are accepted. The expectation lasts until the echo, an ``OK`` or a ``FAIL`` is seen,
        or the next command is sent.
        """
        text = bytes(data).rstrip(b"\r\n")
        if not text:
            self._echo = None
            return
        self._echo = text
        self._echo_text_len = len(text)
        if text.startswith(b"SKSENDTO "):
            tokens = text.split(b" ", 7)
            header = 7 if len(tokens) > 5 and len(tokens[5]) == 1 else 6
            if len(tokens) > header:
                self._echo_text_len = len(b" ".join(tokens[:header]))

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Add received bytes; return the events they complete, in order."""
        try:
            self._buf += data
        except TypeError as exc:
            raise ParseError(f"feed() takes bytes, not {type(data).__name__}") from exc
        self._out = []
        try:
            while self._step():
                pass
        except Exception as exc:  # a parser bug must not take the serial reader down with it
            self.reset()
            raise ParseError(f"internal parser fault, buffer dropped: {exc!r}") from exc
        out, self._out = self._out, []
        return out

    # --- stepping -------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._flush_block()
        if isinstance(event, Echo) and not self.report_echo:
            return
        self._out.append(event)

    def _step(self) -> bool:
        """Make one unit of progress; False when more bytes are needed."""
        if self._rx is not None:
            return self._step_rx_data(self._rx)
        buf = self._buf
        if not buf:
            return False
        if self._discarding:
            end = _first_terminator(buf)
            if end == -1:
                buf.clear()
                return False
            del buf[:end]
            self._discarding = False
            return True
        if buf[0] in (_CR, _LF):
            i = 1
            while i < len(buf) and buf[i] in (_CR, _LF):
                i += 1
            del buf[:i]
            return True
        if self._echo is not None:
            matched = self._match_echo(self._echo)
            if matched is None:
                return False
            if matched:
                return True
        if buf.startswith(_ERXUDP):
            return self._step_rx_header()
        if len(buf) < len(_ERXUDP) and _ERXUDP.startswith(buf):
            return False
        return self._step_line()

    def _match_echo(self, echo: bytes) -> bool | None:
        """True: echo consumed. False: not the echo. None: cannot tell yet."""
        buf = self._buf
        limit = min(len(buf), len(echo))
        k = 0
        while k < limit and buf[k] == echo[k]:
            k += 1
        if k == len(echo):
            take = k
        elif k == len(buf):
            return None
        elif k >= self._echo_text_len:
            take = k
        else:
            return False
        text = bytes(buf[: min(take, self._echo_text_len)]).decode("latin-1").rstrip()
        del buf[:take]
        self._echo = None
        self._emit(Echo(mask_secrets(text), expected=True))
        return True

    def _step_line(self, malformed: str | None = None) -> bool:
        buf = self._buf
        limit = self.max_line
        term = _first_terminator(buf)
        glued = buf.find(_ERXUDP, 1, term if term != -1 else len(buf))
        end = glued if glued != -1 else term
        if end != -1 and end <= limit:
            line = bytes(buf[:end])
            del buf[:end]
            if malformed is None:
                self._handle_line(line)
            else:
                self._emit(Unrecognised(line[:_RAW_KEEP], malformed))
            return True
        if end != -1 or len(buf) >= limit + len(_ERXUDP):
            raw = bytes(buf[: min(limit, _RAW_KEEP)])  # never more than is surely there
            del buf[:limit]
            self._discarding = True
            self._emit(Unrecognised(raw, f"line longer than {limit} bytes without a line end"))
            return True
        return False

    # --- ERXUDP ---------------------------------------------------------------------------------

    def _step_rx_header(self) -> bool:
        parsed = self._parse_rx_header()
        if parsed is _WAIT:
            return False
        if isinstance(parsed, _Malformed):
            # Skip it as a line: up to its line end (or a glued ERXUDP), bounded like any line.
            return self._step_line(malformed=parsed.reason)
        del self._buf[: len(parsed.raw)]
        if parsed.length == 0:
            self._finish_rx(parsed, b"", hex_mode=self.data_mode is not DataMode.BINARY)
        else:
            self._rx = parsed
        return True

    def _parse_rx_header(self) -> _RxHeader | _Malformed | None:
        buf = self._buf
        pos = len(_ERXUDP)
        tokens: list[bytes] = []
        while True:
            index = len(tokens)
            space = buf.find(b" ", pos, pos + _MAX_IPV6_TEXT + 2)
            stop = space if space != -1 else min(len(buf), pos + _MAX_IPV6_TEXT + 2)
            segment = bytes(buf[pos:stop])
            cut = segment.find(b"\r")
            lf = segment.find(b"\n")
            if lf != -1 and (cut == -1 or lf < cut):
                cut = lf
            if cut != -1:
                # A line end inside the header: only a zero-length datagram may end like that.
                token = segment[:cut]
                if index >= 6 and token == b"0000":
                    return self._build_header([*tokens, token], pos + cut)
                return _Malformed("ERXUDP line ends inside its header")
            if space == -1:
                if not _token_prefix_ok(segment, min(index, 5)):
                    return _Malformed(f"bad ERXUDP header field {index + 1}")
                return _WAIT
            token = segment
            if not token:
                return _Malformed("empty ERXUDP header field")
            if index <= 1:
                if not _is_ipv6(token.decode("ascii", "replace")):
                    return _Malformed(f"ERXUDP address {token!r} is not IPv6")
            elif index in (2, 3):
                if len(token) != 4 or not _HEX_BYTES.fullmatch(token):
                    return _Malformed("ERXUDP port is not 4 hex digits")
            elif index == 4:
                if len(token) != 16 or not _HEX_BYTES.fullmatch(token):
                    return _Malformed("ERXUDP sender MAC is not 16 hex digits")
            elif not _HEX_BYTES.fullmatch(token) or len(token) not in (1, 2, 4):
                return _Malformed("bad ERXUDP secured/side/signal/length field")
            elif len(token) == 4:
                return self._build_header([*tokens, token], space + 1)
            elif index >= 8:
                return _Malformed("too many short fields before the ERXUDP length")
            tokens.append(token)
            pos = space + 1

    def _build_header(self, tokens: list[bytes], end: int) -> _RxHeader | _Malformed:
        shorts = [int(t, 16) for t in tokens[5:-1]]
        length = int(tokens[-1], 16)
        if not shorts:
            return _Malformed("ERXUDP has no secured field")
        if length > self.max_datagram:
            return _Malformed(f"ERXUDP length {length} exceeds {self.max_datagram}")
        lqi: int | None = None
        side: int | None = None
        if len(shorts) == 1:
            secured = shorts[0]
        elif len(shorts) == 2:
            secured, side = shorts
        else:
            lqi, secured, side = shorts
        text = [t.decode("ascii") for t in tokens[:5]]
        return _RxHeader(
            raw=bytes(self._buf[:end]),
            sender=text[0],
            dest=text[1],
            rport=int(text[2], 16),
            lport=int(text[3], 16),
            sender_mac=text[4].upper(),
            secured=secured,
            side=side,
            lqi=lqi,
            length=length,
        )

    def _step_rx_data(self, rx: _RxHeader) -> bool:
        buf = self._buf
        n = rx.length
        mode = self.data_mode
        if mode is DataMode.BINARY:
            if len(buf) < n:
                return False
            data = bytes(buf[:n])
            del buf[:n]
            self._finish_rx(rx, data, hex_mode=False)
            return True
        if mode is DataMode.AUTO and not rx.hex_only:
            if len(buf) <= n:
                return False
            if buf[n] in (_CR, _LF):
                data = bytes(buf[:n])
                del buf[:n]
                self._finish_rx(rx, data, hex_mode=False)
                return True
            rx.hex_only = True
        want = 2 * n
        upto = min(len(buf), want)
        if not _HEX_BYTES.fullmatch(buf, rx.checked, upto):
            self._rx = None
            self._emit(
                Unrecognised(
                    rx.raw[:_RAW_KEEP],
                    f"ERXUDP data is neither {n} raw bytes followed by a line end "
                    f"nor {want} hex digits",
                )
            )
            return True
        rx.checked = upto
        if upto < want:
            return False
        data = bytes.fromhex(buf[:want].decode("ascii"))
        del buf[:want]
        self._finish_rx(rx, data, hex_mode=True)
        return True

    def _finish_rx(self, rx: _RxHeader, data: bytes, *, hex_mode: bool) -> None:
        self._rx = None
        self._emit(
            RxUdp(
                sender=rx.sender,
                dest=rx.dest,
                rport=rx.rport,
                lport=rx.lport,
                sender_mac=rx.sender_mac,
                secured=rx.secured,
                data=data,
                side=rx.side,
                lqi=rx.lqi,
                hex_mode=hex_mode,
            )
        )

    # --- lines ----------------------------------------------------------------------------------

    def _handle_line(self, line: bytes) -> None:
        text = line.decode("latin-1").rstrip(" \t")
        if not text.strip(" \t"):
            return
        if not text.isascii() or not text.isprintable():
            self._emit(Unrecognised(line[:_RAW_KEEP], "non-ASCII or control bytes in a line"))
            return
        if self._block is not None and self._block_accepts(self._block, text):
            return
        tokens = text.split()
        event = self._parse_tokens(tokens, line)
        if event is not None:
            if isinstance(event, Ok | Fail):
                self._echo = None
            self._emit(event)

    def _parse_tokens(self, tokens: list[str], line: bytes) -> Event | None:
        head, args = tokens[0], tokens[1:]
        raw = line[:_RAW_KEEP]
        if head == "OK" and len(args) <= 1:
            return Ok(args[0] if args else None)
        if head == "FAIL" and len(args) == 1 and _FAIL.fullmatch(args[0]):
            return Fail(args[0].upper())
        if head == "EVER" and len(args) == 1:
            return Ever(args[0])
        if head == "EAPPVER" and len(args) == 1:
            return EappVer(args[0])
        if head == "ESREG" and len(args) == 1:
            return Esreg(args[0])
        if head == "EVENT":
            return self._parse_event(args, raw)
        if head == "EINFO":
            return self._parse_einfo(args, raw)
        if head in ("EPANDESC", "EADDR", "ENEIGHBOR", "EPORT"):
            return self._open_block(head, args, raw)
        if head == "ERXUDP":
            return Unrecognised(raw, "malformed ERXUDP line")
        if len(tokens) == 1 and ":" in head and _is_ipv6(head):
            return LinkLocal(head)
        if _COMMAND_WORD.fullmatch(head):
            return Echo(mask_secrets(" ".join(tokens)), expected=False)
        return Unrecognised(raw, "unknown line")

    def _parse_event(self, args: list[str], raw: bytes) -> Event:
        bad = Unrecognised(raw, "malformed EVENT line")
        if not args or len(args) > 4 or len(args[0]) > 2:
            return bad
        code = _hex(args[0])
        if code is None:
            return bad
        address = args[1] if len(args) > 1 else ""
        if address and not _IPV6_CHARS.fullmatch(address.encode("ascii")):
            return bad
        rest = args[2:]
        if any(len(x) > 2 or _hex(x) is None for x in rest):
            return bad
        side: int | None = None
        param: int | None = None
        if len(rest) == 1:
            if len(rest[0]) == 1:
                side = int(rest[0], 16)
            else:
                param = int(rest[0], 16)
        elif len(rest) == 2:
            side, param = int(rest[0], 16), int(rest[1], 16)
        return SkEvent(code, address, side, param)

    def _parse_einfo(self, args: list[str], raw: bytes) -> Event:
        bad = Unrecognised(raw, "malformed EINFO line")
        if len(args) not in (5, 6) or not _is_ipv6(args[0]) or not _MAC.fullmatch(args[1]):
            return bad
        channel = _hex(args[2])
        pan_id = _hex(args[3])
        if channel is None or pan_id is None or len(args[2]) > 2 or len(args[3]) > 4:
            return bad
        addr16: int | None = None
        side: int | None = None
        if len(args) == 6:
            addr16, side = _hex(args[4]), _hex(args[5])
            if addr16 is None or side is None:
                return bad
        elif len(args[4]) == 1:
            side = _hex(args[4])
        else:
            addr16 = _hex(args[4])
        if len(args[4]) > 4 or (addr16 is None and side is None):
            return bad
        return Einfo(args[0], args[1].upper(), channel, pan_id, addr16, side, tuple(args))

    # --- blocks ---------------------------------------------------------------------------------

    def _open_block(self, head: str, args: list[str], raw: bytes) -> Event | None:
        kind = {"EPANDESC": "pan", "EADDR": "addr", "ENEIGHBOR": "neigh", "EPORT": "port"}[head]
        self._flush_block()
        block = _Block(kind, lines=[head])
        # Tolerate firmware that prints a single entry on the header line.
        if args and (kind == "pan" or not self._block_accepts(block, " ".join(args))):
            return Unrecognised(raw, f"unexpected text after {head}")
        self._block = block
        return None

    def _block_accepts(self, block: _Block, text: str) -> bool:
        """Add the line to the open block if it belongs there."""
        if block.kind == "pan":
            match = _PAN_FIELD.fullmatch(text)
            if match is None:
                return False
            key, value = match.group(1), match.group(2)
            block.lines.append(text.strip())
            block.values[key] = value
            if key == "PairID":
                self._flush_block()
            return True
        tokens = text.split()
        if block.kind == "addr":
            ok = len(tokens) == 1 and _is_ipv6(tokens[0])
        elif block.kind == "neigh":
            ok = (
                len(tokens) in (2, 3)
                and _is_ipv6(tokens[0])
                and bool(_MAC.fullmatch(tokens[1]))
                and (len(tokens) == 2 or _hex(tokens[2]) is not None)
            )
        else:
            ok = len(tokens) == 1 and bool(_DECIMAL.fullmatch(tokens[0]))
        if ok:
            block.items.append(" ".join(tokens))
            block.lines.append(text.strip())
        return ok

    def _flush_block(self) -> None:
        block, self._block = self._block, None
        if block is None:
            return
        if block.kind == "pan":
            self._out.append(self._pan_descriptor(block))
        elif block.kind == "addr":
            self._out.append(AddressTable(tuple(block.items)))
        elif block.kind == "neigh":
            entries = []
            for item in block.items:
                parts = item.split()
                entries.append(
                    Neighbour(parts[0], parts[1].upper(), parts[2] if len(parts) > 2 else None)
                )
            self._out.append(NeighbourTable(tuple(entries)))
        else:
            numbers = tuple(int(x) for x in block.items)
            self._out.append(PortTable(numbers[:_UDP_HANDLES], numbers[_UDP_HANDLES:]))

    def _pan_descriptor(self, block: _Block) -> Event:
        raw = "\r\n".join(block.lines).encode("ascii")[:_RAW_KEEP]
        values = block.values
        missing = [k for k in ("Channel", "Pan ID", "Addr", "LQI") if k not in values]
        if missing:
            return Unrecognised(raw, f"incomplete EPANDESC: no {', '.join(missing)}")
        channel = _hex(values["Channel"])
        pan_id = _hex(values["Pan ID"])
        lqi = _hex(values["LQI"])
        mac = values["Addr"]
        page = _hex(values.get("Channel Page", "")) if "Channel Page" in values else None
        side = _hex(values.get("Side", "")) if "Side" in values else None
        pair = values.get("PairID")
        if (
            channel is None
            or pan_id is None
            or lqi is None
            or not _MAC.fullmatch(mac)
            or ("Channel Page" in values and page is None)
            or ("Side" in values and side is None)
            or channel > 0xFF
            or pan_id > 0xFFFF
            or lqi > 0xFF
        ):
            return Unrecognised(raw, "malformed EPANDESC field")
        return PanDescriptor(channel, pan_id, mac.upper(), lqi, page, side, pair or None)
