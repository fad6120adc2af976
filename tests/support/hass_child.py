"""A process running only the Home Assistant bridge, for kill -9 tests.

Usage: python -m tests.support.hass_child PORT NODE_ID
Prints "ready" once connected; the test then kills it without warning.
"""

from __future__ import annotations

import asyncio
import sys

from gateway.clock import JST, SystemClock
from gateway.config import HomeAssistantConfig
from gateway.hass import HomeAssistant
from gateway.readings import ReadingsHub


async def main(port: int, node_id: str) -> None:
    clock = SystemClock()
    hub = ReadingsHub()
    hub.update("meter.power_w", 500, clock.now().astimezone(JST), "meter")
    cfg = HomeAssistantConfig(
        enabled=True, url=f"mqtt://127.0.0.1:{port}", client_id=f"{node_id}-ha", node_id=node_id
    )
    bridge = HomeAssistant(cfg, hub, clock, frozenset({"meter"}))
    task = asyncio.create_task(bridge.run())
    while bridge.connects == 0:
        await asyncio.sleep(0.02)
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
