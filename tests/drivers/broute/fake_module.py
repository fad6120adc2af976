"""A scripted SKSTACK module for tests: answers one written command with the bytes it would print.

Not the emulator (that one will run on a pseudo-terminal); this is just enough behaviour to drive
the pure join machine and session end to end through the real parser, in both dialects. It
produces its output with the ``format_*`` functions of :mod:`drivers.broute.dialect`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from drivers.broute.actions import StartTimer, TimerExpired, Write
from drivers.broute.dialect import (
    Dialect,
    format_einfo,
    format_epandesc,
    format_erxudp,
    format_event,
)
from drivers.broute.join import JoinAction, JoinMachine, SetDataMode, link_local_from_mac
from drivers.broute.parser import Event, LineParser

SELF_MAC = "001D129012345678"
SELF_IPV6 = link_local_from_mac(SELF_MAC)
METER_MAC = "001C6400030C12A4"
METER_IPV6 = link_local_from_mac(METER_MAC)
RBID = "0000003A00000000000000000012ABCD"
PASSWORD = "ABCDEFGHJKLM"


@dataclass
class Pan:
    channel: int = 0x21
    pan_id: int = 0x8888
    mac: str = METER_MAC
    lqi: int = 0xE1
    pair_id: str = "0012ABCD"
    found_from: int = 6  # the smallest SKSCAN duration that finds it


@dataclass
class FakeModule:
    dialect: Dialect
    echo: bool = True
    ropt: int = 1
    pans: list[Pan] = field(default_factory=lambda: [Pan()])
    password: str = PASSWORD
    rbid: str = RBID
    ever: str = "1.2.10"
    ropt_supported: bool = True
    reject_all_scans: bool = False  # FAIL ER05 whatever the form
    silent_scan: bool = False  # never finishes a scan (no EVENT 22)
    silent_join: bool = False  # SKJOIN gets OK but no EVENT 24/25
    einfo_override: str | None = None
    pana_failures: int = 0  # EVENT 24 this many times even with good credentials
    # state
    wopt_writes: int = 0
    channel: int = 0
    pan_id: int = 0
    written: list[str] = field(default_factory=list)

    def respond(self, data: bytes) -> bytes:
        text = data.rstrip(b"\r\n").decode("latin-1")
        self.written.append(text)
        words = text.split(" ")
        out: list[bytes] = []
        if self.echo:
            out.append(text.encode("latin-1") + b"\r\n")
        cmd = words[0]
        handler = getattr(self, "_" + cmd.lower(), None)
        if handler is None:
            out.append(b"FAIL ER04\r\n")
        else:
            out.append(handler(words[1:]))
        return b"".join(out)

    # --- commands -------------------------------------------------------------------------------

    def _skreset(self, args: list[str]) -> bytes:
        self.echo = True
        return b"OK\r\n"

    def _skver(self, args: list[str]) -> bytes:
        return f"EVER {self.ever}\r\nOK\r\n".encode()

    def _skinfo(self, args: list[str]) -> bytes:
        line = self.einfo_override or format_einfo(self.dialect, SELF_IPV6, SELF_MAC, 0x21, 0x8888)
        return f"{line}\r\nOK\r\n".encode()

    def _sksreg(self, args: list[str]) -> bytes:
        reg, value = args
        if reg == "SFE":
            self.echo = value != "0"
        elif reg == "S2":
            self.channel = int(value, 16)
        elif reg == "S3":
            self.pan_id = int(value, 16)
        return b"OK\r\n"

    def _ropt(self, args: list[str]) -> bytes:
        if not self.ropt_supported:
            return b"FAIL ER04\r\n"
        return f"OK {self.ropt:02X}\r".encode()  # bare CR, as some firmware does

    def _wopt(self, args: list[str]) -> bytes:
        self.wopt_writes += 1
        self.ropt = int(args[0], 16)
        return b"OK\r"

    def _sksetpwd(self, args: list[str]) -> bytes:
        length, pwd = args
        self.password_set = pwd if int(length, 16) == len(pwd) else ""
        return b"OK\r\n"

    def _sksetrbid(self, args: list[str]) -> bytes:
        self.rbid_set = args[0]
        return b"OK\r\n"

    def _skscan(self, args: list[str]) -> bytes:
        if self.reject_all_scans or len(args) != (4 if self.dialect.has_side else 3):
            return b"FAIL ER05\r\n"
        duration = int(args[2], 16)
        out = ["OK"]
        if self.silent_scan:
            return b"OK\r\n"
        for pan in self.pans:
            if duration >= pan.found_from:
                out.append(format_event(self.dialect, 0x20, link_local_from_mac(pan.mac)))
                out += format_epandesc(
                    self.dialect,
                    channel=pan.channel,
                    pan_id=pan.pan_id,
                    mac=pan.mac,
                    lqi=pan.lqi,
                    pair_id=pan.pair_id,
                )
        out.append(format_event(self.dialect, 0x22, SELF_IPV6))
        return ("\r\n".join(out) + "\r\n").encode()

    def _skll64(self, args: list[str]) -> bytes:
        return (link_local_from_mac(args[0]) + "\r\n").encode()

    def _skjoin(self, args: list[str]) -> bytes:
        out = [b"OK\r\n"]
        if self.silent_join:
            return out[0]
        target = args[0]
        pan = next((p for p in self.pans if link_local_from_mac(p.mac) == target), None)
        reachable = pan is not None and (self.channel, self.pan_id) == (pan.channel, pan.pan_id)
        if reachable:
            out.append(format_event(self.dialect, 0x21, target, 0x02).encode() + b"\r\n")
            out.append(format_event(self.dialect, 0x21, target, 0x00).encode() + b"\r\n")
            out.append(
                format_erxudp(
                    self.dialect,
                    sender=target,
                    dest=SELF_IPV6,
                    rport=0x02CC,
                    lport=0x02CC,
                    sender_mac=pan.mac if pan else METER_MAC,
                    secured=0,
                    data=bytes.fromhex("00020000001000000000000000000000"),
                    hex_mode=self.ropt == 1,
                )
            )
        good = getattr(self, "password_set", "") == self.password
        good = good and getattr(self, "rbid_set", "") == self.rbid
        if reachable and good and self.pana_failures == 0:
            code = 0x25
        else:
            self.pana_failures = max(0, self.pana_failures - 1)
            code = 0x24
        out.append(format_event(self.dialect, code, target).encode() + b"\r\n")
        return b"".join(out)


@dataclass
class Run:
    """What happened while driving a join machine against a fake module."""

    actions: list[JoinAction] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    timers: list[float] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        return [a.display for a in self.actions if isinstance(a, Write)]


def drive(
    machine: JoinMachine,
    module: FakeModule,
    parser: LineParser | None = None,
    *,
    rng: random.Random | None = None,
    limit: int = 200,
) -> Run:
    """Run the machine to completion the way the async shell will, chunking output if asked."""
    parser = parser or LineParser()
    run = Run()
    pending: list[JoinAction] = list(machine.start())
    steps = 0
    while pending and steps < limit:
        steps += 1
        action = pending.pop(0)
        run.actions.append(action)
        if isinstance(action, SetDataMode):
            parser.data_mode = action.mode
        elif isinstance(action, StartTimer):
            run.timers.append(action.seconds)
        elif isinstance(action, Write):
            parser.command_sent(action.data)
            output = module.respond(action.data)
            events: list[Event] = []
            if rng is None:
                events = parser.feed(output)
            else:
                i = 0
                while i < len(output):
                    n = rng.randint(1, 9)
                    events += parser.feed(output[i : i + n])
                    i += n
            run.events += events
            produced: list[JoinAction] = []
            for event in events:
                produced += machine.handle(event)
            if not produced and not machine.done:
                produced = machine.handle(TimerExpired())  # the module went quiet
            # keep order: the rest of this write's actions (its timer) before the new ones
            pending = pending + produced
    return run
