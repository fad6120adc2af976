"""Finding ECHONET nodes and what they host: the inventory an installer checks on site.

Nodes are found three ways, because each fails somewhere: a multicast Get of the node profile's
instance list (0xD6) and identification (0x83), which needs multicast to work on the interface;
unicast Gets to addresses given by hand (routers that drop multicast, tests); and listening for
the 0xD5 announcement a node multicasts when it boots. Then every object's property maps,
release letter and maker code are read, since what a device can do depends on them.
A node that does not answer is reported, not fatal: one dead box must not hide the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from drivers.echonet.frame import EOJ, ESV, NODE_PROFILE, Frame
from drivers.echonet.properties import PropertyError, class_name, maker_name, spec_for
from drivers.echonet.propmap import PropertyMapError, decode_property_map
from drivers.echonet.transport import (
    EchonetError,
    EchonetTransport,
    Notification,
)
from gateway.logs import get_logger

__all__ = [
    "DiscoveryResult",
    "NodeInfo",
    "ObjectInfo",
    "describe_node",
    "describe_object",
    "discover",
    "parse_instance_list",
]

_INSTANCE_LIST = 0xD6
_ANNOUNCEMENT = 0xD5
_IDENTIFICATION = 0x83
_MAKER = 0x8A
_RELEASE = 0x82
_MAPS = (0x9D, 0x9E, 0x9F)


@dataclass(frozen=True)
class ObjectInfo:
    """One device object of a node."""

    eoj: EOJ
    class_name: str
    maker_code: int | None = None
    release: str | None = None
    inf_map: frozenset[int] | None = None
    set_map: frozenset[int] | None = None
    get_map: frozenset[int] | None = None

    @property
    def maker_name(self) -> str | None:
        return maker_name(self.maker_code) if self.maker_code is not None else None

    def to_json(self) -> dict[str, Any]:
        def hexes(epcs: frozenset[int] | None) -> list[str] | None:
            return None if epcs is None else [f"{e:02X}" for e in sorted(epcs)]

        return {
            "eoj": str(self.eoj),
            "class": f"{self.eoj.class_id:04X}",
            "class_name": self.class_name,
            "maker_code": None if self.maker_code is None else f"{self.maker_code:06X}",
            "maker": self.maker_name,
            "release": self.release,
            "inf_map": hexes(self.inf_map),
            "set_map": hexes(self.set_map),
            "get_map": hexes(self.get_map),
        }


@dataclass(frozen=True)
class NodeInfo:
    """A node (one address) and its objects, node profile excluded."""

    address: str
    objects: tuple[ObjectInfo, ...]
    maker_code: int | None = None
    identification: str | None = None

    @property
    def maker_name(self) -> str | None:
        return maker_name(self.maker_code) if self.maker_code is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "maker_code": None if self.maker_code is None else f"{self.maker_code:06X}",
            "maker": self.maker_name,
            "identification": self.identification,
            "objects": [o.to_json() for o in self.objects],
        }


@dataclass
class DiscoveryResult:
    """Nodes found, sorted by address, and the given addresses that did not answer (why)."""

    nodes: list[NodeInfo] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_json() for n in self.nodes],
            "failures": dict(self.failures),
        }


def parse_instance_list(edt: bytes | None) -> list[EOJ] | None:
    """EOJs of a 0xD5/0xD6 EDT (count + 3 bytes each); None if malformed."""
    if not edt:
        return None
    count = edt[0]
    if len(edt) != 1 + 3 * count:
        return None
    return [EOJ.from_bytes(edt[i : i + 3]) for i in range(1, len(edt), 3)]


def _map(edt: bytes | None) -> frozenset[int] | None:
    if not edt:
        return None
    try:
        return decode_property_map(edt)
    except PropertyMapError:
        return None


def _release(class_id: int, edt: bytes | None) -> str | None:
    spec = spec_for(class_id, _RELEASE)
    if not edt or spec is None:
        return None
    try:
        decoded = spec.decode(edt)
    except PropertyError:
        return None
    if isinstance(decoded, dict):
        letter = decoded.get("release")
        return letter if isinstance(letter, str) else None
    return None


def _maker(edt: bytes | None) -> int | None:
    return int.from_bytes(edt, "big") if edt and len(edt) == 3 else None


async def describe_object(transport: EchonetTransport, host: str, eoj: EOJ) -> ObjectInfo:
    """Read an object's release, maker and property maps; missing ones stay None."""
    result = await transport.get(host, eoj, [_RELEASE, _MAKER, *_MAPS])
    return ObjectInfo(
        eoj=eoj,
        class_name=class_name(eoj.class_id),
        maker_code=_maker(result.get(_MAKER)),
        release=_release(eoj.class_id, result.get(_RELEASE)),
        inf_map=_map(result.get(0x9D)),
        set_map=_map(result.get(0x9E)),
        get_map=_map(result.get(0x9F)),
    )


async def describe_node(
    transport: EchonetTransport,
    host: str,
    eojs: Iterable[EOJ] | None = None,
    identification: bytes | None = None,
) -> NodeInfo:
    """Everything about one node; reads the instance list itself when not given."""
    wanted = [_MAKER] if identification else [_MAKER, _IDENTIFICATION]
    if eojs is None:
        wanted.append(_INSTANCE_LIST)
    profile = await transport.get(host, NODE_PROFILE, wanted)
    listed = (
        list(eojs) if eojs is not None else parse_instance_list(profile.get(_INSTANCE_LIST)) or []
    )
    objects = []
    for eoj in dict.fromkeys(listed):
        if eoj.is_node_profile:
            continue
        try:
            objects.append(await describe_object(transport, host, eoj))
        except EchonetError as exc:
            get_logger("chisan.echonet.discovery").warning(
                "object did not answer", host=host, eoj=str(eoj), error=str(exc)
            )
            objects.append(ObjectInfo(eoj, class_name(eoj.class_id)))
    ident = identification or profile.get(_IDENTIFICATION)
    return NodeInfo(
        address=host,
        objects=tuple(objects),
        maker_code=_maker(profile.get(_MAKER)),
        identification=ident.hex().upper() if ident else None,
    )


async def discover(
    transport: EchonetTransport,
    *,
    hosts: Iterable[str] = (),
    multicast: bool = True,
    window_s: float = 2.0,
) -> DiscoveryResult:
    """Find nodes by multicast (and D5 announcements heard meanwhile) and at ``hosts``."""
    log = get_logger("chisan.echonet.discovery")
    await transport.start()
    found: dict[str, tuple[list[EOJ] | None, bytes | None]] = {}

    def heard(note: Notification) -> None:
        eojs = parse_instance_list(note.props.get(_ANNOUNCEMENT) or note.props.get(_INSTANCE_LIST))
        if eojs is not None and note.host not in found:
            found[note.host] = (eojs, None)

    def take(host: str, frame: Frame) -> None:
        if frame.esv not in (ESV.GET_RES, ESV.GET_SNA) or not frame.seoj.is_node_profile:
            return
        readable = frame.readable()
        found[host] = (
            parse_instance_list(readable.get(_INSTANCE_LIST)),
            readable.get(_IDENTIFICATION),
        )

    result = DiscoveryResult()
    unsubscribe = transport.subscribe(heard, eoj=NODE_PROFILE)
    try:

        async def unicast(host: str) -> None:
            try:
                answer = await transport.get(host, NODE_PROFILE, [_INSTANCE_LIST, _IDENTIFICATION])
            except EchonetError as exc:
                result.failures[host] = str(exc)
                return
            found[host] = (
                parse_instance_list(answer.get(_INSTANCE_LIST)),
                answer.get(_IDENTIFICATION),
            )

        tasks = [asyncio.create_task(unicast(h)) for h in dict.fromkeys(hosts)]
        if multicast:
            if not transport.multicast_joined:
                log.warning("multicast discovery without group membership; answers may be lost")
            try:
                for host, frame in await transport.multicast_get(
                    NODE_PROFILE, [_INSTANCE_LIST, _IDENTIFICATION], window_s
                ):
                    take(host, frame)
            except OSError as exc:
                log.warning("multicast Get failed", error=str(exc))
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        unsubscribe()

    async def describe(host: str, eojs: list[EOJ] | None, ident: bytes | None) -> None:
        try:
            node = await describe_node(transport, host, eojs, ident)
        except EchonetError as exc:
            result.failures[host] = str(exc)
            return
        result.nodes.append(node)

    await asyncio.gather(*(describe(h, e, i) for h, (e, i) in found.items()))
    for node in result.nodes:
        result.failures.pop(node.address, None)
    result.nodes.sort(key=lambda n: tuple(_address_key(n.address)))
    return result


def _address_key(address: str) -> list[int]:
    with contextlib.suppress(ValueError):
        return [int(part) for part in address.split(".")]
    return [0]
