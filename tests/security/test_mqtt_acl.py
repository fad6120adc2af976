"""Per-site confinement on the broker, and the daemon working inside it.

The broker requires a client certificate and maps its CN to the username; one ACL line,
``pattern readwrite chisan/v1/%u/#``, is all a gateway is granted. A raw client holding a gateway's
certificate tries every way out of its subtree and the backend's wildcard subscriber proves
nothing got through; then the real daemon runs under the same rules, settles slots and executes a
signed command, while commands for it sent the wrong way (on another site's topic, or by another
site's certificate) never reach it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import aiomqtt

from gateway.clock import JST, AcceleratedClock
from tests.security.conftest import PREFIX, SITES, AclBroker, listening
from tests.support.backend import Signer, acks
from tests.support.home import simulated_home, until

ME, OTHER, LOOKALIKE = SITES
NODE = "127.0.8.1"
GATEWAY = "127.0.8.2"


def gateway_client(broker: AclBroker, site: str, **kw: object) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.tls_port,
        identifier=f"{site}-raw",
        tls_params=broker.tls(site),
        protocol=aiomqtt.ProtocolVersion.V5,
        **kw,  # type: ignore[arg-type]
    )


def backend_client(broker: AclBroker) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.backend_port, identifier="backend")


async def test_a_gateway_certificate_reaches_only_its_own_site(acl_broker: AclBroker) -> None:
    async with (
        listening(backend_client(acl_broker)) as backend,
        listening(gateway_client(acl_broker, ME)) as gw,
    ):
        await backend.client.subscribe("#", qos=1)

        # Subscribing: its own subtree is granted. Filters reaching beyond it are accepted by
        # mosquitto 2.0 too (it judges "read" per delivered message, not per filter), so what
        # proves the confinement is that nothing from outside is ever delivered on them.
        [own] = await gw.client.subscribe(f"{PREFIX}/{ME}/#", qos=1)
        assert own.value < 0x80
        for topic in (
            f"{PREFIX}/{OTHER}/#",
            f"{PREFIX}/{OTHER}/cmd",
            f"{PREFIX}/{LOOKALIKE}/#",
            f"{PREFIX}/+/cmd",
            f"{PREFIX}/#",
            "#",
            "$SYS/#",
            "other/#",
        ):
            await gw.client.subscribe(topic, qos=1)

        # Receiving: the backend writes to every site; only this site's message arrives.
        for site in SITES:
            await backend.client.publish(f"{PREFIX}/{site}/cmd", site.encode(), qos=1)
        await backend.client.publish("other/news", b"x", qos=1)
        await until(lambda: f"{PREFIX}/{ME}/cmd" in gw.topics(), 10)

        # Publishing: everything outside the subtree is dropped by the broker; the last, allowed
        # publication is the barrier (QoS 1 on one connection is delivered in order).
        for topic in (
            f"{PREFIX}/{OTHER}/slot",
            f"{PREFIX}/{OTHER}/cmd",
            f"{PREFIX}/{LOOKALIKE}/state",
            f"{PREFIX}/state",
            "other/news",
            "$SYS/broker/x",
        ):
            await gw.client.publish(topic, b"escape", qos=1)
        await gw.client.publish(f"{PREFIX}/{ME}/slot", b"mine", qos=1)
        await until(lambda: (f"{PREFIX}/{ME}/slot", b"mine") in backend.received, 10)
        await asyncio.sleep(0.3)

    # Overlapping filters deliver a message once per filter (MQTT 5); the topics are what count.
    assert {t for t, _ in gw.received} == {f"{PREFIX}/{ME}/cmd", f"{PREFIX}/{ME}/slot"}
    assert {p for _, p in gw.received} == {ME.encode(), b"mine"}
    assert [t for t, p in backend.received if p == b"escape"] == []
    assert (f"{PREFIX}/{ME}/slot", b"mine") in backend.received


async def test_without_a_certificate_nothing_connects(acl_broker: AclBroker) -> None:
    import ssl

    anonymous = aiomqtt.Client(
        "127.0.0.1",
        acl_broker.tls_port,
        tls_params=aiomqtt.TLSParameters(
            ca_certs=str(acl_broker.pki["ca"]),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        ),
        timeout=3,
    )
    try:
        async with anonymous:
            connected = True
    except aiomqtt.MqttError:
        connected = False
    assert not connected


async def test_the_daemon_works_under_the_acl_and_hears_only_its_own_commands(
    tmp_path: Path, acl_broker: AclBroker
) -> None:
    clock = AcceleratedClock(30, datetime(2026, 11, 27, 11, 59, 0, tzinfo=JST))
    signer = Signer(tmp_path)
    old = f'[mqtt]\nurl = "mqtt://127.0.0.1:{acl_broker.backend_port}"\n'

    def under_acl(text: str) -> str:
        assert old in text
        text = text.replace(old, acl_broker.mqtt_section(ME))
        return text.replace('bind = "127.0.0.1"', f'bind = "{GATEWAY}"')

    async with simulated_home(
        tmp_path,
        acl_broker.backend_port,
        clock,
        NODE,
        ("battery", "pv"),
        edit_config=under_acl,
        soc_pct=60,
    ) as home:
        app, backend, node = home.app, home.backend, home.node
        assert app.cfg.mqtt.url.startswith("mqtts://")
        # Settlement: history slots are published, acknowledged end to end, the backlog drains.
        await backend.wait_for(lambda: len(backend.records) >= 3, timeout=60)
        await backend.wait_for(lambda: app.store.backlog_count() == 0, timeout=30)
        assert {r["site"] for r in backend.records.values()} == {ME}
        await until(lambda: app.uplink.connected and not app.control.failsafe, 60)

        # A valid, signed command on another site's topic (only the backend can write there).
        await backend.send(OTHER, "cmd", signer.command(clock, id="for-other"))
        # ...on a look-alike site's topic, and below our own command topic.
        await backend.send(LOOKALIKE, "cmd", signer.command(clock, id="for-lookalike"))
        await backend.send(ME, "cmd/x", signer.command(clock, id="below-cmd"))
        # The same from another site's gateway, and from a look-alike site, onto our topic.
        for site in (OTHER, LOOKALIKE):
            async with gateway_client(acl_broker, site) as intruder:
                await intruder.publish(
                    f"{PREFIX}/{ME}/cmd", signer.command(clock, id=f"from-{site}"), qos=1
                )
                await intruder.publish(f"{PREFIX}/{ME}/slot/ack", json.dumps({"seq": 10**6}), qos=1)
        sets_before = len(node.set_log)

        # Then a command the right way: it is received, scheduled, started.
        await backend.send(ME, "cmd", signer.command(clock, id="mine"))
        await until(lambda: "started" in acks(backend, "mine"), 30)
        await asyncio.sleep(0.3)
        strays = ("for-other", "for-lookalike", "below-cmd", f"from-{OTHER}", f"from-{LOOKALIKE}")
        for stray in strays:
            assert acks(backend, stray) == []
            assert app.store.get_command(stray) is None
        assert [c.id for c in app.store.commands()] == ["mine"]
        assert len(node.set_log) > sets_before  # only "mine" drove the battery
        assert app.uplink.stats.bad_acks == 0
    assert backend.invalid == []
