"""The ``chisan`` command: installers' and operators' single entry point."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from gateway import logs
from gateway.config import Config, load
from gateway.config_errors import ConfigError


def _version() -> str:
    try:
        return version("chisan")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+src"


CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/chisan/chisan.toml"),
    show_default=True,
    help="Configuration file (TOML).",
)


def load_or_exit(path: Path) -> Config:
    """Load a config or print every problem and exit 1: used by all commands that need one."""
    try:
        return load(path)
    except ConfigError as err:
        for issue in err.issues:
            click.echo(str(issue), err=True)
        n = len(err.issues)
        click.echo(f"{n} error{'s' if n != 1 else ''} in {path}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "-V", "--version", prog_name="chisan")
def main() -> None:
    """chisan: home energy gateway for the neighbourhood P2P electricity market."""


@main.command("check-config")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check_config(config_path: Path, as_json: bool) -> None:
    """Validate a configuration file and list every error."""
    try:
        cfg = load(config_path)
    except ConfigError as err:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "valid": False,
                        "errors": [
                            {"file": i.file, "line": i.line, "key": i.path, "message": i.message}
                            for i in err.issues
                        ],
                    }
                )
            )
        else:
            for issue in err.issues:
                click.echo(str(issue))
            n = len(err.issues)
            click.echo(f"{n} error{'s' if n != 1 else ''} in {config_path}")
        sys.exit(1)
    if as_json:
        click.echo(
            json.dumps(
                {"valid": True, "site": cfg.site.id, "devices": [d.name for d in cfg.devices]}
            )
        )
        return
    console = Console()
    console.print(f"[green]OK[/green] {config_path}: site [bold]{cfg.site.id}[/bold]")
    table = Table("section", "summary")
    table.add_row("mqtt", f"{cfg.mqtt.url} as {cfg.mqtt.client_id}, prefix {cfg.mqtt.topic_prefix}")
    if cfg.broute:
        table.add_row(
            "broute", f"{cfg.broute.port} ({cfg.broute.dialect}), poll every {cfg.broute.poll_s}s"
        )
    else:
        table.add_row("broute", "[yellow]no smart meter configured: no settlement data[/yellow]")
    for dev in cfg.devices:
        where = dev.host or dev.serial or ""
        extra = f" eoj {dev.eoj}" if dev.eoj else f" unit {dev.unit_id}"
        table.add_row(f"device {dev.name}", f"{dev.kind} over {dev.protocol} at {where}{extra}")
    lim = cfg.limits
    table.add_row(
        "limits",
        f"SOC {lim.soc_reserve_pct:g}-{lim.soc_max_pct:g}%, export <= {lim.export_limit_w} W, "
        f"breaker {lim.breaker_a} A, stale after {lim.meter_stale_s:g}s",
    )
    table.add_row("store", str(cfg.store.path))
    console.print(table)


@main.command("run")
@CONFIG_OPTION
@click.option("--log-level", type=click.Choice(logs.LEVELS), help="Override [log] level.")
def run(config_path: Path, log_level: str | None) -> None:
    """Run the gateway daemon (as the systemd service does)."""
    from gateway.daemon import harden_process, run_daemon

    unhardened = harden_process()  # before the config loader reads the password file
    cfg = load_or_exit(config_path)
    logs.configure(log_level or cfg.log.level, cfg.log.format)
    if unhardened:
        logs.get_logger("chisan.daemon").warning(
            "process hardening incomplete", problems=unhardened
        )

    loop = asyncio.new_event_loop()
    try:
        with contextlib.suppress(KeyboardInterrupt):  # signal handlers normally catch it
            loop.run_until_complete(run_daemon(cfg))
        # A component that ignored cancellation must not keep the process alive past systemd's
        # stop timeout: give stragglers one more second, then leave without them.
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
    finally:
        loop.close()


def _register() -> None:
    """Attach the commands that live in their own modules of this package.

    Each module ``gateway/cli/<name>.py`` exposes ``COMMANDS``: a list of click commands/groups.
    """
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(mod, "COMMANDS", []):
            main.add_command(command)


_register()
