"""Hypothesis strategies and example counts shared by the ECHONET codec tests."""

from __future__ import annotations

import os

import pytest
from hypothesis import strategies as st

from drivers.echonet.frame import EOJ, ESV, Frame, Property

SLOW = os.environ.get("CHISAN_SLOW") == "1"
EXAMPLES = 5000 if SLOW else 150
"""Default example count: a few seconds for the whole folder; CHISAN_SLOW=1 for the long run."""
LONG_TIMEOUT = pytest.mark.timeout(1800 if SLOW else 120)
"""The slow runs outlast the project's default pytest timeout."""
FUZZ_EXAMPLES = 20000 if SLOW else 300

TWO_BLOCK = frozenset({ESV.SETGET, ESV.SETGET_RES, ESV.SETGET_SNA})

eojs = st.builds(EOJ, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
properties = st.builds(Property, st.integers(0, 255), st.binary(max_size=255))
small_properties = st.builds(Property, st.integers(0, 255), st.binary(max_size=24))


@st.composite
def frames(draw: st.DrawFn, props: st.SearchStrategy[Property] = small_properties) -> Frame:
    esv = draw(st.sampled_from(list(ESV)))
    block = st.lists(props, max_size=12).map(tuple)
    return Frame(
        tid=draw(st.integers(0, 0xFFFF)),
        seoj=draw(eojs),
        deoj=draw(eojs),
        esv=esv,
        props=draw(block),
        get_props=draw(block) if esv in TWO_BLOCK else (),
    )
