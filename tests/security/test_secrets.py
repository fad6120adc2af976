"""Secrets stay secret: not in logs, output, the store, /proc, core files or readable files.

The daemon runs as a real process at debug level against a meter emulator on a pty (so the
B-route password is really sent), over mqtts with a client certificate and an MQTT password, and
creates its own signing key. Every byte it and the CLI print, every file it leaves, and its /proc
entries are then searched for each secret in several encodings.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.broute.sim import MeterModelConfig, ModuleConfig, PtyEmulator
from gateway.clock import SystemClock
from tests.conftest import venv_bin
from tests.security.conftest import SITES, AclBroker
from tests.support.backend import FakeBackend

SITE = SITES[0]
BROUTE_ID = "00000047C0FFEE0000000000DEADBEEF"
BROUTE_PW = "Xq7Ba9Rz2Kw5"
MQTT_USER = "gw-user"
MQTT_PW = "mqtt-Pw-6f1c93e0a2b7"


def encodings(secret: bytes) -> Iterator[bytes]:
    """The forms a leak could take: as is, hex (either case), base64."""
    yield secret
    yield secret.hex().encode()
    yield secret.hex().upper().encode()
    yield base64.b64encode(secret).rstrip(b"=")


def pem_body_lines(pem: bytes) -> list[bytes]:
    return [ln for ln in pem.splitlines() if ln and not ln.startswith(b"-----")]


def write_config(folder: Path, broker: AclBroker, pty: str) -> Path:
    pw = folder / "broute-password"
    pw.write_text(BROUTE_PW + "\n")
    pw.chmod(0o600)
    mqtt_pw = folder / "mqtt-password"
    mqtt_pw.write_text(MQTT_PW + "\n")
    mqtt_pw.chmod(0o600)
    backend = folder / "backend.pub.pem"
    backend.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    state = folder / "state"
    state.mkdir(mode=0o750)
    text = f"""
[site]
id = "{SITE}"
fit = false

{broker.mqtt_section(SITE)}username = "{MQTT_USER}"
password_file = "mqtt-password"

[broute]
port = "{pty}"
dialect = "auto"
id = "{BROUTE_ID}"
password_file = "broute-password"
poll_s = 10
timeout_s = 20

[commands]
public_key_file = "backend.pub.pem"

[store]
path = "state/chisan.db"
key_file = "state/site-key.pem"

[control]
socket = "state/control.sock"

[log]
level = "debug"
format = "json"
"""
    cfg = folder / "chisan.toml"
    cfg.write_text(text)
    return cfg


def read_proc(pid: int) -> dict[str, bytes]:
    return {n: Path(f"/proc/{pid}/{n}").read_bytes() for n in ("environ", "cmdline", "limits")}


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [venv_bin("chisan"), *args, "-c", str(cfg)], capture_output=True, timeout=60
    )


async def test_no_secret_leaks_from_the_daemon_or_the_cli(
    tmp_path: Path, acl_broker: AclBroker
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir(mode=0o700)
    module = ModuleConfig(
        rbid=BROUTE_ID, password=BROUTE_PW, link_delay=0.003, link_jitter=0.0, scan_scale=0.02
    )
    clock = SystemClock()
    outputs: dict[str, bytes] = {}
    async with (
        PtyEmulator(module, MeterModelConfig(), clock) as emu,
        FakeBackend(acl_broker.backend_port) as backend,
    ):
        cfg = write_config(folder, acl_broker, emu.path)
        check = await asyncio.to_thread(cli, cfg, "check-config")
        assert check.returncode == 0, check.stdout + check.stderr
        proc = await asyncio.create_subprocess_exec(
            venv_bin("chisan"),
            "run",
            "-c",
            str(cfg),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=folder,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        out_task = asyncio.create_task(proc.stdout.read())  # type: ignore[union-attr]
        err_task = asyncio.create_task(proc.stderr.read())  # type: ignore[union-attr]
        try:
            # The password was used (the PANA session came up: the meter's history arrives) and
            # the records were acknowledged end to end over mqtts.
            await backend.wait_for(lambda: len(backend.records) >= 2, timeout=60)
            proc_files = read_proc(proc.pid)
            # The installer's commands that talk to the running daemon and to the broker (the
            # doctor logs in with the MQTT password and makes a test publish).
            for args in (("status", "--json"), ("doctor", "--json", "--timeout", "20")):
                done = await asyncio.to_thread(cli, cfg, *args)
                outputs[" ".join(args)] = done.stdout + done.stderr
            assert b'"flows"' in outputs["status --json"], outputs["status --json"][-2000:]
            assert b'"test_publish"' in outputs["doctor --json --timeout 20"]
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)
        outputs["run stdout"], outputs["run stderr"] = await out_task, await err_task
        assert proc.returncode == 0, outputs["run stderr"][-2000:]
        for name, data in proc_files.items():
            outputs[f"/proc/pid/{name}"] = data
        for name, data in backend.messages:
            outputs.setdefault("published", b"")
            outputs["published"] += f"{name} {data}\n".encode()

    # The CLI, on the same config, after the run.
    today = date.today()
    for args in (
        ("check-config",),
        ("check-config", "--json"),
        ("keys", "show"),
        ("export", "--from", str(today - timedelta(days=2)), "--to", str(today)),
    ):
        done = await asyncio.to_thread(cli, cfg, *args)
        outputs[" ".join(args)] = done.stdout + done.stderr

    # Debug logging really ran, and the B-route session was set up through the password.
    assert b'"level": "debug"' in outputs["run stderr"] + outputs["run stdout"]
    assert b"SKSETPWD" in outputs["run stderr"] + outputs["run stdout"]

    site_key = (folder / "state" / "site-key.pem").read_bytes()
    raw_key = serialization.load_pem_private_key(site_key, None).private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    tls_key = acl_broker.pki[f"{SITE}_key"].read_bytes()
    secrets = {
        "B-route password": [*encodings(BROUTE_PW.encode())],
        "MQTT password": [*encodings(MQTT_PW.encode())],
        "site signing key": [*encodings(raw_key), *pem_body_lines(site_key)],
        "TLS client key": pem_body_lines(tls_key),
    }
    secret_files = {
        folder / "broute-password",
        folder / "mqtt-password",
        folder / "state" / "site-key.pem",
    }
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path not in secret_files:
            outputs[str(path.relative_to(folder))] = path.read_bytes()
    assert any("chisan.db" in name for name in outputs)  # the store was scanned too

    leaks = [
        f"{what} in {where}"
        for where, data in outputs.items()
        for what, forms in secrets.items()
        if any(form in data for form in forms)
    ]
    assert leaks == []

    # Nothing the daemon created is readable by others; secrets by nobody but the owner.
    for path in sorted((folder / "state").rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert not mode & 0o007, f"{path.name} is {mode:04o}"
    assert stat.S_IMODE((folder / "state" / "site-key.pem").stat().st_mode) == 0o600

    # No core file can be written: the limit is 0 and cannot be raised again.
    core = next(ln for ln in proc_files["limits"].decode().splitlines() if "core file" in ln)
    assert core.split()[4:6] == ["0", "0"], core


def test_the_daemon_process_is_not_dumpable() -> None:
    """prctl(PR_GET_DUMPABLE) from inside a process that ran the daemon's hardening."""
    code = (
        "import ctypes, os, resource\n"
        "from gateway.daemon import harden_process\n"
        "assert harden_process() == []\n"
        "libc = ctypes.CDLL(None)\n"
        "print(libc.prctl(3, 0, 0, 0, 0), resource.getrlimit(resource.RLIMIT_CORE),"
        " oct(os.umask(0)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "(0,", "0)", "0o27"]
    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 1  # the test process itself is untouched
