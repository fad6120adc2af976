"""A small mutation fuzzer with no dependency beyond the standard library.

It takes the target's seeds, stacks one to eight byte-level mutations on one (bit flips, byte
sets, inserts, deletions, duplicated ranges, dictionary tokens, interesting integers, splices with
another seed), sometimes sends plain random bytes, and runs the target on each result under a
per-input bound on CPU time. It is not coverage guided (atheris is, where installed: see
``tests.fuzz.atheris_main``); what it offers is speed, determinism (a seed replays a run exactly)
and running on every machine the tests run on.

A finding is any exception escaping the target, or an input that outlasts the time bound; equal
findings (same exception type raised at the same place) are counted once, with the shortest input
kept.
"""

from __future__ import annotations

import random
import signal
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.targets import Target

_INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x00\x00",
    b"\xff\xff",
    b"\x7f\xff",
    b"\x80\x00",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
]


class Hang(BaseException):
    """Raised by the alarm when an input outlasts its time bound.

    A BaseException, so a component's own ``except Exception`` cannot swallow it.
    """


@dataclass
class Finding:
    key: str
    error: str
    data: bytes
    count: int = 1


@dataclass
class Result:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0


class Mutator:
    def __init__(self, target: Target, rng: random.Random) -> None:
        self.rng = rng
        self.seeds = [s[: target.max_len] for s in target.seeds()] or [b""]
        self.tokens = list(target.tokens) or [b"\x00"]
        self.max_len = target.max_len

    def next(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.05:
            return rng.randbytes(rng.randrange(0, min(self.max_len, 512)))
        data = bytearray(rng.choice(self.seeds))
        for _ in range(1 + int(rng.expovariate(0.6)) % 8):
            self._mutate(data)
        del data[self.max_len :]
        return bytes(data)

    def _mutate(self, data: bytearray) -> None:
        rng = self.rng
        size = len(data)
        op = rng.randrange(10)
        at = rng.randrange(size + 1)
        if op == 0 and size:
            data[at % size] ^= 1 << rng.randrange(8)
        elif op == 1 and size:
            data[at % size] = rng.randrange(256)
        elif op == 2:
            data[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and size:
            del data[at : at + rng.randrange(1, 17)]
        elif op == 4 and size:
            start = rng.randrange(size)
            chunk = data[start : start + rng.randrange(1, 65)]
            data[at:at] = chunk * rng.randrange(1, 5)
        elif op in (5, 6):
            token = rng.choice(self.tokens)
            if rng.random() < 0.5:
                data[at:at] = token
            else:
                data[at : at + len(token)] = token
        elif op == 7:
            value = rng.choice(_INTERESTING)
            data[at : at + len(value)] = value
        elif op == 8:
            other = rng.choice(self.seeds)
            cut = rng.randrange(len(other) + 1)
            data[at:] = other[cut:]
        elif size:
            del data[at:]


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}"


@contextmanager
def _alarm_handler() -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGVTALRM, on_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def run(
    target: Target,
    inputs: int,
    *,
    seed: int = 0,
    time_bound_s: float = 2.0,
    max_seconds: float | None = None,
    findings_dir: Path | None = None,
) -> Result:
    """Run ``inputs`` inputs (or until ``max_seconds``) through ``target``; never raises.

    Every seed is run first as it is, then mutations of them.
    """
    rng = random.Random(f"{target.name}:{seed}")
    mutator = Mutator(target, rng)
    result = Result(target.name)
    # CPU time, not wall time: a busy machine must not turn into findings, and SIGALRM stays
    # free for pytest-timeout.
    setitimer, cpu, real = signal.setitimer, time.process_time, signal.ITIMER_VIRTUAL
    clock = time.perf_counter
    started = clock()
    deadline = started + max_seconds if max_seconds is not None else None
    queue = list(mutator.seeds)
    with _alarm_handler():
        for i in range(inputs):
            data = queue.pop() if queue else mutator.next()
            t0 = cpu()
            try:
                setitimer(real, time_bound_s)
                try:
                    target.run(data)
                finally:
                    setitimer(real, 0)
            except Hang:
                _record(result, f"hang > {time_bound_s:g} s", "Hang", data, findings_dir)
            except Exception as exc:
                key = f"{type(exc).__name__} at {_where(exc)}"
                _record(result, key, f"{type(exc).__name__}: {exc}"[:300], data, findings_dir)
            spent = cpu() - t0
            if spent > result.slowest_s:
                result.slowest_s = spent
                if spent > time_bound_s:
                    _record(result, f"slow > {time_bound_s:g} s", "slow", data, findings_dir)
            if deadline is not None and i % 256 == 0 and clock() > deadline:
                result.inputs = i + 1
                break
        else:
            result.inputs = inputs
    result.seconds = clock() - started
    return result


def _record(result: Result, key: str, error: str, data: bytes, folder: Path | None) -> None:
    known = result.findings.get(key)
    if known is not None:
        known.count += 1
        if len(data) >= len(known.data):
            return
        known.data = data
    else:
        result.findings[key] = Finding(key, error, data)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() else "_" for c in key)
        (folder / f"{result.target}-{name}.bin").write_bytes(data)
