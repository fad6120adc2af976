"""Fuzz runner: ``python -m tests.fuzz [--inputs N] [--target NAME ...] [--engine mutate|atheris]``.

Prints one line per target (inputs, seconds, inputs/s, slowest input, findings) and exits 1 when
anything was found; findings are written to ``--findings`` (default ``.fuzz-findings/``) so a
failing input can be replayed with ``--replay FILE --target NAME``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz import engine
from tests.fuzz.targets import TARGETS

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    ap.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    ap.add_argument("--target", action="append", choices=sorted(TARGETS), help="repeatable")
    ap.add_argument("--seed", type=int, default=0, help="replays a mutate run exactly")
    ap.add_argument("--time-bound", type=float, default=2.0, help="seconds allowed per input")
    ap.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    ap.add_argument("--findings", type=Path, default=REPO / ".fuzz-findings")
    ap.add_argument("--replay", type=Path, help="run one saved input through --target and raise")
    args = ap.parse_args(argv)
    names = args.target or sorted(TARGETS)
    if args.replay is not None:
        if len(names) != 1:
            ap.error("--replay needs exactly one --target")
        TARGETS[names[0]].run(args.replay.read_bytes())
        print("no exception")
        return 0
    print(f"{'target':<12} {'inputs':>10} {'seconds':>9} {'inputs/s':>10} {'slowest':>9}  findings")
    total = 0
    for name in names:
        if args.engine == "atheris":
            inputs, seconds, found = run_atheris(name, args.inputs, args.time_bound, args.findings)
            slowest = "-"
            details: list[str] = found
        else:
            result = engine.run(
                TARGETS[name],
                args.inputs,
                seed=args.seed,
                time_bound_s=args.time_bound,
                findings_dir=args.findings,
            )
            inputs, seconds = result.inputs, result.seconds
            slowest = f"{result.slowest_s * 1000:.1f}ms"
            details = [f"{f.key} x{f.count}: {f.error}" for f in result.findings.values()]
        rate = inputs / seconds if seconds else 0.0
        print(
            f"{name:<12} {inputs:>10} {seconds:>9.1f} {rate:>10.0f} {slowest:>9}  {len(details)}",
            flush=True,
        )
        for line in details:
            print(f"    {line}", flush=True)
        total += len(details)
    return 1 if total else 0


def run_atheris(
    name: str, inputs: int, bound: float, findings: Path
) -> tuple[int, float, list[str]]:
    """One libFuzzer process per target; its own timeout flags hangs, a crash stops it."""
    findings.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"chisan-fuzz-{name}-") as corpus:
        for i, seed in enumerate(TARGETS[name].seeds()):
            (Path(corpus) / f"seed{i}").write_bytes(seed)
        cmd = [
            sys.executable,
            "-m",
            "tests.fuzz.atheris_main",
            name,
            corpus,
            f"-runs={inputs}",
            f"-timeout={max(1, round(bound))}",
            f"-max_len={TARGETS[name].max_len}",
            f"-artifact_prefix={findings}/{name}-",
            "-print_final_stats=1",
        ]
        started = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}
        )
        seconds = time.perf_counter() - started
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    done = int(runs.group(1)) if runs else 0
    found: list[str] = []
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "timeout" in ln.lower()]
        found.append(" | ".join(tail[-3:]) or f"exit status {proc.returncode}")
    return done, seconds, found


if __name__ == "__main__":
    sys.exit(main())
