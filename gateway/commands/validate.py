"""Everything about a command payload that can be judged without the gateway's state.

Checks run cheapest and least trusting first: size before parsing (a 1 MB payload is refused
without being read as JSON), JSON, the published schema, then the rules a schema cannot express,
and the signature last among them since it is the only costly one. Each failure becomes one
human-readable reason, because the backend's operators read it in the ``rejected`` ack.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.clock import JST
from gateway.commands.model import FAMILY, ActiveCommand, CommandKind
from gateway.provenance import canonical_json, parse_public_key

#: Shipped inside the package (docs/schemas links here), so an installed wheel finds them too.
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
SLOT_MINUTES = 30
#: Sanity bound beyond the schema: no DR event lasts longer than a day.
MAX_DURATION = timedelta(hours=24)
MAX_REASON = 500
#: Fields the gateway adds to the stored command; the schema forbids them on the wire.
LOCAL_FIELDS = ("effective_start", "clamped")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_REV_MAX = 2**31 - 1


@dataclass(frozen=True)
class Rejection:
    """Why a payload is refused, and the id/rev to answer with (None when unusable)."""

    reason: str
    cmd_id: str | None = None
    rev: int | None = None


@dataclass(frozen=True)
class Parsed:
    """A schema-valid command revision with its times read.

    ``command`` is None for a cancellation (which needs no kind or window);
    its ``effective_start`` is still ``start``: the randomisation is drawn by the manager.
    """

    doc: dict[str, Any]
    id: str
    rev: int
    issued_at: datetime
    nonce: str
    cancelled: bool
    test: bool
    command: ActiveCommand | None


# ------------------------------------------------------------------------------------- schema


@functools.cache
def schema(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / f"{name}.schema.json"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


@functools.cache
def _validator(name: str) -> Any:
    doc = schema(name)
    cls = jsonschema.validators.validator_for(doc)
    cls.check_schema(doc)
    return cls(doc)


def load_schemas() -> None:
    """Read and check both schemas now, so a broken install fails at start-up, not at the first
    command from the backend."""
    _validator("cmd")
    _validator("cmd-ack")


def ack_problem(doc: Mapping[str, Any]) -> str | None:
    """Why an acknowledgement breaks its own contract (tests and a debug check use it)."""
    error = jsonschema.exceptions.best_match(_validator("cmd-ack").iter_errors(doc))
    return None if error is None else error.message


# ------------------------------------------------------------------------------------ parsing


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def decode(payload: bytes, max_bytes: int) -> dict[str, Any] | Rejection:
    """The payload as a JSON object, or why not. Size is judged before a byte is parsed."""
    if len(payload) > max_bytes:
        return Rejection(f"payload too large: {len(payload)} bytes, limit {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection("not JSON: payload is not UTF-8")
    try:
        doc = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        return Rejection("not JSON: nested too deeply")
    except ValueError as exc:
        return Rejection(_clip(f"not JSON: {exc}"))
    if not isinstance(doc, dict):
        return Rejection(f"not a JSON object but {_json_type(doc)}")
    return doc


def usable_ref(doc: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """The (id, rev) a rejection can name: a rev without a usable id names nothing."""
    cmd_id = doc.get("id")
    if not isinstance(cmd_id, str) or not _ID.match(cmd_id):
        return None, None
    rev = doc.get("rev")
    if isinstance(rev, bool) or not isinstance(rev, int) or not 0 <= rev <= _REV_MAX:
        return cmd_id, None
    return cmd_id, rev


def schema_problem(doc: Mapping[str, Any]) -> str | None:
    error = jsonschema.exceptions.best_match(_validator("cmd").iter_errors(doc))
    return None if error is None else _clip(_describe(error, doc))


def _describe(error: Any, doc: Mapping[str, Any]) -> str:
    """One line a backend operator can act on, instead of jsonschema's repr of the instance."""
    path = ".".join(str(p) for p in error.absolute_path)
    what = error.validator
    value = error.validator_value
    instance = error.instance
    if what == "required" and isinstance(instance, Mapping):
        missing = [str(n) for n in value if n not in instance]
        return f"missing field {', '.join(missing)}"
    if what == "additionalProperties" and isinstance(instance, Mapping):
        known = error.schema.get("properties", {})
        extra = sorted(_short(k) for k in instance if k not in known)
        return f"unknown field {', '.join(extra)}"
    if what == "not" and value == {}:
        return f"{path} does not apply to kind {_short(doc.get('kind'))}"
    if what == "enum" and path == "kind":
        return f"unknown kind {_short(instance)}"
    if what == "oneOf" and doc.get("kind") == CommandKind.PV_LIMIT:
        return "pv_limit needs exactly one of limit_w, limit_pct"
    if what == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        return f"{path or 'payload'} must be {expected}, not {_json_type(instance)}"
    if what in ("minimum", "exclusiveMinimum"):
        return f"{path} {_short(instance)} is below the minimum {value}"
    if what in ("maximum", "exclusiveMaximum"):
        return f"{path} {_short(instance)} is above the maximum {value}"
    if what == "pattern":
        return f"{path} {_short(instance)} is not in the expected format"
    return f"{path or 'payload'}: {error.message}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


# ---------------------------------------------------------------------------------- semantics


def _time(doc: Mapping[str, Any], name: str) -> datetime | str:
    try:
        value = datetime.fromisoformat(str(doc[name]))
    except ValueError:
        return f"{name} {_short(doc[name])} is not a valid time"
    if value.tzinfo is None:  # the schema's pattern demands an offset; be sure anyway
        return f"{name} has no UTC offset"
    return value.astimezone(JST)


def _on_slot(when: datetime) -> bool:
    return when.minute % SLOT_MINUTES == 0 and when.second == 0 and when.microsecond == 0


def interpret(doc: dict[str, Any]) -> Parsed | Rejection:
    """A schema-valid document read into a command; rules the schema cannot state are checked
    here (the window, its slot alignment in JST, its length, the randomisation)."""
    cmd_id, rev = str(doc["id"]), int(doc["rev"])

    def no(reason: str) -> Rejection:
        return Rejection(_clip(reason), cmd_id, rev)

    issued = _time(doc, "issued_at")
    if isinstance(issued, str):
        return no(issued)
    cancelled = doc["status"] == "cancelled"
    test = bool(doc.get("test", False))
    nonce = str(doc["nonce"])
    if cancelled:
        return Parsed(doc, cmd_id, rev, issued, nonce, cancelled=True, test=test, command=None)
    start, end = _time(doc, "start"), _time(doc, "end")
    if isinstance(start, str):
        return no(start)
    if isinstance(end, str):
        return no(end)
    if end <= start:
        return no(f"end {doc['end']} must be after start {doc['start']}")
    for name, when in (("start", start), ("end", end)):
        if not _on_slot(when):
            return no(f"{name} {doc[name]} is not on a 30-minute slot boundary (JST)")
    duration = end - start
    if duration > MAX_DURATION:
        hours = duration.total_seconds() / 3600
        limit = MAX_DURATION.total_seconds() / 3600
        return no(f"command lasts {hours:g} h, longer than the {limit:g} h allowed")
    randomize_s = int(doc.get("randomize_s", 0))
    if randomize_s and randomize_s >= duration.total_seconds():
        return no(
            f"randomize_s {randomize_s} must be shorter than the command "
            f"({int(duration.total_seconds())} s)"
        )
    kind = CommandKind(doc["kind"])
    command = ActiveCommand(
        id=cmd_id,
        rev=rev,
        kind=kind,
        family=FAMILY[kind],
        start=start,
        effective_start=start,
        end=end,
        power_w=_int_or_none(doc.get("power_w")),
        limit_w=_int_or_none(doc.get("limit_w")),
        limit_pct=_int_or_none(doc.get("limit_pct")),
        allow_export=bool(doc.get("allow_export", False)),
        priority=int(doc.get("priority", 0)),
        issued_at=issued,
        test=test,
    )
    return Parsed(doc, cmd_id, rev, issued, nonce, cancelled=False, test=test, command=command)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# ---------------------------------------------------------------------------------- signature


def load_public_key(path: Path | None) -> tuple[Ed25519PublicKey | None, str | None]:
    """The backend's key, or the reason there is none (logged once, and the reason every signed
    command is refused with): a bad key file must not stop settlement, only commands."""
    if path is None:
        return None, "no backend public key configured (commands.public_key_file)"
    try:
        return parse_public_key(path.read_bytes()), None
    except OSError as exc:
        return None, f"backend public key {path}: {exc.strerror or exc}"
    except ValueError as exc:
        return None, f"backend public key {path}: {exc}"


def signed_bytes(doc: Mapping[str, Any]) -> bytes:
    """What the backend signs: the canonical JSON of the command without ``sig``."""
    return canonical_json({k: v for k, v in doc.items() if k != "sig"})


def signature_problem(
    doc: Mapping[str, Any],
    key: Ed25519PublicKey | None,
    key_problem: str | None,
    required: bool,
) -> str | None:
    """None when the signature is acceptable. A signature that is present is always checked
    when a key is known, even if none is required: a wrong one means something is amiss."""
    sig = doc.get("sig")
    if required and key is None:
        return f"signature required but {key_problem or 'no backend public key'}"
    if sig is None:
        return "unsigned command (signatures are required)" if required else None
    if key is None:
        return None
    try:
        raw = base64.b64decode(str(sig), validate=True)
        key.verify(raw, signed_bytes(doc))
    except (InvalidSignature, binascii.Error, ValueError):
        return "bad signature"
    return None
