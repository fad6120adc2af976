"""Secrets (the B-route password, private keys) live in their own files, never in the config.

A secret file that group or others may read is refused, as ssh refuses a private key: a gateway
in a home is a shared box, and the B-route password lets anyone read the household's consumption.
Under systemd, files passed with ``LoadCredential=`` appear in ``$CREDENTIALS_DIRECTORY`` and are
used first.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


class SecretFileError(Exception):
    """A secret file that is missing, unreadable or too open."""


@dataclass(frozen=True)
class Secret:
    """A string whose repr and str never show the value: it can pass through logs and tracebacks."""

    _value: str
    source: str = ""

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('***', source={self.source!r})"

    def __str__(self) -> str:
        return "***"


def credentials_path(name: str) -> Path | None:
    """Where systemd put a credential of this name, if it did."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    candidate = Path(directory) / name
    return candidate if candidate.is_file() else None


def resolve(path: Path) -> tuple[Path, bool]:
    """The file to read for ``path``: a systemd credential of the same basename wins.

    Returns the path and whether it came from the credentials directory (whose permissions systemd
    manages, so they are not judged).
    """
    cred = credentials_path(path.name)
    if cred is not None:
        return cred, True
    return path, False


def check_private(path: Path) -> str | None:
    """A reason why ``path`` is not a safe secret file, or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "file does not exist"
    except PermissionError:
        return "permission denied"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_mode & 0o077:
        return (
            f"readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    return None


def read_secret(path: Path) -> Secret:
    """Read a one-line secret file, refusing open permissions. Trailing newline is dropped."""
    real, managed = resolve(path)
    if not managed:
        problem = check_private(real)
        if problem:
            raise SecretFileError(f"{real}: {problem}")
    try:
        text = real.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretFileError(f"{real}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SecretFileError(f"{real}: not UTF-8 text") from None
    value = text.rstrip("\r\n")
    from gateway import logs  # late import: logs must not depend on config loading order

    logs.register_secret(value)
    return Secret(value, str(real))
