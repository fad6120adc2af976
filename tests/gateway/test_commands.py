"""DR commands: every bad input refused with a reason, every transition acknowledged exactly once.

The manager runs against a real store and a ManualClock; acks land in a list, each one checked
against docs/schemas/cmd-ack.schema.json as it is published. Commands are signed the way the spec
tells the backend to (canonical JSON without ``sig``, Ed25519, base64), written out here rather
than borrowed from the gateway, so the test checks the contract and not the code against itself.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import itertools
import json
import random
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.clock import JST, ManualClock
from gateway.commands import (
    COMPLETE_GRACE,
    ActiveCommand,
    CommandKind,
    CommandManager,
    CommandState,
    Family,
)
from gateway.commands.manager import OUTBOX_KEY
from gateway.config import CommandsConfig
from gateway.store import Store
from tests.conftest import REPO

SITE = "sg-0001"
SITE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
BACKEND_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
T0 = datetime(2026, 11, 27, 16, 55, tzinfo=JST)
START = datetime(2026, 11, 27, 17, 0, tzinfo=JST)
END = datetime(2026, 11, 27, 18, 0, tzinfo=JST)
SCHEMAS = REPO / "docs" / "schemas"
_nonces = itertools.count(1)


@functools.cache
def validator(name: str) -> Any:
    doc = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(doc)


def iso(when: datetime) -> str:
    return when.astimezone(JST).isoformat()


def canonical(doc: dict[str, Any]) -> bytes:
    """As the spec words it: keys sorted, no whitespace, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(doc: dict[str, Any], key: Ed25519PrivateKey = BACKEND_KEY) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k != "sig"}
    return {**body, "sig": base64.b64encode(key.sign(canonical(body))).decode()}


def cmd(**over: Any) -> dict[str, Any]:
    """A valid battery discharge for 17:00–18:00, issued now (16:55), unsigned."""
    doc: dict[str, Any] = {
        "id": "7f9c0d2e-cmd-1",
        "rev": 1,
        "issued_at": iso(T0),
        "kind": "battery_discharge",
        "start": iso(START),
        "end": iso(END),
        "power_w": 2000,
        "allow_export": True,
        "priority": 10,
        "randomize_s": 0,
        "test": False,
        "status": "active",
        "nonce": f"nonce-{next(_nonces):08d}",
    }
    for key, value in over.items():
        if value is _DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


_DROP = object()


def payload(doc: dict[str, Any], signed: bool = True) -> bytes:
    return json.dumps(sign(doc) if signed else doc).encode()


class Rig:
    """A store, a clock, a published-ack list and the manager over them (re-creatable)."""

    def __init__(self, tmp: Path, **cfg: Any) -> None:
        self.tmp = tmp
        pub = tmp / "backend.pub"
        pub.write_bytes(
            BACKEND_KEY.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        base: dict[str, Any] = {"public_key_file": pub}
        base.update(cfg)
        self.cfg = CommandsConfig(**base)
        self.clock = ManualClock(T0)
        self.store = Store(tmp / "chisan.db", SITE, SITE_KEY, clock=self.clock)
        self.acks: list[dict[str, Any]] = []
        self.online = True
        self.attempts = 0
        self.manager = self.new_manager()

    def new_manager(self, seed: int = 7) -> CommandManager:
        self.manager = CommandManager(
            self.cfg, SITE, self.store, self.clock, self.publish, rng=random.Random(seed)
        )
        return self.manager

    async def publish(self, doc: dict[str, Any]) -> bool:
        self.attempts += 1
        if not self.online:
            return False
        errors = [e.message for e in validator("cmd-ack").iter_errors(doc)]
        assert errors == [], (doc, errors)
        self.acks.append(copy.deepcopy(doc))
        return True

    async def send(self, doc: dict[str, Any] | bytes, signed: bool = True) -> list[dict[str, Any]]:
        before = len(self.acks)
        raw = doc if isinstance(doc, bytes) else payload(doc, signed)
        await self.manager.handle(raw)
        return self.acks[before:]

    def statuses(self, cmd_id: str | None = None) -> list[str]:
        return [a["status"] for a in self.acks if cmd_id is None or a["id"] == cmd_id]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def only(acks: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(acks) == 1, acks
    return acks[0]


# ------------------------------------------------------------------------------- accepted


KINDS: list[tuple[str, dict[str, Any], Family]] = [
    ("battery_charge", {"power_w": 3000, "allow_export": _DROP}, Family.BATTERY),
    ("battery_discharge", {"power_w": 2000, "allow_export": False}, Family.BATTERY),
    ("battery_standby", {"power_w": _DROP, "allow_export": _DROP}, Family.BATTERY),
    ("battery_auto", {"power_w": _DROP, "allow_export": _DROP}, Family.BATTERY),
    ("pv_limit", {"power_w": _DROP, "allow_export": _DROP, "limit_w": 0}, Family.PV),
    ("pv_limit", {"power_w": _DROP, "allow_export": _DROP, "limit_pct": 50}, Family.PV),
    ("water_heater_heat", {"power_w": _DROP, "allow_export": _DROP}, Family.WATER_HEATER),
    ("water_heater_heat", {"power_w": 1500, "allow_export": _DROP}, Family.WATER_HEATER),
    ("aircon_saving", {"power_w": _DROP, "allow_export": _DROP}, Family.AIRCON),
]


@pytest.mark.parametrize(("kind", "fields", "family"), KINDS)
async def test_each_kind_is_received_then_scheduled(
    rig: Rig, kind: str, fields: dict[str, Any], family: Family
) -> None:
    acks = await rig.send(cmd(kind=kind, **fields))
    assert [a["status"] for a in acks] == ["received", "scheduled"]
    assert all(a["id"] == "7f9c0d2e-cmd-1" and a["rev"] == 1 for a in acks)
    assert acks[1]["effective_start"] == "2026-11-27T17:00:00+09:00"
    assert rig.manager.active(T0) == {}
    assert [c.id for c in rig.manager.upcoming(T0)] == ["7f9c0d2e-cmd-1"]
    active = rig.manager.active(START)
    assert set(active) == {family}
    got = active[family]
    assert got.kind is CommandKind(kind) and got.state is CommandState.SCHEDULED
    assert got.start == got.effective_start == START and got.end == END
    power = fields.get("power_w")
    assert got.power_w == (None if power is _DROP else power)
    assert got.limit_w == fields.get("limit_w") and got.limit_pct == fields.get("limit_pct")
    assert rig.manager.active(END) == {}  # [start, end)
    stored = rig.store.get_command("7f9c0d2e-cmd-1")
    assert stored is not None and stored.state == "scheduled" and stored.last_ack == acks[1]


async def test_active_command_carries_the_setpoint(rig: Rig) -> None:
    await rig.send(cmd(priority=42))
    got = rig.manager.active(START + timedelta(minutes=10))[Family.BATTERY]
    assert got == ActiveCommand(
        id="7f9c0d2e-cmd-1",
        rev=1,
        kind=CommandKind.BATTERY_DISCHARGE,
        family=Family.BATTERY,
        start=START,
        effective_start=START,
        end=END,
        power_w=2000,
        limit_w=None,
        limit_pct=None,
        allow_export=True,
        priority=42,
        issued_at=T0,
        test=False,
        state=CommandState.SCHEDULED,
    )


async def test_times_in_other_offsets_are_read_as_instants(rig: Rig) -> None:
    acks = await rig.send(
        cmd(
            start="2026-11-27T08:00:00Z",
            end="2026-11-27T09:00:00+00:00",
            issued_at="2026-11-27T07:55:00Z",
        )
    )
    assert [a["status"] for a in acks] == ["received", "scheduled"]
    assert acks[1]["effective_start"] == "2026-11-27T17:00:00+09:00"


# ---------------------------------------------------------------------------- rejections


def big_payload() -> bytes:
    doc = cmd()
    doc["nonce"] = "x" * (1 << 20)
    return json.dumps(doc).encode()


BAD: list[tuple[str, Any, str, tuple[str | None, int | None]]] = [
    ("not json", b"this is not json", "not JSON", (None, None)),
    ("empty", b"", "not JSON", (None, None)),
    ("not utf-8", b'{"id": "\xff"}', "not UTF-8", (None, None)),
    ("1 MB", big_payload(), "payload too large: 10", (None, None)),
    ("array", b"[1, 2]", "not a JSON object but an array", (None, None)),
    ("string", b'"cmd"', "not a JSON object but a string", (None, None)),
    ("NaN", b'{"id": "a1", "rev": NaN}', "NaN is not JSON", (None, None)),
    ("huge float", b'{"id": "a1", "rev": 1e999}', "out of range", (None, None)),
    ("deep", b"[" * 5000 + b"]" * 5000, "not JSON", (None, None)),
    ("id wrong type", cmd(id=17), "id must be string, not a number", (None, None)),
    ("id empty", cmd(id=""), "id", (None, None)),
    ("rev wrong type", cmd(rev="1"), "rev must be integer, not a string", ("7f9c0d2e-cmd-1", None)),
    ("rev bool", cmd(rev=True), "rev must be integer, not a boolean", ("7f9c0d2e-cmd-1", None)),
    ("rev negative", cmd(rev=-1), "rev -1 is below the minimum 0", ("7f9c0d2e-cmd-1", None)),
    ("power wrong type", cmd(power_w="2000"), "power_w must be integer, not a string", None),
    ("power fraction", cmd(power_w=2000.5), "power_w must be integer, not a number", None),
    ("allow_export type", cmd(allow_export="yes"), "allow_export must be boolean", None),
    ("unknown kind", cmd(kind="ev_charge"), 'unknown kind "ev_charge"', None),
    ("unknown status", cmd(status="paused"), "status", None),
    ("negative power", cmd(power_w=-500), "power_w -500 is below the minimum 1", None),
    ("zero power", cmd(power_w=0), "power_w 0 is below the minimum 1", None),
    ("absurd power", cmd(power_w=250_000), "power_w 250000 is above the maximum 20000", None),
    (
        "pv pct > 100",
        cmd(kind="pv_limit", power_w=_DROP, allow_export=_DROP, limit_pct=150),
        "limit_pct 150 is above the maximum 100",
        None,
    ),
    (
        "pv both limits",
        cmd(kind="pv_limit", power_w=_DROP, allow_export=_DROP, limit_pct=5, limit_w=500),
        "pv_limit needs exactly one of limit_w, limit_pct",
        None,
    ),
    (
        "pv no limit",
        cmd(kind="pv_limit", power_w=_DROP, allow_export=_DROP),
        "pv_limit needs exactly one of limit_w, limit_pct",
        None,
    ),
    (
        "standby with power",
        cmd(kind="battery_standby", allow_export=_DROP),
        'power_w does not apply to kind "battery_standby"',
        None,
    ),
    ("charge with export", cmd(kind="battery_charge"), "allow_export does not apply", None),
    ("missing start", cmd(start=_DROP), "missing field start", None),
    ("missing power", cmd(power_w=_DROP), "missing field power_w", None),
    ("missing nonce", cmd(nonce=_DROP), "missing field nonce", None),
    ("missing id", cmd(id=_DROP), "missing field id", (None, None)),
    ("unknown field", cmd(setpoint_w=1), 'unknown field "setpoint_w"', None),
    ("end before start", cmd(end=iso(START - timedelta(hours=1))), "must be after start", None),
    ("end equals start", cmd(end=iso(START)), "must be after start", None),
    (
        "unaligned start",
        cmd(start="2026-11-27T17:10:00+09:00"),
        "start 2026-11-27T17:10:00+09:00 is not on a 30-minute slot boundary",
        None,
    ),
    ("unaligned end second", cmd(end="2026-11-27T18:00:01+09:00"), "end", None),
    ("start without offset", cmd(start="2026-11-27T17:00:00"), "start", None),
    ("impossible date", cmd(start="2026-13-45T17:00:00+09:00"), "is not a valid time", None),
    ("too long", cmd(end=iso(START + timedelta(hours=25))), "longer than", None),
    ("randomize too long", cmd(randomize_s=3600), "randomize_s 3600 must be shorter", None),
    (
        "issued long ago",
        cmd(issued_at=iso(T0 - timedelta(minutes=11))),
        "outside the ±600 s window",
        None,
    ),
    ("issued in the future", cmd(issued_at=iso(T0 + timedelta(minutes=11))), "outside", None),
    ("bad sig format", {**cmd(), "sig": "not base64!"}, "sig", None),
]


@pytest.mark.parametrize(("raw", "reason", "ref"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_input_is_rejected_with_a_reason(
    rig: Rig, raw: Any, reason: str, ref: tuple[str | None, int | None] | None
) -> None:
    if isinstance(raw, dict):
        raw = json.dumps(raw if "sig" in raw else sign(raw)).encode()
    rejected = only(await rig.send(raw))
    assert rejected["status"] == "rejected"
    assert reason in rejected["reason"], rejected["reason"]
    expected_ref = ref if ref is not None else ("7f9c0d2e-cmd-1", 1)
    assert (rejected["id"], rejected["rev"]) == expected_ref
    assert rig.store.commands() == []
    assert rig.manager.active(START) == {} and rig.manager.upcoming(T0) == []


async def test_a_one_megabyte_payload_is_refused_before_parsing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_parsing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed")

    monkeypatch.setattr(json, "loads", no_parsing)
    rejected = only(await rig.send(b"{" + b" " * (1 << 20) + b"}"))
    assert rejected["reason"] == "payload too large: 1048578 bytes, limit 16384"


async def test_unsigned_command_is_rejected_when_signatures_are_required(rig: Rig) -> None:
    rejected = only(await rig.send(cmd(), signed=False))
    assert rejected["reason"] == "unsigned command (signatures are required)"
    assert rejected["id"] == "7f9c0d2e-cmd-1"


async def test_command_signed_by_another_key_is_rejected(rig: Rig) -> None:
    rejected = only(await rig.send(json.dumps(sign(cmd(), OTHER_KEY)).encode()))
    assert rejected["reason"] == "bad signature"


async def test_command_altered_after_signing_is_rejected(rig: Rig) -> None:
    doc = sign(cmd())
    doc["power_w"] = 9000
    rejected = only(await rig.send(json.dumps(doc).encode()))
    assert rejected["reason"] == "bad signature"


async def test_signature_covers_the_canonical_form_not_the_bytes_sent(rig: Rig) -> None:
    """Key order and whitespace on the wire do not matter; the canonical JSON is what is signed."""
    doc = sign(cmd())
    reordered = dict(reversed(list(doc.items())))
    raw = json.dumps(reordered, indent=2, ensure_ascii=True).encode()
    assert [a["status"] for a in await rig.send(raw)] == ["received", "scheduled"]


async def test_without_a_configured_key_every_command_is_rejected(tmp_path: Path) -> None:
    r = Rig(tmp_path, public_key_file=None)
    try:
        rejected = only(await r.send(cmd()))
        assert rejected["reason"].startswith("signature required but no backend public key")
        assert r.manager.key_problem is not None
    finally:
        r.close()


async def test_an_unreadable_key_file_rejects_commands_but_does_not_raise(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    r = Rig(tmp_path, public_key_file=bad)
    try:
        rejected = only(await r.send(cmd()))
        assert "not a PEM public key" in rejected["reason"]
    finally:
        r.close()


async def test_signatures_can_be_switched_off(tmp_path: Path) -> None:
    r = Rig(tmp_path, require_signature=False)
    try:
        assert [a["status"] for a in await r.send(cmd(), signed=False)] == ["received", "scheduled"]
        # a signature that is present is still checked
        bad = json.dumps(sign(cmd(id="other"), OTHER_KEY)).encode()
        assert only(await r.send(bad))["reason"] == "bad signature"
    finally:
        r.close()


async def test_issued_at_window_is_configurable(tmp_path: Path) -> None:
    r = Rig(tmp_path, issued_at_window_s=3600)
    try:
        acks = await r.send(cmd(issued_at=iso(T0 - timedelta(minutes=50))))
        assert [a["status"] for a in acks] == ["received", "scheduled"]
    finally:
        r.close()


async def test_replayed_nonce_with_another_id_is_rejected(rig: Rig) -> None:
    first = cmd()
    await rig.send(first)
    replay = cmd(id="another", nonce=first["nonce"])
    assert only(await rig.send(replay))["reason"] == "replayed nonce"
    again = cmd(rev=2, nonce=first["nonce"])
    assert only(await rig.send(again))["reason"] == "replayed nonce"
    assert rig.store.get_command("another") is None
    assert rig.store.get_command("7f9c0d2e-cmd-1").rev == 1  # type: ignore[union-attr]


async def test_expired_on_arrival_is_answered_expired_and_never_acts(rig: Rig) -> None:
    rig.clock.set(END + timedelta(minutes=1))
    doc = cmd(issued_at=iso(END))
    acks = await rig.send(doc)
    assert [a["status"] for a in acks] == ["received", "expired"]
    assert acks[1]["reason"] == "its end 2026-11-27T18:00:00+09:00 had passed on arrival"
    assert rig.manager.active(START) == {}
    assert rig.store.get_command(doc["id"]).state == "expired"  # type: ignore[union-attr]
    assert await rig.send(doc) == [acks[1]]  # a duplicate: the same answer, nothing new


# --------------------------------------------------------------------- duplicates, revisions


async def test_duplicate_delivery_resends_the_last_ack_and_acts_never_again(rig: Rig) -> None:
    doc = sign(cmd())
    raw = json.dumps(doc).encode()
    first = await rig.send(raw)
    assert [a["status"] for a in first] == ["received", "scheduled"]
    rig.clock.advance(3600 * 3)  # issued_at far outside the window by now: still a duplicate
    assert await rig.send(raw) == [first[-1]]
    await rig.manager.started(doc["id"], 1)
    started = rig.acks[-1]
    assert await rig.send(raw) == [started]
    assert Counter(rig.statuses()) == {"received": 1, "scheduled": 2, "started": 2}


async def test_a_held_revision_is_never_answered_rejected(rig: Rig) -> None:
    """Even a mangled redelivery of a stored (id, rev) gets its last ack, not a rejection."""
    await rig.send(cmd())
    last = rig.acks[-1]
    assert only(await rig.send(b'{"id": "7f9c0d2e-cmd-1", "rev": 1, "junk": true}')) == last
    assert only(await rig.send(b'{"id": "7f9c0d2e-cmd-1", "rev": 0}')) == last
    assert "rejected" not in rig.statuses()


async def test_lower_rev_is_ignored_and_answered_with_the_stored_revision(rig: Rig) -> None:
    await rig.send(cmd(rev=3, power_w=1000))
    last = rig.acks[-1]
    assert only(await rig.send(cmd(rev=2, power_w=5000))) == last
    assert only(await rig.send(cmd(rev=2, power_w=5000), signed=False)) == last
    assert rig.manager.active(START)[Family.BATTERY].power_w == 1000
    assert rig.store.get_command("7f9c0d2e-cmd-1").rev == 3  # type: ignore[union-attr]


async def test_higher_rev_replaces_the_command(rig: Rig) -> None:
    await rig.send(cmd(rev=1, power_w=1000))
    rig.clock.set(START)
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    acks = await rig.send(cmd(rev=2, power_w=3000, issued_at=iso(START)))
    assert [(a["rev"], a["status"]) for a in acks] == [(2, "received"), (2, "scheduled")]
    got = rig.manager.active(START)[Family.BATTERY]
    assert (got.rev, got.power_w, got.state) == (2, 3000, CommandState.SCHEDULED)
    # reports about the replaced revision are ignored
    await rig.manager.completed("7f9c0d2e-cmd-1", 1, 500)
    assert rig.acks[-1] == acks[-1]
    await rig.manager.started("7f9c0d2e-cmd-1", 2)
    assert rig.acks[-1]["status"] == "started" and rig.acks[-1]["rev"] == 2


async def test_cancel_in_a_higher_rev(rig: Rig) -> None:
    await rig.send(cmd())
    rig.clock.set(START)
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    assert Family.BATTERY in rig.manager.active(START)
    cancel = cmd(rev=2, status="cancelled", issued_at=iso(START))
    for name in ("kind", "start", "end", "power_w", "allow_export", "priority", "randomize_s"):
        cancel.pop(name)
    acks = await rig.send(cancel)
    assert [(a["rev"], a["status"]) for a in acks] == [(2, "received"), (2, "cancelled")]
    assert rig.manager.active(START) == {}
    assert rig.store.get_command("7f9c0d2e-cmd-1").state == "cancelled"  # type: ignore[union-attr]
    assert await rig.send(cmd(rev=1)) == [acks[-1]]  # the old revision stays dead
    await rig.manager.completed("7f9c0d2e-cmd-1", 1, 10)  # a late report changes nothing
    assert rig.acks[-1] == acks[-1]


async def test_cancel_may_arrive_before_the_command(rig: Rig) -> None:
    cancel = cmd(rev=2, status="cancelled")
    acks = await rig.send(cancel)
    assert [a["status"] for a in acks] == ["received", "cancelled"]
    assert only(await rig.send(cmd(rev=1))) == acks[-1]
    assert rig.manager.active(START) == {}


# ---------------------------------------------------------------------------- competition


async def test_higher_priority_supersedes_an_overlapping_command(rig: Rig) -> None:
    await rig.send(cmd(id="low", priority=10))
    acks = await rig.send(cmd(id="high", priority=20, kind="battery_charge", allow_export=_DROP))
    assert [(a["id"], a["status"]) for a in acks] == [
        ("high", "received"),
        ("high", "scheduled"),
        ("low", "superseded"),
    ]
    assert acks[-1]["superseded_by"] == {"id": "high", "rev": 1}
    assert rig.manager.active(START)[Family.BATTERY].id == "high"
    assert rig.store.get_command("low").state == "superseded"  # type: ignore[union-attr]


async def test_lower_priority_newcomer_is_superseded_on_arrival(rig: Rig) -> None:
    await rig.send(cmd(id="high", priority=20))
    acks = await rig.send(cmd(id="low", priority=5, issued_at=iso(T0 + timedelta(seconds=30))))
    assert [(a["id"], a["status"]) for a in acks] == [("low", "received"), ("low", "superseded")]
    assert acks[-1]["superseded_by"] == {"id": "high", "rev": 1}
    assert rig.manager.active(START)[Family.BATTERY].id == "high"


async def test_priority_tie_goes_to_the_newer_issue(rig: Rig) -> None:
    await rig.send(cmd(id="older", issued_at=iso(T0 - timedelta(seconds=60))))
    acks = await rig.send(cmd(id="newer"))
    assert [(a["id"], a["status"]) for a in acks][-1] == ("older", "superseded")
    # an even older one arriving late loses
    late = await rig.send(cmd(id="oldest", issued_at=iso(T0 - timedelta(seconds=120))))
    assert late[-1]["status"] == "superseded" and late[-1]["superseded_by"]["id"] == "newer"


async def test_full_tie_keeps_the_command_already_held(rig: Rig) -> None:
    await rig.send(cmd(id="first"))
    acks = await rig.send(cmd(id="second"))
    assert [(a["id"], a["status"]) for a in acks] == [
        ("second", "received"),
        ("second", "superseded"),
    ]
    assert rig.manager.active(START)[Family.BATTERY].id == "first"


async def test_no_competition_across_families_windows_or_test_commands(rig: Rig) -> None:
    await rig.send(cmd(id="battery"))
    pv = {"kind": "pv_limit", "power_w": _DROP, "allow_export": _DROP, "limit_pct": 0}
    assert rig.statuses()[-1] == "scheduled"
    await rig.send(cmd(id="pv", priority=99, **pv))
    later = {"start": iso(END), "end": iso(END + timedelta(minutes=30))}
    await rig.send(cmd(id="later", priority=99, **later))
    await rig.send(cmd(id="test", priority=99, test=True))
    assert "superseded" not in rig.statuses()
    assert {f: c.id for f, c in rig.manager.active(START).items()} == {
        Family.BATTERY: "battery",
        Family.PV: "pv",
    }
    assert rig.manager.active(END)[Family.BATTERY].id == "later"


# --------------------------------------------------------------------------- randomisation


async def test_randomised_start_is_drawn_once_and_survives_a_restart(rig: Rig) -> None:
    doc = cmd(randomize_s=900)
    raw = json.dumps(sign(doc)).encode()
    acks = await rig.send(raw)
    effective = datetime.fromisoformat(acks[1]["effective_start"])
    assert START <= effective <= START + timedelta(seconds=900)
    assert effective != START  # seed 7 draws a real delay
    assert rig.manager.active(effective - timedelta(seconds=1)) == {}
    assert rig.manager.active(effective)[Family.BATTERY].effective_start == effective
    for seed in (1, 2, 3):  # another process, another random state: the draw is remembered
        rig.new_manager(seed=seed)
        assert rig.manager.upcoming(T0)[0].effective_start == effective
        assert await rig.send(raw) == [acks[1]]
    # a new revision with the same start and randomisation keeps the draw
    rev2 = await rig.send(cmd(rev=2, randomize_s=900, power_w=1500))
    assert rev2[1]["effective_start"] == acks[1]["effective_start"]
    stored = rig.store.get_command(doc["id"])
    assert stored is not None and stored.command["effective_start"] == acks[1]["effective_start"]


# -------------------------------------------------------------------------------- restart


async def test_restart_resumes_an_active_command(rig: Rig) -> None:
    await rig.send(cmd())
    rig.clock.set(START + timedelta(minutes=5))
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    rig.store.close()
    rig.store = Store(rig.tmp / "chisan.db", SITE, SITE_KEY)
    manager = rig.new_manager()
    got = manager.active(rig.clock.now())[Family.BATTERY]
    assert (got.id, got.state, got.power_w) == ("7f9c0d2e-cmd-1", CommandState.STARTED, 2000)
    before = len(rig.acks)
    await manager.started("7f9c0d2e-cmd-1", 1)  # the control loop re-asserting: not a transition
    assert len(rig.acks) == before
    await manager.completed("7f9c0d2e-cmd-1", 1, 1800)
    assert rig.acks[-1]["status"] == "completed" and rig.acks[-1]["delivered_wh"] == 1800


async def test_restart_after_the_end_closes_what_was_left_open(rig: Rig) -> None:
    await rig.send(cmd(id="ran"))
    await rig.send(cmd(id="waiting", kind="aircon_saving", power_w=_DROP, allow_export=_DROP))
    rig.clock.set(START)
    await rig.manager.started("ran", 1)
    rig.clock.set(END + timedelta(hours=2))
    manager = rig.new_manager()
    assert manager.active(rig.clock.now()) == {}
    await manager.tick(rig.clock.now())
    tail = {a["id"]: a for a in rig.acks[-2:]}
    assert tail["ran"]["status"] == "completed" and tail["ran"]["delivered_wh"] is None
    assert tail["waiting"]["status"] == "expired"


async def test_a_stored_command_that_cannot_be_read_back_is_aborted(rig: Rig) -> None:
    rig.store.put_command("broken", 1, {"id": "broken", "kind": "teleport"}, "started", T0)
    manager = rig.new_manager()
    assert manager.active(START) == {} and manager.pending_acks == 1
    await manager.resend_pending_acks()
    aborted = only(rig.acks)
    assert (aborted["id"], aborted["status"]) == ("broken", "aborted")
    assert rig.store.get_command("broken").state == "aborted"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ test flag


async def test_test_commands_are_acknowledged_but_never_active(rig: Rig) -> None:
    acks = await rig.send(cmd(test=True))
    assert [a["status"] for a in acks] == ["received", "scheduled"]
    assert all(a["test"] is True for a in acks)
    assert rig.manager.active(START) == {}
    assert rig.manager.upcoming(T0)[0].test is True
    rig.clock.set(START)
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    assert len(rig.acks) == 2  # refused: test commands never start
    await rig.manager.tick(END - timedelta(seconds=1))
    assert len(rig.acks) == 2
    await rig.manager.tick(END)
    done = rig.acks[-1]
    assert done["status"] == "completed" and done["delivered_wh"] is None and done["test"] is True


# ------------------------------------------------------------------------------ lifecycle


async def test_lifecycle_started_clamped_completed_once_each(rig: Rig) -> None:
    await rig.send(cmd())
    rig.clock.set(START)
    cid = "7f9c0d2e-cmd-1"
    await rig.manager.started(cid, 1, clamped_by="export_limit", allowed_w=1234.9, detail="SOC 80%")
    started, clamped = rig.acks[-2:]
    assert started["status"] == "started" and started["detail"] == "SOC 80%"
    assert clamped["status"] == "clamped"
    assert (clamped["clamped_by"], clamped["allowed_w"]) == ("export_limit", 1234)
    await rig.manager.started(cid, 1)
    await rig.manager.clamped(cid, 1, "soc_reserve", 0)  # already reported a clamp
    assert rig.manager.active(START)[Family.BATTERY].state is CommandState.STARTED
    rig.clock.set(END)
    await rig.manager.completed(cid, 1, 950)
    await rig.manager.completed(cid, 1, 960)
    await rig.manager.aborted(cid, 1, "too late")
    await rig.manager.tick(END + timedelta(hours=1))
    assert rig.statuses() == ["received", "scheduled", "started", "clamped", "completed"]
    assert rig.acks[-1]["delivered_wh"] == 950
    assert rig.store.get_command(cid).state == "completed"  # type: ignore[union-attr]
    assert rig.manager.active(START) == {}


async def test_clamp_later_in_the_run_is_reported_once(rig: Rig) -> None:
    await rig.send(cmd())
    await rig.manager.clamped("7f9c0d2e-cmd-1", 1, "soc_reserve", 0)  # not started yet: no
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    await rig.manager.clamped("7f9c0d2e-cmd-1", 1, "SOC Reserve!", float("nan"))
    await rig.manager.clamped("7f9c0d2e-cmd-1", 1, "breaker", 500)
    assert rig.statuses() == ["received", "scheduled", "started", "clamped"]
    assert rig.acks[-1]["clamped_by"] == "soc_reserve" and rig.acks[-1]["allowed_w"] == 0


async def test_aborted_once_with_its_reason(rig: Rig) -> None:
    await rig.send(cmd())
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    await rig.manager.aborted("7f9c0d2e-cmd-1", 1, "fail-safe: meter data stale")
    await rig.manager.aborted("7f9c0d2e-cmd-1", 1, "again")
    await rig.manager.completed("7f9c0d2e-cmd-1", 1, 5)
    assert rig.statuses() == ["received", "scheduled", "started", "aborted"]
    assert rig.acks[-1]["reason"] == "fail-safe: meter data stale"
    assert rig.manager.active(START) == {}


async def test_scheduled_command_may_be_aborted_before_it_starts(rig: Rig) -> None:
    await rig.send(cmd())
    await rig.manager.aborted("7f9c0d2e-cmd-1", 1, "")
    assert rig.acks[-1]["status"] == "aborted" and rig.acks[-1]["reason"]


async def test_expired_by_tick_once(rig: Rig) -> None:
    await rig.send(cmd())
    await rig.manager.tick(END - timedelta(seconds=1))
    assert rig.statuses() == ["received", "scheduled"]
    await rig.manager.tick(END)
    await rig.manager.tick(END + timedelta(hours=1))
    assert rig.statuses() == ["received", "scheduled", "expired"]
    assert rig.acks[-1]["reason"] == "not started before its end 2026-11-27T18:00:00+09:00"
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    assert len(rig.acks) == 3


async def test_started_command_left_open_is_completed_after_the_grace(rig: Rig) -> None:
    await rig.send(cmd())
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    await rig.manager.tick(END + COMPLETE_GRACE - timedelta(seconds=1))
    assert rig.statuses()[-1] == "started"
    await rig.manager.tick(END + COMPLETE_GRACE)
    assert rig.acks[-1]["status"] == "completed" and rig.acks[-1]["delivered_wh"] is None


async def test_unusable_energy_is_reported_as_unknown(rig: Rig) -> None:
    await rig.send(cmd())
    await rig.manager.started("7f9c0d2e-cmd-1", 1)
    await rig.manager.completed("7f9c0d2e-cmd-1", 1, -5)
    assert rig.acks[-1]["delivered_wh"] is None


async def test_reports_about_unknown_commands_are_ignored(rig: Rig) -> None:
    await rig.manager.started("nope", 1)
    await rig.manager.completed("nope", 1, 1)
    await rig.manager.aborted("nope", 1, "x")
    assert rig.acks == []


async def test_handle_never_raises(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.commands import validate

    def boom(doc: dict[str, Any]) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(validate, "interpret", boom)
    rejected = only(await rig.send(cmd()))
    assert (rejected["id"], rejected["reason"]) == (None, "internal error")
    await rig.manager.handle("not bytes at all")  # type: ignore[arg-type]
    assert rig.acks[-1]["status"] == "rejected"


async def test_a_command_the_store_cannot_keep_is_rejected(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.store import StoreError

    def full(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("database or disk is full")

    monkeypatch.setattr(rig.store, "put_command", full)
    rejected = only(await rig.send(cmd()))
    assert rejected["reason"] == "gateway storage error" and rejected["id"] == "7f9c0d2e-cmd-1"
    assert rig.manager.active(START) == {}


# ------------------------------------------------------------------------------- offline


async def test_acks_kept_while_offline_are_resent_in_order_once(rig: Rig) -> None:
    rig.online = False
    await rig.send(cmd(id="a"))
    await rig.send(b"garbage")
    await rig.manager.started("a", 1)
    assert rig.acks == [] and rig.manager.pending_acks == 4
    assert len(rig.store.get_json(OUTBOX_KEY)) == 4
    manager = rig.new_manager()  # a restart in between loses nothing
    assert manager.pending_acks == 4
    rig.online = True
    await manager.resend_pending_acks()
    assert [(a["id"], a["status"]) for a in rig.acks] == [
        ("a", "received"),
        ("a", "scheduled"),
        (None, "rejected"),
        ("a", "started"),
    ]
    assert manager.pending_acks == 0 and rig.store.get_json(OUTBOX_KEY) == []
    await manager.resend_pending_acks()
    assert len(rig.acks) == 4


async def test_new_acks_queue_behind_older_ones(rig: Rig) -> None:
    rig.online = False
    await rig.send(cmd(id="a"))
    flaky = iter([True, False])
    original = rig.publish

    async def once_then_offline(doc: dict[str, Any]) -> bool:
        return next(flaky, True) and await original(doc)

    rig.online = True
    rig.manager._publish_ack = once_then_offline
    await rig.send(cmd(id="b", kind="aircon_saving", power_w=_DROP, allow_export=_DROP))
    assert [(a["id"], a["status"]) for a in rig.acks] == [("a", "received")]
    await rig.manager.tick(T0)  # tick retries the queue
    assert [(a["id"], a["status"]) for a in rig.acks] == [
        ("a", "received"),
        ("a", "scheduled"),
        ("b", "received"),
        ("b", "scheduled"),
    ]


async def test_a_publisher_that_raises_is_treated_as_offline(rig: Rig) -> None:
    async def boom(doc: dict[str, Any]) -> bool:
        raise RuntimeError("broken uplink")

    rig.manager._publish_ack = boom
    await rig.send(cmd())
    assert rig.manager.pending_acks == 2


async def test_acks_in_flight_when_the_connection_dies_are_kept(rig: Rig) -> None:
    async def hangs(doc: dict[str, Any]) -> bool:
        await asyncio.Event().wait()
        return True

    rig.manager._publish_ack = hangs
    task = asyncio.create_task(rig.manager.handle(payload(cmd())))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [a["status"] for a in rig.store.get_json(OUTBOX_KEY)] == ["received", "scheduled"]
    rig.manager._publish_ack = rig.publish
    await rig.manager.resend_pending_acks()
    assert rig.statuses() == ["received", "scheduled"]


# ----------------------------------------------------------------------------------- docs


def test_docs_examples_match_the_schemas() -> None:
    text = (REPO / "docs" / "mqtt-api.md").read_text()
    section = text.split("## Commands", 1)[1]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    assert blocks
    for block in blocks:
        doc = json.loads(block)
        name = "cmd-ack" if "status" in doc and "at" in doc else "cmd"
        errors = [e.message for e in validator(name).iter_errors(doc)]
        assert errors == [], (block, errors)


def test_schemas_are_valid_draft_2020_12() -> None:
    for name in ("cmd", "cmd-ack"):
        jsonschema.Draft202012Validator.check_schema(validator(name).schema)


# ----------------------------------------------------------------------------------- fuzz


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIFECYCLE = {"received", "scheduled", "superseded", "cancelled", "expired"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
FIELD_VALUES: dict[str, Any] = {
    "id": st.sampled_from(["c1", "c2", "", "x" * 200]) | json_values,
    "rev": st.integers(-2, 3) | json_values,
    "issued_at": st.sampled_from([iso(T0), iso(T0 - timedelta(days=1)), "soon"]),
    "kind": st.sampled_from([k.value for k in CommandKind] + ["ev"]),
    "start": st.sampled_from([iso(START), iso(T0), "2026-11-27T17:15:00+09:00", iso(END)]),
    "end": st.sampled_from([iso(END), iso(START), iso(T0 - timedelta(hours=1))]),
    "power_w": st.integers(-10, 30000) | json_values,
    "limit_w": st.integers(-1, 30000),
    "limit_pct": st.integers(-1, 101),
    "allow_export": st.booleans() | json_values,
    "priority": st.integers(-1, 1001),
    "randomize_s": st.integers(0, 4000),
    "test": st.booleans(),
    "status": st.sampled_from(["active", "cancelled", "other"]),
    "nonce": st.sampled_from(["nonce-fuzz-1", "nonce-fuzz-2", "short"]),
}


@st.composite
def commandish(draw: st.DrawFn) -> dict[str, Any]:
    """A valid command with a few fields replaced by odd values or dropped."""
    doc = cmd(id=draw(st.sampled_from(["c1", "c2"])), rev=draw(st.integers(0, 3)))
    names = sorted(FIELD_VALUES)
    for name in draw(st.sets(st.sampled_from(names), max_size=2)):
        doc[name] = draw(FIELD_VALUES[name])
    for name in draw(st.sets(st.sampled_from(names), max_size=2)):
        doc.pop(name, None)
    return doc


def fresh_rig() -> tuple[Rig, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory()
    return Rig(Path(tmp.name)), tmp


def check_answer(acks: list[dict[str, Any]]) -> None:
    """Exactly one rejection, or received followed by one outcome (plus losers told so)."""
    for a in acks:
        assert [e.message for e in validator("cmd-ack").iter_errors(a)] == [], a
    if acks[0]["status"] == "rejected":
        assert len(acks) == 1 and acks[0]["reason"]
        return
    assert acks[0]["status"] == "received" and acks[1]["status"] in LIFECYCLE - {"received"}
    assert all(a["status"] == "superseded" for a in acks[2:])


@FUZZ
@given(raw=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_arbitrary_bytes_are_answered_with_one_rejection(raw: bytes) -> None:
    rig, tmp = fresh_rig()
    try:
        acks = asyncio.run(rig.send(raw))
        assert len(acks) == 1 and acks[0]["status"] == "rejected", acks
        check_answer(acks)
        assert rig.store.commands() == []
    finally:
        rig.close()
        tmp.cleanup()


@FUZZ
@given(docs=st.lists(st.tuples(commandish(), st.booleans()), min_size=1, max_size=4))
def test_fuzz_commandish_documents_get_a_valid_answer(
    docs: list[tuple[dict[str, Any], bool]],
) -> None:
    rig, tmp = fresh_rig()
    try:
        for doc, signed in docs:
            raw = json.dumps(sign(doc) if signed else doc).encode()
            acks = asyncio.run(rig.send(raw))
            assert acks, doc
            event(
                acks[0]["status"] + (": " + acks[0]["reason"][:25] if "reason" in acks[0] else "")
            )
            if acks[0]["status"] in ("rejected", "received"):
                check_answer(acks)
            else:  # a duplicate or an older revision: the stored last ack, once
                assert len(acks) == 1
                assert list(validator("cmd-ack").iter_errors(acks[0])) == []
            for when in (T0, START, END):
                for family, active in rig.manager.active(when).items():
                    assert active.family is family and not active.test
                    assert active.effective_start <= when < active.end
    finally:
        rig.close()
        tmp.cleanup()


@FUZZ
@given(
    priority=st.integers(0, 1000),
    randomize_s=st.integers(0, 3599),
    test=st.booleans(),
    power_w=st.integers(1, 20000),
    slots=st.integers(1, 48),
)
def test_fuzz_valid_commands_are_accepted(
    priority: int, randomize_s: int, test: bool, power_w: int, slots: int
) -> None:
    """Every command inside the contract is accepted, its randomised start inside its window."""
    end = START + timedelta(minutes=30 * slots)
    randomize_s = randomize_s if randomize_s < slots * 1800 else 0
    doc = cmd(priority=priority, test=test, power_w=power_w, end=iso(end), randomize_s=randomize_s)
    rig, tmp = fresh_rig()
    try:
        acks = asyncio.run(rig.send(doc))
        assert [a["status"] for a in acks] == ["received", "scheduled"]
        effective = datetime.fromisoformat(acks[1]["effective_start"])
        assert START <= effective <= START + timedelta(seconds=randomize_s) < end
        assert (Family.BATTERY in rig.manager.active(effective)) is not test
    finally:
        rig.close()
        tmp.cleanup()
