"""A small reference market backend: stores and acknowledges slot records, dispatches DR commands.

It follows docs/mqtt-api.md from the other side: records are kept by ``seq`` (duplicates are
acknowledged again), ``<p>/slot/ack`` names the highest seq up to which everything is stored,
commands are signed with the backend's Ed25519 key over their canonical JSON, and every
``cmd/ack``, ``dr/report``, telemetry and alarm message is kept for the demo's view and summary.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.demo.schedule import Dispatch
from gateway.provenance import canonical_json
from gateway.slots import iso

#: (kind, text): one line of what happened, for the view.
Feed = Callable[[str, str], None]


@dataclass
class SentCommand:
    dispatch: Dispatch
    doc: dict[str, Any]
    statuses: list[str] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None


@dataclass
class ReferenceBackend:
    port: int
    site: str
    key: Ed25519PrivateKey
    feed: Feed
    prefix: str = "chisan/v1"
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    acked_upto: int = 0
    telemetry: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, SentCommand] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    stray_acks: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    #: Slots before this are the meter's history the gateway backfills, not the demo's day.
    live_from: datetime | None = None

    def __post_init__(self) -> None:
        self.base = f"{self.prefix}/{self.site}"
        self.client: aiomqtt.Client | None = None
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ commands

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        signed = dict(doc)
        signed["sig"] = base64.b64encode(self.key.sign(canonical_json(doc))).decode()
        return signed

    async def dispatch(self, d: Dispatch, now: datetime) -> None:
        p = d.plan
        doc: dict[str, Any] = {
            "id": d.id,
            "rev": 1,
            "issued_at": iso(now.replace(microsecond=0)),
            "kind": p.kind,
            "start": iso(d.start),
            "end": iso(d.end),
            "priority": 10,
            "status": "active",
            "nonce": f"{d.id}-{now:%H%M%S%f}",
        }
        if p.power_w is not None:
            doc["power_w"] = p.power_w
        if p.kind == "battery_discharge":
            doc["allow_export"] = p.allow_export
        signed = self.sign(doc)
        self.commands[d.id] = SentCommand(d, signed)
        setpoint = f" {p.power_w} W" if p.power_w is not None else ""
        export = " with export" if p.allow_export else ""
        self.feed(
            "cmd",
            f"backend → {p.label} {p.kind}{setpoint}{export} "
            f"{d.start:%H:%M}–{d.end:%H:%M} ({d.id})",
        )
        if self.client is None:
            raise RuntimeError("the backend is not connected")
        await self.client.publish(f"{self.base}/cmd", json.dumps(signed), qos=1)

    # ------------------------------------------------------------------ receiving

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier=f"backend-{self.site}",
                    keepalive=10,
                    # Each ack waits for its PUBACK: with Nagle on, that costs the peer's
                    # delayed-ACK timer (~40 ms) per record.
                    socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                ) as client:
                    await client.subscribe(f"{self.base}/#", qos=1)
                    self.client = client
                    self.ready.set()
                    async for message in client.messages:
                        topic = str(message.topic)[len(self.base) + 1 :]
                        try:
                            doc = json.loads(message.payload)
                        except (TypeError, ValueError):
                            self.feed("warn", f"not JSON on {topic}")
                            continue
                        if isinstance(doc, dict):
                            await self._handle(client, topic, doc)
            except aiomqtt.MqttError:
                self.client = None
                self.ready.clear()
                await asyncio.sleep(0.2)

    async def _handle(self, client: aiomqtt.Client, topic: str, doc: dict[str, Any]) -> None:
        if topic == "slot":
            self._store(doc)
            upto = self.acked_upto
            while upto + 1 in self.records:
                upto += 1
            if upto:  # also after a duplicate: the gateway may have lost the earlier ack
                self.acked_upto = upto
                await client.publish(f"{self.base}/slot/ack", json.dumps({"seq": upto}), qos=1)
        elif topic == "telemetry":
            self.telemetry = doc
        elif topic == "state":
            self.state = doc
        elif topic == "alarm":
            self.alarms.append(doc)
            state = "raised" if doc.get("active") else "cleared"
            self.feed("alarm", f"alarm {doc.get('kind')} {state}: {doc.get('message', '')}")
        elif topic == "cmd/ack":
            self._ack(doc)
        elif topic == "dr/report":
            self._report(doc)

    def _store(self, doc: dict[str, Any]) -> None:
        seq = doc.get("seq")
        if not isinstance(seq, int) or seq < 1:
            self.feed("warn", f"slot record without a usable seq: {str(doc)[:80]}")
            return
        new = seq not in self.records
        self.records[seq] = doc
        if new:
            self.feed("slot" if self.is_live(doc) else "history", _slot_line(doc))

    def is_live(self, doc: dict[str, Any]) -> bool:
        if self.live_from is None:
            return True
        try:
            return datetime.fromisoformat(str(doc.get("slot_start"))) >= self.live_from
        except ValueError:
            return False

    def _ack(self, doc: dict[str, Any]) -> None:
        sent = self.commands.get(str(doc.get("id")))
        status = str(doc.get("status"))
        if sent is None:
            self.stray_acks.append(doc)
            self.feed("ack", f"ack for an unknown command: {doc}")
            return
        sent.statuses.append(status)
        sent.acks.append(doc)
        extra = ""
        if status == "clamped":
            extra = f" by {doc.get('clamped_by')} to {doc.get('allowed_w')} W"
        elif status == "completed":
            extra = f", delivered {doc.get('delivered_wh')} Wh (device counters)"
        elif status in ("rejected", "aborted", "expired"):
            extra = f": {doc.get('reason')}"
        self.feed("ack", f"gateway ← {sent.dispatch.plan.kind} {status}{extra}")

    def _report(self, doc: dict[str, Any]) -> None:
        sent = self.commands.get(str(doc.get("id")))
        if sent is not None:
            sent.report = doc
        if doc.get("ok"):
            text = (
                f"DR report {doc.get('kind')}: delivered {doc.get('delivered_wh')} Wh "
                f"(baseline {doc.get('baseline_wh')} Wh, actual {doc.get('actual_wh')} Wh, "
                f"{doc.get('method')})"
            )
        else:
            text = f"DR report {doc.get('kind')}: no baseline ({doc.get('reason')})"
        self.feed("report", text)

    # ------------------------------------------------------------------ views of the store

    def newest_by_slot(self) -> dict[str, dict[str, Any]]:
        """The highest revision of each slot, as the market settles it."""
        out: dict[str, dict[str, Any]] = {}
        for seq in sorted(self.records):
            rec = self.records[seq]
            key = str(rec.get("slot_start"))
            if key not in out or int(rec.get("rev", 0)) >= int(out[key].get("rev", 0)):
                out[key] = rec
        return out


def _slot_line(doc: dict[str, Any]) -> str:
    def wh(v: Any) -> str:
        return "—" if v is None else f"{v} Wh"

    start = str(doc.get("slot_start", ""))[5:16].replace("T", " ")
    return (
        f"slot {start} import {wh(doc.get('import_wh'))} export {wh(doc.get('export_wh'))} "
        f"{doc.get('source')} rev {doc.get('rev')} seq {doc.get('seq')}"
    )
