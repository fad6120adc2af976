"""The CLI as installers use it: exit codes, one line per error, help for every command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from tests.conftest import BASE_CONFIG, PASSWORD


def test_help_lists_every_command_with_one_line() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1].strip().splitlines()
    names = {line.split()[0] for line in listed}
    assert set(main.commands) <= names
    for line in listed:
        assert len(line.split()) >= 2, f"command without a description: {line}"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("chisan, version ")


def test_check_config_ok(write_config: Callable[[str], Path]) -> None:
    result = CliRunner().invoke(main, ["check-config", "-c", str(write_config())])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "sg-0001" in result.output
    assert PASSWORD not in result.output


def test_check_config_lists_errors_and_exits_1(write_config: Callable[[str], Path]) -> None:
    text = BASE_CONFIG.replace("soc_max_pct = 95", "soc_max_pct = 10").replace(
        'eoj = "027D01"', 'eoj = "02"'
    )
    path = write_config(text)
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"2 errors in {path}"
    assert any(line.startswith(f"{path}:") and "device[0].eoj" in line for line in lines)
    assert any("limits.soc_max_pct" in line for line in lines)


def test_check_config_json(write_config: Callable[[str], Path]) -> None:
    path = write_config(BASE_CONFIG.replace("fit = false", "fit = 1"))
    result = CliRunner().invoke(main, ["check-config", "-c", str(path), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["valid"] is False
    assert doc["errors"][0]["key"] == "site.fit"
    assert path.read_text().splitlines()[doc["errors"][0]["line"] - 1] == "fit = 1"


def test_subcommand_help_is_plain(write_config: Callable[[str], Path]) -> None:
    for name in main.commands:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
