"""The chain walk on arbitrary register images: it ends, and fails only as SunSpecError."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.discovery import MAX_MODELS, walk_chain
from drivers.modbus.sunspec import MARKER, SunSpecError
from drivers.modbus.transport import ModbusRefused

Read = Callable[[int, int], Awaitable[list[int]]]


def reader(image: dict[int, int]) -> tuple[Read, list[int]]:
    calls: list[int] = []

    async def read(address: int, count: int) -> list[int]:
        calls.append(address)
        words = [image.get(address + i) for i in range(count)]
        if any(w is None for w in words):
            raise ModbusRefused("fuzz", f"illegal address {address}")
        return [w for w in words if w is not None]

    return read, calls


@settings(max_examples=200, deadline=None)
@given(
    base=st.sampled_from([0, 40000, 50000]),
    body=st.lists(
        st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 2, 66, 103, 124, 0xFFFF])),
        max_size=120,
    ),
)
async def test_walk_ends_and_fails_only_as_sunspec_error(base: int, body: list[int]) -> None:
    image = {base + i: w for i, w in enumerate([*MARKER, *body])}
    read, calls = reader(image)
    with contextlib.suppress(SunSpecError):
        chain = await walk_chain(read)
        assert chain.base == base
        assert len(chain.entries) <= MAX_MODELS
        for entry in chain.entries:
            assert entry.header.model_id not in (0, 0xFFFF)
    assert len(calls) <= MAX_MODELS + 4


async def test_many_tiny_models_stop_the_walk() -> None:
    image = {40000 + i: w for i, w in enumerate([*MARKER, *([64500, 0] * 80)])}
    read, _ = reader(image)
    chain = await walk_chain(read)
    assert len(chain.entries) == MAX_MODELS and "longer than" in chain.notes[-1]
