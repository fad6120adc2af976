"""Runs the daemon's components as tasks and keeps them alive.

A gateway in a home is never watched by a person: a component that crashes (a serial port that
vanished, a broker that refused us) is restarted with capped exponential backoff, logged with its
exception, while the others keep running. One stuck component never blocks shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.clock import Clock, SystemClock
from gateway.logs import get_logger
from gateway.sdnotify import Notifier, watchdog_interval


class Component(Protocol):
    """Something the supervisor runs: ``run`` returns only when the component is finished."""

    name: str

    async def run(self) -> None: ...


@dataclass
class FunctionComponent:
    """Wraps a coroutine function as a component."""

    name: str
    func: Callable[[], Awaitable[None]]

    async def run(self) -> None:
        await self.func()


@dataclass
class Backoff:
    """Capped exponential backoff with jitter; resets after a component ran ``stable_s``."""

    initial_s: float = 1.0
    cap_s: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2
    stable_s: float = 120.0

    def delay(self, failures: int) -> float:
        base = min(self.cap_s, self.initial_s * self.factor ** max(0, failures - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


@dataclass
class ComponentState:
    component: Component
    task: asyncio.Task[None] | None = None
    failures: int = 0
    restarts: int = 0
    started_at: float = 0.0
    finished: bool = False
    last_error: str | None = None


@dataclass
class Supervisor:
    components: list[Component]
    clock: Clock = field(default_factory=SystemClock)
    backoff: Backoff = field(default_factory=Backoff)
    notifier: Notifier = field(default_factory=Notifier)
    shutdown_timeout_s: float = 4.0
    states: dict[str, ComponentState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.supervisor")
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Health of each component, for status output."""
        return {
            name: {
                "running": st.task is not None and not st.task.done(),
                "restarts": st.restarts,
                "last_error": st.last_error,
            }
            for name, st in self.states.items()
        }

    def _start(self, state: ComponentState) -> None:
        name = state.component.name
        state.started_at = self.clock.monotonic()
        task = asyncio.create_task(self._guard(state), name=f"component:{name}")
        state.task = task

    async def _guard(self, state: ComponentState) -> None:
        """Run one component until it ends; record a crash for the supervisor loop to handle."""
        name = state.component.name
        try:
            await state.component.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a component must never take the daemon down
            ran = self.clock.monotonic() - state.started_at
            if ran >= self.backoff.stable_s:
                state.failures = 0
            state.failures += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            delay = self.backoff.delay(state.failures)
            self.log.error(
                "component crashed", component=name, restart_in_s=round(delay, 2), exc_info=exc
            )
            await self._sleep_or_stop(delay)
            if not self._stop.is_set():
                state.restarts += 1
                self.log.info("restarting component", component=name, restarts=state.restarts)
                self._start(state)
            return
        state.finished = True
        self.log.info("component finished", component=name)

    async def _sleep_or_stop(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Start everything, report READY, keep the watchdog fed, stop on :meth:`stop`."""
        for comp in self.components:
            if comp.name in self.states:
                raise ValueError(f"duplicate component name {comp.name}")
            self.states[comp.name] = ComponentState(comp)
            self._start(self.states[comp.name])
        self.notifier.ready(f"{len(self.components)} components running")
        self.log.info("started", components=[c.name for c in self.components])
        if on_ready:
            on_ready()
        interval = watchdog_interval()
        try:
            while not self._stop.is_set():
                # The watchdog ping proves this loop turns; a blocked loop stops the pings.
                if interval:
                    self.notifier.watchdog()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=interval or 3600)
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        self._stop.set()
        self.notifier.stopping()
        self.log.info("stopping")
        tasks = [st.task for st in self.states.values() if st.task and not st.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout_s)
            for task in pending:
                self.log.warning("component did not stop in time", task=task.get_name())
        self.log.info("stopped")
