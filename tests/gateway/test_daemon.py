"""`chisan run` as a real process: READY, then a clean exit within 5 s of SIGTERM or SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BASE_CONFIG, PASSWORD, venv_bin

EMPTY = (
    BASE_CONFIG.split("[[device]]")[0] + '\n[store]\npath = "chisan.db"\n[log]\nlevel = "debug"\n'
)


def start(config: Path, notify: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [venv_bin("chisan"), "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def wait_ready(sock: socket.socket, timeout: float = 20) -> str:
    sock.settimeout(timeout)
    msg = sock.recv(1024).decode()
    assert msg.startswith("READY=1"), msg
    return msg


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_reports_ready_and_stops_within_5s(
    write_config: Callable[[str], Path], tmp_path: Path, sig: signal.Signals
) -> None:
    config = write_config(EMPTY)
    notify = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(notify))
    proc = start(config, notify)
    try:
        wait_ready(server)
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        server.settimeout(1)
    assert proc.returncode == 0, err.decode()
    assert elapsed < 5
    assert server.recv(1024) == b"STOPPING=1"
    server.close()
    # Not a terminal: JSON lines, one event each, and the password never among them.
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    events = [rec["event"] for rec in lines]
    assert "started" in events and "stopped" in events
    assert all("level" in rec and "timestamp" in rec for rec in lines)
    assert PASSWORD not in err.decode()


def test_run_with_broken_config_exits_1(write_config: Callable[[str], Path]) -> None:
    config = write_config(BASE_CONFIG.replace('dialect = "bp35a1"', 'dialect = "x"'))
    result = subprocess.run(
        [venv_bin("chisan"), "run", "-c", str(config)], capture_output=True, timeout=30
    )
    assert result.returncode == 1
    assert b"broute.dialect" in result.stderr
    assert b"Traceback" not in result.stderr


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"], capture_output=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.decode().startswith("chisan, version")
