"""Pure join state machine: from a freshly opened port to a PANA session with the meter.

Driven by parser events and timer expiries, it returns actions (writes, timers, notices, the
result) for a thin async shell to perform::

    machine = JoinMachine(config)
    actions = machine.start()
    # for each action: Write -> parser.command_sent(data); port.write(data)
    #                  StartTimer -> (re)arm the single timer; on expiry:
    #                                machine.handle(TimerExpired()) (same as machine.timeout())
    #                  SetDataMode -> parser.data_mode = mode
    #                  Joined / JoinFailed -> stop
    # for each parser event: actions = machine.handle(event)

Sequence: [SKRESET] → SKVER → SKINFO (dialect detection) → ``SKSREG SFE 0`` (echo off) → ROPT
→ WOPT 01 only if ROPT says binary and flash has never been written → SKSETPWD / SKSETRBID →
SKSCAN with growing durations, unless a cached PAN is given → SKLL64 → SKSREG S2 / S3 → SKJOIN →
EVENT 25 (joined) or EVENT 24 (PANA failed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

from drivers.broute.actions import Notice, StartTimer, TimerExpired, Write
from drivers.broute.dialect import (
    Dialect,
    mask_secrets,
    same_address,
    scan_seconds,
    skscan_command,
    wrong_dialect_hint,
)
from drivers.broute.parser import (
    DataMode,
    Event,
    EventCode,
    Fail,
    LinkLocal,
    Ok,
    PanDescriptor,
    SkEvent,
    lqi_to_rssi,
)
from drivers.broute.probe import (
    ModuleProbe,
    command_actions,
    meter_pan,
    no_answer_message,
    scan_done,
)

__all__ = [
    "CachedPan",
    "JoinAction",
    "JoinConfig",
    "JoinFailed",
    "JoinFailure",
    "JoinMachine",
    "JoinResult",
    "Joined",
    "SetDataMode",
    "credentials_proof",
    "link_local_from_mac",
]


def link_local_from_mac(mac: str | bytes) -> str:
    """The IPv6 link-local address of a 64-bit MAC, in the form ``SKLL64`` prints it.

    FE80::/64 followed by the MAC with the universal/local bit (0x02 of the first byte) flipped.
    """
    raw = bytes.fromhex(mac) if isinstance(mac, str) else bytes(mac)
    if len(raw) != 8:
        raise ValueError(f"a 64-bit MAC has 8 bytes, got {len(raw)}")
    iid = bytes([raw[0] ^ 0x02]) + raw[1:]
    groups = [iid[i : i + 2].hex().upper() for i in range(0, 8, 2)]
    return "FE80:0000:0000:0000:" + ":".join(groups)


def _normal_mac(mac: str) -> str:
    if len(mac) != 16:
        raise ValueError(f"a MAC is 16 hex digits, got {mac!r}")
    bytes.fromhex(mac)
    return mac.upper()


@dataclass(frozen=True, slots=True)
class CachedPan:
    """What a previous join found, so a rejoin can skip the 20-70 s scan.

    ``proof`` is a short fingerprint of the credentials that joined (see
    :func:`credentials_proof`): after a restart it tells whether EVENT 24 can still mean rejected
    credentials, or must mean a weak link because these very credentials have worked before.
    """

    channel: int
    pan_id: int
    mac: str
    proof: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.channel <= 0xFF or not 0 <= self.pan_id <= 0xFFFF:
            raise ValueError("channel must fit a byte and pan_id 16 bits")
        object.__setattr__(self, "mac", _normal_mac(self.mac))


def credentials_proof(rbid: str, password: str) -> str:
    """A 32-bit fingerprint of the credentials, safe to store beside the cached PAN.

    Only "same credentials as last time?" is asked of it. Four bytes cannot be turned back into a
    12-character password: about 10^12 passwords share each value.
    """
    digest = hashlib.sha256(b"chisan broute proof\0" + rbid.encode() + b"\0" + password.encode())
    return digest.hexdigest()[:8]


def _check_secret(name: str, value: str, longest: int) -> None:
    if not value or len(value) > longest:
        raise ValueError(f"{name} must be 1-{longest} characters")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"{name} must be printable ASCII without spaces")


@dataclass(frozen=True)
class JoinConfig:
    """Everything the join needs; secrets are kept out of ``repr``.

    ``credentials_proven`` is True when these exact credentials have joined before (the caller
    remembers it). While False, an EVENT 24 is reported plainly as rejected credentials, because
    that is by far the likeliest cause on a first join; once proven, EVENT 24 means a weak link
    and SKJOIN is retried ``pana_retries`` times.

    ``wopt_allowed`` is False once WOPT has ever been written to this module (the caller persists
    :attr:`JoinMachine.wopt_written`): WOPT writes flash, whose write count is finite, so it is
    done at most once per module and binary mode is read by length otherwise.
    """

    rbid: str = field(repr=False)
    password: str = field(repr=False)
    dialect: Dialect = Dialect.AUTO
    cached_pan: CachedPan | None = None
    credentials_proven: bool = False
    wopt_allowed: bool = True
    scan_durations: tuple[int, ...] = (6, 7, 8)
    reset: bool = False
    command_timeout: float = 10.0
    join_timeout: float = 60.0
    scan_margin: float = 10.0
    pana_retries: int = 1

    def __post_init__(self) -> None:
        _check_secret("B-route ID", self.rbid, 64)
        _check_secret("B-route password", self.password, 32)
        if not self.scan_durations or any(not 1 <= d <= 14 for d in self.scan_durations):
            raise ValueError("scan_durations must be a non-empty sequence of 1-14")
        if self.command_timeout <= 0 or self.join_timeout <= 0 or self.pana_retries < 0:
            raise ValueError("timeouts must be positive and pana_retries non-negative")


@dataclass(frozen=True, slots=True)
class JoinResult:
    channel: int
    pan_id: int
    mac: str
    ipv6: str
    used_cached_pan: bool
    dialect: Dialect
    dialect_message: str
    data_mode: DataMode
    wopt_written: bool
    lqi: int | None = None
    version: str | None = None

    @property
    def cached_pan(self) -> CachedPan:
        """What to store for the next join."""
        return CachedPan(self.channel, self.pan_id, self.mac)

    @property
    def rssi_dbm(self) -> float | None:
        return None if self.lqi is None else lqi_to_rssi(self.lqi)


class JoinFailure(Enum):
    TIMEOUT = "timeout"
    COMMAND_FAILED = "command failed"
    WRONG_DIALECT = "wrong dialect"
    NO_PAN = "no PAN found"
    CREDENTIALS_REJECTED = "credentials rejected"
    PANA_FAILED = "PANA failed"
    JOIN_TIMEOUT = "join timeout"


@dataclass(frozen=True, slots=True)
class SetDataMode:
    """Tell the parser how ERXUDP data is printed, learnt from ROPT."""

    mode: DataMode


@dataclass(frozen=True, slots=True)
class Joined:
    result: JoinResult


@dataclass(frozen=True, slots=True)
class JoinFailed:
    reason: JoinFailure
    message: str

    @property
    def retryable(self) -> bool:
        """Whether trying again later (with backoff) may help without a config change."""
        return self.reason not in (JoinFailure.CREDENTIALS_REJECTED, JoinFailure.WRONG_DIALECT)


JoinAction: TypeAlias = Write | StartTimer | Notice | SetDataMode | Joined | JoinFailed


class _Step(Enum):
    RESET = "SKRESET"
    VERSION = "SKVER"
    INFO = "SKINFO"
    ECHO_OFF = "SKSREG SFE 0"
    ROPT = "ROPT"
    WOPT = "WOPT"
    PASSWORD = "SKSETPWD"
    RBID = "SKSETRBID"
    SCAN = "SKSCAN"
    LL64 = "SKLL64"
    CHANNEL = "SKSREG S2"
    PAN_ID = "SKSREG S3"
    JOIN = "SKJOIN"
    DONE = "done"


@dataclass(slots=True)
class _Target:
    channel: int
    pan_id: int
    mac: str
    lqi: int | None
    from_cache: bool


class JoinMachine(ModuleProbe):
    """One join attempt; create a new machine for the next one.

    ``dialect`` is the dialect in use (detected when configured AUTO, and switched once if a
    detected dialect's SKSCAN is rejected with FAIL ER05). ``wopt_written`` says whether this
    attempt wrote WOPT to flash; persist it and pass ``wopt_allowed=False`` from then on.
    """

    def __init__(self, config: JoinConfig) -> None:
        super().__init__(config.dialect, "the configuration")
        self.config = config
        self.wopt_written = False
        self.data_mode = DataMode.AUTO
        self.result: JoinResult | None = None
        self.failure: JoinFailed | None = None
        self._step: _Step | None = None
        self._command = ""
        self._scan_index = 0
        self._pans: list[PanDescriptor] = []
        self._target: _Target | None = None
        self._cache_failed = False
        self._ipv6 = ""
        self._pana_attempts = 0

    @property
    def done(self) -> bool:
        return self.result is not None or self.failure is not None

    @property
    def waiting_for(self) -> str | None:
        """The command whose answer is awaited, for logs and diagnostics."""
        return None if self._step in (None, _Step.DONE) else mask_secrets(self._command)

    # --- inputs ---------------------------------------------------------------------------------

    def start(self) -> list[JoinAction]:
        if self._step is not None:
            raise RuntimeError("JoinMachine.start() called twice; create a new machine")
        if self.config.reset:
            return self._send(_Step.RESET, "SKRESET")
        return self._send(_Step.VERSION, "SKVER")

    def handle(self, event: Event | TimerExpired) -> list[JoinAction]:
        if isinstance(event, TimerExpired):
            return self.timeout()
        step = self._step
        if step is None or step is _Step.DONE:
            return []
        if isinstance(event, Fail):
            return self._on_fail(step, event)
        if step is _Step.RESET:
            return self._send(_Step.VERSION, "SKVER") if isinstance(event, Ok) else []
        if step is _Step.VERSION:
            return self._send(_Step.INFO, "SKINFO") if self._version_answered(event) else []
        if step is _Step.INFO:
            return self._on_info() if self._info_answered(event) else []
        if step is _Step.ECHO_OFF:
            return self._send(_Step.ROPT, "ROPT") if isinstance(event, Ok) else []
        if step is _Step.ROPT:
            return self._on_ropt(event)
        if step is _Step.WOPT:
            if not isinstance(event, Ok):
                return []
            self.wopt_written = True
            note = Notice(
                "ROPT reported binary ERXUDP output; wrote WOPT 01 to the module's flash to "
                "switch to hex (done once per module)",
                warning=True,
            )
            return [note, *self._set_mode(DataMode.HEX), *self._send_password()]
        if step is _Step.PASSWORD:
            return self._send(_Step.RBID, f"SKSETRBID {self.config.rbid}") if _ok(event) else []
        if step is _Step.RBID:
            return self._after_credentials() if _ok(event) else []
        if step is _Step.SCAN:
            return self._on_scan(event)
        if step is _Step.LL64:
            return self._on_ll64(event)
        if step is _Step.CHANNEL:
            return self._send_pan_id() if _ok(event) else []
        if step is _Step.PAN_ID:
            return self._send_join() if _ok(event) else []
        return self._on_join(event)

    def timeout(self) -> list[JoinAction]:
        """The timer from the last :class:`StartTimer` expired."""
        step = self._step
        if step is None or step is _Step.DONE:
            return []
        if step is _Step.SCAN:
            return self._scan_finished(timed_out=True)
        if step is _Step.JOIN:
            target = self._target
            if target is not None and target.from_cache:
                return self._cache_fell_through("got neither EVENT 25 nor EVENT 24 in time")
            return self._fail(
                JoinFailure.JOIN_TIMEOUT,
                f"no EVENT 25 or 24 within {self.config.join_timeout:g} s of SKJOIN: the meter "
                "did not complete PANA (weak link, or the meter is off)",
            )
        return self._fail(
            JoinFailure.TIMEOUT,
            no_answer_message(mask_secrets(self._command), self.config.command_timeout),
        )

    # --- steps ----------------------------------------------------------------------------------

    def _on_info(self) -> list[JoinAction]:
        detection, notices = self._detect()
        out: list[JoinAction] = [*notices]
        if (
            self.config.dialect is not Dialect.AUTO
            and detection.dialect is not Dialect.AUTO
            and detection.dialect.has_side != self.config.dialect.has_side
        ):
            out.append(
                Notice(
                    f'broute.dialect is "{self.config.dialect.value}" but the module looks like '
                    f"another family: {detection.message}; keeping the configured dialect",
                    warning=True,
                )
            )
        return out + self._send(_Step.ECHO_OFF, "SKSREG SFE 0")

    def _on_ropt(self, event: Event) -> list[JoinAction]:
        if not isinstance(event, Ok) or event.value is None:
            return []
        try:
            hex_output = int(event.value, 16) & 0x01 == 1
        except ValueError:
            note = Notice(f"unreadable ROPT answer OK {event.value}; detecting per frame", True)
            return [note, *self._set_mode(DataMode.AUTO), *self._send_password()]
        if hex_output:
            return [*self._set_mode(DataMode.HEX), *self._send_password()]
        if self.config.wopt_allowed:
            return self._send(_Step.WOPT, "WOPT 01")
        note = Notice(
            "module prints ERXUDP data in binary (ROPT 00) and WOPT was already used once; "
            "reading binary data by its declared length"
        )
        return [note, *self._set_mode(DataMode.BINARY), *self._send_password()]

    def _send_password(self) -> list[JoinAction]:
        pwd = self.config.password
        return self._send(_Step.PASSWORD, f"SKSETPWD {len(pwd):X} {pwd}")

    def _after_credentials(self) -> list[JoinAction]:
        cached = self.config.cached_pan
        if cached is not None and not self._cache_failed:
            self._target = _Target(cached.channel, cached.pan_id, cached.mac, None, True)
            note = Notice(
                f"using the cached PAN {cached.pan_id:04X} on channel {cached.channel} "
                f"(MAC {cached.mac}); skipping the scan"
            )
            return [note, *self._send_ll64()]
        self._scan_index = 0
        return self._send_scan()

    def _send_scan(self) -> list[JoinAction]:
        self._pans = []
        duration = self.config.scan_durations[self._scan_index]
        wait = scan_seconds(duration) + self.config.scan_margin
        return self._send(_Step.SCAN, skscan_command(self.dialect, duration), wait)

    def _on_scan(self, event: Event) -> list[JoinAction]:
        pan = meter_pan(event)
        if pan is not None:
            self._pans.append(pan)
        elif scan_done(event):
            return self._scan_finished(timed_out=False)
        return []

    def _scan_finished(self, *, timed_out: bool) -> list[JoinAction]:
        durations = self.config.scan_durations
        duration = durations[self._scan_index]
        if self._pans:
            best = max(self._pans, key=lambda p: p.lqi)
            self._target = _Target(best.channel, best.pan_id, best.mac, best.lqi, False)
            others = f"; strongest of {len(self._pans)}" if len(self._pans) > 1 else ""
            note = Notice(
                f"found PAN {best.pan_id:04X} on channel {best.channel} (MAC {best.mac}), "
                f"LQI {best.lqi} ≈ {best.rssi_dbm:.1f} dBm{others}",
                warning=best.rssi_dbm < -90,
            )
            return [note, *self._send_ll64()]
        why = "scan did not finish in time" if timed_out else "no PAN answered"
        self._scan_index += 1
        if self._scan_index < len(durations):
            nxt = durations[self._scan_index]
            note = Notice(f"{why} with scan duration {duration}; scanning again with {nxt}")
            return [note, *self._send_scan()]
        total = sum(scan_seconds(d) for d in durations)
        tried = ", ".join(str(d) for d in durations)
        return self._fail(
            JoinFailure.NO_PAN,
            f"no PAN found after scans with durations {tried} (about {total:.0f} s): the meter "
            "is out of range or shielded (metal box), or B-route service is not yet enabled",
        )

    def _send_ll64(self) -> list[JoinAction]:
        assert self._target is not None
        return self._send(_Step.LL64, f"SKLL64 {self._target.mac}")

    def _on_ll64(self, event: Event) -> list[JoinAction]:
        if not isinstance(event, LinkLocal) or self._target is None:
            return []
        self._ipv6 = event.ipv6
        expected = link_local_from_mac(self._target.mac)
        out: list[JoinAction] = []
        if not same_address(event.ipv6, expected):
            out.append(
                Notice(f"SKLL64 answered {event.ipv6}, expected {expected}; using the module's")
            )
        target = self._target
        return out + self._send(_Step.CHANNEL, f"SKSREG S2 {target.channel:02X}")

    def _send_pan_id(self) -> list[JoinAction]:
        assert self._target is not None
        return self._send(_Step.PAN_ID, f"SKSREG S3 {self._target.pan_id:04X}")

    def _send_join(self) -> list[JoinAction]:
        self._pana_attempts += 1
        return self._send(_Step.JOIN, f"SKJOIN {self._ipv6}", self.config.join_timeout)

    def _on_join(self, event: Event) -> list[JoinAction]:
        if not isinstance(event, SkEvent) or self._target is None:
            return []
        target = self._target
        if event.code == EventCode.PANA_CONNECTED:
            self._step = _Step.DONE
            self.result = JoinResult(
                channel=target.channel,
                pan_id=target.pan_id,
                mac=target.mac,
                ipv6=self._ipv6,
                used_cached_pan=target.from_cache,
                dialect=self.dialect,
                dialect_message=self.dialect_message,
                data_mode=self.data_mode,
                wopt_written=self.wopt_written,
                lqi=target.lqi,
                version=self._ever,
            )
            return [Joined(self.result)]
        if event.code != EventCode.PANA_FAILED:
            return []
        if target.from_cache:
            return self._cache_fell_through("PANA failed (EVENT 24)")
        if not self.config.credentials_proven:
            return self._fail(
                JoinFailure.CREDENTIALS_REJECTED,
                "B-route ID or password rejected: the meter refused PANA authentication "
                "(EVENT 24) on the first join with these credentials; check both against the "
                "grid operator's letter",
            )
        if self._pana_attempts <= self.config.pana_retries:
            note = Notice("PANA failed (EVENT 24), probably a weak link; trying SKJOIN again")
            return [note, *self._send_join()]
        return self._fail(
            JoinFailure.PANA_FAILED,
            f"PANA failed (EVENT 24) {self._pana_attempts} times with credentials that worked "
            "before: the link to the meter is weak; retry later with backoff",
        )

    def _cache_fell_through(self, why: str) -> list[JoinAction]:
        self._cache_failed = True
        self._pana_attempts = 0
        note = Notice(f"joining the cached PAN failed ({why}); scanning for the meter", True)
        self._scan_index = 0
        return [note, *self._send_scan()]

    def _on_fail(self, step: _Step, event: Fail) -> list[JoinAction]:
        if step is _Step.ROPT:
            note = Notice(f"ROPT not supported (FAIL {event.code}); detecting data mode per frame")
            return [note, *self._set_mode(DataMode.AUTO), *self._send_password()]
        if step is _Step.WOPT:
            why = f"WOPT 01 failed (FAIL {event.code}); reading binary data by its length"
            note = Notice(why, warning=True)
            return [note, *self._set_mode(DataMode.BINARY), *self._send_password()]
        hint = wrong_dialect_hint(self._command, event.code)
        if hint is not None and step is _Step.SCAN:
            switched = self._switch_dialect(hint)
            if switched is not None:
                return [switched, *self._send_scan()]
            return self._fail(JoinFailure.WRONG_DIALECT, hint)
        message = f"{mask_secrets(self._command)} failed with FAIL {event.code}"
        return self._fail(JoinFailure.COMMAND_FAILED, message if hint is None else hint)

    # --- helpers --------------------------------------------------------------------------------

    def _send(self, step: _Step, command: str, wait: float | None = None) -> list[JoinAction]:
        self._step = step
        self._command = command
        seconds = self.config.command_timeout if wait is None else wait
        return list(command_actions(command, mask_secrets(command), seconds))

    def _set_mode(self, mode: DataMode) -> list[JoinAction]:
        self.data_mode = mode
        return [SetDataMode(mode)]

    def _fail(self, reason: JoinFailure, message: str) -> list[JoinAction]:
        self._step = _Step.DONE
        self.failure = JoinFailed(reason, message)
        return [self.failure]


def _ok(event: Event) -> bool:
    return isinstance(event, Ok)
