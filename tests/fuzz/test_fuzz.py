"""Every external-input parser survives the fuzzer: seconds each in CI, 1,000,000 inputs each
with CHISAN_SLOW=1 (the same run as ``python -m tests.fuzz --inputs 1000000``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuzz import engine
from tests.fuzz.targets import TARGETS, Target, config_dir

SLOW = os.environ.get("CHISAN_SLOW") == "1"
LONG_INPUTS = 1_000_000
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(7200 if SLOW else 120)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_survives_the_fuzzer(name: str) -> None:
    seed = int(time.time()) if SLOW else 0
    if SLOW:
        result = engine.run(TARGETS[name], LONG_INPUTS, seed=seed)
        assert result.inputs == LONG_INPUTS
    else:
        # A fixed seed and count: CI sees the same inputs on every run, on any machine.
        target = TARGETS[name]
        result = engine.run(target, target.quick_inputs, seed=seed)
        assert result.inputs == target.quick_inputs
    report = [
        f"seed {seed}: {f.key} x{f.count}: {f.error} input={f.data[:120]!r}"
        for f in result.findings.values()
    ]
    assert report == []
    print(f"{name}: {result.inputs} inputs, {result.rate:.0f}/s, slowest {result.slowest_s:.3f} s")


def test_every_seed_is_accepted_by_its_component() -> None:
    """Seeds are valid inputs, so mutations start from the accepted side of each parser."""
    for target in TARGETS.values():
        for seed in target.seeds():
            target.run(seed)


def _raises_on_magic(data: bytes) -> None:
    if b"\x13\x37" in data:
        raise KeyError("magic")


def _hangs_on_magic(data: bytes) -> None:
    if data[:1] == b"H":
        while True:
            pass


def test_the_engine_reports_an_escaping_exception_once_with_a_short_input() -> None:
    target = Target("magic", _raises_on_magic, lambda: [b"\x13\x00" * 4], (b"\x37",))
    result = engine.run(target, 20_000)
    [(key, finding)] = result.findings.items()
    assert key.startswith("KeyError at test_fuzz.py:")
    assert finding.count > 1 and b"\x13\x37" in finding.data and len(finding.data) <= 16


def test_the_engine_stops_a_hanging_input_at_the_time_bound(tmp_path: Path) -> None:
    target = Target("hang", _hangs_on_magic, lambda: [b"Hello", b"ok"])
    started = time.monotonic()
    result = engine.run(target, 2, time_bound_s=0.2, findings_dir=tmp_path)
    assert time.monotonic() - started < 5
    assert "hang > 0.2 s" in result.findings
    assert set(result.findings) <= {"hang > 0.2 s", "slow > 0.2 s"}
    assert (tmp_path / "hang-hang___0_2_s.bin").read_bytes() == b"Hello"


def test_the_engine_replays_a_run_from_its_seed() -> None:
    seen: list[bytes] = []
    target = Target("record", seen.append, lambda: [b"\x10\x81\x00\x01"])
    engine.run(target, 500, seed=7)
    first, seen[:] = list(seen), []
    engine.run(target, 500, seed=7)
    assert seen == first and len(set(first)) > 300


def test_the_config_targets_leave_their_folder_unchanged() -> None:
    folder = config_dir()
    before = sorted((p.name, p.stat().st_mode, p.stat().st_size) for p in folder.iterdir())
    engine.run(TARGETS["config-text"], 500)
    engine.run(TARGETS["config-tree"], 500)
    assert sorted((p.name, p.stat().st_mode, p.stat().st_size) for p in folder.iterdir()) == before


def test_the_runner_prints_a_line_per_target_and_its_findings(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz",
            "--inputs",
            "2000",
            "--target",
            "ack",
            "--target",
            "echonet",
            "--findings",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["target", "inputs", "seconds", "inputs/s", "slowest", "findings"]
    assert [ln.split()[0] for ln in lines[1:]] == ["ack", "echonet"]
    assert all(ln.split()[1] == "2000" and ln.split()[-1] == "0" for ln in lines[1:])


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_runs_a_target_with_coverage_guidance(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz",
            "--engine",
            "atheris",
            "--inputs",
            "3000",
            "--target",
            "ack",
            "--findings",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    row = out.splitlines()[1].split()
    assert row[0] == "ack" and int(row[1]) >= 3000 and row[-1] == "0"
