"""What the command modules share: one-line errors, quiet logs, running a command's coroutine.

The leading underscore keeps this module out of :func:`gateway.cli._register`: it has no commands.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeAlias, TypeVar

import click

T = TypeVar("T")

ErrorHandler: TypeAlias = tuple[
    type[Exception] | tuple[type[Exception], ...], Callable[[Exception], str]
]
"""(exception type or types, its one-line message): see :func:`run_command`."""


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def configure_cli_logs(verbose: bool) -> None:
    """Console logs on stderr: info with ``--verbose``, errors only otherwise."""
    from gateway import logs

    logs.configure("info" if verbose else "error", "console", stream=sys.stderr)


def run_command(coro: Awaitable[T], handlers: Sequence[ErrorHandler]) -> T:
    """Run a command's coroutine; Ctrl-C exits 130, a handled error becomes one line and exit 1.

    ``handlers`` are tried in order, like ``except`` clauses: the first whose types match the
    error gives the message. Any other error propagates unchanged.
    """

    async def main() -> T:
        return await coro

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        for types, message in handlers:
            if isinstance(exc, types):
                fail(message(exc))
        raise
