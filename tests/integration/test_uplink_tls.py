"""mqtts:// with client certificates against a real mosquitto that requires them."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from gateway.clock import SystemClock
from gateway.config import MqttConfig
from gateway.provenance import init_key, load_private
from gateway.store import Store
from gateway.uplink import Uplink
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.pki import write_pki

SITE = "sg-0001"


async def test_mqtts_with_client_certificate(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port)
    broker.conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        # As root, mosquitto drops to its own user, which cannot read pytest's private tmp dir.
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    broker.start()
    init_key(tmp_path / "site.pem")
    store = Store(tmp_path / "chisan.db", SITE, load_private(tmp_path / "site.pem"))
    try:
        good = MqttConfig(
            url=f"mqtts://127.0.0.1:{port}",
            client_id=SITE,
            ca_file=pki["ca"],
            cert_file=pki["client_cert"],
            key_file=pki["client_key"],
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        )
        uplink = Uplink(good, SITE, store, SystemClock())
        task = asyncio.create_task(uplink.run())
        try:
            await asyncio.wait_for(uplink.wait_connected(), 10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Without a client certificate the broker refuses the connection: never connected.
        anonymous = MqttConfig(
            url=f"mqtts://127.0.0.1:{port}",
            client_id=SITE,
            ca_file=pki["ca"],
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        )
        refused = Uplink(anonymous, SITE, store, SystemClock())
        task = asyncio.create_task(refused.run())
        await asyncio.sleep(1.0)
        assert not refused.connected and refused.stats.connects == 0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        store.close()
        broker.stop()
