"""Provenance: every settlement record is hashed, chained and signed with the site's own key.

The market pays for kWh the backend cannot re-measure, so each record must be provably the one this
gateway wrote: a record's ``hash`` covers every field (including ``seq`` and the previous record's
hash), and its ``sig`` is an Ed25519 signature by a key that never leaves the gateway. Altering,
deleting, inserting or reordering records breaks the chain at a point :func:`verify_chain` names.

Exact byte rules (the backend re-implements them, see docs/store.md):

* canonical JSON: keys sorted, separators ``,`` and ``:`` with no whitespace, UTF-8 without
  ``\\u`` escapes for non-ASCII, NaN/Infinity refused;
* ``hash`` = lowercase hex SHA-256 of the canonical JSON of the record without ``hash`` and ``sig``;
* ``sig`` = standard base64 (with padding) of the Ed25519 signature over the ASCII bytes of the
  64-character ``hash`` string (not over the 32 raw digest bytes).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway import secrets

#: ``prev_hash`` of the first record of a site's chain.
GENESIS_HASH = "0" * 64
#: Fields the seal adds; they are not part of the caller's payload.
SEAL_FIELDS = ("seq", "prev_hash", "hash", "sig")


class KeyFileError(secrets.SecretFileError):
    """A site key file that is missing, unreadable, too open or not an Ed25519 key."""


def canonical_json(obj: Any) -> bytes:
    """The one byte form that is hashed; any other serialisation would make hashes unstable."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# ---------------------------------------------------------------------------------------- keys


def init_key(path: Path) -> tuple[bool, Ed25519PublicKey]:
    """Create the site key at ``path`` unless it exists; return (created, public key).

    An existing key is never overwritten: the backend has its public half registered, and a new key
    would orphan every record signed so far. The file appears atomically with mode 0600 (written
    to a private temporary file, then hard-linked into place, which fails if the name exists), so
    a crash or a concurrent ``init`` never leaves a half-written or world-readable key.
    """
    if path.exists():
        return False, load_private(path).public_key()
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # someone else created it meanwhile: theirs wins
            return False, load_private(path).public_key()
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(parent)
    return True, key.public_key()


def load_private(path: Path) -> Ed25519PrivateKey:
    """Read the site key, refusing a file that group or others can read (as ssh does).

    Under systemd a credential of the same basename is used instead (``LoadCredential=``).
    """
    real, managed = secrets.resolve(path)
    if not managed:
        problem = secrets.check_private(real)
        if problem:
            raise KeyFileError(f"{real}: {problem}")
    try:
        data = real.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{real}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{real}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{real}: not an Ed25519 key")
    return key


def _public(key: Ed25519PrivateKey | Ed25519PublicKey) -> Ed25519PublicKey:
    return key.public_key() if isinstance(key, Ed25519PrivateKey) else key


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key in standard base64: short enough to paste into a form."""
    raw = _public(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """PEM SubjectPublicKeyInfo, the form most backends' crypto libraries load directly."""
    return (
        _public(key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def parse_public_key(text: str | bytes) -> Ed25519PublicKey:
    """A public key given as PEM SubjectPublicKeyInfo or as base64 of the raw 32 bytes.

    Raises ``ValueError`` with a short reason: callers print it as one line.
    """
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("neither PEM nor base64") from None
    if len(raw) != 32:
        raise ValueError(f"base64 key is {len(raw)} bytes, an Ed25519 public key is 32")
    return Ed25519PublicKey.from_public_bytes(raw)


# -------------------------------------------------------------------------------------- chain


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical record without ``hash`` and ``sig`` (which depend on it)."""
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def sign_hash(hash_hex: str, key: Ed25519PrivateKey) -> str:
    """Sign the ASCII bytes of the 64-character hex hash.

    Signing the hex text rather than the 32-byte digest lets a verifier work from the JSON alone,
    with no hex decoding step to get wrong.
    """
    return base64.b64encode(key.sign(hash_hex.encode("ascii"))).decode("ascii")


def signature_ok(hash_hex: str, sig_b64: str, public_key: Ed25519PublicKey) -> bool:
    try:
        sig = base64.b64decode(sig_b64, validate=True)
        public_key.verify(sig, hash_hex.encode("ascii"))
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return True


def seal(
    fields: Mapping[str, Any], prev_hash: str, seq: int, key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The record for ``fields`` at position ``seq`` after a record whose hash is ``prev_hash``."""
    record = {k: v for k, v in fields.items() if k not in SEAL_FIELDS}
    record["seq"] = seq
    record["prev_hash"] = prev_hash
    record["hash"] = record_hash(record)
    record["sig"] = sign_hash(record["hash"], key)
    return record


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check. ``checked`` counts the records that passed before any failure."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.checked} records, chain intact"
        return self.reason


def verify_chain(
    records: Sequence[Mapping[str, Any]],
    public_key: Ed25519PublicKey,
    *,
    site: str | None = None,
) -> VerifyResult:
    """Check a contiguous run of records: seq gapless, each hash, signature and prev_hash link.

    The first record's ``prev_hash`` can only be checked when it is seq 1 (it must be the genesis
    hash); a segment that starts later is anchored by whoever holds the earlier records. Checks run
    in the order that best explains a fault: a missing record shows as a seq gap, not as a broken
    link; an edited record as a hash mismatch; a re-hashed or re-signed one as a bad signature.
    """
    seqs = {r.get("seq") for r in records if isinstance(r.get("seq"), int)}
    prev: Mapping[str, Any] | None = None
    checked = 0

    def fail(seq: int | None, why: str) -> VerifyResult:
        where = f"seq {seq}" if seq is not None else f"record #{checked + 1}"
        return VerifyResult(False, checked, seq, f"{where}: {why}")

    for record in records:
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return fail(None, f"seq is missing or not a positive integer ({seq!r})")
        for name in ("prev_hash", "hash", "sig"):
            if not isinstance(record.get(name), str):
                return fail(seq, f"'{name}' is missing")
        if prev is not None:
            expected = int(prev["seq"]) + 1
            if seq != expected:
                if seq < expected:
                    return fail(seq, f"duplicate or out of order (expected {expected})")
                if expected in seqs:
                    return fail(seq, f"out of order (expected {expected})")
                return fail(seq, f"seq gap (expected {expected})")
        if site is not None and record.get("site") != site:
            return fail(seq, f"site {record.get('site')!r} is not {site!r}")
        try:
            actual = record_hash(record)
        except (TypeError, ValueError) as exc:
            return fail(seq, f"cannot be hashed ({exc})")
        if actual != record["hash"]:
            return fail(seq, "hash mismatch (record was altered)")
        if not signature_ok(record["hash"], record["sig"], public_key):
            return fail(seq, "bad signature")
        if prev is None:
            if seq == 1 and record["prev_hash"] != GENESIS_HASH:
                return fail(seq, "prev_hash of the first record is not the genesis hash")
        elif record["prev_hash"] != prev["hash"]:
            return fail(seq, f"prev_hash does not match seq {prev['seq']}'s hash")
        prev = record
        checked += 1
    return VerifyResult(True, checked)


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable (the file's own fsync does not cover its name)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
