"""What is fuzzed: every parser that reads bytes from outside the gateway.

Each target takes arbitrary bytes and either returns, or raises. It swallows exactly the error
type its component documents for bad input; any other exception escaping it is a finding, and so
is a broken oracle (a property that must hold for every input, such as "what decodes re-encodes to
the same bytes"). Seeds are real, valid inputs, so mutations land near the interesting edges, and
each target has a dictionary of tokens its format is made of.
"""

from __future__ import annotations

import atexit
import base64
import copy
import json
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from drivers.broute.dialect import Dialect, format_epandesc, format_erxudp, format_event
from drivers.broute.parser import DataMode, LineParser
from drivers.echonet import frame as echonet
from gateway import config as config_module
from gateway.commands import validate
from gateway.commands.validate import Rejection
from gateway.config_errors import ConfigError
from gateway.uplink import AckError, parse_slot_ack

REPO = Path(__file__).resolve().parents[2]


class OracleFailure(AssertionError):
    """A property every input must keep was broken (not an exception from the component)."""


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    tokens: tuple[bytes, ...] = ()
    max_len: int = 4096
    what: str = ""
    #: Inputs in CI: about a second each on the development machine, the same inputs every run.
    quick_inputs: int = 5000


# ------------------------------------------------------------------------------------ ECHONET

_EOJS = [echonet.EOJ.parse(e) for e in ("028801", "027D01", "027901", "026B01", "0EF001")]


def _echonet_seeds() -> list[bytes]:
    meter, battery = _EOJS[0], _EOJS[1]
    P = echonet.Property
    frames = [
        echonet.get_request(1, meter, [0xE0, 0xE3, 0xE7]),
        echonet.set_request(2, battery, [(0xDA, b"\x43")]),
        echonet.setget_request(3, battery, [(0x80, b"\x30")], [0xE4]),
        echonet.inf_request(4, echonet.NODE_PROFILE, [0xD5]),
        echonet.Frame(
            5,
            battery,
            echonet.CONTROLLER,
            echonet.ESV.GET_RES,
            (P(0xE4, b"\x50"), P(0xDA, b"\x42")),
        ),
        echonet.Frame(
            6, meter, echonet.CONTROLLER, echonet.ESV.INF, (P(0xE7, b"\x00\x00\x01\xf4"),)
        ),
        echonet.Frame(7, battery, echonet.CONTROLLER, echonet.ESV.SETC_SNA, (P(0xDA, b""),)),
    ]
    return [echonet.encode(f) for f in frames]


def fuzz_echonet(data: bytes) -> None:
    try:
        frame = echonet.decode(data)
    except echonet.DecodeError:
        return
    if echonet.encode(frame) != data:
        raise OracleFailure("a decoded frame re-encodes to different bytes")


# ------------------------------------------------------------------------------------ SKSTACK

_METER = "FE80:0000:0000:0000:021C:6400:030C:12A4"
_SELF = "FE80:0000:0000:0000:021D:1290:1234:5678"
_MAC = "001C6400030C12A4"
_MODES = (DataMode.AUTO, DataMode.HEX, DataMode.BINARY)
_MAX_LINE = 256


def _skstack_seeds() -> list[bytes]:
    seeds = []
    for dialect in (Dialect.BP35A1, Dialect.BP35C0):
        for hex_mode in (True, False):
            rx = format_erxudp(
                dialect,
                sender=_METER,
                dest=_SELF,
                rport=0x0E1A,
                lport=0x0E1A,
                sender_mac=_MAC,
                secured=1,
                data=b"\x10\x81\x00\x01\x02\x88\x01\x05\xff\x01\x72\x01\xe7\x04\x00\x00\x01\xf4",
                hex_mode=hex_mode,
                lqi=0x80 if dialect.has_side else None,
            )
            event = format_event(dialect, 0x25, _METER, None).encode() + b"\r\n"
            pan = format_epandesc(
                dialect, channel=0x21, pan_id=0x8888, mac=_MAC, lqi=0x80, pair_id="0012ABCD"
            )
            block = ("\r\n".join(pan) + "\r\n").encode()
            seeds.append(bytes([_MODES.index(DataMode.AUTO), 7]) + rx + event + block)
            seeds.append(
                bytes([1 if hex_mode else 2, 200]) + b"SKVER\r\nEVER 1.2.10\r\nOK\r\n" + rx
            )
    seeds.append(b"\x00\x01FAIL ER05\r\nOK 01\rEINFO " + _SELF.encode() + b" " + _MAC.encode())
    return seeds


def fuzz_skstack(data: bytes) -> None:
    """Byte 0 picks the data mode, byte 1 the read size; the rest is what the module printed.

    The parser promises that nothing raises on bytes (garbage becomes ``Unrecognised``), so even
    its own ``ParseError`` (only ever an internal fault) is a finding here.
    """
    if len(data) < 2:
        return
    mode = _MODES[data[0] % len(_MODES)]
    step = 1 + data[1] % 97
    parser = LineParser(data_mode=mode, max_line=_MAX_LINE, max_datagram=64)
    body = data[2:]
    for i in range(0, len(body), step):
        parser.feed(body[i : i + step])
        if parser.buffered > _MAX_LINE + 8:
            raise OracleFailure(f"parser buffers {parser.buffered} bytes, bound {_MAX_LINE + 8}")


# ----------------------------------------------------------------------------------- commands

_SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
_VERIFIER = _SIGNER.public_key()
_CMD_LIMIT = 16384


def _signed(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "sig"}
    sig = base64.b64encode(_SIGNER.sign(validate.signed_bytes(body))).decode()
    return json.dumps({**body, "sig": sig}).encode()


def _command_seeds() -> list[bytes]:
    base: dict[str, Any] = {
        "id": "7f9c0d2e-cmd-1",
        "rev": 1,
        "issued_at": "2026-07-01T16:55:00+09:00",
        "kind": "battery_discharge",
        "start": "2026-07-01T17:00:00+09:00",
        "end": "2026-07-01T18:00:00+09:00",
        "power_w": 2000,
        "allow_export": True,
        "priority": 10,
        "randomize_s": 0,
        "test": False,
        "status": "active",
        "nonce": "nonce-00000001",
    }
    pv = {**base, "kind": "pv_limit", "limit_pct": 50, "rev": 2, "randomize_s": 600}
    del pv["power_w"]
    cancel = {**base, "status": "cancelled", "rev": 3}
    return [_signed(base), _signed(pv), _signed(cancel), json.dumps(base).encode()]


def fuzz_command(data: bytes) -> None:
    """The validation pipeline the command manager runs, in its order, minus the store.

    Every step answers with a reason (a ``Rejection`` or a string), never an exception.
    """
    doc = validate.decode(data, _CMD_LIMIT)
    if isinstance(doc, Rejection):
        _check_reason(doc.reason)
        return
    validate.usable_ref(doc)
    problem = validate.schema_problem(doc)
    if problem is not None:
        _check_reason(problem)
        return
    parsed = validate.interpret(doc)
    if isinstance(parsed, Rejection):
        _check_reason(parsed.reason)
        return
    problem = validate.signature_problem(doc, _VERIFIER, None, True)
    if problem is not None:
        _check_reason(problem)


def _check_reason(reason: str) -> None:
    if not reason or len(reason) > validate.MAX_REASON:
        raise OracleFailure(f"rejection reason of {len(reason)} characters")


# ---------------------------------------------------------------------------------------- ack


def fuzz_ack(data: bytes) -> None:
    try:
        seq = parse_slot_ack(data)
    except AckError:
        return
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise OracleFailure(f"ack accepted with seq {seq!r}")


# ------------------------------------------------------------------------------------- config


@cache
def config_dir() -> Path:
    """A private folder holding the files a config names, as an installer would lay them out.

    Made once per process; the loader only reads it (a test checks it is left unchanged).
    """
    folder = Path(tempfile.mkdtemp(prefix="chisan-fuzz-config-"))
    atexit.register(shutil.rmtree, folder, True)
    password = folder / "broute-password"
    password.write_text("Pa55w0rdXyZ9\n")
    password.chmod(0o600)
    key = folder / "backend.pub"
    key.write_bytes(_VERIFIER.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return folder


_BASE_CONFIG = b"""
[site]
id = "sg-0001"
fit = false

[mqtt]
url = "mqtt://127.0.0.1:1883"
keepalive_s = 60

[broute]
port = "/dev/ttyUSB0"
dialect = "bp35a1"
id = "0123456789ABCDEF0123456789ABCDEF"
password_file = "broute-password"

[[device]]
name = "battery"
kind = "battery"
protocol = "echonet"
host = "192.168.1.20"
eoj = "027D01"

[[device]]
name = "pv"
kind = "pv"
protocol = "echonet"
host = "192.168.1.30"
eoj = "027901"

[limits]
soc_reserve_pct = 30
soc_max_pct = 95

[commands]
public_key_file = "backend.pub"

[store]
path = "chisan.db"
"""


def _config_seeds() -> list[bytes]:
    return [_BASE_CONFIG, (REPO / "config" / "example.toml").read_bytes()]


def fuzz_config_text(data: bytes) -> None:
    try:
        config_module.loads(data, config_dir() / "chisan.toml")
    except ConfigError as exc:
        if not exc.issues:
            raise OracleFailure("ConfigError without an issue") from exc


class Picker:
    """Reads choices from fuzz bytes, so a byte mutation is a structural mutation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        return (self.byte() << 8 | self.byte()) % n if n > 0 else 0

    def choice(self, items: list[Any]) -> Any:
        return items[self.below(len(items))]


_STRINGS = [
    "",
    " ",
    "sg-0001",
    "a" * 300,
    "/dev/ttyUSB0",
    "../../etc/passwd",
    "~",
    "~no-such-user/x",
    "/",
    "\x00",
    "é中",
    "mqtt://",
    "mqtts://[::1]:99999",
    "tcp://h:1",
    "127.0.0.1",
    "::1",
    "999.1.1.1",
    "027D01",
    "0279",
    "zzzzzz",
    "battery",
    "modbus",
    "echonet",
    "debug",
    "Asia/Tokyo",
    "Mars/Base",
    "broute-password",
    "backend.pub",
    "nope/none",
    "3.1.1",
    "0123456789ABCDEF0123456789ABCDEF",
]
_NUMBERS: list[Any] = [
    0,
    1,
    -1,
    5,
    30,
    95,
    101,
    2**31,
    2**63 - 1,
    -(2**63),
    0.5,
    -0.0,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    True,
    False,
]
_TIMES: list[Any] = [
    date(2026, 1, 1),
    time(12, 30),
    datetime(2026, 1, 1, 0, 0),
    datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=9))),
]


def _value(p: Picker, depth: int = 0) -> Any:
    kind = p.below(6 if depth < 3 else 3)
    if kind == 0:
        return p.choice(_STRINGS)
    if kind == 1:
        return p.choice(_NUMBERS)
    if kind == 2:
        return p.choice(_TIMES)
    if kind == 3:
        return [_value(p, depth + 1) for _ in range(p.below(4))]
    if kind == 4:
        return {p.choice(_KEYS): _value(p, depth + 1) for _ in range(p.below(4))}
    return [{p.choice(_KEYS): _value(p, depth + 1)} for _ in range(p.below(3))]


@cache
def _base_tree() -> dict[str, Any]:
    return tomllib.loads(_BASE_CONFIG.decode())


def _all_keys() -> list[str]:
    keys = set(config_module.SECTIONS) | {"device"}
    text = (REPO / "config" / "example.toml").read_text()
    for line in text.splitlines():
        head = line.lstrip("# ").split("=", 1)[0].strip()
        if "=" in line and head.replace("_", "").isalnum():
            keys.add(head)
    return sorted(keys)


_KEYS = _all_keys()


def config_tree(data: bytes) -> dict[str, Any]:
    """A parsed-TOML tree: the base config with values swapped, keys dropped and added."""
    p = Picker(data)
    tree = copy.deepcopy(_base_tree())
    for _ in range(1 + p.below(8)):
        # Walk down to a table: a section, a device entry, or a nested one made earlier.
        table: dict[str, Any] = tree
        for _ in range(p.below(3)):
            children = [v for v in table.values() if isinstance(v, dict)]
            children += [d for v in table.values() if isinstance(v, list) for d in v]
            children = [c for c in children if isinstance(c, dict)]
            if not children:
                break
            table = p.choice(children)
        action = p.below(4)
        existing = sorted(table)
        if action == 0 and existing:
            del table[p.choice(existing)]
        elif action == 1 and existing:
            table[p.choice(existing)] = _value(p)
        else:
            table[p.choice(_KEYS)] = _value(p)
    return tree


def fuzz_config_tree(data: bytes) -> None:
    try:
        config_module.parse(config_tree(data), config_dir() / "chisan.toml", "")
    except ConfigError as exc:
        if not exc.issues:
            raise OracleFailure("ConfigError without an issue") from exc


# ------------------------------------------------------------------------------------ targets

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "echonet",
            fuzz_echonet,
            _echonet_seeds,
            (
                b"\x10\x81",
                b"\x0e\xf0\x01",
                b"\x05\xff\x01",
                b"\x02\x88\x01",
                b"\x62",
                b"\x72",
                b"\x6e",
                b"\x7e",
                b"\x00",
                b"\xff",
                b"\x01\x00",
            ),
            max_len=600,
            what="drivers/echonet/frame.py decode (DecodeError)",
            quick_inputs=60000,
        ),
        Target(
            "skstack",
            fuzz_skstack,
            _skstack_seeds,
            (
                b"\r\n",
                b"\r",
                b"\n",
                b" ",
                b"OK",
                b"FAIL ER0",
                b"EVENT ",
                b"ERXUDP ",
                b"EPANDESC",
                b"  PairID:",
                b"  Addr:",
                b"EINFO ",
                b"SKSENDTO ",
                b"0E1A ",
                b"0012 ",
                b"FFFF ",
                _METER.encode(),
                _MAC.encode(),
                b"ESREG ",
                b"EADDR",
                b"ENEIGHBOR",
                b"EPORT",
            ),
            what="drivers/broute/parser.py LineParser.feed (never raises)",
        ),
        Target(
            "command",
            fuzz_command,
            _command_seeds,
            (
                b'"',
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b":",
                b"null",
                b"true",
                b"1e309",
                b"-0",
                b"NaN",
                b"Infinity",
                b'"status"',
                b'"cancelled"',
                b'"kind"',
                b'"pv_limit"',
                b'"limit_w"',
                b'"rev"',
                b"2147483648",
                b"+09:00",
                b"T17:00:00",
                b'"sig"',
                b"\\u0000",
                b"99999999999999999999",
            ),
            max_len=4096,
            what="gateway/commands/validate.py decode..signature (Rejection / reason)",
            quick_inputs=8000,
        ),
        Target(
            "ack",
            fuzz_ack,
            lambda: [b'{"seq": 1}', b'{"seq": 1440, "extra": [1, 2]}', b'{"seq": 0}'],
            (
                b'{"seq":',
                b"[",
                b"{",
                b"}",
                b"]",
                b"-1",
                b"1e3",
                b"true",
                b"null",
                b"9" * 20,
                b'"seq"',
                b"\xef\xbb\xbf",
                b"\xff\xfe",
            ),
            max_len=2048,
            what="gateway/uplink.py parse_slot_ack (AckError)",
            quick_inputs=30000,
        ),
        Target(
            "config-text",
            fuzz_config_text,
            _config_seeds,
            (
                b"[",
                b"]]",
                b"[[device]]",
                b"\n",
                b" = ",
                b'"',
                b"'''",
                b'"""',
                b"#",
                b"{",
                b"}",
                b"true",
                b"1979-05-27T07:32:00Z",
                b"inf",
                b"nan",
                b"0x1F",
                b"1_000",
                b"[site]",
                b"[mqtt]",
                b"[broute]",
                b"[limits]",
                b"password",
                b"\\u00e9",
                b"~",
                b"\\u0000",
            ),
            max_len=8192,
            what="gateway/config.py loads (ConfigError)",
        ),
        Target(
            "config-tree",
            fuzz_config_tree,
            lambda: [bytes(range(i, i + 64)) for i in range(0, 192, 16)],
            max_len=256,
            what="gateway/config.py parse on structured TOML trees (ConfigError)",
        ),
    )
}
