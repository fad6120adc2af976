"""The local control socket: the resident's or installer's override reaches the running daemon.

A Unix socket (``control.socket``, mode 0660) speaking one JSON object per line each way. It is
local on purpose: an override must work when the backend is unreachable, and it beats every
remote command until it ends (interlock rule 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from gateway.clock import JST, Clock
from gateway.logs import get_logger
from gateway.slots import iso

OVERRIDE_MODES = ("auto", "standby")
MAX_LINE = 4096


class ControlError(Exception):
    """The daemon is not reachable or refused the request; the message says why."""


def next_time(hhmm: str, now: datetime) -> datetime:
    """The next occurrence of HH:MM in JST after ``now`` (today or tomorrow)."""
    try:
        hour, minute = (int(p) for p in hhmm.split(":"))
        at = time(hour, minute)
    except ValueError:
        raise ControlError(f"--until must be HH:MM, got {hhmm!r}") from None
    local = now.astimezone(JST)
    when = datetime.combine(local.date(), at, JST)
    return when if when > local else when + timedelta(days=1)


@dataclass
class OverrideStore:
    """What the server needs from the store."""

    put: Callable[[dict[str, Any], datetime], None]
    get: Callable[[], dict[str, Any] | None]
    clear: Callable[[], bool]


def active_override(raw: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    """The override in force at ``now``, or None once it has ended."""
    if not raw:
        return None
    try:
        until = datetime.fromisoformat(str(raw["until"]))
    except (KeyError, ValueError):
        return None
    if until <= now or raw.get("mode") not in OVERRIDE_MODES:
        return None
    return {"device": raw.get("device", "battery"), "mode": raw["mode"], "until": iso(until)}


@dataclass
class ControlServer:
    path: Path
    overrides: OverrideStore
    clock: Clock
    on_change: Callable[[], None] | None = None
    status: Callable[[], dict[str, Any]] | None = None
    name: str = "control-socket"

    def __post_init__(self) -> None:
        self.log = get_logger("chisan.control")

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        server = await asyncio.start_unix_server(self._client, path=str(self.path))
        os.chmod(self.path, 0o660)
        self.log.info("control socket listening", path=str(self.path))
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            reply = self.handle(line[:MAX_LINE])
        except (TimeoutError, ConnectionError):
            reply = {"ok": False, "error": "no request received"}
        writer.write(json.dumps(reply).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def handle(self, line: bytes) -> dict[str, Any]:
        """One request → one reply; bad requests get a reason, never an exception."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        op = req.get("op")
        now = self.clock.now()
        if op == "override":
            mode, device, until_raw = (
                req.get("mode"),
                req.get("device", "battery"),
                req.get("until"),
            )
            if device != "battery":
                return {"ok": False, "error": "only the battery can be overridden"}
            if mode not in OVERRIDE_MODES:
                return {"ok": False, "error": f"mode must be one of {', '.join(OVERRIDE_MODES)}"}
            try:
                until = datetime.fromisoformat(str(until_raw))
                if until.tzinfo is None:
                    raise ValueError("until needs a UTC offset")
            except ValueError as exc:
                return {"ok": False, "error": f"bad until: {exc}"}
            if until <= now:
                return {"ok": False, "error": "until is in the past"}
            override = {"device": device, "mode": mode, "until": iso(until)}
            self.overrides.put(override, now)
            self.log.warning("resident override set", **override)
            self._changed()
            return {"ok": True, "override": override}
        if op == "clear":
            cleared = self.overrides.clear()
            self.log.warning("resident override cleared", was_set=cleared)
            self._changed()
            return {"ok": True, "cleared": cleared}
        if op == "status":
            body: dict[str, Any] = {"ok": True, "now": iso(now)}
            body["override"] = active_override(self.overrides.get(), now)
            if self.status is not None:
                try:
                    body.update(self.status())
                except Exception as exc:  # a status must never take the socket down
                    self.log.exception("status request failed")
                    return {"ok": False, "error": f"status unavailable: {exc}"}
            return body
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


#: A status answer carries slot records and commands: far more than a request line.
MAX_REPLY = 1 << 22


async def request(path: Path, body: dict[str, Any], wait_s: float = 5.0) -> dict[str, Any]:
    """Client side, used by ``chisan override``, ``chisan status`` and ``chisan doctor``."""
    timeout = wait_s
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_REPLY), timeout
        )
    except FileNotFoundError:
        raise ControlError(f"no control socket at {path}: is chisan running?") from None
    except PermissionError:
        raise ControlError(
            f"permission denied on {path}: run as root or the chisan group"
        ) from None
    except (ConnectionError, TimeoutError) as exc:
        raise ControlError(
            f"cannot reach the daemon at {path} ({exc}): is chisan running?"
        ) from None
    try:
        writer.write(json.dumps(body).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        raise ControlError(f"the daemon at {path} did not answer within {timeout:g} s") from None
    except (ConnectionError, ValueError) as exc:
        raise ControlError(f"lost the daemon at {path}: {exc}") from None
    finally:
        writer.close()
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError("the daemon sent an unreadable reply") from None
    if not isinstance(reply, dict):
        raise ControlError("the daemon sent an unreadable reply")
    return reply
