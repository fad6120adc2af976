"""Secrets never reach a log line, whatever path they take; devices are named on every line."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from gateway import logs
from gateway.secrets import Secret, SecretFileError, read_secret


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    return stream


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_secret_read_from_file_is_redacted_everywhere(
    tmp_path: Path, captured: io.StringIO
) -> None:
    f = tmp_path / "pw"
    f.write_text("Zq7Secret!23\n")
    f.chmod(0o600)
    secret = read_secret(f)
    assert secret.reveal() == "Zq7Secret!23"
    assert "Zq7Secret!23" not in repr(secret) and str(secret) == "***"
    log = logs.get_logger("test", device="meter")
    log.info("joining with Zq7Secret!23", sent="SKSETPWD C Zq7Secret!23", obj=secret)
    try:
        raise RuntimeError("module said Zq7Secret!23")
    except RuntimeError:
        log.exception("failed")
    logging.getLogger("aiomqtt").warning("library echoes Zq7Secret!23")
    out = captured.getvalue()
    assert "Zq7Secret!23" not in out
    recs = records(captured)
    assert recs[0]["sent"] == "SKSETPWD C ***"
    assert recs[0]["device"] == "meter"
    assert "module said ***" in str(recs[1]["exception"])
    assert recs[2]["event"] == "library echoes ***"


def test_secret_named_keys_are_redacted(captured: io.StringIO) -> None:
    logs.get_logger("t").info("cfg", password="hunter2hunter2", nested={"private_key": "k" * 10})
    rec = records(captured)[0]
    assert rec["password"] == "***"
    assert rec["nested"] == {"private_key": "***"}


def test_open_secret_file_refused(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("ABCDEFGH1234")
    f.chmod(0o640)
    with pytest.raises(SecretFileError, match="readable by group or others"):
        read_secret(f)


def test_console_format_is_readable(captured: io.StringIO) -> None:
    stream = io.StringIO()
    logs.configure("info", "console", stream)
    logs.get_logger("t", device="battery").info("soc read", soc=57)
    line = stream.getvalue()
    assert "soc read" in line and "device=battery" in line and "soc=57" in line
    assert not line.startswith("{")


def test_secret_type_hides_value() -> None:
    s = Secret("abcdefgh1234", "file")
    assert "abcdefgh1234" not in f"{s} {s!r} {[s]}"
