"""Provenance: canonical bytes, the site key file, and a chain that names its first broken link."""

from __future__ import annotations

import base64
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway import provenance
from gateway.provenance import (
    GENESIS_HASH,
    KeyFileError,
    canonical_json,
    init_key,
    load_private,
    parse_public_key,
    public_key_b64,
    public_key_pem,
    record_hash,
    seal,
    verify_chain,
)

#: A fixed key so the test vector below (also in docs/store.md) never changes.
VECTOR_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VECTOR_FIELDS = {
    "site": "sg-0001",
    "slot_start": "2026-11-27T09:30:00+09:00",
    "rev": 1,
    "source": "meter_boundary",
    "import_wh": 412,
    "export_wh": 0,
    "created_at": "2026-11-27T10:00:21+09:00",
}
VECTOR_HASH = "dd2209218f672faaed829e390dcfc4fefa68cadf914431f7e0d0c7beb4d6a7ec"
VECTOR_SIG = (
    "cKRhY527Jc6OLWBBlsoE2xCd7t6vWx2jkVE3rItX1o3euMwODfrviWtrA3gMFAlK/yXH8VUsMyhkzLqys2MNBg=="
)
VECTOR_PUBLIC = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="


def chain(n: int, key: Ed25519PrivateKey = VECTOR_KEY) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        fields = {**VECTOR_FIELDS, "slot_start": f"2026-11-{seq:02d}T09:30:00+09:00"}
        record = seal(fields, prev, seq, key)
        records.append(record)
        prev = record["hash"]
    return records


# ------------------------------------------------------------------------- canonical JSON


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": None, "c": True}], "é": "地産"}) == (
        '{"a":[1,{"c":true,"d":null}],"b":1,"é":"地産"}'.encode()
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_json_refuses_non_finite_numbers(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})


def test_known_vector() -> None:
    """The bytes the backend must reproduce; the same vector is printed in docs/store.md."""
    record = seal(VECTOR_FIELDS, GENESIS_HASH, 1, VECTOR_KEY)
    assert record["hash"] == VECTOR_HASH
    assert record["sig"] == VECTOR_SIG
    assert public_key_b64(VECTOR_KEY) == VECTOR_PUBLIC
    assert record["prev_hash"] == GENESIS_HASH and record["seq"] == 1


#: Small in the default run; CHISAN_SLOW=1 fuzzes at full size.
FUZZ = settings(max_examples=2000 if os.environ.get("CHISAN_SLOW") == "1" else 60, deadline=None)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=8)


@FUZZ
@given(json_objects)
def test_canonical_json_survives_a_round_trip(obj: dict[str, Any]) -> None:
    """A backend that parses a record and re-serialises it gets the very same bytes."""
    first = canonical_json(obj)
    assert canonical_json(json.loads(first)) == first
    assert json.loads(first.decode("utf-8")) == obj


@FUZZ
@given(json_objects)
def test_hash_does_not_depend_on_key_order(obj: dict[str, Any]) -> None:
    reordered = dict(reversed(list(obj.items())))
    assert canonical_json(reordered) == canonical_json(obj)
    assert record_hash(reordered) == record_hash(obj)
    assert record_hash({**obj, "hash": "x", "sig": "y"}) == record_hash(obj)


@FUZZ
@given(json_objects, st.text(min_size=1))
def test_any_added_field_changes_the_hash(obj: dict[str, Any], name: str) -> None:
    assume(name not in obj and name not in ("hash", "sig"))
    assert record_hash({**obj, name: 0}) != record_hash(obj)


# -------------------------------------------------------------------------------- key file


def test_init_key_creates_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "site.pem"
    created, public = init_key(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    content = path.read_bytes()
    assert content.startswith(b"-----BEGIN PRIVATE KEY-----")
    again, public2 = init_key(path)
    assert not again
    assert public_key_b64(public2) == public_key_b64(public)
    assert path.read_bytes() == content, "an existing key is never overwritten"
    assert public_key_b64(load_private(path)) == public_key_b64(public)
    assert [p.name for p in path.parent.iterdir()] == ["site.pem"], "no temporary file left"


def test_open_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "site.pem"
    init_key(path)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="readable by group or others"):
        init_key(path)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private(path)


def test_load_private_rejects_other_keys_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_private(path)
    path.write_text("hello")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_private(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_private(tmp_path / "absent.pem")


def test_systemd_credential_is_used_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    init_key(creds / "site.pem")
    (creds / "site.pem").chmod(0o644)  # systemd manages credential permissions itself
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    key = load_private(tmp_path / "elsewhere" / "site.pem")
    assert public_key_b64(key) == public_key_b64(load_private(creds / "site.pem"))


def test_public_key_forms_round_trip() -> None:
    b64 = public_key_b64(VECTOR_KEY)
    assert len(base64.b64decode(b64)) == 32
    pem = public_key_pem(VECTOR_KEY)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert public_key_b64(parse_public_key(pem)) == b64
    assert public_key_b64(parse_public_key(b64 + "\n")) == b64
    assert public_key_b64(parse_public_key(pem.encode())) == b64


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not base64 !!", "neither PEM nor base64"),
        (base64.b64encode(b"x" * 31).decode(), "31 bytes"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
    ],
)
def test_parse_public_key_errors(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_public_key(text)


def test_parse_public_key_refuses_other_algorithms() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        parse_public_key(pem)


# ----------------------------------------------------------------------------------- chain

PUBLIC = VECTOR_KEY.public_key()


def test_intact_chain_verifies() -> None:
    result = verify_chain(chain(20), PUBLIC, site="sg-0001")
    assert result.ok and result.checked == 20 and result.first_bad_seq is None
    assert str(result) == "OK: 20 records, chain intact"
    assert verify_chain([], PUBLIC).ok


def test_a_segment_verifies_without_its_predecessors() -> None:
    assert verify_chain(chain(20)[4:12], PUBLIC).checked == 8


def test_altered_field() -> None:
    records = chain(20)
    records[16]["import_wh"] = 9999
    result = verify_chain(records, PUBLIC)
    assert not result.ok
    assert (result.first_bad_seq, result.checked) == (17, 16)
    assert result.reason == "seq 17: hash mismatch (record was altered)"


def test_altered_field_with_recomputed_hash_fails_the_signature() -> None:
    records = chain(20)
    records[16]["import_wh"] = 9999
    records[16]["hash"] = record_hash(records[16])
    result = verify_chain(records, PUBLIC)
    assert result.reason == "seq 17: bad signature"


def test_deleted_record() -> None:
    records = chain(20)
    del records[18]
    result = verify_chain(records, PUBLIC)
    assert (result.first_bad_seq, result.reason) == (20, "seq 20: seq gap (expected 19)")


def test_swapped_records() -> None:
    records = chain(20)
    records[17], records[18] = records[18], records[17]
    result = verify_chain(records, PUBLIC)
    assert (result.first_bad_seq, result.reason) == (19, "seq 19: out of order (expected 18)")


def test_duplicated_record() -> None:
    records = chain(5)
    records.insert(3, dict(records[2]))
    assert verify_chain(records, PUBLIC).reason == "seq 3: duplicate or out of order (expected 4)"


def test_chain_resigned_with_another_key() -> None:
    forged = chain(20, Ed25519PrivateKey.generate())
    result = verify_chain(forged, PUBLIC)
    assert (result.first_bad_seq, result.reason, result.checked) == (1, "seq 1: bad signature", 0)


def test_tail_resigned_with_another_key() -> None:
    records = chain(20)
    other = Ed25519PrivateKey.generate()
    prev = records[3]["hash"]
    for i in range(4, 20):
        body = {k: v for k, v in records[i].items() if k not in provenance.SEAL_FIELDS}
        records[i] = seal(body, prev, i + 1, other)
        prev = records[i]["hash"]
    assert verify_chain(records, PUBLIC).reason == "seq 5: bad signature"


def test_replaced_record_breaks_the_link() -> None:
    """Even the key holder cannot rewrite history without breaking the next link."""
    records = chain(20)
    body = {k: v for k, v in records[16].items() if k not in provenance.SEAL_FIELDS}
    records[16] = seal({**body, "import_wh": 1}, records[15]["hash"], 17, VECTOR_KEY)
    result = verify_chain(records, PUBLIC)
    assert result.reason == "seq 18: prev_hash does not match seq 17's hash"


def test_first_record_must_start_from_genesis() -> None:
    record = seal(VECTOR_FIELDS, "f" * 64, 1, VECTOR_KEY)
    result = verify_chain([record], PUBLIC)
    assert result.reason == "seq 1: prev_hash of the first record is not the genesis hash"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.pop("sig"), "seq 3: 'sig' is missing"),
        (lambda r: r.update(sig="!!notbase64"), "seq 3: bad signature"),
        (lambda r: r.update(seq="3"), "record #3: seq is missing or not a positive integer ('3')"),
        (lambda r: r.update(import_wh=math.nan), "seq 3: cannot be hashed"),
    ],
)
def test_malformed_records(change: Any, reason: str) -> None:
    records = chain(5)
    change(records[2])
    assert verify_chain(records, PUBLIC).reason.startswith(reason)


def test_record_of_another_site() -> None:
    result = verify_chain(chain(3), PUBLIC, site="sg-0002")
    assert result.reason == "seq 1: site 'sg-0001' is not 'sg-0002'"
