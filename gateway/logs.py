"""Structured logging: JSON lines for journald, readable lines on a terminal, secrets redacted.

Every secret the daemon reads is registered here, and a processor replaces it wherever it would
appear in a log event (message, values, exception text), so a password can never reach the journal
even through a library's own error message.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_REDACTED = "***"
_SECRET_KEYS = re.compile(r"(password|passwd|secret|private_key|token|pwd)", re.IGNORECASE)
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

LEVELS = ("debug", "info", "warning", "error")


def register_secret(value: str) -> None:
    """Make ``value`` unprintable from now on. Very short values would redact too much text."""
    global _pattern
    if len(value) < 4 or value in _secrets:
        return
    _secrets.add(value)
    ordered = sorted(_secrets, key=len, reverse=True)
    _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact_text(text: str) -> str:
    if _pattern is None:
        return text
    return _pattern.sub(_REDACTED, text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return _redact(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {
            k: _REDACTED if _SECRET_KEYS.search(str(k)) else _redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(str(value))


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor; runs last before rendering so exception text is covered too."""
    for key in list(event_dict):
        if _SECRET_KEYS.search(key):
            event_dict[key] = _REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog and route the standard library's loggers (aiomqtt, pymodbus) through it."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=False),
    ]
    renderer: Any
    if fmt == "json":
        final: list[Any] = [
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.processors.JSONRenderer(),
        ]
    else:
        final = [
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.dev.ConsoleRenderer(colors=stream.isatty(), exception_formatter=_plain_exc),
        ]
    renderer = final
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Chatty third-party loggers stay at warning unless we debug.
    for name in ("aiomqtt", "pymodbus", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    # aiomqtt's own logger warns about "pending publish calls" whenever more than ten publishes
    # are in flight, which the uplink does on purpose to pipeline a backlog.
    logging.getLogger("chisan.mqtt").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)


def _plain_exc(sio: TextIO, exc_info: Any) -> None:
    import traceback

    sio.write("\n" + "".join(traceback.format_exception(*exc_info)))


def get_logger(name: str = "chisan", **bound: Any) -> Any:
    """A bound logger; drivers pass ``device=<name>`` so every line says which device spoke."""
    return structlog.stdlib.get_logger(name).bind(**bound)


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_SHED = _WarningsOnly()


def shed_logs(on: bool) -> None:
    """While the disk is full, drop info and debug lines: they must not take settlement space."""
    for handler in logging.getLogger().handlers:
        if on:
            handler.addFilter(_SHED)
        else:
            handler.removeFilter(_SHED)


def logs_shed() -> bool:
    return any(_SHED in h.filters for h in logging.getLogger().handlers)
