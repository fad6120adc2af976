"""The MQTT uplink: owns the broker connection, drains the durable outbox, hears acks and commands.

PUBACK is one hop: a broker that crashes loses acknowledged messages. A settlement record is
therefore delivered only when the *backend* acknowledges it on ``<p>/slot/ack`` after storing it;
until then it stays in the store and is sent again after a reconnect or an ack timeout, oldest
first. aiomqtt has no reconnect of its own, so :meth:`Uplink.run` is the supervisor around it:
connect, run the session's tasks, and on any MQTT error back off (capped, fully jittered, so a
fleet of 300 gateways does not reconnect in step) and start again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.clock import Clock
from gateway.config import MqttConfig
from gateway.logs import get_logger
from gateway.provenance import canonical_json
from gateway.slots import iso
from gateway.store import UnknownSeq


class Outbox(Protocol):
    """What the uplink needs from the store."""

    def undelivered(self, limit: int) -> list[dict[str, Any]]: ...

    def ack_upto(self, seq: int) -> int: ...

    def max_seq(self) -> int: ...

    def pending_alarms(self) -> list[dict[str, Any]]: ...

    def alarm_sent(self, alarm_id: int) -> bool: ...


CommandHandler = Callable[[bytes], Awaitable[None]]


@dataclass
class UplinkStats:
    connects: int = 0
    published: int = 0
    resent: int = 0
    acked: int = 0
    bad_acks: int = 0
    dead_links: int = 0
    connected: bool = False


class Topics:
    def __init__(self, prefix: str, site: str) -> None:
        base = f"{prefix}/{site}"
        self.base = base
        self.state = f"{base}/state"
        self.slot = f"{base}/slot"
        self.slot_ack = f"{base}/slot/ack"
        self.telemetry = f"{base}/telemetry"
        self.alarm = f"{base}/alarm"
        self.cmd = f"{base}/cmd"
        self.cmd_ack = f"{base}/cmd/ack"
        self.dr_report = f"{base}/dr/report"


class TokenBucket:
    """Rate limit for publishing a backlog: ``rate`` per second with a burst of ``burst``."""

    def __init__(self, clock: Clock, rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = clock.monotonic()

    async def take(self) -> None:
        while True:
            now = self.clock.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await self.clock.sleep((1 - self.tokens) / self.rate)


class AckError(ValueError):
    """A slot ack that is not ``{"seq": N}`` with N a non-negative integer."""


#: An ack is ``{"seq": N}``; anything much longer is not one and is refused unread.
MAX_ACK_BYTES = 1024


def parse_slot_ack(data: bytes) -> int:
    """The sequence number a backend ack covers; :class:`AckError` for anything else.

    The backend is trusted to store records, not to send well-formed bytes: a malformed ack
    (deeply nested JSON included, which makes the json module recurse until it gives up) must
    cost one warning, never the session.
    """
    if len(data) > MAX_ACK_BYTES:
        raise AckError(f"ack of {len(data)} bytes is longer than {MAX_ACK_BYTES}")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise AckError("ack nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, oversized integers
        raise AckError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AckError("ack is not a JSON object")
    if "seq" not in doc:
        raise AckError("ack has no seq")
    seq = doc["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise AckError("seq must be a non-negative integer")
    return seq


@dataclass
class Uplink:
    cfg: MqttConfig
    site: str
    outbox: Outbox
    clock: Clock
    version: str = "0"
    on_command: CommandHandler | None = None
    telemetry: Callable[[], dict[str, Any]] | None = None
    state_extra: Callable[[], dict[str, Any]] | None = None
    password: str | None = None
    #: Hears each slot record the backend acknowledged (the metrics' slot-to-ack delay).
    on_slot_acked: Callable[[dict[str, Any]], None] | None = None
    window: int = 100
    name: str = "uplink"
    stats: UplinkStats = field(default_factory=UplinkStats)

    def __post_init__(self) -> None:
        self.topics = Topics(self.cfg.topic_prefix, self.site)
        self.log = get_logger("chisan.uplink", site=self.site)
        self._wake = asyncio.Event()
        self._wake_alarms = asyncio.Event()
        self._connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._sent_at: dict[int, float] = {}
        self._awaiting: dict[int, dict[str, Any]] = {}  # for on_slot_acked only
        self._acked_upto = 0  # acknowledged by the backend, maybe not yet written to the store
        self._ack_dirty = asyncio.Event()
        self._since = iso(clock_now(self.clock))
        self._bucket = TokenBucket(self.clock, self.cfg.resend_per_s, max(1.0, self.window))

    # ------------------------------------------------------------------ public API

    def notify(self) -> None:
        """New records or alarms are in the store: wake the drain."""
        self._wake.set()
        self._wake_alarms.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> bool:
        """Publish now if connected (command acks, reports); False when offline."""
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        try:
            await client.publish(topic, canonical_json(payload), qos=qos, timeout=10)
        except aiomqtt.MqttError as exc:
            self.log.warning("publish failed", topic=topic, error=str(exc))
            return False
        return True

    # ------------------------------------------------------------------ connection supervisor

    def _client_for(self) -> aiomqtt.Client:
        c = self.cfg
        v5 = c.protocol == "5"
        will = aiomqtt.Will(
            self.topics.state, canonical_json({"online": False}), qos=1, retain=True
        )
        tls: aiomqtt.TLSParameters | None = None
        if c.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(c.ca_file) if c.ca_file else None,
                certfile=str(c.cert_file) if c.cert_file else None,
                keyfile=str(c.key_file) if c.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        props: Properties | None = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = c.session_expiry_s
        return aiomqtt.Client(
            c.host,
            c.port,
            identifier=c.client_id,
            username=c.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=will,
            keepalive=c.keepalive_s,
            clean_session=None if v5 else False,
            clean_start=False if v5 else 3,
            properties=props,
            tls_params=tls,
            logger=logging.getLogger("chisan.mqtt"),
            # paho leaves Nagle on: a small command ack would wait for the peer's delayed ACK.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            timeout=10,
            max_queued_incoming_messages=1000,
            max_inflight_messages=self.window,
        )

    async def run(self) -> None:
        failures = 0
        while True:
            client = self._client_for()
            try:
                async with client:
                    failures = 0
                    self.stats.connects += 1
                    await self._session(client)
            except* aiomqtt.MqttError as group:
                # The session's TaskGroup wraps the MQTT error; anything else is a bug and goes
                # up to the supervisor.
                failures += 1
                errors = "; ".join(str(e) for e in group.exceptions)
                self.log.warning("broker connection lost", error=errors, failures=failures)
            finally:
                self._client = None
                self._connected.clear()
                self.stats.connected = False
            delay = reconnect_delay(failures, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
            await self.clock.sleep(delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._sent_at.clear()  # everything unacknowledged goes out again on a new connection
        await client.publish(self.topics.state, canonical_json(self._state()), qos=1, retain=True)
        await client.subscribe(self.topics.slot_ack, qos=1)
        await client.subscribe(self.topics.cmd, qos=1)
        self._connected.set()
        self.stats.connected = True
        self.log.info("connected to broker", url=self.cfg.url, client_id=self.cfg.client_id)
        self.notify()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._receive(client))
            group.create_task(self._drain(client))
            group.create_task(self._alarms(client))
            group.create_task(self._persist_acks())
            group.create_task(self._watchdog(client))
            if self.telemetry is not None:
                group.create_task(self._telemetry(client))

    async def _watchdog(self, client: aiomqtt.Client) -> None:
        """Declare the link dead when the broker has been silent for 1.5 keepalive periods.

        paho pings only after a whole keepalive without traffic and gives up one more period
        later: up to twice the keepalive on a link that silently drops everything (a router
        losing its NAT entry). On a live link the broker answers that ping, so nothing is ever
        silent for longer than a keepalive and a second; waiting for half a period more is safe.
        """
        limit = 1.5 * self.cfg.keepalive_s
        paho = client._client  # the last-byte-received stamp is only kept there
        heard = time.monotonic()
        while True:
            stamp = getattr(paho, "_last_bytes_received", None)
            ping = getattr(paho, "_ping_t", None)
            if not isinstance(stamp, float) or not isinstance(ping, int | float):
                return  # pragma: no cover - another paho: rely on its own keepalive
            # paho also resets the stamp when it sends a ping; while that ping is unanswered,
            # only bytes that came after it count.
            if not ping or stamp > ping:
                heard = max(heard, stamp)
            silent = time.monotonic() - heard
            if silent >= limit:
                self._connected.clear()
                self.stats.connected = False
                self.stats.dead_links += 1
                raise aiomqtt.MqttError(
                    f"broker silent for {silent:.1f} s (keepalive {self.cfg.keepalive_s} s)"
                )
            await asyncio.sleep(min(0.25, limit - silent))

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"online": True, "version": self.version, "since": self._since}
        if self.state_extra is not None:
            state.update(self.state_extra())
        return state

    async def publish_state(self) -> None:
        """Re-publish the retained state (e.g. when an override starts or ends)."""
        client = self._client
        if client is not None and self._connected.is_set():
            payload = canonical_json(self._state())
            await client.publish(self.topics.state, payload, qos=1, retain=True, timeout=10)

    # ------------------------------------------------------------------ session tasks

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish unacknowledged records oldest first, at most ``window`` awaiting an ack.

        A batch is published concurrently so PUBACKs are pipelined instead of costing one round
        trip each; the backend's acks, not PUBACKs, open the window again.
        """
        timeout = self.cfg.ack_timeout_s
        while True:
            self._wake.clear()  # before reading the store, so a notify() in between is kept
            now = self.clock.monotonic()
            waiting = sum(1 for t in self._sent_at.values() if now - t < timeout)
            room = self.window - waiting
            batch: list[tuple[int, dict[str, Any]]] = []
            resent: list[int] = []
            next_due: float | None = None
            if room > 0:
                for record in self.outbox.undelivered(limit=self.window * 2):
                    seq = int(record["seq"])
                    if seq <= self._acked_upto:
                        continue
                    sent = self._sent_at.get(seq)
                    if sent is not None and now - sent < timeout:
                        due = sent + timeout
                        next_due = due if next_due is None else min(next_due, due)
                        continue
                    if sent is not None:
                        resent.append(seq)
                    batch.append((seq, record))
                    if len(batch) >= room:
                        break
            if batch:
                if resent:
                    self.stats.resent += len(resent)
                    self.log.info(
                        "slot records re-sent (no ack in time)",
                        count=len(resent),
                        first=resent[0],
                        last=resent[-1],
                    )
                await asyncio.gather(*(self._publish_record(client, s, r) for s, r in batch))
                continue
            wait_s = timeout if next_due is None else max(0.05, next_due - self.clock.monotonic())
            await self._wait(self._wake, wait_s)

    async def _publish_record(
        self, client: aiomqtt.Client, seq: int, record: dict[str, Any]
    ) -> None:
        await self._bucket.take()
        self._sent_at[seq] = self.clock.monotonic()
        if self.on_slot_acked is not None:
            self._awaiting[seq] = {k: record.get(k) for k in ("seq", "slot_start", "source")}
        await client.publish(self.topics.slot, canonical_json(record), qos=1, timeout=30)
        self.stats.published += 1

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
            if message.topic.matches(self.topics.slot_ack):
                self._handle_ack(bytes(data))
            elif message.topic.matches(self.topics.cmd):
                if message.retain:
                    self.log.warning("retained command ignored", topic=str(message.topic))
                    continue
                if self.on_command is not None:
                    try:
                        await self.on_command(bytes(data))
                    except Exception as exc:  # a bad command must never drop the connection
                        self.log.error("command handler failed", exc_info=exc)

    def _handle_ack(self, data: bytes) -> None:
        try:
            seq = parse_slot_ack(data)
        except AckError as exc:
            self.stats.bad_acks += 1
            self.log.warning("malformed slot ack ignored", payload=data[:200], error=str(exc))
            return
        if seq > self.outbox.max_seq():
            self.stats.bad_acks += 1
            self.log.warning(
                "slot ack for unknown seq ignored", seq=seq, max_seq=self.outbox.max_seq()
            )
            return
        if seq <= self._acked_upto:
            return
        done = [s for s in self._sent_at if s <= seq]
        for s in done:
            del self._sent_at[s]
        self._acked_upto = seq
        self._tell_acked(seq)
        self._ack_dirty.set()
        self._wake.set()

    def _tell_acked(self, upto: int) -> None:
        if self.on_slot_acked is None:
            return
        for s in sorted(k for k in self._awaiting if k <= upto):
            record = self._awaiting.pop(s)
            try:
                self.on_slot_acked(record)
            except Exception as exc:  # an observer's bug must not lose the ack
                self.log.warning("slot ack observer failed", error=str(exc))

    async def _persist_acks(self) -> None:
        """Write acknowledgements to the store in batches.

        An ack lost in a crash only means the record is sent once more (the backend deduplicates),
        so acks are coalesced instead of paying an fsync for each one.
        """
        try:
            while True:
                await self._ack_dirty.wait()
                await self.clock.sleep(0.1)
                self._flush_acks()
        finally:
            self._flush_acks()

    def _flush_acks(self) -> None:
        if not self._ack_dirty.is_set():
            return
        self._ack_dirty.clear()
        try:
            newly = self.outbox.ack_upto(self._acked_upto)
        except UnknownSeq as exc:  # the store was replaced under us: say so, keep running
            self.log.warning("slot ack for unknown seq ignored", error=str(exc))
            return
        self.stats.acked += newly
        if newly:
            self.log.debug("slot records acknowledged", upto=self._acked_upto, newly=newly)

    async def _alarms(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake_alarms.clear()
            for alarm in self.outbox.pending_alarms():
                body = {k: v for k, v in alarm.items() if k != "id"}
                await client.publish(self.topics.alarm, canonical_json(body), qos=1, timeout=30)
                self.outbox.alarm_sent(int(alarm["id"]))
            await self._wait(self._wake_alarms, 5.0)

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set or ``seconds`` of clock time pass."""
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _telemetry(self, client: aiomqtt.Client) -> None:
        assert self.telemetry is not None
        while True:
            body = {"site": self.site, "at": iso(clock_now(self.clock)), **self.telemetry()}
            await client.publish(self.topics.telemetry, canonical_json(body), qos=0)
            await self.clock.sleep(self.cfg.telemetry_s)


def reconnect_delay(failures: int, lo: float, hi: float) -> float:
    """Seconds to wait before the next connection attempt after ``failures`` failed ones.

    Capped exponential backoff with jitter over the whole window (never less than ``lo / 2``):
    when a broker comes back, a neighbourhood's gateways spread their reconnects instead of
    arriving in one storm (``benchmarks/fleet.py`` measures the spread).
    """
    cap = min(hi, lo * 2 ** min(failures, 20))
    return random.uniform(lo / 2, max(cap, lo))


def clock_now(clock: Clock) -> Any:
    return clock.now()
