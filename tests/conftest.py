"""Shared fixtures: config files written the way an installer would, in a private folder."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

BASE_CONFIG = """
[site]
id = "sg-0001"
fit = false

[mqtt]
url = "mqtt://127.0.0.1:1883"

[broute]
port = "/dev/ttyUSB0"
dialect = "bp35a1"
id = "0123456789ABCDEF0123456789ABCDEF"
password_file = "broute-password"

[[device]]
name = "battery"
kind = "battery"
protocol = "echonet"
host = "127.0.0.20"
eoj = "027D01"

[limits]
soc_reserve_pct = 30
soc_max_pct = 95

[store]
path = "chisan.db"
"""

PASSWORD = "Pa55w0rdXyZ9"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A folder holding a private B-route password file, as `chisan` expects in the field."""
    pw = tmp_path / "broute-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    return tmp_path


@pytest.fixture
def write_config(config_dir: Path) -> Callable[[str], Path]:
    def write(text: str = BASE_CONFIG, name: str = "chisan.toml") -> Path:
        path = config_dir / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(autouse=True)
def _no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run without systemd unless they set it up themselves."""
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)


def venv_bin(name: str) -> str:
    """Path of a console script installed beside the running interpreter."""
    import sys

    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(REPO / ".hypothesis"))


@pytest.fixture
def mosquitto(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A running mosquitto on a free loopback port (installed by scripts/setup.sh)."""
    from tests.support.mosquitto import Mosquitto

    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()
