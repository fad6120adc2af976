"""Our property tables against the official Machine Readable Appendix (MRA).

Every EPC we define is checked against the MRA entry of its class (the latest release): byte
size, numeric range and scale, sentinel and enumeration codes, and the access rule (what we mark
gettable / settable / announced must be exactly what the Appendix does not mark notApplicable).
"""

from __future__ import annotations

import contextlib
import json
import os
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from drivers.echonet.properties import CLASS_TABLES, Access, PropertySpec, spec_for
from drivers.echonet.properties.types import (
    Array,
    Choice,
    Codec,
    Date,
    DateTime,
    Int,
    NumericChoice,
    Struct,
    Time,
)

MRA_DIR = Path(
    os.environ.get(
        "CHISAN_MRA_DIR",
        Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "mra",
    )
)

pytestmark = pytest.mark.skipif(
    not (MRA_DIR / "definitions.json").is_file(),
    reason=f"ECHONET MRA not found at {MRA_DIR} (set CHISAN_MRA_DIR to its folder)",
)

FORMAT_SIZE = {"int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4}
UNITS = {"Celsius": "°C", "digit": "digits"}


def mra_file(class_id: int) -> Path:
    if class_id == 0x0000:
        return MRA_DIR / "superClass_0x0000.json"
    if class_id == 0x0EF0:
        return MRA_DIR / "nodeProfile_0x0EF0.json"
    return MRA_DIR / "devices" / f"0x{class_id:04X}.json"


@cache
def definitions() -> dict[str, Any]:
    with (MRA_DIR / "definitions.json").open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)["definitions"]
    return data


@cache
def mra_entries(class_id: int) -> dict[int, list[dict[str, Any]]]:
    """EPC -> all release variants; the last one listed with to == 'latest' is current."""
    with mra_file(class_id).open(encoding="utf-8") as fh:
        props = json.load(fh)["elProperties"]
    out: dict[int, list[dict[str, Any]]] = {}
    for entry in props:
        out.setdefault(int(entry["epc"], 16), []).append(entry)
    return out


def latest(entries: list[dict[str, Any]]) -> dict[str, Any]:
    current = [e for e in entries if e["validRelease"]["to"] == "latest"]
    assert len(current) == 1, f"expected one current entry, got {len(current)}"
    return current[0]


def resolve(data: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in data:
        base = dict(definitions()[data["$ref"].rsplit("/", 1)[-1]])
        base.update({k: v for k, v in data.items() if k != "$ref"})
        data = base
    return data


def state_codes(data: dict[str, Any]) -> set[int]:
    codes: set[int] = set()
    data = resolve(data)
    for alt in data.get("oneOf", [data]):
        alt = resolve(alt)
        if alt.get("type") == "state":
            for item in alt["enum"]:
                with contextlib.suppress(ValueError):  # ranges like "0x000a...0x0013"
                    codes.add(int(item["edt"], 16))
    return codes


def mra_size(data: dict[str, Any]) -> tuple[int, int]:
    data = resolve(data)
    if "oneOf" in data:
        sizes = [mra_size(alt) for alt in data["oneOf"]]
        return (min(s[0] for s in sizes), max(s[1] for s in sizes))
    kind = data["type"]
    if kind == "number":
        size = FORMAT_SIZE[data["format"]]
        return (size, size)
    if kind in ("state", "numericValue", "bitmap", "time"):
        return (data["size"], data["size"])
    if kind == "level":
        size = (len(data["base"]) - 2) // 2
        return (size, size)
    if kind == "raw":
        return (data["minSize"], data["maxSize"])
    if kind == "date-time":
        size = data.get("size", 7)
        return (size, size)
    if kind == "date":
        size = data.get("size", 4)
        return (size, size)
    if kind == "object":
        parts = [mra_size(p["element"]) for p in data["properties"]]
        return (sum(p[0] for p in parts), sum(p[1] for p in parts))
    if kind == "array":
        item = data["itemSize"]
        return (item * (data.get("minItems") or 0), item * data["maxItems"])
    raise AssertionError(f"unknown MRA type {kind!r}")


def check_codec(codec: Codec, data: dict[str, Any], path: str, errors: list[str]) -> None:
    data = resolve(data)
    low, high = mra_size(data)
    ours = codec.size_range
    if not (low <= ours[0] and ours[1] <= high):
        errors.append(f"{path}: size {ours} outside MRA {low}..{high}")
    alternatives = [resolve(alt) for alt in data.get("oneOf", [data])]
    numbers = [alt for alt in alternatives if alt.get("type") == "number"]
    states = [alt for alt in alternatives if alt.get("type") == "state"]
    if all(alt.get("type") == "raw" for alt in alternatives):
        return  # "raw" leaves the reading to us (maker code, counts, version bytes): size only

    if isinstance(codec, Int):
        if len(numbers) != 1:
            errors.append(f"{path}: integer codec but MRA has {len(numbers)} number variants")
            return
        number = numbers[0]
        fmt = number["format"]
        if FORMAT_SIZE[fmt] != codec.size or fmt.startswith("int") != codec.signed:
            errors.append(f"{path}: format {fmt} vs ours size {codec.size} signed {codec.signed}")
        if "minimum" in number and number["minimum"] != codec.low:
            errors.append(f"{path}: minimum {number['minimum']} vs ours {codec.low}")
        if "maximum" in number and number["maximum"] != codec.high:
            errors.append(f"{path}: maximum {number['maximum']} vs ours {codec.high}")
        multiple = Decimal(str(number.get("multiple", 1)))
        if multiple != codec.scale:
            errors.append(f"{path}: scale {multiple} vs ours {codec.scale}")
        if "unit" in number and "coefficient" not in number:
            unit = UNITS.get(number["unit"], number["unit"])
            if unit != codec.unit:
                errors.append(f"{path}: unit {unit!r} vs ours {codec.unit!r}")
        allowed = state_codes(data)
        for pattern in codec.sentinels:
            if pattern not in allowed:
                errors.append(f"{path}: sentinel 0x{pattern:X} not an MRA state ({allowed})")
        for state in states:
            for item in state["enum"]:
                try:
                    code = int(item["edt"], 16)
                except ValueError:
                    continue
                if code not in codec.sentinels:
                    errors.append(f"{path}: MRA state 0x{code:X} ({item['name']}) not handled")
        return
    if isinstance(codec, Choice):
        if numbers:
            errors.append(f"{path}: enumeration codec but MRA has a number")
        return  # codes are checked against the union of releases by the caller
    if isinstance(codec, NumericChoice):
        (state,) = alternatives
        mra = {int(e["edt"], 16): Decimal(str(e["numericValue"])) for e in state["enum"]}
        if mra != dict(codec.values):
            errors.append(f"{path}: numeric codes {mra} vs ours {dict(codec.values)}")
        return
    if isinstance(codec, DateTime | Date | Time):
        expected = {DateTime: "date-time", Date: "date", Time: "time"}[type(codec)]
        if [alt.get("type") for alt in alternatives if alt.get("type") != "state"] != [expected]:
            errors.append(f"{path}: ours {expected} vs MRA {[a.get('type') for a in alternatives]}")
        return
    if isinstance(codec, Struct):
        (obj,) = alternatives
        if obj.get("type") != "object" or len(obj["properties"]) != len(codec.fields):
            errors.append(f"{path}: struct of {len(codec.fields)} vs MRA {obj.get('type')}")
            return
        for (name, field), element in zip(codec.fields, obj["properties"], strict=True):
            check_codec(field, element["element"], f"{path}.{name}", errors)
        return
    if isinstance(codec, Array):
        (arr,) = alternatives
        if arr.get("type") != "array":
            errors.append(f"{path}: array vs MRA {arr.get('type')}")
            return
        if not (arr.get("minItems") or 0) <= codec.count <= arr["maxItems"]:
            errors.append(f"{path}: {codec.count} items outside MRA bounds")
        check_codec(codec.item, arr["items"], f"{path}[]", errors)
        return
    # Raw, Text, lists, maps and custom composites: the size check above is what applies.


def access_of(entry: dict[str, Any]) -> Access:
    rule = entry["accessRule"]
    result = Access.NONE
    for key, flag in (("get", Access.GET), ("set", Access.SET), ("inf", Access.INF)):
        if rule.get(key, "notApplicable") != "notApplicable":
            result |= flag
    return result


def check_spec(spec: PropertySpec, class_id: int, entries: list[dict[str, Any]]) -> list[str]:
    errors: list[str] = []
    entry = latest(entries)
    where = f"0x{class_id:04X}/0x{spec.epc:02X} {spec.name}"
    if spec.access != access_of(entry):
        errors.append(f"{where}: access {spec.access} vs MRA {access_of(entry)}")
    check_codec(spec.codec, entry["data"], where, errors)
    if isinstance(spec.codec, Choice):
        allowed = set().union(*(state_codes(e["data"]) for e in entries))
        extra = sorted(set(spec.codec.names) - allowed)
        if extra:
            errors.append(f"{where}: codes {[hex(c) for c in extra]} not in any MRA release")
    return errors


OWN = sorted((class_id, epc) for class_id, specs in CLASS_TABLES.items() for epc in specs)


@pytest.mark.parametrize(("class_id", "epc"), OWN, ids=[f"{c:04X}-{e:02X}" for c, e in OWN])
def test_own_property_matches_mra(class_id: int, epc: int) -> None:
    spec = CLASS_TABLES[class_id][epc]
    entries = mra_entries(class_id).get(epc)
    if entries is None and class_id not in (0x0000, 0x0EF0):
        # A device class may restate a super-class property; it must then exist there.
        entries = mra_entries(0x0000).get(epc)
    assert entries is not None, f"0x{class_id:04X} EPC 0x{epc:02X} ({spec.name}) not in the MRA"
    assert check_spec(spec, class_id, entries) == []


DEVICE_CLASSES = sorted(c for c in CLASS_TABLES if c not in (0x0000, 0x0EF0))


@pytest.mark.parametrize("class_id", DEVICE_CLASSES, ids=[f"{c:04X}" for c in DEVICE_CLASSES])
def test_inherited_properties_match_class_overrides(class_id: int) -> None:
    """Where a class restates a super-class EPC, the spec we fall back to must fit it too."""
    errors: list[str] = []
    for epc, entries in mra_entries(class_id).items():
        spec = spec_for(class_id, epc)
        if spec is not None:
            errors += check_spec(spec, class_id, entries)
    assert errors == []


def test_every_class_table_has_an_mra_file() -> None:
    for class_id in CLASS_TABLES:
        assert mra_file(class_id).is_file(), f"no MRA file for class 0x{class_id:04X}"
