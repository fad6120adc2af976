"""Finding a device's SunSpec models on the wire: the marker, then the chain header by header.

Field devices get the chain subtly wrong: no end marker (the read past the last model is refused
or returns zeros), vendor models nobody knows, a model whose length does not match its
definition. None of that stops discovery: the walk ends where the chain stops making sense,
unknown models are listed but not decoded, and broken ones are listed with the reason and left
out of use. The CLI's ``modbus scan`` and the adapters share this walk.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from drivers.modbus.sunspec import (
    BASE_ADDRESSES,
    ChainEntry,
    ModelHeader,
    SunSpecError,
    has_marker,
    header_at,
    model_problem,
)
from drivers.modbus.transport import ModbusRefused

__all__ = ["MAX_MODELS", "Chain", "NoMarker", "walk_chain"]

MAX_MODELS: Final = 64

Reader = Callable[[int, int], Awaitable[list[int]]]


class NoMarker(SunSpecError):
    """None of the base addresses holds the "SunS" marker."""


@dataclass
class Chain:
    """What discovery found: the base address, every model in order, and what was odd."""

    base: int
    entries: list[ChainEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Problems met on the way (no end marker, broken models), each said once."""

    @property
    def usable(self) -> dict[int, ModelHeader]:
        """The first instance of each model that is not broken, by model ID."""
        found: dict[int, ModelHeader] = {}
        for entry in self.entries:
            if entry.problem is None:
                found.setdefault(entry.model_id, entry.header)
        return found


async def find_base(read: Reader, bases: Sequence[int] = BASE_ADDRESSES) -> int:
    """The first base address holding the marker; an illegal-address answer means "not here"."""
    for base in bases:
        try:
            words = await read(base, 2)
        except ModbusRefused:
            continue
        if has_marker(words):
            return base
    raise NoMarker(f"no SunS marker at {', '.join(str(b) for b in bases)}")


async def walk_chain(read: Reader, bases: Sequence[int] = BASE_ADDRESSES) -> Chain:
    """Discover the model chain through ``read(address, count)``.

    Transport failures other than a refused read propagate (the device is silent or gone);
    anything wrong with the chain itself ends the walk or marks a model, with a note.
    """
    chain = Chain(await find_base(read, bases))
    address = chain.base + 2
    for _ in range(MAX_MODELS):
        try:
            words = await read(address, 2)
        except ModbusRefused:
            chain.notes.append(f"chain ends at {address} without an end marker (read refused)")
            return chain
        try:
            header = header_at(address, words)
        except SunSpecError as exc:
            chain.notes.append(f"chain ends at {address} without an end marker ({exc})")
            return chain
        if header is None:
            return chain
        problem = model_problem(header.model_id, header.length)
        if problem is not None:
            chain.notes.append(f"model {header.model_id} at {header.address} skipped: {problem}")
        chain.entries.append(ChainEntry(header, problem))
        address = header.end
        if address >= 0xFFFF:
            chain.notes.append(f"chain runs to the end of the register space after {address}")
            return chain
    chain.notes.append(f"chain longer than {MAX_MODELS} models: walk stopped")
    return chain
