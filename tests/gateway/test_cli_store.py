"""``chisan keys``, ``export`` and ``verify`` as an installer and an auditor use them."""

from __future__ import annotations

import csv
import io
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import provenance
from gateway.cli import main
from gateway.store import Store
from tests.conftest import BASE_CONFIG

SITE = "sg-0001"
CONFIG = BASE_CONFIG.replace('path = "chisan.db"', 'path = "data/chisan.db"')


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line_error(result: Result) -> str:
    """Errors are a single line, never a traceback."""
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Path:
    return write_config(CONFIG)


@pytest.fixture
def key(config: Path) -> Ed25519PrivateKey:
    result = run("keys", "init", "-c", str(config))
    assert result.exit_code == 0, result.output
    return provenance.load_private(config.parent / "data" / "site-ed25519.pem")


def slot_fields(day: int, n: int, rev: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "site": SITE,
        "slot_start": f"2026-11-{day:02d}T{n // 2:02d}:{30 * (n % 2):02d}:00+09:00",
        "rev": rev,
        "source": "meter_boundary",
        "import_wh": 100 + n,
        "export_wh": n % 3,
        **extra,
    }


@pytest.fixture
def history(config: Path, key: Ed25519PrivateKey) -> Path:
    """Three days of slots, plus a late revision of day 26 appended amid day 27."""
    db = config.parent / "data" / "chisan.db"
    with Store(db, SITE, key) as s:
        for day in (26, 27, 28):
            for n in range(4):
                s.append_slot(slot_fields(day, n, pv_wh=50 * n))
                if day == 27 and n == 1:
                    s.append_slot(slot_fields(26, 2, rev=2, source="meter_history"))
    return db


def export_json(config: Path, tmp_path: Path, *dates: str) -> tuple[Path, dict[str, Any]]:
    result = run("export", "-c", str(config), "--from", dates[0], "--to", dates[-1])
    assert result.exit_code == 0, result.output
    path = tmp_path / "export.json"
    path.write_text(result.stdout)
    return path, json.loads(result.stdout)


# ------------------------------------------------------------------------------------- keys


def test_keys_init_creates_the_key_once(config: Path) -> None:
    path = config.parent / "data" / "site-ed25519.pem"
    first = run("keys", "init", "-c", str(config))
    assert first.exit_code == 0, first.output
    assert f"created site key {path} (mode 0600)" in first.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    public = provenance.load_private(path).public_key()
    assert provenance.public_key_b64(public) in first.output
    assert provenance.public_key_pem(public) in first.output
    content = path.read_bytes()

    again = run("keys", "init", "-c", str(config))
    assert again.exit_code == 0
    assert "already exists; not changed" in again.output
    assert provenance.public_key_b64(public) in again.output
    assert path.read_bytes() == content

    shown = run("keys", "show", "-c", str(config))
    assert shown.exit_code == 0
    assert provenance.public_key_b64(public) in shown.output
    assert "PRIVATE" not in first.output + again.output + shown.output


def test_keys_refuse_an_open_key_file(config: Path, key: Ed25519PrivateKey) -> None:
    path = config.parent / "data" / "site-ed25519.pem"
    path.chmod(0o644)
    for command in ("init", "show"):
        result = run("keys", command, "-c", str(config))
        assert result.exit_code == 1
        assert "readable by group or others" in one_line_error(result)


def test_keys_show_without_a_key(config: Path) -> None:
    result = run("keys", "show", "-c", str(config))
    assert result.exit_code == 1
    assert "chisan keys init" in one_line_error(result)


# ----------------------------------------------------------------------------------- export


def test_export_json_is_the_chain_segment_of_those_days(
    config: Path, history: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _, doc = export_json(config, tmp_path, "2026-11-27")
    assert doc["site"] == SITE
    assert doc["public_key"] == provenance.public_key_b64(key)
    records = doc["records"]
    # day 27 is seq 5..9, with the day-26 revision (seq 7) in between
    assert [r["seq"] for r in records] == [5, 6, 7, 8, 9]
    assert [r["slot_start"][:10] for r in records].count("2026-11-26") == 1
    with Store.open_readonly(history, SITE) as s:
        assert records == s.records_by_seq(5, 9)
    assert provenance.verify_chain(records, key.public_key()).ok


def test_export_whole_history_and_empty_ranges(config: Path, history: Path, tmp_path: Path) -> None:
    _, doc = export_json(config, tmp_path, "2026-11-01", "2026-11-30")
    assert [r["seq"] for r in doc["records"]] == list(range(1, 14))
    _, empty = export_json(config, tmp_path, "2026-12-01", "2026-12-02")
    assert empty["records"] == []


def test_export_csv(config: Path, history: Path) -> None:
    result = run(
        "export", "-c", str(config), "--from", "2026-11-28", "--to", "2026-11-28", "--format", "csv"
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [int(r["seq"]) for r in rows] == [10, 11, 12, 13]
    first = rows[0]
    assert first["slot_start"] == "2026-11-28T00:00:00+09:00"
    assert (first["import_wh"], first["export_wh"], first["pv_wh"]) == ("100", "0", "0")
    assert first["battery_charge_wh"] == "" and len(first["hash"]) == 64
    assert list(rows[0])[:4] == ["site", "seq", "slot_start", "rev"]


def test_export_while_the_daemon_holds_the_database(
    config: Path, history: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    with Store(history, SITE, key) as daemon:
        daemon.append_slot(slot_fields(28, 10))
        _, doc = export_json(config, tmp_path, "2026-11-28")
        assert doc["records"][-1]["seq"] == 14


def test_export_errors(config: Path) -> None:
    missing = run("export", "-c", str(config), "--from", "2026-11-27", "--to", "2026-11-27")
    assert missing.exit_code == 1
    assert "no database here" in one_line_error(missing)
    bad = run("export", "-c", str(config), "--from", "27.11.2026", "--to", "2026-11-27")
    assert bad.exit_code == 2
    assert "--from: expected a date YYYY-MM-DD" in one_line_error(bad)
    backwards = run("export", "-c", str(config), "--from", "2026-11-28", "--to", "2026-11-27")
    assert backwards.exit_code == 2
    assert "before --from" in one_line_error(backwards)


# ----------------------------------------------------------------------------------- verify


def test_verify_an_intact_export(config: Path, history: Path, tmp_path: Path) -> None:
    path, _ = export_json(config, tmp_path, "2026-11-26", "2026-11-28")
    result = run("verify", str(path))
    assert result.exit_code == 0, result.output
    assert result.output == "OK: 13 records, chain intact\n"


def tamper(path: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc["records"])
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda rs: rs[2].update(import_wh=1), "seq 3: hash mismatch (record was altered)"),
        (lambda rs: rs.pop(4), "seq 6: seq gap (expected 5)"),
        (lambda rs: rs.insert(6, rs.pop(5)), "seq 7: out of order (expected 6)"),
        (lambda rs: rs[7].update(sig=rs[8]["sig"]), "seq 8: bad signature"),
    ],
)
def test_verify_names_the_first_broken_link(
    config: Path, history: Path, tmp_path: Path, change: Any, reason: str
) -> None:
    path, _ = export_json(config, tmp_path, "2026-11-26", "2026-11-28")
    tamper(path, change)
    result = run("verify", str(path))
    assert result.exit_code == 1
    assert one_line_error(result) == f"FAILED: {reason}"


def test_verify_with_a_given_public_key(
    config: Path, history: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    path, _ = export_json(config, tmp_path, "2026-11-27")
    b64 = tmp_path / "site.b64"
    b64.write_text(provenance.public_key_b64(key) + "\n")
    assert run("verify", str(path), "--public-key", str(b64)).exit_code == 0

    other = tmp_path / "other.pem"
    other.write_text(provenance.public_key_pem(Ed25519PrivateKey.generate()))
    result = run("verify", str(path), "--public-key", str(other))
    assert result.exit_code == 1
    assert result.stdout == "FAILED: seq 5: bad signature\n"
    assert "names another public key" in result.stderr


def test_verify_an_export_re_signed_with_another_key(
    config: Path, history: Path, tmp_path: Path
) -> None:
    """A forger who re-signs everything and swaps in their public key fails against the
    registered key."""
    path, doc = export_json(config, tmp_path, "2026-11-26", "2026-11-28")
    forger = Ed25519PrivateKey.generate()
    prev = provenance.GENESIS_HASH
    forged = []
    for r in doc["records"]:
        body = {k: v for k, v in r.items() if k not in provenance.SEAL_FIELDS}
        forged.append(provenance.seal({**body, "export_wh": 0}, prev, r["seq"], forger))
        prev = forged[-1]["hash"]
    path.write_text(
        json.dumps({**doc, "public_key": provenance.public_key_b64(forger), "records": forged})
    )
    assert run("verify", str(path)).exit_code == 0  # self-consistent...
    registered = tmp_path / "registered.pem"
    registered.write_text(provenance.public_key_pem(provenance.parse_public_key(doc["public_key"])))
    result = run("verify", str(path), "--public-key", str(registered))
    assert result.exit_code == 1 and "FAILED: seq 1: bad signature" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"site": "x"}', "not a chisan export"),
        ('{"records": [1]}', "records[0] is not an object"),
        ('{"records": []}', "has no public_key; pass --public-key"),
        ('{"records": [], "public_key": "abc"}', "public_key: neither PEM nor base64"),
    ],
)
def test_verify_input_errors_are_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    result = run("verify", str(path))
    assert result.exit_code == 2
    assert message in one_line_error(result)


def test_verify_missing_files(tmp_path: Path) -> None:
    result = run("verify", str(tmp_path / "none.json"))
    assert result.exit_code == 2 and "No such file" in one_line_error(result)
    path = tmp_path / "x.json"
    path.write_text('{"records": []}')
    result = run("verify", str(path), "--public-key", str(tmp_path / "none.pem"))
    assert result.exit_code == 2 and "none.pem" in one_line_error(result)
