"""ECHONET Lite over UDP: the thin asyncio shell around the sans-I/O codec.

One :class:`EchonetTransport` per process owns the gateway's UDP port 3610 and, optionally, a
membership of the multicast group 224.0.23.0 on a configured interface. Everything device-facing
goes through it:

* Replies are matched on (source address, TID): a TID alone would let one device's late answer
  complete another device's request.
* Devices are slow and single-threaded, so each node (address) gets one request in flight; the
  others wait their turn in FIFO order on that node's lock.
* Some devices truncate or ignore frames with many properties. A Get (or SetC) that comes back
  truncated, is ignored, or is refused as a whole is retried in halves, and the size that worked
  is remembered for that node (starting from ``max_properties``). The learned size only shrinks:
  probing upwards would cost a timeout each time on devices that really have the limit.
* A Get_SNA still carries the properties the device could read; they are returned, and the refused
  ones are reported as missing. A SetC answer says per EPC whether it was accepted.
* Malformed datagrams are counted and logged at most once per 10 s per source. Nothing a peer sends
  can raise out of the datagram handler.
* INF and INFC go to subscribers; an INFC is answered with INFC_Res, or the device keeps resending.

Network waits (reply timeouts, the discovery window) are real time on purpose: a peer answers in
real time whatever the injected clock says, and an accelerated demo clock would otherwise shrink a
3 s timeout to milliseconds. The injected clock stamps measurements and paces logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from drivers.capabilities import DeviceError
from drivers.echonet.frame import (
    CONTROLLER,
    EHD,
    EOJ,
    ESV,
    NODE_PROFILE,
    DecodeError,
    Frame,
    Property,
    decode,
    encode,
    get_request,
    inf_request,
    infc_response,
    reply,
    set_request,
)
from drivers.echonet.propmap import encode_property_map
from gateway.clock import Clock
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.config import EchonetConfig

__all__ = [
    "ECHONET_PORT",
    "MULTICAST_GROUP",
    "EchonetError",
    "EchonetProtocolError",
    "EchonetRefused",
    "EchonetTimeout",
    "EchonetTransport",
    "GetResult",
    "Listener",
    "Notification",
    "SetResult",
    "TransportSettings",
    "TransportStats",
]

ECHONET_PORT: Final = 3610
MULTICAST_GROUP: Final = "224.0.23.0"
MALFORMED_LOG_INTERVAL_S: Final = 10.0
_IP_MULTICAST_ALL: Final = 49  # Linux; not exported by the socket module
_MAX_COLLECT: Final = 1024

_Item = TypeVar("_Item")


# ------------------------------------------------------------------------------------ errors


class EchonetError(DeviceError):
    """Base of the ECHONET driver's device errors; ``device`` names the device (or host+EOJ)."""


class EchonetTimeout(EchonetError):
    """No answer after every retry."""


class EchonetRefused(EchonetError):
    """The object answered SNA for ``epcs`` (unsupported, read-only or value out of range)."""

    def __init__(self, device: str, message: str, epcs: Sequence[int] = ()) -> None:
        super().__init__(device, message)
        self.epcs = tuple(epcs)


class EchonetProtocolError(EchonetError):
    """The answer made no sense (undecodable property, wrong service)."""


class _TooBig(Exception):
    """Internal: the device truncated its reply or ignored a large frame; ask for fewer."""

    def __init__(self, *, timed_out: bool) -> None:
        super().__init__()
        self.timed_out = timed_out


# ----------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GetResult:
    """What a Get returned: the readable EDTs, the EPCs the device refused, when it answered."""

    values: Mapping[int, bytes]
    missing: tuple[int, ...]
    at: datetime

    def __contains__(self, epc: object) -> bool:
        return epc in self.values

    def get(self, epc: int) -> bytes | None:
        return self.values.get(epc)


@dataclass(frozen=True)
class SetResult:
    """Per-EPC outcome of a SetC."""

    accepted: tuple[int, ...]
    refused: tuple[int, ...]
    at: datetime

    @property
    def ok(self) -> bool:
        return not self.refused


@dataclass(frozen=True)
class Notification:
    """An INF or INFC a device sent (by itself, or answering INF_REQ)."""

    host: str
    seoj: EOJ
    esv: ESV
    props: Mapping[int, bytes]
    at: datetime
    tid: int


Listener = Callable[[Notification], None]


@dataclass
class TransportStats:
    """Counters for diagnostics and tests."""

    sent: int = 0
    received: int = 0
    malformed: int = 0
    malformed_by_source: dict[str, int] = field(default_factory=dict)
    malformed_logged: int = 0
    unmatched: int = 0
    wrong_object: int = 0
    timeouts: int = 0
    retries: int = 0
    splits: int = 0
    infc_answered: int = 0
    notifications: int = 0


@dataclass(frozen=True)
class TransportSettings:
    """The transport's knobs; :meth:`from_config` takes them from ``[echonet]``.

    ``port`` is both the local port and the devices' port: ECHONET fixes it at 3610 and several
    devices answer to 3610 whatever the source port was, so only tests should change it.
    """

    bind: str = "0.0.0.0"
    multicast_interface: str | None = "0.0.0.0"
    timeout_s: float = 3.0
    retries: int = 2
    max_properties: int = 10
    port: int = ECHONET_PORT

    @classmethod
    def from_config(cls, cfg: EchonetConfig) -> TransportSettings:
        return cls(
            bind=cfg.bind,
            multicast_interface=cfg.multicast_interface,
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
            max_properties=cfg.max_properties,
        )


# ------------------------------------------------------------------------------------- peers


@dataclass
class _Peer:
    lock: asyncio.Lock
    batch: int
    malformed: int = 0
    last_malformed_log: float | None = None
    suppressed: int = 0


@dataclass
class _Pending:
    future: asyncio.Future[Frame]
    expects: tuple[ESV, ...]
    #: The object asked: only it may answer (instance 0 addresses every instance of the class).
    asked: EOJ

    def answered_by(self, seoj: EOJ) -> bool:
        if self.asked.instance == 0:
            return seoj.class_id == self.asked.class_id
        return seoj == self.asked


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: EchonetTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self.owner._on_datagram(data, addr)
        except Exception:  # never let a peer kill the endpoint
            self.owner._log.exception("datagram handler failed", source=str(addr[0]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the request will simply time out.
        self.owner._log.debug("socket error", error=str(exc))


# --------------------------------------------------------------------------------- transport


class EchonetTransport:
    """The gateway's ECHONET Lite endpoint (also a supervisor component named ``echonet``)."""

    name = "echonet"

    def __init__(
        self, settings: TransportSettings, clock: Clock, *, seoj: EOJ = CONTROLLER
    ) -> None:
        if settings.max_properties < 1:
            raise ValueError("max_properties must be at least 1")
        self.settings = settings
        self.clock = clock
        self.seoj = seoj
        self.stats = TransportStats()
        self._log = get_logger("chisan.echonet.transport")
        self._peers: dict[str, _Peer] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._collectors: dict[int, list[tuple[str, Frame]]] = {}
        self._listeners: list[tuple[str | None, EOJ | None, Listener]] = []
        self._tid = 0
        self._endpoint: asyncio.DatagramTransport | None = None
        self._mcast_endpoint: asyncio.DatagramTransport | None = None
        self._start_lock = asyncio.Lock()
        self.multicast_joined = False
        self._own_hosts: set[str] = set()

    # ---------------------------------------------------------------------------- lifecycle

    @property
    def started(self) -> bool:
        return self._endpoint is not None

    async def start(self) -> None:
        """Open the socket(s). Idempotent; requests call it lazily, so order does not matter."""
        async with self._start_lock:
            if self._endpoint is not None:
                return
            loop = asyncio.get_running_loop()
            s = self.settings
            wildcard = s.bind in ("", "0.0.0.0")
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                if wildcard:
                    # Shares the port with a multicast-only socket of a simulator on this host.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                else:
                    # A socket bound to one address must not also get every group's traffic.
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
                sock.bind((s.bind, s.port))
            except OSError as exc:
                sock.close()
                raise EchonetError(
                    "echonet", f"cannot bind UDP {s.bind}:{s.port}: {exc.strerror or exc}"
                ) from None
            sock.setblocking(False)
            mcast_sock: socket.socket | None = None
            if s.multicast_interface is not None:
                iface = s.multicast_interface or "0.0.0.0"
                with contextlib.suppress(OSError):
                    sock.setsockopt(
                        socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface)
                    )
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
                target = sock if wildcard else None
                try:
                    if target is None:
                        mcast_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        mcast_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        mcast_sock.bind((MULTICAST_GROUP, s.port))
                        mcast_sock.setblocking(False)
                        target = mcast_sock
                    membership = struct.pack(
                        "4s4s", socket.inet_aton(MULTICAST_GROUP), socket.inet_aton(iface)
                    )
                    target.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
                    self.multicast_joined = True
                except OSError as exc:
                    if mcast_sock is not None:
                        mcast_sock.close()
                        mcast_sock = None
                    self._log.warning(
                        "cannot join the ECHONET multicast group; discovery by multicast and "
                        "announcements will not be heard",
                        interface=iface,
                        error=exc.strerror or str(exc),
                    )
            self._own_hosts = {s.bind} if not wildcard else set()
            if s.multicast_interface not in (None, "", "0.0.0.0"):
                self._own_hosts.add(str(s.multicast_interface))
            endpoint, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
            self._endpoint = endpoint
            if mcast_sock is not None:
                mendpoint, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self), sock=mcast_sock
                )
                self._mcast_endpoint = mendpoint
            self._log.info(
                "ECHONET transport open",
                bind=f"{s.bind}:{s.port}",
                multicast=self.multicast_joined,
            )

    async def close(self) -> None:
        for endpoint in (self._mcast_endpoint, self._endpoint):
            if endpoint is not None:
                endpoint.close()
        self._endpoint = None
        self._mcast_endpoint = None
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        self._pending.clear()
        await asyncio.sleep(0)

    async def run(self) -> None:
        """Component entry: keep the endpoint open until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def __aenter__(self) -> EchonetTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------- subscribers

    def subscribe(
        self, listener: Listener, *, host: str | None = None, eoj: EOJ | None = None
    ) -> Callable[[], None]:
        """Hear INF/INFC from ``host``/``eoj`` (None = any). Returns the unsubscribe function."""
        entry = (host, eoj, listener)
        self._listeners.append(entry)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(entry)

        return unsubscribe

    # ---------------------------------------------------------------------------- requests

    def batch_size(self, host: str) -> int:
        """Properties per request currently used for ``host`` (learned from its behaviour)."""
        return self._peer(host).batch

    async def get(
        self, host: str, eoj: EOJ, epcs: Iterable[int], *, device: str | None = None
    ) -> GetResult:
        """Read properties, in as many requests as the device's frame limit needs."""
        wanted = list(dict.fromkeys(epcs))
        values: dict[int, bytes] = {}
        missing: list[int] = []

        def build(chunk: list[int], tid: int) -> Frame:
            return get_request(tid, eoj, chunk, seoj=self.seoj)

        def take(chunk: list[int], answer: Frame) -> bool | None:
            readable = {p.epc: p.edt for p in answer.props if p.edt}
            if answer.esv is ESV.GET_SNA and not readable and len(chunk) > 1:
                return False  # some devices refuse a whole frame they find too large
            for epc in chunk:
                if epc in readable:
                    values[epc] = readable[epc]
                else:
                    missing.append(epc)
            # A refusal of everything says nothing about the frame size that works.
            return True if readable else None

        await self._batched(host, device or f"{host} {eoj}", wanted, build, take)
        return GetResult(values, tuple(missing), self.clock.now())

    async def set(
        self,
        host: str,
        eoj: EOJ,
        props: Mapping[int, bytes] | Sequence[tuple[int, bytes]],
        *,
        device: str | None = None,
    ) -> SetResult:
        """SetC: write properties and learn per EPC whether the device accepted them."""
        items = list(props.items()) if isinstance(props, Mapping) else list(props)
        accepted: list[int] = []
        refused: list[int] = []

        def build(chunk: list[tuple[int, bytes]], tid: int) -> Frame:
            return set_request(tid, eoj, chunk, seoj=self.seoj)

        def take(chunk: list[tuple[int, bytes]], answer: Frame) -> bool | None:
            echoed = {p.epc: p.edt for p in answer.props}
            for epc, _ in chunk:
                if answer.esv is ESV.SET_RES or (epc in echoed and not echoed[epc]):
                    accepted.append(epc)
                else:
                    refused.append(epc)
            return True

        await self._batched(host, device or f"{host} {eoj}", items, build, take)
        return SetResult(tuple(accepted), tuple(refused), self.clock.now())

    async def _batched(
        self,
        host: str,
        device: str,
        items: list[_Item],
        build: Callable[[list[_Item], int], Frame],
        take: Callable[[list[_Item], Frame], bool | None],
    ) -> None:
        """Send ``items`` in chunks of the node's batch size, halving when the device balks.

        ``take`` consumes an answer and says whether it proves the chunk size works (True), proves
        nothing (None: everything refused), or should be asked again in halves (False). A size
        proven after a halving becomes the node's batch size. Timeouts of the halves
        count against the same retry budget, so a dead device costs ``retries + 1`` timeouts.
        """
        if not items:
            return
        peer = self._peer(host)
        async with peer.lock:
            remaining = items
            size = peer.batch
            budget = self.settings.retries + 1
            while remaining:
                chunk = remaining[:size]
                try:
                    answer = await self._exchange(
                        host,
                        functools.partial(build, chunk),
                        device,
                        attempts=budget,
                        splittable=len(chunk) > 1,
                    )
                except _TooBig as too_big:
                    if len(chunk) == 1:
                        raise EchonetProtocolError(
                            device, f"{host} truncated its answer even for a single property"
                        ) from None
                    if too_big.timed_out:
                        budget -= 1
                    size = self._shrink(host, device, len(chunk))
                    continue
                verdict = take(chunk, answer)
                if verdict is False:
                    size = self._shrink(host, device, len(chunk))
                    continue
                if verdict and size < peer.batch:
                    self._learn(host, device, size)
                budget = self.settings.retries + 1
                remaining = remaining[len(chunk) :]

    async def request(
        self, host: str, build: Callable[[int], Frame], *, device: str | None = None
    ) -> Frame:
        """Send any request frame (built from a TID) and return the matching answer, unsplit.

        For INF_REQ the answer is the device's INF; SetI has no positive answer, so sending one
        here waits for the timeout (use :meth:`send` for SetI).
        """
        peer = self._peer(host)
        async with peer.lock:
            try:
                return await self._exchange(
                    host,
                    build,
                    device or host,
                    attempts=self.settings.retries + 1,
                    splittable=False,
                )
            except _TooBig:
                raise EchonetProtocolError(device or host, "reply truncated") from None

    async def inf_request(
        self, host: str, eoj: EOJ, epcs: Iterable[int], *, device: str | None = None
    ) -> Frame:
        """INF_REQ: ask the device to announce properties (answered by an INF)."""
        return await self.request(
            host, lambda tid: inf_request(tid, eoj, list(epcs), seoj=self.seoj), device=device
        )

    async def send(self, host: str, frame: Frame) -> None:
        """Fire and forget (SetI, responses): no matching, no retries."""
        await self.start()
        self._sendto(encode(frame), host)

    async def multicast_get(
        self, deoj: EOJ, epcs: Iterable[int], window_s: float
    ) -> list[tuple[str, Frame]]:
        """Multicast a Get and collect every node's answer for ``window_s`` (real) seconds."""
        await self.start()
        tid = self._next_tid()
        self._collectors[tid] = []
        try:
            frame = get_request(tid, deoj, list(epcs), seoj=self.seoj)
            self._sendto(encode(frame), MULTICAST_GROUP)
            await asyncio.sleep(window_s)
            return list(self._collectors[tid])
        finally:
            self._collectors.pop(tid, None)

    # -------------------------------------------------------------------------- internals

    def _peer(self, host: str) -> _Peer:
        peer = self._peers.get(host)
        if peer is None:
            peer = _Peer(asyncio.Lock(), self.settings.max_properties)
            self._peers[host] = peer
        return peer

    def _shrink(self, host: str, device: str, size: int) -> int:
        self.stats.splits += 1
        smaller = max(1, size // 2)
        self._log.info(
            "device seems to refuse large frames; splitting the request",
            device=device,
            host=host,
            properties=size,
            trying=smaller,
        )
        return smaller

    def _learn(self, host: str, device: str, size: int) -> None:
        peer = self._peer(host)
        if size < peer.batch:
            peer.batch = size
            self._log.info("learned batch size", device=device, host=host, properties=size)

    def _next_tid(self) -> int:
        self._tid = (self._tid + 1) & 0xFFFF
        while self._tid == 0 or any(key[1] == self._tid for key in self._pending):
            self._tid = (self._tid + 1) & 0xFFFF
        return self._tid

    def _sendto(self, data: bytes, host: str) -> None:
        if self._endpoint is None:
            raise EchonetError("echonet", "transport is closed")
        self._endpoint.sendto(data, (host, self.settings.port))
        self.stats.sent += 1

    async def _exchange(
        self,
        host: str,
        build: Callable[[int], Frame],
        device: str,
        *,
        attempts: int,
        splittable: bool,
    ) -> Frame:
        """One request with retries (same TID, so a late first answer still counts).

        Raises ``_TooBig`` when the device truncated its reply or (for a splittable request)
        did not answer a multi-property frame at all: the caller asks again for fewer.
        """
        await self.start()
        tid = self._next_tid()
        frame = build(tid)
        data = encode(frame)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Frame] = loop.create_future()
        key = (host, tid)
        self._pending[key] = _Pending(future, frame.esv.expected_responses, frame.deoj)
        timeout = self.settings.timeout_s
        try:
            for attempt in range(attempts):
                if attempt:
                    self.stats.retries += 1
                    self._log.debug("retrying", device=device, host=host, attempt=attempt + 1)
                self._sendto(data, host)
                done, _ = await asyncio.wait({future}, timeout=timeout)
                if done:
                    if future.cancelled():
                        raise EchonetError(device, "transport closed while waiting for an answer")
                    return future.result()
                self.stats.timeouts += 1
                if splittable and attempt + 1 < attempts:
                    # Silence to a large frame may be the device's frame limit: ask for less.
                    raise _TooBig(timed_out=True)
            raise EchonetTimeout(
                device,
                f"no answer after {attempts} attempt"
                f"{'s' if attempts != 1 else ''} ({timeout:g} s each)",
            )
        finally:
            self._pending.pop(key, None)
            if not future.done():
                future.cancel()

    # ------------------------------------------------------------------------- receiving

    def _on_datagram(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        host = str(addr[0])
        port = int(addr[1])
        self.stats.received += 1
        try:
            frame = decode(data)
        except DecodeError as exc:
            self._malformed(host, data, exc)
            return
        if frame.esv.is_request:
            if host in self._own_hosts and port == self.settings.port:
                return  # our own multicast, looped back
            self._serve(frame, host, port)
            return
        if frame.esv.is_notification:
            if frame.esv is ESV.INFC:
                self._reply_to(infc_response(frame), host, port)
                self.stats.infc_answered += 1
            self._notify(host, frame)
        collector = self._collectors.get(frame.tid)
        if collector is not None and len(collector) < _MAX_COLLECT:
            collector.append((host, frame))
            return
        pending = self._pending.get((host, frame.tid))
        if pending is not None and frame.esv in pending.expects:
            if not pending.answered_by(frame.seoj):
                # Same node and TID but another object: a confused device or a forgery; taking
                # it would file one object's values (a PV's power as a battery's) under another.
                self.stats.wrong_object += 1
                self._log.warning(
                    "answer from another object ignored",
                    host=host,
                    tid=frame.tid,
                    asked=str(pending.asked),
                    answered=str(frame.seoj),
                )
                return
            if not pending.future.done():
                pending.future.set_result(frame)
            return
        if not frame.esv.is_notification:
            self.stats.unmatched += 1
            self._log.debug("unmatched answer", host=host, tid=frame.tid, esv=frame.esv.name)

    def _malformed(self, host: str, data: bytes, exc: DecodeError) -> None:
        self.stats.malformed += 1
        self.stats.malformed_by_source[host] = self.stats.malformed_by_source.get(host, 0) + 1
        peer = self._peer(host)
        peer.malformed += 1
        # A reply cut short still has its header: tell the waiting request to ask for less.
        if len(data) >= 4 and data[:2] == EHD:
            pending = self._pending.get((host, int.from_bytes(data[2:4], "big")))
            if pending is not None and not pending.future.done():
                pending.future.set_exception(_TooBig(timed_out=False))
        now = self.clock.monotonic()
        last = peer.last_malformed_log
        if last is None or now - last >= MALFORMED_LOG_INTERVAL_S:
            self._log.warning(
                "malformed datagram",
                source=host,
                error=str(exc),
                bytes=len(data),
                suppressed=peer.suppressed,
                total=peer.malformed,
            )
            peer.last_malformed_log = now
            peer.suppressed = 0
            self.stats.malformed_logged += 1
        else:
            peer.suppressed += 1

    def _notify(self, host: str, frame: Frame) -> None:
        self.stats.notifications += 1
        note = Notification(
            host,
            frame.seoj,
            frame.esv,
            {p.epc: p.edt for p in frame.props},
            self.clock.now(),
            frame.tid,
        )
        for want_host, want_eoj, listener in list(self._listeners):
            if want_host is not None and want_host != host:
                continue
            if want_eoj is not None and want_eoj != frame.seoj:
                continue
            try:
                listener(note)
            except Exception:
                self._log.exception("notification listener failed", source=host)

    def _reply_to(self, frame: Frame, host: str, port: int) -> None:
        if self._endpoint is not None:
            self._endpoint.sendto(encode(frame), (host, port))
            self.stats.sent += 1

    # ------------------------------------------------------------ our own node, minimally

    def _own_properties(self, eoj: EOJ) -> dict[int, bytes]:
        common = {0x80: b"\x30", 0x8A: b"\x00\x00\x00"}
        if eoj.is_node_profile:
            props = {
                **common,
                0x82: b"\x01\x0d\x01\x00",
                0xD3: (1).to_bytes(3, "big"),
                0xD4: (2).to_bytes(2, "big"),
                0xD6: b"\x01" + self.seoj.to_bytes(),
                0xD7: b"\x01" + self.seoj.to_bytes()[:2],
            }
        else:
            props = {**common, 0x82: b"\x00\x00\x52\x01"}
        props[0x9D] = encode_property_map([0x80])
        props[0x9E] = encode_property_map([])
        props[0x9F] = encode_property_map([*props, 0x9F])
        return props

    def _serve(self, frame: Frame, host: str, port: int) -> None:
        """Answer requests addressed to our node profile / controller; ignore the rest."""
        deoj = frame.deoj
        mine = (deoj.is_node_profile or deoj.class_id == self.seoj.class_id) and (
            deoj.instance in (0, 1)
        )
        if not mine:
            return
        own = self._own_properties(NODE_PROFILE if deoj.is_node_profile else self.seoj)
        me = NODE_PROFILE if deoj.is_node_profile else self.seoj
        if frame.esv is ESV.GET:
            props = [Property(p.epc, own.get(p.epc, b"")) for p in frame.props]
            ok = all(p.edt for p in props)
            answer = reply(frame, ESV.GET_RES if ok else ESV.GET_SNA, props)
        elif frame.esv in (ESV.SETC, ESV.SETI):
            answer = reply(
                frame, ESV.SETC_SNA if frame.esv is ESV.SETC else ESV.SETI_SNA, frame.props
            )
        elif frame.esv is ESV.INF_REQ:
            answer = reply(frame, ESV.INF_SNA, [Property(p.epc) for p in frame.props])
        elif frame.esv is ESV.SETGET:
            answer = reply(
                frame,
                ESV.SETGET_SNA,
                frame.props,
                [Property(p.epc, own.get(p.epc, b"")) for p in frame.get_props],
            )
        else:
            return
        self._reply_to(answer._replace(seoj=me), host, port)
