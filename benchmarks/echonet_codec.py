"""Decode/encode rate of the ECHONET Lite frame codec, side by side with pychonet.

Run: .venv/bin/python benchmarks/echonet_codec.py [--seconds S]

Both codecs get the same bytes. Differences to keep in mind when reading the table:

* ours validates the whole frame (EHD, ESV, OPC against the bytes, no trailing data) and parses
  the second block of SetGet frames; pychonet checks the EHD and reads the first block only.
* "ours" is the normal entry point, which compiles a specialised parser for a frame layout it
  has seen twice (the traffic of a gateway is a few layouts repeated every few seconds).
  "ours, strict path" is the reference parser alone, i.e. the first two sightings of a layout.
* pychonet's encoder always writes SEOJ 05FF01, one block and integer EDTs, so its encode column
  covers only the frames it can reproduce byte for byte; the others show "n/a".
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from benchmarks._report import Row, add_json_option, emit
from drivers.echonet import frame as codec
from drivers.echonet.frame import CONTROLLER, EOJ, ESV, NODE_PROFILE, Frame, Property
from drivers.echonet.propmap import encode_property_map

METER = EOJ.parse("028801")
BATTERY = EOJ.parse("027D01")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def mix() -> list[tuple[str, Frame]]:
    super_class = (0x80, 0x81, 0x82, 0x83, 0x88, 0x8A, 0x8C, 0x8D, 0x97, 0x98, 0x9D, 0x9E, 0x9F)
    meter = (0xD3, 0xD7, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE7, 0xE8, 0xEA, 0xEB, 0xEC, 0xED)
    get_map = encode_property_map((*super_class, *meter))
    history = (0).to_bytes(2, "big") + b"".join(u32(1000 + i) for i in range(48))
    return [
        ("Get 1 EPC", Frame(1, CONTROLLER, METER, ESV.GET, (Property(0xE7),))),
        (
            "Get 5 EPCs",
            Frame(
                2,
                CONTROLLER,
                METER,
                ESV.GET,
                tuple(Property(e) for e in (0xD3, 0xD7, 0xE1, 0xE0, 0xE3)),
            ),
        ),
        (
            "Get_Res 5 props",
            Frame(
                2,
                METER,
                CONTROLLER,
                ESV.GET_RES,
                (
                    Property(0xE7, u32(1234)),
                    Property(0xE8, bytes.fromhex("00147FFE")),
                    Property(0xE0, u32(12345678)),
                    Property(0xE3, u32(4321)),
                    Property(0xD3, u32(1)),
                ),
            ),
        ),
        ("SetC DA", Frame(3, CONTROLLER, BATTERY, ESV.SETC, (Property(0xDA, b"\x42"),))),
        (
            "SetGet",
            Frame(
                4,
                CONTROLLER,
                BATTERY,
                ESV.SETGET,
                (Property(0xDA, b"\x42"),),
                (Property(0xCF), Property(0xD3), Property(0xE4)),
            ),
        ),
        (
            "SetGet_Res",
            Frame(
                4,
                BATTERY,
                CONTROLLER,
                ESV.SETGET_RES,
                (Property(0xDA),),
                (Property(0xCF, b"\x42"), Property(0xD3, u32(1500)), Property(0xE4, b"\x50")),
            ),
        ),
        (
            "INF EA",
            Frame(
                0,
                METER,
                CONTROLLER,
                ESV.INF,
                (Property(0xEA, bytes.fromhex("07E8010200000000012345")),),
            ),
        ),
        (
            "Get_Res maps",
            Frame(
                5,
                METER,
                CONTROLLER,
                ESV.GET_RES,
                (
                    Property(0x9F, get_map),
                    Property(0x9E, encode_property_map([0x80, 0xE5, 0xED])),
                    Property(0x9D, encode_property_map([0x80, 0x81, 0x88, 0xEA])),
                ),
            ),
        ),
        (
            "Get_Res E2 (194 B)",
            Frame(6, METER, CONTROLLER, ESV.GET_RES, (Property(0xE2, history),)),
        ),
        (
            "Get_Res D6",
            Frame(
                7,
                NODE_PROFILE,
                NODE_PROFILE,
                ESV.GET_RES,
                (Property(0xD6, bytes.fromhex("02027D01028801")),),
            ),
        ),
    ]


def _calls_for(fn: Callable[[], object], budget: float) -> int:
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start > budget:
            return calls
        calls *= 2


def rates(fns: Sequence[Callable[[], object] | None], seconds: float) -> list[float | None]:
    """Calls per second of each function: the best of many short rounds taken in turns.

    Alternating the contenders round by round exposes them to the same background load, so the
    ratio stays meaningful on a busy machine even when the absolute figures move.
    """
    live = [(i, fn) for i, fn in enumerate(fns) if fn is not None]
    calls = {i: _calls_for(fn, seconds / 40) for i, fn in live}
    best = {i: float("inf") for i, _ in live}
    deadline = time.perf_counter() + seconds * len(live)
    while time.perf_counter() < deadline:
        for i, fn in live:
            start = time.perf_counter()
            for _ in range(calls[i]):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / calls[i])
    return [1.0 / best[i] if i in best else None for i in range(len(fns))]


def batch(fn: Callable[[Any], object], items: Sequence[Any]) -> Callable[[], None]:
    def run() -> None:
        for item in items:
            fn(item)

    return run


def pychonet_request(frame: Frame) -> dict[str, Any] | None:
    """pychonet's builder input for a frame it can write identically, else None."""
    if frame.seoj != CONTROLLER or frame.get_props:
        return None
    return {
        "TID": frame.tid,
        "DEOJGC": frame.deoj.class_group,
        "DEOJCC": frame.deoj.class_code,
        "DEOJCI": frame.deoj.instance,
        "ESV": int(frame.esv),
        "OPC": [
            {"EPC": p.epc, "PDC": len(p.edt), "EDT": int.from_bytes(p.edt, "big")}
            if p.edt
            else {"EPC": p.epc}
            for p in frame.props
        ],
    }


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def ratio(ours: float, theirs: float | None) -> str:
    return "" if theirs is None else f"{ours / theirs:.2f}x"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.25, help="measuring time per cell")
    add_json_option(parser)
    args = parser.parse_args(argv)
    rows: list[Row] = []

    frames = mix()
    wires = [codec.encode(frame) for _, frame in frames]
    for wire, (_, frame) in zip(wires, frames, strict=True):
        assert codec.decode(wire) == frame and codec.decode(wire) == frame

    try:
        from pychonet.lib.functions import (  # type: ignore[import-untyped]
            buildEchonetMsg,
            decodeEchonetMsg,
        )
    except ImportError:
        print("pychonet not installed: showing our figures only")
        decode_theirs = build_theirs = None
    else:
        decode_theirs, build_theirs = decodeEchonetMsg, buildEchonetMsg

    requests: list[dict[str, Any] | None] = []
    for wire, (_, frame) in zip(wires, frames, strict=True):
        request = pychonet_request(frame) if build_theirs else None
        if (
            request is not None
            and build_theirs is not None
            and bytes(build_theirs(request)) != wire
        ):
            request = None  # not the same bytes: not a fair comparison
        requests.append(request)

    header = (
        f"{'frame':<20}{'bytes':>6} | {'decode ours':>12}{'pychonet':>12}{'ratio':>8}"
        f" | {'encode ours':>12}{'pychonet':>12}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for (label, frame), wire, request in zip(frames, wires, requests, strict=True):
        ours_dec, theirs_dec = rates(
            [
                partial(codec.decode, wire),
                partial(decode_theirs, wire) if decode_theirs else None,
            ],
            args.seconds,
        )
        ours_enc, theirs_enc = rates(
            [
                partial(codec.encode, frame),
                partial(build_theirs, request) if build_theirs and request is not None else None,
            ],
            args.seconds,
        )
        assert ours_dec is not None and ours_enc is not None
        print(
            f"{label:<20}{len(wire):>6} | {fmt(ours_dec):>12}{fmt(theirs_dec):>12}"
            f"{ratio(ours_dec, theirs_dec):>8} | {fmt(ours_enc):>12}{fmt(theirs_enc):>12}"
            f"{ratio(ours_enc, theirs_enc):>8}"
        )

    print("-" * len(header))
    n = len(wires)
    mix_ours, mix_strict, mix_theirs = (
        None if r is None else r * n
        for r in rates(
            [
                batch(codec.decode, wires),
                batch(codec._decode_strict, wires),
                batch(decode_theirs, wires) if decode_theirs else None,
            ],
            4 * args.seconds,
        )
    )
    assert mix_ours is not None and mix_strict is not None
    theirs_cell = f"pychonet {fmt(mix_theirs):>10}"
    print(f"{'mix decode (frames/s)':<28}| ours {fmt(mix_ours):>10}  {theirs_cell}", end="")
    print(f"  ratio {ratio(mix_ours, mix_theirs)}")
    print(f"{'  ours, strict path only':<28}| ours {fmt(mix_strict):>10}  {theirs_cell}", end="")
    print(f"  ratio {ratio(mix_strict, mix_theirs)}")
    for metric, ours in (("decode, 10-frame mix", mix_ours), ("decode, strict path", mix_strict)):
        rows.append(_row(metric, ours, mix_theirs))
    comparable = [(f, r) for (_, f), r in zip(frames, requests, strict=True) if r is not None]
    if build_theirs and comparable:
        k = len(comparable)
        enc_ours, enc_theirs = (
            None if r is None else r * k
            for r in rates(
                [
                    batch(codec.encode, [f for f, _ in comparable]),
                    batch(build_theirs, [r for _, r in comparable]),
                ],
                4 * args.seconds,
            )
        )
        assert enc_ours is not None
        label = f"mix encode ({k} frames)"
        print(f"{label:<28}| ours {fmt(enc_ours):>10}  pychonet {fmt(enc_theirs):>10}", end="")
        print(f"  ratio {ratio(enc_ours, enc_theirs)}")
        rows.append(_row(f"encode, {k} comparable frames", enc_ours, enc_theirs))
    (enc_all,) = rates([batch(codec.encode, [f for _, f in frames])], 2 * args.seconds)
    assert enc_all is not None
    print(f"{'mix encode, all frames':<28}| ours {fmt(enc_all * n):>10}")
    emit(args.json_out, rows)
    return 0


def _row(metric: str, ours: float, theirs: float | None) -> Row:
    return Row(
        "echonet_codec",
        metric,
        ours,
        "frames/s",
        peer="pychonet" if theirs else None,
        peer_value=theirs,
        ratio=ours / theirs if theirs else None,
    )


if __name__ == "__main__":
    sys.exit(main())
