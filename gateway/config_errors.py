"""Collecting configuration errors with their file, line and dotted key path.

Installers configure 300 homes from a TOML file; one run of ``check-config`` must show every
mistake at once, each pointing at the line to fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised with every issue found, never just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def locate_keys(text: str) -> dict[str, int]:
    """Map dotted key paths to the 1-based line that defines them.

    tomllib gives positions only for syntax errors, so this light scan of the source recovers the
    line of each table header and ``key =`` (arrays of tables become ``name[i]``). Multi-line
    values are skipped over well enough for error reporting; it is a locator, not a parser.
    """
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    prefix = ""
    in_multiline: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in raw:
                in_multiline = None
            continue
        header = _HEADER.match(raw)
        if header:
            name = header.group(2).replace('"', "").replace(" ", "")
            parts = name.split(".")
            # [device.x] and [[device.x]] after [[device]] belong to the latest device entry.
            if len(parts) > 1 and parts[0] in counts:
                parts[0] = f"{parts[0]}[{counts[parts[0]] - 1}]"
            if header.group(1) == "[[":
                full = ".".join(parts)
                index = counts.get(full, 0)
                counts[full] = index + 1
                prefix = f"{full}[{index}]"
            else:
                prefix = ".".join(parts)
            lines.setdefault(prefix, number)
            continue
        key = _KEY.match(raw)
        if key:
            name = key.group(1).strip('"')
            full = f"{prefix}.{name}" if prefix else name
            lines.setdefault(full, number)
            rest = raw[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
    return lines


class Collector:
    """Accumulates issues for one file; knows key lines for precise positions."""

    def __init__(self, file: Path | str, text: str = "") -> None:
        self.file = str(file)
        self.lines = locate_keys(text) if text else {}
        self.issues: list[ConfigIssue] = []

    def line_of(self, path: str) -> int | None:
        probe = path
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe.rpartition(".")[0]
        return None

    def add(self, path: str, message: str, line: int | None = None) -> None:
        self.issues.append(ConfigIssue(self.file, line or self.line_of(path), path, message))

    def expected(self, path: str, expected: str, found: object) -> None:
        self.add(path, f"expected {expected}, found {describe(found)}")

    def unknown_keys(self, path: str, table: dict[str, object], known: Iterable[str]) -> None:
        known = list(known)
        for key in table:
            if key in known:
                continue
            full = f"{path}.{key}" if path else key
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            self.add(full, f"unknown key{hint}")


def describe(value: object) -> str:
    """How a found value is shown in an error: its TOML type and, when short, the value itself."""
    if value is None:
        return "nothing"
    kind = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    text = (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"
