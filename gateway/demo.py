"""``chisan demo``: the gateway's main job on a private config, for installers and reviewers.

It writes a throw-away configuration (with a private password file, as in the field) into a
temporary folder and runs the daemon against it for a while.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from gateway.config import Config, load

DEMO_CONFIG = """
[site]
id = "demo-0001"
fit = false

[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"

[store]
path = "chisan.db"

[control]
socket = "control.sock"

[log]
level = "info"
"""


def write_demo_config(folder: Path, mqtt_port: int = 1883) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chisan.toml"
    path.write_text(DEMO_CONFIG.format(mqtt_port=mqtt_port))
    return path


async def run_demo(duration_s: float) -> Config:
    from gateway.daemon import run_daemon

    with tempfile.TemporaryDirectory(prefix="chisan-demo-") as tmp:
        cfg = load(write_demo_config(Path(tmp)))
        task = asyncio.create_task(run_daemon(cfg))
        done, _ = await asyncio.wait({task}, timeout=duration_s)
        if not done:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
            await task
        return cfg
