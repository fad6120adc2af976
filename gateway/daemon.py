"""``chisan run``: build the components a config asks for and supervise them until a signal."""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import signal
import sys
from collections.abc import Callable

from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.logs import get_logger
from gateway.supervisor import Component, Supervisor

#: prctl(2) option: whether the process may dump core and be attached to by other processes.
PR_SET_DUMPABLE = 4
#: No access for others to what the daemon creates (store, WAL, site key, exports); the group
#: (``chisan``, for the CLI) may read.
UMASK = 0o027


def harden_process() -> list[str]:
    """Keep the secrets the daemon holds in memory out of core files and other processes.

    The B-route password, the MQTT password and the site's signing key live in this process's
    memory; a core dump (written by the kernel, often world-readable, often uploaded by crash
    reporters) or a same-user ptrace would hand them out. Core size goes to 0 for good (soft and
    hard), the process becomes non-dumpable, and new files are private. Called before the config
    (which reads the password file) is loaded. Returns what could not be done, for one warning.
    """
    problems: list[str] = []
    os.umask(UMASK)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        problems.append(f"RLIMIT_CORE: {exc}")
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
                problems.append(f"prctl(PR_SET_DUMPABLE): {os.strerror(ctypes.get_errno())}")
        except (OSError, AttributeError) as exc:
            problems.append(f"prctl(PR_SET_DUMPABLE): {exc}")
    return problems


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
