"""``chisan doctor``: the installer's last command before leaving a home.

One table of PASS / WARN / FAIL / SKIP, one row per check, with the next step for every problem;
exit status 0 only when nothing failed. ``--json`` gives the same as one object for scripts and
fleet tools. The checks themselves live in :mod:`gateway.doctor`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway.cli import CONFIG_OPTION
from gateway.cli._common import configure_cli_logs

if TYPE_CHECKING:
    from gateway.doctor import CheckResult

STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


@click.command("doctor")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="Seconds allowed to each check.",
)
@click.option(
    "--join-timeout",
    type=click.FloatRange(min=5),
    default=180.0,
    show_default=True,
    help="Seconds allowed to the B-route join (a full scan takes about two minutes).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what the checks do.")
def doctor(
    config_path: Path, as_json: bool, timeout: float, join_timeout: float, verbose: bool
) -> None:
    """Check config, meter, devices, broker, clock, disk and store; exit 0 when nothing fails."""
    from rich.console import Console

    from gateway.doctor import Doctor, DoctorOptions

    configure_cli_logs(verbose)
    runner = Doctor(
        config_path, DoctorOptions(check_timeout_s=timeout, join_timeout_s=join_timeout)
    )
    console = Console(stderr=True)
    if not as_json and console.is_terminal:

        def progress(result: CheckResult) -> None:
            console.print(
                f"[{STYLE[result.verdict.value]}]{result.verdict.value}[/] {result.name}",
                highlight=False,
            )

        runner.on_result = progress
    try:
        asyncio.run(runner.run())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    results = runner.results
    counts = {v: sum(1 for r in results if r.verdict.value == v) for v in STYLE}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": runner.ok,
                    "config": str(config_path),
                    "daemon_running": runner.daemon_running,
                    "summary": {k.lower(): n for k, n in counts.items()},
                    "checks": [r.to_json() for r in results],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        _print_table(results, counts, runner.ok)
    raise SystemExit(0 if runner.ok else 1)


def _print_table(results: Sequence[CheckResult], counts: dict[str, int], ok: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("check", "result", "detail", "next step", show_lines=True)
    for result in results:
        verdict = result.verdict.value
        table.add_row(
            result.name,
            Text(verdict, STYLE[verdict]),
            result.detail,
            result.next_step or "",
        )
    console = Console()
    console.print(table)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    if ok:
        console.print(f"[green]no failures[/green] ({summary})")
    else:
        console.print(
            f"[bold red]{counts['FAIL']} check(s) failed[/bold red] ({summary}): "
            "fix the first FAIL first"
        )


COMMANDS = [doctor]
