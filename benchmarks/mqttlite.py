"""A lean MQTT 3.1.1 client for load generation: thousands of connections in one process.

The gateway itself uses aiomqtt; for the fleet benchmark the simulator must not be the
bottleneck, and a paho client per simulated gateway (with its own housekeeping task) caps one
process at a few hundred messages per second with 5,000 clients. This speaks only what the fleet
needs: CONNECT with a will, SUBSCRIBE, PUBLISH at QoS 0/1 both ways, PUBACK, PINGREQ. It is a
benchmark tool, not a general client: no QoS 2, no session resumption, no TLS.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14


class MqttLiteError(Exception):
    """The broker refused us or the connection broke."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _varint(len(body)) + body


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def connect_packet(client_id: str, keepalive: int, will: Will | None) -> bytes:
    flags = 0x02  # clean session
    payload = _str(client_id)
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += _str(will.topic) + _str(will.payload)
    return _packet(
        CONNECT, 0, _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    )


def publish_packet(topic: str, payload: bytes, qos: int, retain: bool, pid: int) -> bytes:
    body = _str(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return _packet(PUBLISH, qos << 1 | int(retain), body)


class Client(asyncio.Protocol):
    """One connection. ``on_message(topic, payload)`` is called for every PUBLISH received."""

    def __init__(self, on_message: Callable[[str, bytes], None] | None = None) -> None:
        self.on_message = on_message or (lambda _t, _p: None)
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._pid = 0
        self._waiting: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._connack: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        client_id: str,
        *,
        will: Will | None = None,
        keepalive: int = 60,
        on_message: Callable[[str, bytes], None] | None = None,
        timeout: float = 30,
    ) -> Client:
        loop = asyncio.get_running_loop()
        _, client = await asyncio.wait_for(
            loop.create_connection(lambda: cls(on_message), host, port), timeout
        )
        client._connack = loop.create_future()
        client._send(connect_packet(client_id, keepalive, will))
        await asyncio.wait_for(client._connack, timeout)
        return client

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        err = MqttLiteError(f"connection lost: {exc}" if exc else "connection closed")
        for fut in [*self._waiting.values(), self._connack]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= 2:
            length, mult, i = 0, 1, 1
            while True:
                if i >= len(buf):
                    return
                byte = buf[i]
                length += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
            if len(buf) < i + length:
                return
            header, body = buf[0], bytes(buf[i : i + length])
            del buf[: i + length]
            self._handle(header >> 4, header & 0x0F, body)

    def _handle(self, kind: int, flags: int, body: bytes) -> None:
        if kind == PUBLISH:
            qos = (flags >> 1) & 3
            (n,) = struct.unpack_from("!H", body)
            topic = body[2 : 2 + n].decode()
            at = 2 + n
            if qos:
                pid = body[at : at + 2]
                at += 2
                self._send(_packet(PUBACK, 0, pid))
            self.on_message(topic, body[at:])
        elif kind in (PUBACK, SUBACK):
            (pid,) = struct.unpack_from("!H", body)
            fut = self._waiting.pop((kind, pid), None)
            if fut is not None and not fut.done():
                if kind == SUBACK and 0x80 in body[2:]:
                    fut.set_exception(MqttLiteError("subscription refused"))
                else:
                    fut.set_result(None)
        elif kind == CONNACK and self._connack is not None and not self._connack.done():
            if body[1] != 0:
                self._connack.set_exception(MqttLiteError(f"CONNACK return code {body[1]}"))
            else:
                self._connack.set_result(None)

    # ------------------------------------------------------------------ requests

    def _send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise MqttLiteError("not connected")
        self.transport.write(data)

    def _next(self, kind: int) -> tuple[int, asyncio.Future[None]]:
        self._pid = self._pid % 0xFFFF + 1
        fut = asyncio.get_running_loop().create_future()
        self._waiting[(kind, self._pid)] = fut
        return self._pid, fut

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        pid, fut = self._next(SUBACK)
        self._send(_packet(SUBSCRIBE, 2, struct.pack("!H", pid) + _str(topic) + bytes([qos])))
        await fut

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if qos == 0:
            self._send(publish_packet(topic, payload, 0, retain, 0))
            return
        pid, fut = self._next(PUBACK)
        self._send(publish_packet(topic, payload, 1, retain, pid))
        await fut

    def ping(self) -> None:
        self._send(_packet(PINGREQ, 0, b""))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_packet(DISCONNECT, 0, b""))
            self.transport.close()
