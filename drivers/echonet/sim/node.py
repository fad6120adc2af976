"""A simulated ECHONET Lite node on its own address: the peer of tests, demo and installers.

The node answers Get, SetC, SetI, SetGet and INF_REQ for its node profile and device objects
with the same codec the gateway uses, announces state changes by INF, and can misbehave on
purpose (drop, delay, refuse, truncate) so that the transport's recovery paths are exercised over
real sockets. Every Set it accepts is recorded with the injected clock's time: the DR tests judge
"nothing unsafe happened" and command latency from the device's side, not the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from drivers.echonet.frame import (
    CONTROLLER,
    EOJ,
    ESV,
    NODE_PROFILE,
    DecodeError,
    Frame,
    Property,
    decode,
    encode,
    reply,
)
from drivers.echonet.transport import ECHONET_PORT, MULTICAST_GROUP
from gateway.clock import Clock, SystemClock
from gateway.logs import get_logger

from .devices import SimAircon, SimBattery, SimNodeProfile, SimPv, SimV2h, SimWaterHeater
from .objects import SimObject

__all__ = ["DEVICE_KINDS", "Faults", "SetRecord", "SimNode", "SimStats"]

DEVICE_KINDS: Final = ("pv", "battery", "water_heater", "aircon", "ev")
_MAX_CONTROLLERS: Final = 32
_HEADER_LEN: Final = 12

_O = TypeVar("_O", bound=SimObject)


@dataclass
class Faults:
    """Misbehaviour knobs; change them on a running node (``node.faults.drop_pct = 50``).

    * ``drop_pct``: requests silently ignored, in percent.
    * ``delay_s``: every answer is sent this many real seconds late.
    * ``sna_epcs``: EPCs refused (SNA) on Get and Set although the maps list them.
    * ``truncate_above``: answers with more properties are cut after that many (OPC unchanged).
    * ``max_props``: requests with more properties are ignored (``refuse_mode="drop"``) or
      refused as a whole (``"sna"``).
    """

    drop_pct: float = 0.0
    delay_s: float = 0.0
    sna_epcs: set[int] = field(default_factory=set)
    truncate_above: int | None = None
    max_props: int | None = None
    refuse_mode: str = "drop"


@dataclass(frozen=True)
class SetRecord:
    """One Set the node accepted: when (injected clock), from whom, what."""

    at: datetime
    monotonic: float
    source: str
    eoj: EOJ
    epc: int
    edt: bytes
    esv: ESV


@dataclass
class SimStats:
    requests: int = 0
    dropped: int = 0
    oversize: int = 0
    truncated: int = 0
    malformed: int = 0
    inf_sent: int = 0
    infc_res: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, node: SimNode) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self.node._on_datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:
            self.node.log.exception("simulator failed on a datagram")


class SimNode:
    """One simulated node bound to ``bind``:``port`` hosting the chosen device objects."""

    def __init__(
        self,
        bind: str,
        *,
        devices: Sequence[str] = ("pv", "battery", "water_heater"),
        clock: Clock | None = None,
        soc_pct: float = 50.0,
        reverse_flow: bool = True,
        fit: bool = False,
        mode_delay_s: float = 2.0,
        battery_capacity_wh: int = 9800,
        battery_max_w: int = 3000,
        pv_rated_w: int = 4500,
        faults: Faults | None = None,
        port: int = ECHONET_PORT,
        multicast_interface: str | None = None,
        inf_targets: Sequence[str] = (),
        maker_code: int = 0xFFFFFF,
        tick_s: float = 1.0,
        seed: int | None = None,
        name: str | None = None,
    ) -> None:
        unknown = [d for d in devices if d not in DEVICE_KINDS]
        if unknown or not devices:
            raise ValueError(
                f"devices must be some of {', '.join(DEVICE_KINDS)}; got {', '.join(devices)}"
            )
        self.bind = bind
        self.port = port
        self.clock: Clock = clock or SystemClock()
        self.faults = faults or Faults()
        self.multicast_interface = multicast_interface
        self.inf_targets = list(inf_targets)
        self.tick_s = tick_s
        self.name = name or f"sim-{bind}"
        self.log = get_logger("chisan.sim.echonet", device=self.name)
        self.stats = SimStats()
        self.set_log: list[SetRecord] = []
        self.refused_sets: list[SetRecord] = []
        self.set_listeners: list[Callable[[SetRecord], None]] = []
        self.controllers: dict[tuple[str, int], None] = {}
        self.multicast_joined = False
        self._random = random.Random(seed)
        self._tid = 0
        uid = socket.inet_aton(bind) if _is_ipv4(bind) else bind.encode()[:4]
        kw: dict[str, Any] = {"maker_code": maker_code}
        objects: list[SimObject] = []
        for kind in dict.fromkeys(devices):
            kw["uid"] = uid + kind.encode()[:9]
            if kind == "pv":
                objects.append(SimPv(self.clock, rated_w=pv_rated_w, fit=fit, **kw))
            elif kind == "battery":
                objects.append(
                    SimBattery(
                        self.clock,
                        soc_pct=soc_pct,
                        reverse_flow=reverse_flow,
                        mode_delay_s=mode_delay_s,
                        capacity_wh=battery_capacity_wh,
                        max_charge_w=battery_max_w,
                        max_discharge_w=battery_max_w,
                        **kw,
                    )
                )
            elif kind == "ev":
                objects.append(SimV2h(self.clock, mode_delay_s=mode_delay_s, **kw))
            elif kind == "water_heater":
                objects.append(SimWaterHeater(self.clock, **kw))
            else:
                objects.append(SimAircon(self.clock, **kw))
        self.profile = SimNodeProfile(self.clock, objects, maker_code=maker_code, uid=uid)
        self.objects: dict[EOJ, SimObject] = {self.profile.eoj: self.profile}
        self.objects.update({o.eoj: o for o in objects})
        self._announced: dict[tuple[EOJ, int], bytes | None] = {}
        self._endpoint: asyncio.DatagramTransport | None = None
        self._mcast_endpoint: asyncio.DatagramTransport | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._infc_waiting: dict[tuple[str, int], asyncio.Future[Frame]] = {}

    # ------------------------------------------------------------------------- device access

    def _find(self, kind: type[_O]) -> _O:
        for obj in self.objects.values():
            if isinstance(obj, kind):
                return obj
        raise LookupError(f"{self.name} has no {kind.__name__}")

    @property
    def battery(self) -> SimBattery:
        return self._find(SimBattery)

    @property
    def pv(self) -> SimPv:
        return self._find(SimPv)

    @property
    def water_heater(self) -> SimWaterHeater:
        return self._find(SimWaterHeater)

    @property
    def aircon(self) -> SimAircon:
        return self._find(SimAircon)

    @property
    def ev(self) -> SimV2h:
        return self._find(SimV2h)

    def update(self) -> None:
        """Bring every object's physics to the clock's present (done before each request)."""
        for obj in self.objects.values():
            obj.update()

    def sets(self, epc: int | None = None, eoj: EOJ | None = None) -> list[SetRecord]:
        """Accepted Sets, optionally of one EPC / object, oldest first."""
        return [
            r
            for r in self.set_log
            if (epc is None or r.epc == epc) and (eoj is None or r.eoj == eoj)
        ]

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off (Linux)
            sock.bind((self.bind, self.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        mcast: socket.socket | None = None
        if self.multicast_interface is not None:
            iface = socket.inet_aton(self.multicast_interface or "0.0.0.0")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            try:
                mcast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                mcast.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                mcast.bind((MULTICAST_GROUP, self.port))
                mcast.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_ADD_MEMBERSHIP,
                    struct.pack("4s4s", socket.inet_aton(MULTICAST_GROUP), iface),
                )
                mcast.setblocking(False)
                self.multicast_joined = True
            except OSError as exc:
                if mcast is not None:
                    mcast.close()
                mcast = None
                self.log.warning("cannot join the multicast group", error=str(exc))
        self._endpoint, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        if mcast is not None:
            self._mcast_endpoint, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), sock=mcast
            )
        self.update()
        self._snapshot()
        self._tick_task = asyncio.create_task(self._tick(), name=f"{self.name}-tick")
        self.log.info(
            "ECHONET simulator up",
            bind=f"{self.bind}:{self.port}",
            objects=[str(e) for e in self.objects],
            multicast=self.multicast_joined,
        )
        # Boot announcement (0xD5), as a real node sends when it joins the network.
        self._send_inf(self.profile, [0xD5])

    async def close(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        for endpoint in (self._mcast_endpoint, self._endpoint):
            if endpoint is not None:
                endpoint.close()
        self._endpoint = self._mcast_endpoint = None
        await asyncio.sleep(0)

    async def run(self) -> None:
        """Serve until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def __aenter__(self) -> SimNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _tick(self) -> None:
        while True:
            await self.clock.sleep(self.tick_s)
            self.update()
            self._announce_changes()

    # ---------------------------------------------------------------------------- sending

    def _next_tid(self) -> int:
        self._tid = (self._tid % 0xFFFF) + 1
        return self._tid

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._endpoint is not None:
            self._endpoint.sendto(data, addr)

    def send_raw(self, host: str, data: bytes, port: int = ECHONET_PORT) -> None:
        """Send arbitrary bytes from the node's address (tests: malformed datagrams)."""
        self._send(data, (host, port))

    def _inf_destinations(self) -> list[tuple[str, int]]:
        """Multicast when joined; otherwise every controller that has talked to us."""
        targets = [(host, ECHONET_PORT) for host in self.inf_targets]
        if self.multicast_joined:
            return [(MULTICAST_GROUP, self.port), *targets]
        return list(dict.fromkeys([*self.controllers, *targets]))

    def _send_inf(self, obj: SimObject, epcs: Sequence[int]) -> None:
        props = [Property(epc, obj.read(epc) or b"") for epc in epcs]
        frame = Frame(self._next_tid(), obj.eoj, NODE_PROFILE, ESV.INF, tuple(props))
        data = encode(frame)
        for addr in self._inf_destinations():
            self._send(data, addr)
            self.stats.inf_sent += 1

    def _snapshot(self) -> dict[tuple[EOJ, int], bytes | None]:
        state = {
            (obj.eoj, epc): obj.read(epc)
            for obj in self.objects.values()
            for epc in sorted(obj.announced)
            if epc != 0xD5
        }
        changed = {k: v for k, v in state.items() if self._announced.get(k, v) != v}
        self._announced = state
        return changed

    def _announce_changes(self) -> None:
        changed = self._snapshot()
        by_object: dict[EOJ, list[int]] = {}
        for eoj, epc in changed:
            by_object.setdefault(eoj, []).append(epc)
        for eoj, epcs in by_object.items():
            self._send_inf(self.objects[eoj], epcs)

    async def send_infc(
        self,
        host: str,
        eoj: EOJ | None = None,
        epcs: Sequence[int] = (0x80,),
        *,
        port: int = ECHONET_PORT,
        timeout_s: float = 1.0,
    ) -> bool:
        """Send an INFC to ``host`` and say whether its INFC_Res came back in time."""
        obj = self.objects[eoj] if eoj is not None else next(iter(self.objects.values()))
        tid = self._next_tid()
        props = tuple(Property(epc, obj.read(epc) or b"") for epc in epcs)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._infc_waiting[(host, tid)] = future
        try:
            self._send(encode(Frame(tid, obj.eoj, CONTROLLER, ESV.INFC, props)), (host, port))
            done, _ = await asyncio.wait({future}, timeout=timeout_s)
            return bool(done)
        finally:
            self._infc_waiting.pop((host, tid), None)

    # -------------------------------------------------------------------------- receiving

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            frame = decode(data)
        except DecodeError as exc:
            self.stats.malformed += 1
            self.log.debug("malformed datagram", source=addr[0], error=str(exc))
            return
        if frame.esv is ESV.INFC_RES:
            waiting = self._infc_waiting.get((addr[0], frame.tid))
            if waiting is not None and not waiting.done():
                self.stats.infc_res += 1
                waiting.set_result(frame)
            return
        if not frame.esv.is_request:
            return
        if addr[0] == self.bind and addr[1] == self.port:
            return  # our own multicast looped back
        targets = self._targets(frame.deoj)
        if not targets:
            return  # ECHONET: requests to objects a node does not have are discarded
        self.stats.requests += 1
        faults = self.faults
        if faults.drop_pct > 0 and self._random.uniform(0, 100) < faults.drop_pct:
            self.stats.dropped += 1
            return
        oversize = faults.max_props is not None and (
            len(frame.props) + len(frame.get_props) > faults.max_props
        )
        if oversize and faults.refuse_mode == "drop":
            self.stats.oversize += 1
            return
        if addr[0] != MULTICAST_GROUP and len(self.controllers) < _MAX_CONTROLLERS:
            self.controllers[addr] = None
        self.update()
        for obj in targets:
            answer = self._oversize_answer(frame) if oversize else self._answer(obj, frame, addr)
            if answer is None:
                continue
            answer = answer._replace(seoj=obj.eoj)
            out = encode(answer)
            limit = faults.truncate_above
            if limit is not None and len(answer.props) > limit:
                self.stats.truncated += 1
                out = out[: _HEADER_LEN + sum(2 + p.pdc for p in answer.props[:limit])]
            if faults.delay_s > 0:
                asyncio.get_running_loop().call_later(faults.delay_s, self._send, out, addr)
            else:
                self._send(out, addr)
        self._announce_changes()

    def _targets(self, deoj: EOJ) -> list[SimObject]:
        if deoj.is_node_profile and deoj.instance in (0, 1):
            return [self.profile]
        return [
            obj
            for obj in self.objects.values()
            if obj.eoj.class_id == deoj.class_id
            and (deoj.instance == 0 or deoj.instance == obj.eoj.instance)
            and obj is not self.profile
        ]

    def _oversize_answer(self, frame: Frame) -> Frame | None:
        self.stats.oversize += 1
        sna = {
            ESV.GET: ESV.GET_SNA,
            ESV.SETC: ESV.SETC_SNA,
            ESV.SETI: ESV.SETI_SNA,
            ESV.INF_REQ: ESV.INF_SNA,
            ESV.SETGET: ESV.SETGET_SNA,
        }[frame.esv]
        if frame.esv in (ESV.SETC, ESV.SETI):
            return reply(frame, sna, frame.props)
        if frame.esv is ESV.SETGET:
            return reply(frame, sna, frame.props, [Property(p.epc) for p in frame.get_props])
        return reply(frame, sna, [Property(p.epc) for p in frame.props])

    def _read(self, obj: SimObject, epc: int) -> bytes:
        if epc in self.faults.sna_epcs:
            return b""
        return obj.read(epc) or b""

    def _write(self, obj: SimObject, prop: Property, frame: Frame, source: str) -> bool:
        record = SetRecord(
            self.clock.now(),
            self.clock.monotonic(),
            source,
            obj.eoj,
            prop.epc,
            prop.edt,
            frame.esv,
        )
        ok = prop.epc not in self.faults.sna_epcs and obj.write(prop.epc, prop.edt)
        if not ok:
            self.refused_sets.append(record)
            self.log.info(
                "set refused",
                eoj=str(obj.eoj),
                epc=f"{prop.epc:02X}",
                edt=prop.edt.hex().upper(),
                source=source,
            )
            return False
        self.set_log.append(record)
        self.log.info(
            "set accepted",
            eoj=str(obj.eoj),
            epc=f"{prop.epc:02X}",
            edt=prop.edt.hex().upper(),
            source=source,
            at=record.at.isoformat(),
        )
        for listener in list(self.set_listeners):
            listener(record)
        return True

    def _answer(self, obj: SimObject, frame: Frame, addr: tuple[str, int]) -> Frame | None:
        esv = frame.esv
        if esv is ESV.GET:
            props = [Property(p.epc, self._read(obj, p.epc)) for p in frame.props]
            ok = all(p.edt for p in props)
            return reply(frame, ESV.GET_RES if ok else ESV.GET_SNA, props)
        if esv in (ESV.SETC, ESV.SETI):
            results = [
                Property(p.epc) if self._write(obj, p, frame, addr[0]) else p for p in frame.props
            ]
            ok = all(not p.edt for p in results)
            if esv is ESV.SETI:
                return None if ok else reply(frame, ESV.SETI_SNA, results)
            return reply(frame, ESV.SET_RES if ok else ESV.SETC_SNA, results)
        if esv is ESV.SETGET:
            results = [
                Property(p.epc) if self._write(obj, p, frame, addr[0]) else p for p in frame.props
            ]
            gets = [Property(p.epc, self._read(obj, p.epc)) for p in frame.get_props]
            ok = all(not p.edt for p in results) and all(p.edt for p in gets)
            return reply(frame, ESV.SETGET_RES if ok else ESV.SETGET_SNA, results, gets)
        if esv is ESV.INF_REQ:
            props = [Property(p.epc, self._read(obj, p.epc)) for p in frame.props]
            if all(p.edt for p in props):
                self.stats.inf_sent += 1
                return reply(frame, ESV.INF, props)
            return reply(frame, ESV.INF_SNA, props)
        return None


def _is_ipv4(text: str) -> bool:
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return True
