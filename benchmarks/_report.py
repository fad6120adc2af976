"""The one result format every benchmark hands to ``python -m benchmarks``.

A benchmark run alone prints its own detailed figures; given ``--json-out FILE`` it also writes
its headline rows there, so the runner can gather them from a child process (each benchmark runs
in its own process: memory and CPU figures must not be coloured by the others).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One headline figure: ours, optionally beside a peer's, optionally against a goal."""

    benchmark: str
    metric: str
    value: float
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    #: How many times better ours is than the peer (already oriented: > 1 means ours wins).
    ratio: float | None = None
    goal: str | None = None
    met: bool | None = None


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json-out", type=Path, help="also write the headline rows as JSON")


def emit(path: Path | None, rows: list[Row]) -> None:
    if path is not None:
        path.write_text(json.dumps([asdict(r) for r in rows], indent=1))


def load(path: Path) -> list[Row]:
    return [Row(**item) for item in json.loads(path.read_text())]
