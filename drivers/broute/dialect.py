"""SKSTACK IP dialects: the command forms and output layouts that differ between modules.

Two families exist in the field. The side-less one (ROHM BP35A1, Tessera RL7023 Stick-D/IPS)
takes ``SKSCAN`` with three arguments and ``SKSENDTO`` without a side; the C-series one (ROHM
BP35C0/BP35C2, RL7023 Stick-D/DSS) adds a side argument to both and a side field to ``EINFO``,
``EVENT`` and ``ERXUDP``. Using the wrong form makes the module answer ``FAIL ER05``, which is the
most common field failure, so this module both builds the right form and explains the wrong one.

The ``format_*`` functions build what the *module* prints. The driver itself never needs them;
they exist so the tests and the module emulator produce output from the same layout facts that the
parser is written against.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ECHONET_PORT",
    "PANA_PORT",
    "Detection",
    "Dialect",
    "detect",
    "detect_with_reason",
    "format_einfo",
    "format_epandesc",
    "format_erxudp",
    "format_event",
    "full_ipv6",
    "mask_secrets",
    "other_family",
    "same_address",
    "scan_seconds",
    "skscan_command",
    "sksendto_header",
    "wrong_dialect_hint",
]

ECHONET_PORT = 0x0E1A
"""UDP 3610, ECHONET Lite."""

PANA_PORT = 0x02CC
"""UDP 716, PANA authentication traffic seen during SKJOIN and re-authentication."""

_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_SECRET_COMMANDS = ("SKSETPWD", "SKSETRBID")

_SIDELESS_MODULES = "BP35A1 or RL7023 Stick-D/IPS"
_C_SERIES_MODULES = "BP35C0/BP35C2 or RL7023 Stick-D/DSS"


class Dialect(StrEnum):
    """Which SKSTACK command forms to use; the values are the ``broute.dialect`` config values.

    ``RL7023`` means the Stick-D/IPS, whose forms are those of the BP35A1: it is a separate name
    because operators know their hardware by that name, not because the bytes differ. A Stick-D/DSS
    speaks the C-series forms and should be configured as ``bp35c0`` (or ``auto``).
    """

    BP35A1 = "bp35a1"
    BP35C0 = "bp35c0"
    RL7023 = "rl7023"
    AUTO = "auto"

    @property
    def has_side(self) -> bool:
        """True when commands take, and output carries, the side (B-route 0 / HAN 1) field."""
        if self is Dialect.AUTO:
            raise ValueError("dialect AUTO has no command forms: detect the module first")
        return self is Dialect.BP35C0

    @property
    def modules(self) -> str:
        """The hardware this dialect stands for, for messages."""
        if self is Dialect.AUTO:
            return "undetermined module"
        return _C_SERIES_MODULES if self.has_side else _SIDELESS_MODULES


def other_family(dialect: Dialect) -> Dialect:
    """The dialect to try after the module rejected this one's forms with ``FAIL ER05``."""
    if dialect is Dialect.AUTO:
        return Dialect.BP35C0
    return Dialect.BP35A1 if dialect.has_side else Dialect.BP35C0


def scan_seconds(duration: int, channels: int = 28) -> float:
    """How long ``SKSCAN`` with this duration runs: 9.6 ms × (2^D + 1) per channel."""
    return 0.0096 * ((1 << duration) + 1) * channels


def skscan_command(
    dialect: Dialect, duration: int, *, mode: int = 2, channel_mask: int = 0xFFFFFFFF, side: int = 0
) -> str:
    """``SKSCAN 2 FFFFFFFF <D>`` or, for the C-series, ``SKSCAN 2 FFFFFFFF <D> 0``."""
    if not 0 <= duration <= 14:
        raise ValueError(f"scan duration must be 0-14, not {duration}")
    base = f"SKSCAN {mode} {channel_mask:08X} {duration:X}"
    return f"{base} {side}" if dialect.has_side else base


def sksendto_header(
    dialect: Dialect,
    ipv6: str,
    length: int,
    *,
    handle: int = 1,
    port: int = ECHONET_PORT,
    secured: bool = True,
    side: int = 0,
) -> str:
    """The text of ``SKSENDTO`` up to the length; the caller appends one space and the raw data."""
    sec = 1 if secured else 0
    if dialect.has_side:
        return f"SKSENDTO {handle} {ipv6} {port:04X} {sec} {side} {length:04X}"
    return f"SKSENDTO {handle} {ipv6} {port:04X} {sec} {length:04X}"


def mask_secrets(text: str) -> str:
    """Hide the B-route ID and password in a command line, so echoes and writes can be logged."""
    for name in _SECRET_COMMANDS:
        index = text.find(name)
        if index >= 0:
            return text[: index + len(name)] + " ****"
    return text


# --- detection --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detection:
    """The outcome of :func:`detect_with_reason`: the dialect and a sentence saying why.

    ``dialect`` is ``AUTO`` when the answers did not settle it; the join machine then starts with
    the C-series forms and switches once if the module answers ``FAIL ER05``.
    """

    dialect: Dialect
    message: str


def detect_with_reason(ever: str, einfo_fields: Sequence[str]) -> Detection:
    """Tell the dialect from the ``SKVER`` and ``SKINFO`` answers.

    ``EINFO`` is decisive. The side-less family prints ``<ipv6> <mac> <channel> <panid> <addr16>``;
    the C-series adds a one-digit side. Some C-series firmware prints the side in place of the
    16-bit address, so the width of the fifth field is looked at, not only the field count: the
    16-bit address is four hex digits, a side is one. (Reading the fifth field as a side whatever
    its width is how RL7023 sticks get misdetected once they hold a short address.)
    ``ever`` (the ``EVER`` version) only goes into the message: no version fact is reliable
    enough to decide on.
    """
    fields = list(einfo_fields)
    if fields and fields[0] == "EINFO":
        fields = fields[1:]
    version = ever.removeprefix("EVER").strip() or "unknown"
    seen = f"SKVER {version}, SKINFO with {len(fields)} fields"
    if len(fields) == 6 and fields[5].isdigit() and len(fields[5]) == 1:
        return Detection(
            Dialect.BP35C0,
            f"C-series SKSTACK ({_C_SERIES_MODULES}): EINFO carries a side field ({seen}); "
            "using SKSCAN/SKSENDTO with the side argument",
        )
    if len(fields) == 5 and _HEX4.fullmatch(fields[4]):
        return Detection(
            Dialect.BP35A1,
            f"side-less SKSTACK ({_SIDELESS_MODULES}): EINFO has no side field ({seen}); "
            "using SKSCAN/SKSENDTO without the side argument",
        )
    if len(fields) == 5 and fields[4] in ("0", "1"):
        return Detection(
            Dialect.BP35C0,
            f"C-series SKSTACK ({_C_SERIES_MODULES}): the last EINFO field is a side ({seen}); "
            "using SKSCAN/SKSENDTO with the side argument",
        )
    return Detection(
        Dialect.AUTO,
        f"could not tell the SKSTACK dialect ({seen}: {' '.join(fields) or 'nothing'}); "
        "trying the C-series forms first and switching if the module answers FAIL ER05",
    )


def detect(ever: str, einfo_fields: Sequence[str]) -> Dialect:
    """:func:`detect_with_reason` without the message."""
    return detect_with_reason(ever, einfo_fields).dialect


def _sendto_has_side(tokens: Sequence[str]) -> bool | None:
    # SKSENDTO handle ip port sec [side] len: the token after sec is one digit for a side and
    # four hex digits for a length.
    if len(tokens) < 6:
        return None
    return len(tokens[5]) == 1


def wrong_dialect_hint(command: str, fail_code: str) -> str | None:
    """Explain a ``FAIL ER05`` after a dialect-dependent command, or return None.

    The message is derived from the form that was rejected, not from the configured dialect, so
    it is right even when detection guessed wrong.
    """
    if fail_code.upper() not in ("ER05", "FAIL ER05"):
        return None
    tokens = command.split(" ")
    if not tokens:
        return None
    if tokens[0] == "SKSCAN":
        if len(tokens) == 4:
            form, has_side = "the 3-argument SKSCAN", False
        elif len(tokens) == 5:
            form, has_side = "the 4-argument SKSCAN", True
        else:
            return None
    elif tokens[0] == "SKSENDTO":
        side = _sendto_has_side(tokens)
        if side is None:
            return None
        form = "SKSENDTO with the side argument" if side else "SKSENDTO without the side argument"
        has_side = side
    else:
        return None
    if has_side:
        advice = (
            f"this looks like a side-less module ({_SIDELESS_MODULES}); "
            'set broute.dialect = "bp35a1" (or "rl7023" for the Stick-D/IPS) or "auto"'
        )
    else:
        advice = (
            f"this looks like a C-series module ({_C_SERIES_MODULES}); "
            'set broute.dialect = "bp35c0" or "auto"'
        )
    return f"module rejected {form} (FAIL ER05): {advice}"


# --- what the module prints (for the emulator and tests) ---------------------------------------


def full_ipv6(address: str) -> str:
    """An IPv6 address in the module's form: eight four-digit upper-case groups."""
    exploded = ipaddress.IPv6Address(address).exploded
    return exploded.upper()


def same_address(a: str, b: str) -> bool:
    """Whether two IPv6 texts name the same address (the module prints the long form)."""
    try:
        return ipaddress.IPv6Address(a) == ipaddress.IPv6Address(b)
    except ValueError:
        return False


def _side_suffix(dialect: Dialect, side: int) -> str:
    return f" {side}" if dialect.has_side else ""


def format_event(
    dialect: Dialect, code: int, address: str, param: int | None = None, *, side: int = 0
) -> str:
    """``EVENT nn <addr> [side] [param]`` as the module prints it (no line ending)."""
    text = f"EVENT {code:02X} {address}{_side_suffix(dialect, side)}"
    return text if param is None else f"{text} {param:02X}"


def format_einfo(
    dialect: Dialect,
    ipv6: str,
    mac: str,
    channel: int,
    pan_id: int,
    *,
    addr16: int | None = 0xFFFE,
    side: int = 0,
) -> str:
    """``EINFO`` as the module prints it; the C-series appends the side.

    ``addr16=None`` gives the form some C-series firmware prints, with the side in place of the
    16-bit address (five fields); a side-less module always prints the address.
    """
    if addr16 is None:
        if not dialect.has_side:
            raise ValueError("side-less modules always print the 16-bit address in EINFO")
        return f"EINFO {ipv6} {mac.upper()} {channel:02X} {pan_id:04X} {side}"
    text = f"EINFO {ipv6} {mac.upper()} {channel:02X} {pan_id:04X} {addr16:04X}"
    return text + _side_suffix(dialect, side)


def format_epandesc(
    dialect: Dialect,
    *,
    channel: int,
    pan_id: int,
    mac: str,
    lqi: int,
    pair_id: str,
    channel_page: int = 9,
    side: int = 0,
) -> list[str]:
    """The ``EPANDESC`` block lines; the C-series adds ``Side:`` before ``PairID:``."""
    lines = [
        "EPANDESC",
        f"  Channel:{channel:02X}",
        f"  Channel Page:{channel_page:02X}",
        f"  Pan ID:{pan_id:04X}",
        f"  Addr:{mac.upper()}",
        f"  LQI:{lqi:02X}",
    ]
    if dialect.has_side:
        lines.append(f"  Side:{side}")
    lines.append(f"  PairID:{pair_id}")
    return lines


def format_erxudp(
    dialect: Dialect,
    *,
    sender: str,
    dest: str,
    rport: int,
    lport: int,
    sender_mac: str,
    secured: int,
    data: bytes,
    hex_mode: bool = True,
    side: int = 0,
    lqi: int | None = None,
) -> bytes:
    """A whole ``ERXUDP`` line with its CRLF.

    C-series modules put the side after ``secured``, and with ``SKSREG SA2 1`` a signal byte
    (read as LQI) right after the sender's MAC. In binary mode (``ROPT`` 00) the data is raw and
    may itself contain CR LF.
    """
    fields = [sender, dest, f"{rport:04X}", f"{lport:04X}", sender_mac.upper()]
    if dialect.has_side:
        if lqi is not None:
            fields.append(f"{lqi:02X}")
        fields += [str(secured), str(side)]
    else:
        if lqi is not None:
            raise ValueError("side-less modules print no signal field in ERXUDP")
        fields.append(str(secured))
    fields.append(f"{len(data):04X}")
    head = ("ERXUDP " + " ".join(fields) + " ").encode("ascii")
    body = data.hex().upper().encode("ascii") if hex_mode else bytes(data)
    return head + body + b"\r\n"
