"""Sizes and seeds shared by the fault-injection suite (tests/fault).

Each fault has a quick size for CI and a long one behind ``CHISAN_SLOW=1``; ``CHISAN_SEED=n``
replays a randomised run (the seed is printed when a test starts).
"""

from __future__ import annotations

import os
import random

SLOW = os.environ.get("CHISAN_SLOW") == "1"


def seeded_rng(name: str) -> random.Random:
    seed = int(os.environ.get("CHISAN_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    print(f"{name}: CHISAN_SEED={seed}")
    return random.Random(seed)


def size(quick: int, long: int) -> int:
    return long if SLOW else quick
