"""The README's demo command works: slots are delivered and a DR command is carried out."""

from __future__ import annotations

import io

from rich.console import Console

from gateway.demo import run_demo


async def test_demo_delivers_slots_and_runs_a_dr_command() -> None:
    out = io.StringIO()
    delivered = await run_demo(30.0, console=Console(file=out, width=200))
    text = out.getvalue()
    assert delivered >= 1, text
    assert "backend → cmd" in text and ": started" in text, text
    assert "simulated battery now" in text, text
    assert "demo finished" in text
