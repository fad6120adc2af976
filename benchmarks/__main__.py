"""Run every benchmark, each in its own process, and print one table.

    .venv/bin/python -m benchmarks [--quick] [--only NAME ...] [--write docs/performance.md]

``--quick`` shortens each benchmark (for a smoke run; the figures are noisier and the fleet is
1,000 gateways only). ``--write`` puts the table, the machine it ran on and the date into the
given Markdown file between its ``<!-- benchmarks:begin -->`` / ``<!-- benchmarks:end -->``
markers (the rest of the file is prose kept by hand).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import Row, load  # noqa: E402

#: name → (full arguments, quick arguments)
SUITE: dict[str, tuple[list[str], list[str]]] = {
    "echonet_codec": ([], ["--seconds", "0.05"]),
    "broute": ([], ["--rejoins", "2", "--cycles", "4"]),
    "command_latency": ([], ["--commands", "200"]),
    "uplink": ([], ["--records", "1440"]),
    "idle": ([], ["--seconds", "10", "--starts", "2"]),
    "fleet": ([], ["--gateways", "1000"]),
}
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | metric | chisan | peer | peer's figure | ratio | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        goal = ""
        if r.goal:
            goal = f"{r.goal} {'met' if r.met else 'NOT met'}"
        ratio = f"**{r.ratio:.2f}×**" if r.ratio is not None else ""
        peer_value = f"{fmt(r.peer_value)} {r.unit}" if r.peer_value is not None else ""
        lines.append(
            f"| {r.benchmark} | {r.metric} | {fmt(r.value)} {r.unit} | {r.peer or ''} | "
            f"{peer_value} | {ratio} | {goal} |"
        )
    return "\n".join(lines)


def run(name: str, args: list[str], out: Path) -> tuple[list[Row], float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args, "--json-out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        return [], elapsed, (proc.stdout + proc.stderr)[-3000:]
    return load(out), elapsed, ""


def write(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    path.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--only", nargs="+", choices=sorted(SUITE), help="run only these")
    parser.add_argument("--write", type=Path, help="update this Markdown file's table")
    args = parser.parse_args(argv)
    names = args.only or list(SUITE)
    rows: list[Row] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            full, quick = SUITE[name]
            print(f"running {name} ...", file=sys.stderr, flush=True)
            got, elapsed, err = run(name, quick if args.quick else full, Path(tmp) / f"{name}.json")
            if err:
                failed.append(name)
                print(f"{name} FAILED after {elapsed:.0f} s:\n{err}", file=sys.stderr)
            else:
                print(f"  {name}: {elapsed:.0f} s", file=sys.stderr)
            rows += got
    body = table(rows)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick" if args.quick else "full"
    footer = f"\nMeasured {stamp} ({mode} run) on: {machine()}."
    print(body + "\n" + footer)
    if args.write:
        write(args.write, body + "\n" + footer)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    missed = [f"{r.benchmark}: {r.metric}" for r in rows if r.met is False]
    if missed:
        print("goals not met: " + "; ".join(missed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
