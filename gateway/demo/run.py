"""``chisan demo``: a simulated day of a PV + storage home, in minutes, with nothing installed.

One process holds everything: a private broker (mosquitto, or the embedded amqtt), the simulated
home (B-route meter emulator on a pseudo-terminal, ECHONET PV and water heater on a loopback
address, the battery on the same ECHONET node or as a SunSpec storage inverter on a Modbus TCP
port), the reference backend, and the gateway itself, built from a generated config file exactly
as ``chisan run`` builds it. All of it runs on one accelerated clock starting in the early
morning, so the DR day plays out: 上げDR at the midday surplus, 下げDR with export in the evening
peak, and the gateway's DR reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from drivers.broute.sim import DEFAULT_PASSWORD, DEFAULT_RBID
from drivers.readings import (
    BATTERY_POWER_W,
    BATTERY_SOC_PCT,
    METER_POWER_W,
    PV_POWER_W,
)
from gateway.baseline import BaselineConfig, DayClass, day_class
from gateway.clock import JST
from gateway.demo.backend import ReferenceBackend
from gateway.demo.broker import BrokerChoice, BrokerInfo, BrokerUnavailable, private_broker
from gateway.demo.clock import DemoClock
from gateway.demo.config import ECHONET_BATTERY, SUNSPEC_BATTERY, SUNSPEC_PV, day_config
from gateway.demo.home import BatteryChoice, SimHome, simulated_home
from gateway.demo.schedule import due
from gateway.demo.summary import Summary, render, summarise
from gateway.demo.view import DemoView, Flows
from gateway.provenance import load_private, public_key_pem
from gateway.settlement import EPOCH_KEY
from gateway.slots import SLOT, day_start, iso, slot_start

DEMO_SITE = "demo-0001"
DEMO_NODE = "127.0.0.20"  # the simulated ECHONET node
#: After the time is up, wait at most this long (real seconds) for the last acks.
DRAIN_S = 5.0
#: The clock's speed while the gateway joins the meter and backfills its history: slow enough
#: that real-time radio frames and store writes fit into the gateway's timeouts.
WARMUP_SPEED = 60.0
#: Real seconds the warm-up may take at most; the demo then goes on at full speed regardless.
WARMUP_MAX_S = 30.0


def baseline_days(day: date, config: BaselineConfig | None = None) -> int:
    """Days back the gateway must account for so a DR event on ``day`` finds its full baseline
    pool (5 weekdays, or 3 weekend/holiday days), as a gateway installed that long ago would."""
    cfg = config or BaselineConfig()
    cls = day_class(day, new_year=cfg.new_year_holidays)
    pool = cfg.weekday_pool if cls is DayClass.WEEKDAY else cfg.holiday_pool
    back = found = 0
    while found < pool and back < cfg.lookback_days:
        back += 1
        if day_class(day - timedelta(days=back), new_year=cfg.new_year_holidays) is cls:
            found += 1
    return back


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 180.0
    speed: float = 400.0
    broker: BrokerChoice = BrokerChoice.AUTO
    battery: BatteryChoice = BatteryChoice.ECHONET
    start: dtime = dtime(5, 0)
    node: str = DEMO_NODE
    #: The gateway's own ECHONET address (UDP 3610).
    bind: str = "127.0.0.1"
    json: bool = False
    #: None: a live dashboard when the console is a terminal (and not --json).
    live: bool | None = None
    records_file: Path | None = None


def _write_secrets(folder: Path) -> Ed25519PrivateKey:
    pw = folder / "broute-password"
    pw.write_text(DEFAULT_PASSWORD + "\n")
    pw.chmod(0o600)
    key = Ed25519PrivateKey.generate()
    (folder / "backend.pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key


def _flows(app: Any) -> Flows:
    def value(key: str) -> float | None:
        r = app.hub.latest(key)
        v = None if r is None else r.value
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    heating = app.hub.latest("water_heater.heating")
    state = None
    if heating is not None and heating.value is not None:
        state = "heating" if heating.value else "idle"
    per_pv = {
        name: float(r.value) if isinstance(r.value, int | float) else None
        for name, r in sorted(app.hub.by_device(PV_POWER_W).items())
    }
    return Flows(
        meter_w=value(METER_POWER_W),
        pv_w=value(PV_POWER_W),
        pv_devices=per_pv,
        battery_w=value(BATTERY_POWER_W),
        soc_pct=value(BATTERY_SOC_PCT),
        water_heater=state,
    )


def _pv_by_device(store: Any, backend: ReferenceBackend) -> dict[str, int]:
    """Each PV inverter's part of the day's stored ``pv_wh``: the same boundary snapshots of the
    inverters' counters that settlement subtracted, taken one inverter at a time."""
    out: dict[str, int] = {}
    for record in backend.newest_by_slot().values():
        if not backend.is_live(record) or not isinstance(record.get("pv_wh"), int):
            continue
        start = datetime.fromisoformat(str(record["slot_start"]))
        a = store.get_json(f"devices.counters.{iso(start)}") or {}
        b = store.get_json(f"devices.counters.{iso(start + SLOT)}") or {}
        before, after = a.get("pv_by_device") or {}, b.get("pv_by_device") or {}
        for name, end in after.items():
            begin = before.get(name)
            if isinstance(begin, int) and isinstance(end, int):
                out[name] = out.get(name, 0) + end - begin
    return dict(sorted(out.items()))


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Ctrl-C (or a TERM) ends the demo early, with its summary."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (e.g. under a test runner): no handler
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _dispatcher(backend: ReferenceBackend, clock: DemoClock) -> None:
    """The backend's dispatch desk: each planned command goes out at its issue time."""
    sent: set[str] = set()
    while True:
        if backend.ready.is_set():
            for d in due(clock.now(), sent):
                try:
                    await backend.dispatch(d, clock.now())
                except (aiomqtt.MqttError, RuntimeError) as exc:  # reconnecting: next round
                    backend.feed("warn", f"could not send {d.id}: {exc}")
                    break
                sent.add(d.id)
        await asyncio.sleep(0.05)


async def _ticker(view: DemoView) -> None:
    while True:
        view.tick()
        await asyncio.sleep(0.25)


async def _warm_up(
    backend: ReferenceBackend, app: Any, begin: datetime, stop: asyncio.Event, deadline: float
) -> bool:
    """Until the slot before the demo's start is stored and acked at the backend (the history
    is in), the meter is fresh, or the warm-up has taken too long."""
    last = iso(slot_start(begin) - SLOT)
    limit = min(deadline, time.monotonic() + WARMUP_MAX_S)
    while time.monotonic() < limit and not stop.is_set():
        stored = any(
            r.get("slot_start") == last and r["seq"] <= backend.acked_upto
            for r in backend.records.values()
        )
        if stored and app.control is not None and not app.control.failsafe:
            return True
        await asyncio.sleep(0.1)
    return False


async def _drain(backend: ReferenceBackend, app: Any) -> None:
    """Give the uplink a moment to deliver (and the backend to ack) what is still in flight."""
    deadline = time.monotonic() + DRAIN_S
    while time.monotonic() < deadline:
        if app.store.backlog_count() == 0 and backend.acked_upto >= app.store.max_seq():
            return
        await asyncio.sleep(0.05)


async def run_demo(
    options: DemoOptions, console: Console | None = None, stop: asyncio.Event | None = None
) -> Summary:
    """Run the demo until ``duration_s`` real seconds pass or ``stop`` is set."""
    from gateway.app import Gateway
    from gateway.config import load
    from gateway.supervisor import Supervisor

    console = console or Console()
    stop = stop or asyncio.Event()
    begin = datetime.combine(datetime.now(JST).date(), options.start, JST)
    clock = DemoClock(min(WARMUP_SPEED, options.speed), begin)
    backfill = baseline_days(begin.date())
    wall0 = time.monotonic()
    deadline = wall0 + options.duration_s
    with tempfile.TemporaryDirectory(prefix="chisan-demo-") as tmp, _stop_on_signals(stop):
        folder = Path(tmp)
        key = _write_secrets(folder)
        async with (
            private_broker(options.broker, folder) as broker,
            simulated_home(clock, options.node, options.battery) as home,
        ):
            battery = (
                SUNSPEC_BATTERY.format(port=home.modbus_port)
                if home.battery_choice is BatteryChoice.SUNSPEC
                else ECHONET_BATTERY.format(node=options.node)
            )
            cfg_path = folder / "chisan.toml"
            cfg_path.write_text(
                day_config(
                    site=DEMO_SITE,
                    mqtt_port=broker.port,
                    protocol=broker.protocol,
                    pty=home.emu.path,
                    rbid=DEFAULT_RBID,
                    bind=options.bind,
                    node=options.node,
                    battery=battery,
                    backfill_days=backfill,
                    sunspec_pv=(
                        SUNSPEC_PV.format(port=home.pv_port) if home.pv_port is not None else ""
                    ),
                )
            )
            cfg = load(cfg_path)
            app = Gateway(cfg, clock).build()
            # As if installed some days ago: the gateway accounts (and backfills from the meter's
            # history) that far back, so the DR reports find their baseline days.
            epoch = day_start(begin.date() - timedelta(days=cfg.store.backfill_days))
            app.store.put_json(EPOCH_KEY, iso(epoch))
            backend = ReferenceBackend(broker.port, DEMO_SITE, key, feed=lambda k, t: None)
            backend.live_from = slot_start(begin)
            view = DemoView(
                console=console,
                backend=backend,
                now=clock.now,
                flows=lambda: _flows(app),
                header=_header(broker, home, options, begin),
                deadline=deadline,
                live=options.live if options.live is not None else console.is_terminal,
            )
            backend.feed = view.feed
            sup = Supervisor(app.components, clock)
            tasks: list[asyncio.Task[None]] = []
            try:
                with view:
                    tasks = [
                        asyncio.create_task(backend.run()),
                        asyncio.create_task(sup.run()),
                        asyncio.create_task(_dispatcher(backend, clock)),
                        asyncio.create_task(_ticker(view)),
                    ]
                    view.feed(
                        "info",
                        f"warming up at ×{clock.factor:g}: joining the meter, backfilling "
                        f"{backfill} days of its history",
                    )
                    warm = await _warm_up(backend, app, begin, stop, deadline)
                    clock.set_speed(options.speed)
                    if not stop.is_set() and time.monotonic() < deadline:
                        done = "history delivered" if warm else "warm-up cut short"
                        view.feed("info", f"{done}: running at ×{options.speed:g}")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), max(0.0, deadline - time.monotonic()))
                    tasks[2].cancel()  # the backend dispatches nothing more
                    why = "stopped" if stop.is_set() else "time is up"
                    view.feed("info", f"{why}: delivering what is still in flight")
                    await _drain(backend, app)
            finally:
                await _stop(sup, tasks)
            summary = summarise(
                backend,
                gateway_records=app.store.max_seq(),
                gateway_unacked=app.store.backlog_count(),
                live_from=slot_start(begin),
                sim_end=clock.now(),
                broker=broker.name,
                mqtt_protocol=broker.protocol,
                battery=home.battery_choice.value,
                speed=options.speed,
                wall_s=round(time.monotonic() - wall0, 1),
                interrupted=stop.is_set(),
                site_public_key=public_key_pem(load_private(cfg.store.site_key)),
                pv_device_wh=_pv_by_device(app.store, backend),
            )
            app.close()
            if options.records_file is not None:
                with options.records_file.open("w") as out:
                    for seq in sorted(backend.records):
                        out.write(json.dumps(backend.records[seq], sort_keys=True) + "\n")
    return summary


async def _stop(sup: Any, tasks: list[asyncio.Task[None]]) -> None:
    """Stop the gateway first (so it can still publish), then the rest; never wait forever."""
    sup.stop()
    gateway = tasks[1:2]
    if gateway:
        await asyncio.wait(gateway, timeout=10)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)


def _header(broker: BrokerInfo, home: SimHome, options: DemoOptions, begin: datetime) -> str:
    battery = (
        f"SunSpec inverter 127.0.0.1:{home.modbus_port}"
        if home.battery_choice is BatteryChoice.SUNSPEC
        else f"ECHONET {options.node}"
    )
    pv = f", SunSpec PV inverter 127.0.0.1:{home.pv_port}" if home.pv_port is not None else ""
    return (
        f"chisan demo: site {DEMO_SITE}, broker {broker.name} 127.0.0.1:{broker.port} "
        f"(MQTT {broker.protocol}), meter on {home.emu.path}, ECHONET node {options.node} "
        f"(PV, EcoCute){pv}, battery: {battery}; clock ×{options.speed:g} from "
        f"{begin:%Y-%m-%d %H:%M} JST for {options.duration_s:g} s"
    )


def main(options: DemoOptions) -> int:
    """Run the demo; print the summary (JSON on stdout with ``json``). 0 unless it failed."""
    console = Console(stderr=options.json)
    if not console.is_terminal:  # a log or a pipe: whole lines, not wrapped at 80 columns
        console = Console(stderr=options.json, width=max(console.width, 120), soft_wrap=True)
    loop = asyncio.new_event_loop()
    try:
        summary = loop.run_until_complete(run_demo(options, console))
    except BrokerUnavailable as exc:
        console.print(f"[red]chisan demo: {exc}[/red]")
        return 2
    except OSError as exc:  # e.g. the node's UDP 3610 is taken by another demo or device
        console.print(
            f"[red]chisan demo: cannot start the simulated home: {exc}[/red] "
            "(another demo running? choose other loopback addresses with --node/--bind)"
        )
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    finally:
        # A library task that ignores cancellation must not keep the demo from ending.
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.close()
    render(summary, console)
    if options.json:
        print(json.dumps(summary.to_json(), ensure_ascii=False, indent=2))
    if summary.interrupted:
        return 0
    return 0 if summary.slots_acked > 0 else 1
