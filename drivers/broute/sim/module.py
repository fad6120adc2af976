"""An SKSTACK IP Wi-SUN module with a smart meter behind it, for tests, the demo and installers.

It speaks both dialects (side-less BP35A1/RL7023 and the C-series BP35C0) byte for byte as the
parser expects them, because it prints through the same ``format_*`` functions of
:mod:`drivers.broute.dialect`, and it answers ECHONET Lite through the same frame codec the driver
uses, from the other side. Behaviour worth emulating, each taken from field reports:

* echo on until ``SKSREG SFE 0`` (and again after ``SKRESET``); ``ROPT``/``WOPT`` answering with a
  bare CR; ERXUDP data in hex or raw binary (which may contain CR LF);
* ``SKSCAN`` taking 9.6 ms × (2^D + 1) × 28 channels of clock time (times ``scan_scale``), finding
  the meter only from a given duration on; ``SKJOIN`` checking channel, PAN ID, address, ID and
  password (EVENT 25, else EVENT 24) after a PANA exchange of a few radio frames;
* ``SKSENDTO`` answered ``EVENT 21`` then ``OK``, the meter's reply one radio frame later;
  ``FAIL ER05`` for the other dialect's form, ``FAIL ER10`` without a session;
* periodic PANA re-authentication (EVENT 29 → 25, or 24), the meter's INF (or INFC) of EA/EB
  after every boundary, the INF of D5 after a join;
* faults: lost replies, garbage lines, send failures (EVENT 21 01), a module reset, a silent meter,
  the duty-cycle limit (EVENT 32/33).

Time: clock seconds (``clock.sleep``) for what follows the meter's day (scan length, re-auth
interval, boundaries), so an accelerated clock speeds them up; real seconds (``asyncio.sleep``)
for radio frames (``link_delay``), since an accelerated day does not make the radio faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from drivers.broute.dialect import (
    ECHONET_PORT,
    PANA_PORT,
    Dialect,
    format_einfo,
    format_epandesc,
    format_erxudp,
    format_event,
    mask_secrets,
    same_address,
    scan_seconds,
)
from drivers.broute.join import link_local_from_mac
from drivers.broute.sim.meter_model import MeterModel
from drivers.echonet.frame import (
    CONTROLLER,
    EOJ,
    ESV,
    NODE_PROFILE,
    DecodeError,
    Frame,
    Property,
    decode,
    encode,
    reply,
)
from gateway.clock import Clock

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_RBID",
    "EmulatorStats",
    "ModuleConfig",
    "ModuleEmulator",
    "NeighbourPan",
    "Notify",
]

DEFAULT_RBID = "0000003A00000000000000000051A1E0"
DEFAULT_PASSWORD = "SIMPASSWORD1"
METER_EOJ = EOJ(0x02, 0x88, 0x01)
_MAX_LINE = 1024
_CROSSING_S = 0.02


class Notify(StrEnum):
    INF = "inf"
    INFC = "infc"
    NONE = "none"


@dataclass(frozen=True)
class NeighbourPan:
    """Another household's meter the module hears in a scan; it never answers a join."""

    mac: str
    pan_id: int
    channel: int = 0x21
    lqi: int = 0x60
    pair_id: str = "00000000"


@dataclass
class ModuleConfig:
    """The module, its radio and the faults to inject (all may be changed while running).

    ``einfo_addr16`` False makes a C-series module print its side in place of the 16-bit address
    in EINFO (the form momonga expects); ``einfo_text`` replaces the EINFO line outright (firmware
    whose answer fits no known layout). ``visible_from`` is the smallest SKSCAN duration that
    finds the meter (99: never). ``link_delay`` ± ``link_jitter`` is real seconds per radio
    frame; ``scan_scale`` shrinks scans; ``reauth_s`` (clock seconds, 0 = never) spaces EVENT 29.
    ``lqi_spread`` makes each scan report the meter's (and neighbours') LQI ± up to that much, as
    a real radio fades; ``neighbours`` are other meters in range; ``ropt`` False is firmware
    without ROPT/WOPT (FAIL ER04).
    """

    dialect: Dialect = Dialect.BP35A1
    rbid: str = DEFAULT_RBID
    password: str = DEFAULT_PASSWORD
    echo: bool = True
    hex_data: bool = True
    einfo_addr16: bool = True
    einfo_text: str | None = None
    version: str | None = None
    module_mac: str = "001D129012345678"
    meter_mac: str = "001C6400030C12A4"
    channel: int = 0x21
    pan_id: int = 0x8888
    lqi: int = 0xB4
    lqi_spread: int = 0
    neighbours: tuple[NeighbourPan, ...] = ()
    ropt: bool = True
    visible_from: int = 1
    scan_scale: float = 1.0
    link_delay: float = 0.08
    link_jitter: float = 0.02
    join_frames: int = 6
    reauth_s: float = 0.0
    reauth_frames: int = 4
    notify: Notify = Notify.INF
    inf_delay_s: float = 5.0
    lose: float = 0.0
    garbage: float = 0.0
    send_fail: float = 0.0
    meter_silent: bool = False
    meter_off: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dialect is Dialect.AUTO:
            raise ValueError("an emulated module has a definite dialect, not auto")


@dataclass
class EmulatorStats:
    """What the host did to the module, for tests to assert on (secrets masked)."""

    commands: list[str] = field(default_factory=list)
    scans: int = 0
    joins: int = 0
    sessions: int = 0
    sendto: int = 0
    requests: int = 0
    replies: int = 0
    lost: int = 0
    garbage: int = 0
    overlapping: int = 0
    sends_while_held: int = 0
    send_failures: int = 0
    wopt_writes: int = 0
    resets: int = 0
    inf_sent: int = 0
    infc_sent: int = 0
    infc_responses: int = 0
    reauths: int = 0


_GARBAGE = (
    b"\xfe\x83\x00\x12\x9a\xcf",
    b"EVENT ZZ",
    b"ERXUDP FE80:0000",
    b"\x00\x00\x00\x00",
    b"#@!~ line noise ~!@#",
    b"",
)


class ModuleEmulator:
    """Feed it what the host writes (:meth:`feed`); it calls ``write`` with what it prints.

    :meth:`run` must be running (it processes commands and the timed events); cancel it to stop.
    """

    def __init__(
        self,
        config: ModuleConfig,
        meter: MeterModel,
        clock: Clock,
        write: Callable[[bytes], None],
    ) -> None:
        self.config = config
        self.meter = meter
        self.clock = clock
        self._write = write
        self.stats = EmulatorStats()
        self.rng = random.Random(config.seed)
        self.module_ipv6 = link_local_from_mac(config.module_mac)
        self.meter_ipv6 = link_local_from_mac(config.meter_mac)
        self.ropt = 1 if config.hex_data else 0
        self._inbuf = bytearray()
        self._commands: deque[tuple[str, bytes | None]] = deque()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._meter_tid = 0x1000
        self._infc_waiting: set[int] = set()
        self._reset_state()

    def _reset_state(self) -> None:
        self.echo = self.config.echo
        self.registers: dict[str, str] = {"S2": "21", "S3": "FFFF", "SFE": "1", "SA2": "0"}
        self.password: str | None = None
        self.rbid: str | None = None
        self.session = False
        self.reauthenticating = False
        self.duty_limited = False
        self._generation = 0
        self._meter_busy_until = 0.0
        self._held_since: float | None = None

    # --- host input -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes written by the host. Commands end with CR and/or LF; SKSENDTO data by length."""
        self._inbuf += data
        while True:
            command = self._take()
            if command is None:
                break
            self._commands.append(command)
            self._wake.set()

    def _take(self) -> tuple[str, bytes | None] | None:
        buf = self._inbuf
        while buf and buf[0] in (0x0D, 0x0A):
            del buf[:1]
        if not buf:
            return None
        if buf.startswith(b"SKSENDTO "):
            return self._take_sendto()
        cr, lf = buf.find(b"\r"), buf.find(b"\n")
        ends = [i for i in (cr, lf) if i >= 0]
        if not ends:
            if len(buf) > _MAX_LINE:
                buf.clear()
                return ("", None)
            return None
        end = min(ends)
        line = bytes(buf[:end]).decode("latin-1")
        del buf[: end + 1]
        return (line, None)

    def _take_sendto(self) -> tuple[str, bytes | None] | None:
        buf = self._inbuf
        tokens: list[bytes] = []
        pos = 0
        while True:
            space = buf.find(b" ", pos)
            stop = min([i for i in (buf.find(b"\r", pos), buf.find(b"\n", pos)) if i >= 0] or [-1])
            if space == -1 or (stop != -1 and stop < space):
                if stop != -1 or len(buf) > 200:  # a line end inside the header: malformed
                    end = stop if stop != -1 else len(buf)
                    line = bytes(buf[:end]).decode("latin-1")
                    del buf[: end + 1]
                    return (line, None)
                return None
            tokens.append(bytes(buf[pos:space]))
            pos = space + 1
            # SKSENDTO handle ip port sec [side] len: the length is the first 4-digit token
            # after sec.
            if len(tokens) >= 6 and len(tokens[-1]) == 4:
                break
            if len(tokens) > 7:
                line = bytes(buf[:space]).decode("latin-1")
                del buf[: space + 1]
                return (line, None)
        try:
            length = int(tokens[-1], 16)
        except ValueError:
            length = 0
        if len(buf) < pos + length:
            return None
        header = b" ".join(tokens).decode("latin-1")
        data = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        return (header, data)

    # --- the command loop -----------------------------------------------------------------------

    async def run(self) -> None:
        timed = [
            asyncio.create_task(self._boundary_loop()),
            asyncio.create_task(self._reauth_loop()),
        ]
        try:
            while True:
                while not self._commands:
                    self._wake.clear()
                    await self._wake.wait()
                line, data = self._commands.popleft()
                await self._execute(line, data)
        finally:
            for task in [*timed, *self._tasks]:
                task.cancel()
            for task in [*timed, *self._tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, line: str, data: bytes | None) -> None:
        self.stats.commands.append(mask_secrets(line))
        if self.echo and line:
            self._emit(line.encode("latin-1") + b"\r\n")
        words = line.split(" ")
        name = words[0]
        if name == "SKSENDTO":
            await self._sksendto(words[1:], data or b"")
            return
        handler = getattr(self, "_cmd_" + name.lower(), None) if name.isalnum() else None
        if handler is None:
            self._emit(b"FAIL ER04\r\n")
            return
        try:
            handler(words[1:])
        except (ValueError, IndexError):
            self._emit(b"FAIL ER06\r\n")

    # --- output ---------------------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        if self.config.garbage and self.rng.random() < self.config.garbage:
            self.stats.garbage += 1
            self._write(self.rng.choice(_GARBAGE) + b"\r\n")
        self._write(data)

    def _line(self, text: str) -> None:
        self._emit(text.encode("ascii") + b"\r\n")

    def _event(self, code: int, address: str, param: int | None = None) -> None:
        self._line(format_event(self.config.dialect, code, address, param))

    def _delay(self, frames: float = 1.0) -> float:
        cfg = self.config
        jitter = self.rng.uniform(-cfg.link_jitter, cfg.link_jitter) if cfg.link_jitter else 0.0
        return max(0.0, frames * (cfg.link_delay + jitter))

    async def _radio(self, frames: float = 1.0) -> None:
        await asyncio.sleep(self._delay(frames))

    def _erxudp(self, payload: bytes, *, port: int = ECHONET_PORT, secured: int = 1) -> None:
        dialect = self.config.dialect
        lqi = self.config.lqi if dialect.has_side and self.registers.get("SA2") == "1" else None
        self._emit(
            format_erxudp(
                dialect,
                sender=self.meter_ipv6,
                dest=self.module_ipv6,
                rport=port,
                lport=port,
                sender_mac=self.config.meter_mac,
                secured=secured,
                data=payload,
                hex_mode=self.ropt == 1,
                side=0,
                lqi=lqi,
            )
        )

    # --- simple commands ------------------------------------------------------------------------

    def _cmd_skver(self, args: list[str]) -> None:
        default = "1.5.2" if self.config.dialect.has_side else "1.2.10"
        self._line(f"EVER {self.config.version or default}")
        self._line("OK")

    def _cmd_skappver(self, args: list[str]) -> None:
        self._line("EAPPVER rev26e")
        self._line("OK")

    def _cmd_skinfo(self, args: list[str]) -> None:
        cfg = self.config
        addr16 = 0xFFFE if cfg.einfo_addr16 or not cfg.dialect.has_side else None
        channel = int(self.registers["S2"], 16)
        pan_id = int(self.registers["S3"], 16)
        line = format_einfo(
            cfg.dialect, self.module_ipv6, cfg.module_mac, channel, pan_id, addr16=addr16
        )
        self._line(cfg.einfo_text or line)
        self._line("OK")

    def _cmd_sksreg(self, args: list[str]) -> None:
        register = args[0].upper()
        if len(args) == 1:
            self._line(f"ESREG {self.registers.get(register, '0')}")
        else:
            value = args[1].upper()
            int(value, 16)
            self.registers[register] = value
            if register == "SFE":
                self.echo = value != "0"
        self._line("OK")

    def _cmd_ropt(self, args: list[str]) -> None:
        if not self.config.ropt:
            self._emit(b"FAIL ER04\r\n")
            return
        self._emit(f"OK {self.ropt:02X}\r".encode())

    def _cmd_wopt(self, args: list[str]) -> None:
        if not self.config.ropt:
            self._emit(b"FAIL ER04\r\n")
            return
        self.ropt = int(args[0], 16) & 0x01
        self.stats.wopt_writes += 1
        self._emit(b"OK\r")

    def _cmd_sksetpwd(self, args: list[str]) -> None:
        length, password = args[0], args[1]
        if int(length, 16) != len(password):
            self._line("FAIL ER06")
            return
        self.password = password
        self._line("OK")

    def _cmd_sksetrbid(self, args: list[str]) -> None:
        if len(args[0]) != 32:
            self._line("FAIL ER06")
            return
        self.rbid = args[0]
        self._line("OK")

    def _cmd_skll64(self, args: list[str]) -> None:
        self._line(link_local_from_mac(args[0]))

    def _cmd_skreset(self, args: list[str]) -> None:
        self.stats.resets += 1
        self._reset_state()
        self._line("OK")

    def _cmd_skterm(self, args: list[str]) -> None:
        if not self.session:
            self._line("FAIL ER10")
            return
        self._line("OK")
        self._generation += 1
        self.session = False
        self._spawn(self._after(1.0, lambda: self._event(0x27, self.meter_ipv6)))

    async def _after(self, frames: float, action: Callable[[], None]) -> None:
        await self._radio(frames)
        action()

    # --- scan and join --------------------------------------------------------------------------

    def _cmd_skscan(self, args: list[str]) -> None:
        want = 4 if self.config.dialect.has_side else 3
        if len(args) != want:
            self._line("FAIL ER05")
            return
        duration = int(args[2], 16)
        if not 0 <= duration <= 14:
            self._line("FAIL ER06")
            return
        self.stats.scans += 1
        self._line("OK")
        self._spawn(self._scan(duration))

    async def _scan(self, duration: int) -> None:
        cfg = self.config
        total = scan_seconds(duration) * cfg.scan_scale
        channel_share = max(0, cfg.channel - 0x21) / 28
        found = duration >= cfg.visible_from and not cfg.meter_off
        await self.clock.sleep(total * channel_share)
        if found:
            self._beacon(cfg.channel, cfg.pan_id, cfg.meter_mac, cfg.lqi, cfg.rbid[-8:])
        await self.clock.sleep(total * (1 - channel_share))
        if duration >= cfg.visible_from:
            for pan in cfg.neighbours:
                self._beacon(pan.channel, pan.pan_id, pan.mac, pan.lqi, pan.pair_id)
        self._event(0x22, self.module_ipv6)

    def _beacon(self, channel: int, pan_id: int, mac: str, lqi: int, pair_id: str) -> None:
        spread = self.config.lqi_spread
        if spread:
            lqi = min(255, max(0, lqi + self.rng.randint(-spread, spread)))
        self._event(0x20, link_local_from_mac(mac))
        for text in format_epandesc(
            self.config.dialect, channel=channel, pan_id=pan_id, mac=mac, lqi=lqi, pair_id=pair_id
        ):
            self._line(text)

    def _cmd_skjoin(self, args: list[str]) -> None:
        target = args[0]
        self.stats.joins += 1
        self._line("OK")
        self._generation += 1
        self.session = False
        self._spawn(self._pana(target, self._generation))

    async def _pana(self, target: str, generation: int) -> None:
        cfg = self.config
        reachable = (
            same_address(target, self.meter_ipv6)
            and int(self.registers["S2"], 16) == cfg.channel
            and int(self.registers["S3"], 16) == cfg.pan_id
            and not cfg.meter_off
        )
        good = self.password == cfg.password and self.rbid == cfg.rbid
        frames = max(2, cfg.join_frames)
        if reachable:
            await self._radio()
            self._event(0x21, target, 0x02)
            self._event(0x21, target, 0x00)
            for _ in range(frames - 2):
                await self._radio()
                self._erxudp(bytes.fromhex("00020000001000000000000000000000"), port=PANA_PORT)
            await self._radio()
        else:
            await self._radio(frames * 2)  # PANA retransmits until it gives up
        if generation != self._generation:
            return
        if reachable and good:
            self.session = True
            self.stats.sessions += 1
            self._event(0x25, target)
            self._spawn(self._announce(self._generation))
        else:
            self._event(0x24, target)

    async def _announce(self, generation: int) -> None:
        """The meter's INF of D5 (instance list) right after a join."""
        await self._radio()
        if generation != self._generation or not self.session or self.config.meter_silent:
            return
        frame = Frame(
            self._next_meter_tid(),
            NODE_PROFILE,
            NODE_PROFILE,
            ESV.INF,
            (Property(0xD5, b"\x01\x02\x88\x01"),),
        )
        self._erxudp(encode(frame))

    # --- datagrams ------------------------------------------------------------------------------

    async def _sksendto(self, args: list[str], data: bytes) -> None:
        cfg = self.config
        has_side = len(args) == 6
        if has_side != cfg.dialect.has_side or len(args) not in (5, 6):
            self._line("FAIL ER05")
            return
        dest, port_text, secured = args[1], args[2], args[3]
        self.stats.sendto += 1
        if not self.session:
            self._line("FAIL ER10")
            return
        if secured not in ("0", "1", "2"):
            self._line("FAIL ER06")
            return
        # Only a send issued after the host could have read EVENT 29/32 counts against it; one
        # that crossed the event on the wire is just a send that fails.
        since = self._held_since
        if since is not None and asyncio.get_running_loop().time() - since > _CROSSING_S:
            self.stats.sends_while_held += 1
        await self._radio()
        held = self.reauthenticating or self.duty_limited or not self.session
        if held or (cfg.send_fail and self.rng.random() < cfg.send_fail):
            self.stats.send_failures += 1
            self._event(0x21, dest, 0x01)
            self._line("OK")
            return
        self._event(0x21, dest, 0x00)
        self._line("OK")
        if int(port_text, 16) == ECHONET_PORT and same_address(dest, self.meter_ipv6):
            self._to_meter(data)

    def _to_meter(self, payload: bytes) -> None:
        try:
            frame = decode(payload)
        except DecodeError:
            return
        if frame.esv is ESV.INFC_RES:
            if frame.tid in self._infc_waiting:
                self._infc_waiting.discard(frame.tid)
                self.stats.infc_responses += 1
            return
        if not frame.esv.is_request:
            return
        self.stats.requests += 1
        loop_time = asyncio.get_running_loop().time()
        if loop_time < self._meter_busy_until:
            self.stats.overlapping += 1
        answer = self._answer(frame)
        if answer is None or self.config.meter_silent:
            return
        delay = self._delay()
        self._meter_busy_until = loop_time + delay
        if self.config.lose and self.rng.random() < self.config.lose:
            self.stats.lost += 1
            return
        self._spawn(self._deliver(encode(answer), delay, self._generation))

    async def _deliver(self, payload: bytes, delay: float, generation: int) -> None:
        await asyncio.sleep(delay)
        if generation != self._generation or not self.session or self.reauthenticating:
            self.stats.lost += 1
            return
        self.stats.replies += 1
        self._erxudp(payload)

    def _answer(self, request: Frame) -> Frame | None:
        """The meter's reply to a request, built with the codec the driver decodes with."""
        now = self.clock.now()
        target = request.deoj
        if target == NODE_PROFILE:
            getter: Callable[[int], bytes | None] = self.meter.node_get
        elif target == METER_EOJ:

            def getter(epc: int) -> bytes | None:
                return self.meter.get(epc, now)

        else:
            return None
        esv = request.esv
        if esv in (ESV.GET, ESV.INF_REQ):
            props = [Property(p.epc, getter(p.epc) or b"") for p in request.props]
            ok = all(p.edt for p in props)
            if esv is ESV.INF_REQ:
                if not ok:
                    return reply(request, ESV.INF_SNA, props)
                return Frame(request.tid, target, CONTROLLER, ESV.INF, tuple(props))
            return reply(request, ESV.GET_RES if ok else ESV.GET_SNA, props)
        if esv in (ESV.SETC, ESV.SETI):
            if target != METER_EOJ:
                refused = list(request.props)
            else:
                refused = [p for p in request.props if not self.meter.set(p.epc, p.edt, now)]
            if esv is ESV.SETI:
                return reply(request, ESV.SETI_SNA, refused) if refused else None
            if refused:
                answer = [Property(p.epc, p.edt if p in refused else b"") for p in request.props]
                return reply(request, ESV.SETC_SNA, answer)
            return reply(request, ESV.SET_RES, [Property(p.epc) for p in request.props])
        return None

    def _next_meter_tid(self) -> int:
        self._meter_tid = self._meter_tid % 0xFFFF + 1
        return self._meter_tid

    # --- timed events ---------------------------------------------------------------------------

    async def _boundary_loop(self) -> None:
        while True:
            now = self.clock.now()
            self.meter.update(now)
            nxt = self.meter.latest_boundary() + timedelta(minutes=30)
            wait = (nxt - now).total_seconds() + self.config.inf_delay_s
            await self.clock.sleep(max(0.001, wait))
            self.meter.update(self.clock.now())
            self._notify_boundary()

    def _notify_boundary(self) -> None:
        cfg = self.config
        if cfg.notify is Notify.NONE or not self.session or cfg.meter_silent:
            return
        now = self.clock.now()
        props = [Property(0xEA, self.meter.get(0xEA, now) or b"")]
        eb = self.meter.get(0xEB, now)
        if eb:
            props.append(Property(0xEB, eb))
        esv = ESV.INFC if cfg.notify is Notify.INFC else ESV.INF
        tid = self._next_meter_tid()
        frame = Frame(tid, METER_EOJ, CONTROLLER, esv, tuple(props))
        if esv is ESV.INFC:
            self._infc_waiting.add(tid)
            self.stats.infc_sent += 1
        else:
            self.stats.inf_sent += 1
        self._spawn(self._deliver(encode(frame), self._delay(), self._generation))

    async def _reauth_loop(self) -> None:
        while True:
            interval = self.config.reauth_s
            await self.clock.sleep(interval if interval > 0 else 60.0)
            if self.config.reauth_s > 0 and self.session and not self.reauthenticating:
                await self._reauthenticate(fail=False)

    async def _reauthenticate(self, *, fail: bool) -> None:
        self.stats.reauths += 1
        self.reauthenticating = True
        self._generation += 1  # replies in flight are lost while PANA renews
        self._event(0x29, self.meter_ipv6)
        self._update_held()
        await self._radio(self.config.reauth_frames)
        self.reauthenticating = False
        self._update_held()
        if fail or self.config.meter_off:
            self.session = False
            self._event(0x24, self.meter_ipv6)
        else:
            self._event(0x25, self.meter_ipv6)

    # --- fault injection ------------------------------------------------------------------------

    def trigger_reauth(self, *, fail: bool = False) -> None:
        """EVENT 29 now (as when the PANA lifetime runs out), then EVENT 25 or, if ``fail``, 24."""
        if self.session and not self.reauthenticating:
            self._spawn(self._reauthenticate(fail=fail))

    def reset_module(self) -> None:
        """The module reboots (brown-out, watchdog): session, registers and echo state are lost."""
        self.stats.resets += 1
        self._inbuf.clear()
        self._commands.clear()
        self._reset_state()
        self._generation += 1

    def inject(
        self,
        payload: bytes,
        *,
        sender_mac: str | None = None,
        port: int = ECHONET_PORT,
        secured: int = 1,
    ) -> None:
        """Print an ERXUDP now, as if ``sender_mac`` (default: the meter) had sent ``payload``."""
        mac = sender_mac or self.config.meter_mac
        dialect = self.config.dialect
        self._emit(
            format_erxudp(
                dialect,
                sender=link_local_from_mac(mac),
                dest=self.module_ipv6,
                rport=port,
                lport=port,
                sender_mac=mac,
                secured=secured,
                data=payload,
                hex_mode=self.ropt == 1,
            )
        )

    def set_duty_limited(self, limited: bool) -> None:
        """EVENT 32 (transmit-time limit reached) or EVENT 33 (released)."""
        if limited != self.duty_limited:
            self.duty_limited = limited
            self._event(0x32 if limited else 0x33, self.module_ipv6)
            self._update_held()

    def _update_held(self) -> None:
        if self.reauthenticating or self.duty_limited:
            if self._held_since is None:
                self._held_since = asyncio.get_running_loop().time()
        else:
            self._held_since = None
