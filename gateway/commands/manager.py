"""The DR command lifecycle: receive, judge, remember, schedule, and acknowledge every transition.

The manager never touches a device. It holds the accepted commands and answers the control loop's
one question, "what should be in force now?" (:meth:`CommandManager.active`); the control loop
puts the answer through the interlock and reports back what happened (``started``, ``completed``,
``aborted``), which the manager turns into acknowledgements.

Every state change is written to the store before its ack is published, so after a crash the
gateway neither forgets a command it acknowledged nor acts on one twice. Transitions are
synchronous (check and write with no ``await`` in between), so the single event loop needs no
lock for them; only publishing is awaited, under a lock that keeps acks in order.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from gateway.clock import JST, Clock
from gateway.commands import validate
from gateway.commands.model import (
    LIVE_STATES,
    AckStatus,
    ActiveCommand,
    CommandState,
    Family,
    ack,
    iso,
)
from gateway.commands.validate import Parsed, Rejection
from gateway.config import CommandsConfig
from gateway.logs import get_logger
from gateway.store import Store, StoreError

PublishAck = Callable[[dict[str, Any]], Awaitable[bool]]

#: kv key of the acks that could not be published yet, oldest first.
OUTBOX_KEY = "commands.ack_outbox"
#: A started command the control loop has not completed this long after its end (e.g. the
#: gateway was down at its end) is completed here, with the energy unknown.
COMPLETE_GRACE = timedelta(minutes=5)
#: Nonces are kept at least a day; the issued-at window rejects anything older.
MIN_NONCE_KEEP_S = 86400.0
_RULE = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True)
class _Held:
    """A live command and its stored document (wire fields plus the manager's local fields)."""

    cmd: ActiveCommand
    doc: dict[str, Any]


class CommandManager:
    """Owns the commands table; the uplink feeds :meth:`handle`, the control loop the rest.

    ``publish_ack`` publishes one ack on ``<p>/cmd/ack`` and returns False when it could not
    (offline); such acks are kept in the store and sent by :meth:`resend_pending_acks`.
    """

    def __init__(
        self,
        cfg: CommandsConfig,
        site: str,
        store: Store,
        clock: Clock,
        publish_ack: PublishAck,
        rng: random.Random | None = None,
        on_ack: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.site = site
        self.store = store
        self.clock = clock
        self._publish_ack = publish_ack
        self._rng = rng or random.Random()
        #: Hears every acknowledgement once, when it is produced (metrics count them by status).
        self.on_ack = on_ack
        self.log = get_logger("chisan.commands", site=site)
        validate.load_schemas()
        self._key, self.key_problem = validate.load_public_key(cfg.public_key_file)
        if self.key_problem and cfg.require_signature:
            self.log.error("DR commands will be rejected", reason=self.key_problem)
        elif not cfg.require_signature:
            self.log.warning("DR command signatures are not required (commands.require_signature)")
        self._live: dict[str, _Held] = {}
        self._publish_lock = asyncio.Lock()
        self._outbox: list[dict[str, Any]] = self._load_outbox()
        self._load_live()

    # ------------------------------------------------------------------ reads (control loop)

    def active(self, now: datetime) -> dict[Family, ActiveCommand]:
        """Per family, the command that should be in force at ``now``: accepted, not a test, and
        inside [effective_start, end). Pure: expiry is :meth:`tick`'s business."""
        best: dict[Family, ActiveCommand] = {}
        for held in self._live.values():
            cmd = held.cmd
            if cmd.test or not cmd.in_window(now):
                continue
            current = best.get(cmd.family)
            if current is None or cmd.beats(current):
                best[cmd.family] = cmd
        return best

    def upcoming(self, now: datetime) -> list[ActiveCommand]:
        """Accepted commands (test ones included) that have not reached their effective start,
        soonest first; for status displays."""
        waiting = [
            h.cmd
            for h in self._live.values()
            if h.cmd.state is CommandState.SCHEDULED and now < h.cmd.effective_start
        ]
        return sorted(waiting, key=lambda c: (c.effective_start, c.id))

    @property
    def pending_acks(self) -> int:
        return len(self._outbox)

    # ------------------------------------------------------------------ the uplink's callback

    async def handle(self, payload: bytes) -> None:
        """Judge one payload from ``<p>/cmd`` and answer it. Never raises: a bad command must not
        take the uplink down, and whatever goes wrong is answered with ``rejected``."""
        try:
            acks = self._receive(bytes(payload))
        except Exception as exc:
            self.log.error("command handling failed", exc_info=exc)
            acks = [ack(None, None, AckStatus.REJECTED, self.clock.now(), reason="internal error")]
        await self._emit(acks)

    def _receive(self, payload: bytes) -> list[dict[str, Any]]:
        now = self.clock.now()
        decoded = validate.decode(payload, self.cfg.max_payload_bytes)
        if isinstance(decoded, Rejection):
            return self._reject(decoded, now, payload)
        doc = decoded
        cmd_id, rev = validate.usable_ref(doc)
        try:
            if cmd_id is not None and rev is not None:
                known = self._known(doc, cmd_id, rev)
                if known is not None:
                    return known
            problem = validate.schema_problem(doc)
            if problem is not None:
                return self._reject(Rejection(problem, cmd_id, rev), now, payload)
            assert cmd_id is not None and rev is not None  # the schema demands both
            return self._receive_new(doc, cmd_id, rev, now)
        except StoreError as exc:
            self.log.error("store failed while handling a command", id=cmd_id, error=str(exc))
            return self._reject(Rejection("gateway storage error", cmd_id, rev), now, payload)

    def _known(self, doc: dict[str, Any], cmd_id: str, rev: int) -> list[dict[str, Any]] | None:
        """The answer to a revision the store already has (or has a newer one of), else None.

        Same rev: a duplicate delivery. Lower rev: an old revision, ignored. Either way the answer
        is the stored revision's last ack and nothing acts again. This is judged before the
        schema, so an (id, rev) the gateway holds is never answered "rejected": the backend sees
        one coherent history per revision.
        """
        stored = self.store.get_command(cmd_id)
        if stored is None or rev > stored.rev:
            return None
        what = "duplicate" if rev == stored.rev else "older revision ignored"
        self.log.info(
            f"command {what}", id=cmd_id, rev=rev, stored_rev=stored.rev, state=stored.state
        )
        if rev == stored.rev and _wire(stored.command) != doc:
            self.log.warning("duplicate command differs from the stored one", id=cmd_id, rev=rev)
        return [stored.last_ack] if stored.last_ack is not None else []

    def _receive_new(
        self, doc: dict[str, Any], cmd_id: str, rev: int, now: datetime
    ) -> list[dict[str, Any]]:
        """A schema-valid revision newer than anything stored under its id."""
        parsed = validate.interpret(doc)
        if isinstance(parsed, Rejection):
            return self._reject(parsed, now)
        problem = validate.signature_problem(
            doc, self._key, self.key_problem, self.cfg.require_signature
        )
        if problem is not None:
            return self._reject(Rejection(problem, cmd_id, rev), now)
        window = self.cfg.issued_at_window_s
        skew = (parsed.issued_at - now).total_seconds()
        if abs(skew) > window:
            return self._reject(
                Rejection(
                    f"issued_at {doc['issued_at']} is outside the ±{window:g} s window around "
                    f"the gateway's clock ({iso(now)})",
                    cmd_id,
                    rev,
                ),
                now,
            )
        keep = max(MIN_NONCE_KEEP_S, 2 * window)
        if not self.store.remember_nonce(parsed.nonce, now, keep_s=keep):
            return self._reject(Rejection("replayed nonce", cmd_id, rev), now)
        stored = self.store.get_command(cmd_id)
        return self._accept(parsed, stored.command if stored is not None else None, now)

    def _reject(
        self, rejection: Rejection, now: datetime, payload: bytes | None = None
    ) -> list[dict[str, Any]]:
        self.log.warning(
            "command rejected",
            id=rejection.cmd_id,
            rev=rejection.rev,
            reason=rejection.reason,
            payload=payload[:200] if payload is not None else None,
        )
        reason = rejection.reason or "rejected"
        return [ack(rejection.cmd_id, rejection.rev, AckStatus.REJECTED, now, reason=reason)]

    def _accept(
        self, parsed: Parsed, previous: dict[str, Any] | None, now: datetime
    ) -> list[dict[str, Any]]:
        """A valid new revision: ``received``, then what became of it."""
        cmd_id, rev, test = parsed.id, parsed.rev, parsed.test
        acks = [ack(cmd_id, rev, AckStatus.RECEIVED, now, test=test)]
        cmd = parsed.command
        if cmd is None:  # a cancellation, also of an id never seen: an older rev stays ignored
            self._live.pop(cmd_id, None)
            last = ack(cmd_id, rev, AckStatus.CANCELLED, now, test=test)
            self._put_logged(cmd_id, rev, parsed.doc, CommandState.CANCELLED, now, last)
            self.log.info("command cancelled", id=cmd_id, rev=rev)
            return [*acks, last]
        if cmd.end <= now:
            self._live.pop(cmd_id, None)
            reason = f"its end {iso(cmd.end)} had passed on arrival"
            last = ack(cmd_id, rev, AckStatus.EXPIRED, now, test=test, reason=reason)
            self._put_logged(cmd_id, rev, parsed.doc, CommandState.EXPIRED, now, last)
            self.log.info("command expired on arrival", id=cmd_id, rev=rev)
            return [*acks, last]
        cmd = replace(cmd, effective_start=self._effective_start(parsed, cmd, previous))
        doc = {**parsed.doc, "effective_start": iso(cmd.effective_start)}
        rivals = [] if cmd.test else self._rivals(cmd)
        stronger = [r for r in rivals if not cmd.beats(r)]
        if stronger:
            winner = max(stronger, key=lambda r: (r.priority, r.issued_at))
            self._live.pop(cmd_id, None)
            last = ack(cmd_id, rev, AckStatus.SUPERSEDED, now, superseded_by=winner.ref)
            self._put_logged(cmd_id, rev, doc, CommandState.SUPERSEDED, now, last)
            self.log.info("command superseded on arrival", id=cmd_id, rev=rev, by=winner.ref)
            return [*acks, last]
        last = ack(
            cmd_id,
            rev,
            AckStatus.SCHEDULED,
            now,
            test=test,
            effective_start=iso(cmd.effective_start),
        )
        # Only a command the store remembers may act: a failure here is a StoreError, answered
        # "rejected" by the caller while the previous revision (if any) stays as it was.
        self.store.put_command(cmd_id, rev, doc, CommandState.SCHEDULED.value, now, last)
        self._live[cmd_id] = _Held(cmd, doc)
        self.log.info(
            "command scheduled",
            id=cmd_id,
            rev=rev,
            kind=cmd.kind.value,
            start=iso(cmd.start),
            effective_start=iso(cmd.effective_start),
            end=iso(cmd.end),
            test=cmd.test,
        )
        out = [*acks, last]
        for loser in rivals:
            out.extend(self._supersede(loser, cmd, now))
        return out

    def _effective_start(
        self, parsed: Parsed, cmd: ActiveCommand, previous: dict[str, Any] | None
    ) -> datetime:
        """Drawn once: a new revision with the same start and randomisation keeps the earlier
        draw, so revising a running command's power does not move its start."""
        randomize_s = int(parsed.doc.get("randomize_s", 0))
        if previous is not None and "effective_start" in previous:
            same = (
                previous.get("start") == parsed.doc.get("start")
                and int(previous.get("randomize_s", 0)) == randomize_s
            )
            if same:
                try:
                    kept = datetime.fromisoformat(str(previous["effective_start"])).astimezone(JST)
                except ValueError:
                    kept = None
                if kept is not None and cmd.start <= kept < cmd.end:
                    return kept
        if randomize_s <= 0:
            return cmd.start
        return cmd.start + timedelta(seconds=self._rng.randint(0, randomize_s))

    def _rivals(self, cmd: ActiveCommand) -> list[ActiveCommand]:
        return [
            h.cmd
            for h in self._live.values()
            if h.cmd.id != cmd.id
            and not h.cmd.test
            and h.cmd.family is cmd.family
            and h.cmd.overlaps(cmd)
        ]

    def _supersede(
        self, loser: ActiveCommand, winner: ActiveCommand, now: datetime
    ) -> list[dict[str, Any]]:
        held = self._live.pop(loser.id, None)
        if held is None:
            return []
        last = ack(loser.id, loser.rev, AckStatus.SUPERSEDED, now, superseded_by=winner.ref)
        self._put_logged(loser.id, loser.rev, held.doc, CommandState.SUPERSEDED, now, last)
        self.log.info("command superseded", id=loser.id, rev=loser.rev, by=winner.ref)
        return [last]

    # ------------------------------------------------------------------ reports from control

    async def started(
        self,
        cmd_id: str,
        rev: int,
        *,
        clamped_by: str | None = None,
        allowed_w: float | None = None,
        detail: str = "",
    ) -> None:
        """The control loop put the command in force. With ``clamped_by`` the interlock limited
        it: ``started`` is acknowledged, then ``clamped`` (two acks, in that order)."""
        acks = self._guard(lambda: self._start(cmd_id, rev, clamped_by, allowed_w, detail))
        await self._emit(acks)

    async def clamped(
        self, cmd_id: str, rev: int, clamped_by: str, allowed_w: float, detail: str = ""
    ) -> None:
        """A started command was limited later (e.g. the SOC reached the reserve); reported once
        per revision, like every transition: later clamps only go to the log."""
        acks = self._guard(lambda: self._clamp(cmd_id, rev, clamped_by, allowed_w, detail))
        await self._emit(acks)

    async def completed(self, cmd_id: str, rev: int, delivered_wh: int | None) -> None:
        """A started command reached its end; ``delivered_wh`` None when the energy is unknown."""
        acks = self._guard(lambda: self._complete(cmd_id, rev, delivered_wh))
        await self._emit(acks)

    async def aborted(self, cmd_id: str, rev: int, reason: str) -> None:
        """A scheduled or started command will not (any longer) act: fail-safe, override…"""
        acks = self._guard(lambda: self._abort(cmd_id, rev, reason))
        await self._emit(acks)

    def _guard(self, transition: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The control loop must keep running whatever a report runs into."""
        try:
            return transition()
        except Exception as exc:
            self.log.error("command transition failed", exc_info=exc)
            return []

    def _held(self, cmd_id: str, rev: int, what: str) -> _Held | None:
        held = self._live.get(cmd_id)
        if held is None or held.cmd.rev != rev:
            current = None if held is None else held.cmd.rev
            self.log.warning(
                f"{what} report for a command that is not live ignored",
                id=cmd_id,
                rev=rev,
                live_rev=current,
            )
            return None
        return held

    def _start(
        self,
        cmd_id: str,
        rev: int,
        clamped_by: str | None,
        allowed_w: float | None,
        detail: str,
    ) -> list[dict[str, Any]]:
        held = self._held(cmd_id, rev, "started")
        if held is None:
            return []
        if held.cmd.test:
            self.log.warning("test command is never started", id=cmd_id, rev=rev)
            return []
        if held.cmd.state is not CommandState.SCHEDULED:
            self.log.debug("command already started", id=cmd_id, rev=rev)
            return []
        now = self.clock.now()
        acks = [ack(cmd_id, rev, AckStatus.STARTED, now, detail=_text(detail))]
        doc = held.doc
        if clamped_by is not None:
            acks.append(self._clamp_ack(held, clamped_by, allowed_w, detail, now))
            doc = {**doc, "clamped": True}
        cmd = replace(held.cmd, state=CommandState.STARTED)
        self._live[cmd_id] = _Held(cmd, doc)
        self._put_logged(cmd_id, rev, doc, CommandState.STARTED, now, acks[-1])
        self.log.info("command started", id=cmd_id, rev=rev, clamped_by=clamped_by)
        return acks

    def _clamp(
        self, cmd_id: str, rev: int, clamped_by: str, allowed_w: float | None, detail: str
    ) -> list[dict[str, Any]]:
        held = self._held(cmd_id, rev, "clamped")
        if held is None:
            return []
        if held.cmd.state is not CommandState.STARTED:
            self.log.warning("clamp report for a command not started ignored", id=cmd_id, rev=rev)
            return []
        if held.doc.get("clamped"):
            self.log.info("command clamped again", id=cmd_id, rev=rev, clamped_by=clamped_by)
            return []
        now = self.clock.now()
        last = self._clamp_ack(held, clamped_by, allowed_w, detail, now)
        doc = {**held.doc, "clamped": True}
        self._live[cmd_id] = _Held(held.cmd, doc)
        self._put_logged(cmd_id, rev, doc, CommandState.STARTED, now, last)
        return [last]

    def _clamp_ack(
        self,
        held: _Held,
        clamped_by: str,
        allowed_w: float | None,
        detail: str,
        now: datetime,
    ) -> dict[str, Any]:
        rule = _RULE.sub("_", str(clamped_by).lower()).strip("_") or "unknown"
        if not rule[0].isalpha():
            rule = "rule_" + rule
        watts = 0
        if allowed_w is None or not math.isfinite(allowed_w):
            self.log.warning("clamp without a usable allowed_w: reported as 0", id=held.cmd.id)
        else:
            watts = max(0, math.floor(allowed_w))
        self.log.info("command clamped", id=held.cmd.id, rule=rule, allowed_w=watts)
        return ack(
            held.cmd.id,
            held.cmd.rev,
            AckStatus.CLAMPED,
            now,
            clamped_by=rule,
            allowed_w=watts,
            detail=_text(detail),
        )

    def _complete(self, cmd_id: str, rev: int, delivered_wh: int | None) -> list[dict[str, Any]]:
        held = self._held(cmd_id, rev, "completed")
        if held is None:
            return []
        if held.cmd.state is not CommandState.STARTED:
            self.log.warning("completion of a command never started ignored", id=cmd_id, rev=rev)
            return []
        energy: int | None = None
        if isinstance(delivered_wh, int) and not isinstance(delivered_wh, bool):
            energy = delivered_wh if delivered_wh >= 0 else None
        if energy is None and delivered_wh is not None:
            self.log.warning("unusable delivered_wh reported as unknown", value=repr(delivered_wh))
        return self._finish(held, CommandState.COMPLETED, self.clock.now(), delivered_wh=energy)

    def _abort(self, cmd_id: str, rev: int, reason: str) -> list[dict[str, Any]]:
        held = self._held(cmd_id, rev, "aborted")
        if held is None:
            return []
        why = _text(reason) or "aborted by the gateway"
        return self._finish(held, CommandState.ABORTED, self.clock.now(), reason=why)

    def _finish(
        self, held: _Held, state: CommandState, now: datetime, **fields: Any
    ) -> list[dict[str, Any]]:
        cmd = held.cmd
        last = ack(cmd.id, cmd.rev, AckStatus(state.value), now, test=cmd.test, **fields)
        self._live.pop(cmd.id, None)
        self._put_logged(cmd.id, cmd.rev, held.doc, state, now, last)
        self.log.info(f"command {state.value}", id=cmd.id, rev=cmd.rev, **fields)
        return [last]

    # ------------------------------------------------------------------ time passing

    async def tick(self, now: datetime) -> None:
        """Close what time has closed: a command whose end passed without starting expires (a
        test command completes: it was never meant to start); a started one the control loop
        has not completed within :data:`COMPLETE_GRACE` of its end is completed, energy unknown.
        Also retries acks still waiting to be published."""
        acks = self._guard(lambda: self._expire(now))
        if acks:
            await self._emit(acks)
        elif self._outbox:
            await self.resend_pending_acks()

    def _expire(self, now: datetime) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for held in sorted(self._live.values(), key=lambda h: (h.cmd.end, h.cmd.id)):
            cmd = held.cmd
            if cmd.state is CommandState.SCHEDULED and cmd.end <= now:
                if cmd.test:
                    out += self._finish(held, CommandState.COMPLETED, now, delivered_wh=None)
                else:
                    reason = f"not started before its end {iso(cmd.end)}"
                    out += self._finish(held, CommandState.EXPIRED, now, reason=reason)
            elif cmd.state is CommandState.STARTED and cmd.end + COMPLETE_GRACE <= now:
                detail = "completed by the gateway: no report from the control loop"
                out += self._finish(
                    held, CommandState.COMPLETED, now, delivered_wh=None, detail=detail
                )
        return out

    # ------------------------------------------------------------------ publishing

    async def resend_pending_acks(self) -> None:
        """Publish the acks kept while offline, oldest first, each once; stops at the first that
        fails again (the rest wait for the next call). Call it after every reconnect."""
        async with self._publish_lock:
            await self._flush()

    async def _emit(self, acks: Iterable[dict[str, Any]]) -> None:
        """Publish in order; from the first failure on, keep the rest in the store. While older
        acks wait, new ones queue behind them so the backend sees transitions in order. Acks
        not yet out when the call is cancelled (the uplink tears a dead connection's tasks
        down) are kept too."""
        pending = list(acks)
        if self.on_ack is not None:
            for one in pending:
                try:
                    self.on_ack(one)
                except Exception as exc:  # an observer's bug must not lose the ack
                    self.log.warning("ack observer failed", error=str(exc))
        try:
            async with self._publish_lock:
                if self._outbox:
                    self._queue(pending)
                    pending = []
                    await self._flush()
                    return
                while pending and await self._publish(pending[0]):
                    pending.pop(0)
        finally:
            if pending:
                self._queue(pending)
                self.log.info("command acks queued until the uplink is back", count=len(pending))

    def _queue(self, acks: list[dict[str, Any]]) -> None:
        self._outbox.extend(acks)
        self._save_outbox()

    async def _flush(self) -> None:
        sent = 0
        while self._outbox:
            if not await self._publish(self._outbox[0]):
                break
            self._outbox.pop(0)
            self._save_outbox()  # after each one: a crash re-sends at most one ack
            sent += 1
        if sent:
            self.log.info("queued command acks sent", count=sent, left=len(self._outbox))

    async def _publish(self, one: dict[str, Any]) -> bool:
        try:
            return bool(await self._publish_ack(one))
        except Exception as exc:  # the publisher's bug must not lose the ack
            self.log.warning("publishing a command ack failed", error=str(exc))
            return False

    # ------------------------------------------------------------------ persistence

    def _put_logged(
        self,
        cmd_id: str,
        rev: int,
        doc: dict[str, Any],
        state: CommandState,
        now: datetime,
        last: dict[str, Any],
    ) -> None:
        """Persist a transition that has happened whatever the store says (the command stopped
        acting, or acted); a failure is logged, and the ack still goes out."""
        try:
            self.store.put_command(cmd_id, rev, doc, state.value, now, last)
        except StoreError as exc:
            self.log.error("command state not stored", id=cmd_id, state=state.value, error=str(exc))

    def _load_outbox(self) -> list[dict[str, Any]]:
        try:
            value = self.store.get_json(OUTBOX_KEY, [])
        except StoreError as exc:
            self.log.error("queued command acks unreadable", error=str(exc))
            return []
        return [a for a in value if isinstance(a, dict)] if isinstance(value, list) else []

    def _save_outbox(self) -> None:
        try:
            self.store.put_json(OUTBOX_KEY, self._outbox)
        except StoreError as exc:
            self.log.error("queued command acks not stored", error=str(exc))

    def _load_live(self) -> None:
        """Resume after a restart: live commands come back as they were (a started one still
        started, its randomised start as drawn). One that can no longer be read is aborted."""
        now = self.clock.now()
        for stored in self.store.commands(states=[s.value for s in LIVE_STATES]):
            held = _revive(stored.id, stored.rev, stored.command, stored.state)
            if held is not None:
                self._live[stored.id] = held
                continue
            self.log.error("stored command unreadable: aborted", id=stored.id, rev=stored.rev)
            last = ack(
                stored.id,
                stored.rev,
                AckStatus.ABORTED,
                now,
                reason="stored command could not be read back after a restart",
            )
            self._put_logged(stored.id, stored.rev, stored.command, CommandState.ABORTED, now, last)
            self._outbox.append(last)
        if self._outbox:
            self._save_outbox()
        if self._live:
            self.log.info("commands resumed", count=len(self._live))


def _wire(stored: dict[str, Any]) -> dict[str, Any]:
    """The command as it came over the wire, without the manager's local fields."""
    return {k: v for k, v in stored.items() if k not in validate.LOCAL_FIELDS}


def _revive(cmd_id: str, rev: int, stored: dict[str, Any], state: str) -> _Held | None:
    try:
        parsed = validate.interpret(_wire(stored))
        if isinstance(parsed, Rejection) or parsed.command is None:
            return None
        if parsed.id != cmd_id or parsed.rev != rev:
            return None
        effective = datetime.fromisoformat(str(stored["effective_start"])).astimezone(JST)
        cmd = replace(parsed.command, effective_start=effective, state=CommandState(state))
    except (KeyError, ValueError, TypeError):
        return None
    return _Held(cmd, dict(stored))


def _text(value: str) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    return text if len(text) <= validate.MAX_REASON else text[: validate.MAX_REASON - 1] + "…"
