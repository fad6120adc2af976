"""The broker: reachable, TLS trusted, session accepted, a publish on the site's own topics.

The doctor connects with its own client id (``<client_id>-doctor``) so that a running daemon's
session is never taken over, and publishes on ``<prefix>/<site>/doctor``, which the backend
ignores; reading its own message back shows the broker delivers on the site's topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from typing import Any

from gateway.config import Config
from gateway.doctor.model import Checks, Failed, Outcome, Verdict


class BrokerChecks(Checks):
    """Rows ``broker``, ``broker_tls``, ``mqtt_session``, ``test_publish``."""

    async def broker(self) -> Outcome:
        m = self.cfg.mqtt
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(m.host, m.port), 10)
        except (OSError, TimeoutError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise Failed(
                f"cannot reach {m.host}:{m.port}: {why}",
                "check mqtt.url, that the broker runs, and the network/firewall "
                f"(nc -vz {m.host} {m.port})",
            ) from None
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return Outcome(f"{m.host}:{m.port} reachable")

    async def broker_tls(self) -> Outcome:
        m = self.cfg.mqtt
        if not m.tls:
            if _loopback(m.host):
                return Outcome("plain mqtt:// on this machine (no TLS needed)")
            return Outcome(
                f"mqtt:// to {m.host} is not encrypted",
                Verdict.WARN,
                "use mqtts:// with mqtt.ca_file (and a client certificate) outside a test bench",
            )
        try:
            ctx = ssl.create_default_context(cafile=str(m.ca_file) if m.ca_file else None)
            if m.cert_file and m.key_file:
                ctx.load_cert_chain(str(m.cert_file), str(m.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise Failed(
                f"cannot load the TLS files: {exc}",
                "check mqtt.ca_file, mqtt.cert_file and mqtt.key_file",
            ) from None
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(m.host, m.port, ssl=ctx, server_hostname=m.host), 10
            )
        except ssl.SSLCertVerificationError as exc:
            raise Failed(
                f"the broker's certificate is not trusted: {exc.verify_message}",
                "mqtt.ca_file must hold the CA that signed the broker's certificate, and the "
                "certificate must name the host of mqtt.url",
            ) from None
        except (OSError, TimeoutError) as exc:
            raise Failed(
                f"TLS handshake with {m.host}:{m.port} failed: {exc}",
                "check that the port speaks TLS and that the client certificate is accepted",
            ) from None
        sslobj = writer.get_extra_info("ssl_object")
        version = sslobj.version() if sslobj is not None else "TLS"
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        who = "with client certificate" if m.cert_file else "server authenticated"
        return Outcome(f"{version}, certificate verified, {who}")

    async def mqtt_session(self) -> Outcome:
        import aiomqtt

        client = self.mqtt_client()
        step = (
            "check mqtt.username / mqtt.password_file or the client certificate, and that "
            "the broker's ACL knows this site"
        )
        # A broker that drops a refused client without a CONNACK leaves the client waiting:
        # give up before the check's own limit so the row says why.
        limit = max(1.0, min(10.0, self.options.check_timeout_s - 2))
        try:
            async with asyncio.timeout(limit), client:
                pass
        except aiomqtt.MqttError as exc:
            raise Failed(f"the broker refused the session: {exc}", step) from None
        except TimeoutError:
            raise Failed(
                f"no CONNACK within {limit:g} s: the broker dropped the connection", step
            ) from None
        return Outcome(f"MQTT {self.cfg.mqtt.protocol} session accepted")

    async def test_publish(self) -> Outcome:
        import aiomqtt

        from gateway.app import gateway_version
        from gateway.provenance import canonical_json
        from gateway.slots import iso

        topic = doctor_topic(self.cfg)
        marker = os.urandom(6).hex()
        body = canonical_json({"doctor": marker, "at": iso(_now()), "version": gateway_version()})
        client = self.mqtt_client()
        echoed = False
        try:
            async with client:
                await client.subscribe(topic, qos=1)
                await client.publish(topic, body, qos=1, timeout=10)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.publish_wait_s):
                        async for message in client.messages:
                            payload = message.payload
                            if (
                                isinstance(payload, bytes | bytearray)
                                and marker.encode() in payload
                            ):
                                echoed = True
                                break
        except aiomqtt.MqttError as exc:
            raise Failed(
                f"publishing on {topic} failed: {exc}",
                f"the broker's ACL must let this client publish under "
                f"{self.cfg.mqtt.topic_prefix}/{self.cfg.site.id}/",
            ) from None
        if not echoed:
            return Outcome(
                f"published on {topic} (acknowledged) but not received back",
                Verdict.WARN,
                f"the ACL may not allow subscribing to {topic}; the gateway only needs its cmd "
                "and slot/ack topics, so this is harmless if those are allowed",
            )
        return Outcome(f"published on {topic} and received it back", data={"topic": topic})

    def mqtt_client(self) -> Any:
        import aiomqtt

        from gateway.secrets import read_secret

        m = self.cfg.mqtt
        tls = None
        if m.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(m.ca_file) if m.ca_file else None,
                certfile=str(m.cert_file) if m.cert_file else None,
                keyfile=str(m.key_file) if m.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        password = read_secret(m.password_file).reveal() if m.password_file else None
        return aiomqtt.Client(
            m.host,
            m.port,
            # Its own id: the daemon's session (same id) must not be taken over.
            identifier=f"{m.client_id}-doctor",
            username=m.username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5
            if m.protocol == "5"
            else aiomqtt.ProtocolVersion.V311,
            tls_params=tls,
            timeout=10,
        )


def doctor_topic(cfg: Config) -> str:
    """The site's own topic the doctor's test publish goes to (the backend ignores it)."""
    return f"{cfg.mqtt.topic_prefix}/{cfg.site.id}/doctor"


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _now() -> Any:
    from gateway.clock import SystemClock

    return SystemClock().now()
