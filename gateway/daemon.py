"""``chisan run``: build the components a config asks for and supervise them until a signal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.logs import get_logger
from gateway.supervisor import Component, Supervisor


def build_components(cfg: Config, clock: Clock) -> list[Component]:
    """The daemon's components for this config (see gateway/app.py for the wiring)."""
    from gateway.app import Gateway

    return Gateway(cfg, clock).build().components


async def run_daemon(
    cfg: Config,
    clock: Clock | None = None,
    on_ready: Callable[[], None] | None = None,
    components: list[Component] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; shutdown completes within the supervisor's timeout."""
    clock = clock or SystemClock()
    log = get_logger("chisan.daemon", site=cfg.site.id)
    app = None
    if components is None:
        from gateway.app import Gateway

        app = Gateway(cfg, clock).build()
        components = app.components
    sup = Supervisor(components, clock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sup, sig, log)
    try:
        await sup.run(on_ready=on_ready)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if app is not None:
            app.close()


def _on_signal(sup: Supervisor, sig: signal.Signals, log: object) -> None:
    get_logger("chisan.daemon").info("signal received, shutting down", signal=sig.name)
    sup.stop()
