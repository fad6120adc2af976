"""Codec kinds for property values: EDT bytes <-> Python values.

The class modules are tables of these. Every kind knows its byte size so that a wrong length is
reported instead of being read as some other number, and every numeric kind knows its range and
its "no data" codes so that 0xFFFFFFFE never turns into four billion watt-hours.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Final

from ..frame import EOJ
from ..propmap import PropertyMapError, decode_property_map, encode_property_map

__all__ = [
    "Array",
    "Choice",
    "ClassCode",
    "Codec",
    "Counted",
    "Date",
    "DateTime",
    "Decoded",
    "EojCodec",
    "Int",
    "NumericChoice",
    "PropertyError",
    "PropertyMapCodec",
    "Raw",
    "Struct",
    "Text",
    "Time",
    "sint",
    "uint",
]

Decoded = (
    None
    | bool
    | int
    | float
    | str
    | bytes
    | datetime
    | date
    | time
    | list["Decoded"]
    | dict[str, "Decoded"]
)
"""What a property decodes to; :func:`to_json` flattens it for logs and MQTT."""


class PropertyError(ValueError):
    """An EDT (or a value to encode) does not fit the property's definition."""

    def __init__(self, message: str, *, class_id: int | None = None, epc: int | None = None):
        where = ""
        if class_id is not None:
            where += f"class 0x{class_id:04X} "
        if epc is not None:
            where += f"EPC 0x{epc:02X} "
        super().__init__(f"{where}{message}" if where else message)
        self.class_id = class_id
        self.epc = epc
        self.reason = message


class Codec(ABC):
    """One way of reading and writing an EDT."""

    unit: str = ""

    @property
    @abstractmethod
    def size_range(self) -> tuple[int, int]:
        """Smallest and largest valid EDT length."""

    @abstractmethod
    def decode(self, edt: bytes) -> Decoded: ...

    @abstractmethod
    def encode(self, value: object) -> bytes: ...

    def _check_size(self, edt: bytes) -> None:
        low, high = self.size_range
        if not low <= len(edt) <= high:
            expected = f"{low}" if low == high else f"{low}..{high}"
            raise PropertyError(f"EDT must be {expected} byte(s), got {len(edt)} ({edt.hex()})")


def _fixed_size(codec: Codec) -> int:
    low, high = codec.size_range
    if low != high:
        raise ValueError(f"{codec!r} has no fixed size; only the last field may vary")
    return low


# ------------------------------------------------------------------------------------- numbers

_ONE: Final = Decimal(1)


@dataclass(frozen=True, eq=False)
class Int(Codec):
    """Big-endian integer with range, scale and sentinel codes.

    ``minimum``/``maximum`` bound the raw integer (before scaling), as the Appendix states them.
    ``sentinels`` maps bit patterns such as 0xFFFFFFFE ("no data") or 0x7FFE to a state name;
    they decode to ``None``. With a scale other than 1 the value is a float, computed through
    Decimal so that 123 × 0.1 is 12.3 and not 12.300000000000001.
    """

    size: int
    signed: bool = False
    minimum: int | None = None
    maximum: int | None = None
    scale: Decimal = _ONE
    unit: str = ""
    sentinels: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size not in (1, 2, 3, 4):
            raise ValueError(f"integer size must be 1..4 bytes, got {self.size}")

    @property
    def size_range(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def low(self) -> int:
        if self.minimum is not None:
            return self.minimum
        return -(1 << (8 * self.size - 1)) if self.signed else 0

    @property
    def high(self) -> int:
        if self.maximum is not None:
            return self.maximum
        return (1 << (8 * self.size - 1)) - 1 if self.signed else (1 << (8 * self.size)) - 1

    def decode_raw(self, edt: bytes) -> int | None:
        """The unscaled integer, or None for a sentinel."""
        self._check_size(edt)
        if self.sentinels and int.from_bytes(edt, "big") in self.sentinels:
            return None
        raw = int.from_bytes(edt, "big", signed=self.signed)
        if not self.low <= raw <= self.high:
            raise PropertyError(f"value {raw} (0x{edt.hex()}) outside {self.low}..{self.high}")
        return raw

    def state(self, edt: bytes) -> str | None:
        """Name of the sentinel the EDT holds ("noData" ...), if any."""
        return self.sentinels.get(int.from_bytes(edt, "big")) if len(edt) == self.size else None

    def decode(self, edt: bytes) -> int | float | None:
        raw = self.decode_raw(edt)
        if raw is None:
            return None
        if self.scale == _ONE:
            return raw
        return float(raw * self.scale)

    def encode(self, value: object) -> bytes:
        if value is None:
            if not self.sentinels:
                raise PropertyError("None given but the property has no 'not set' code")
            return next(iter(self.sentinels)).to_bytes(self.size, "big")
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise PropertyError(f"expected a number, got {value!r}")
        exact = value if isinstance(value, Decimal) else Decimal(str(value))
        if not exact.is_finite():
            raise PropertyError(f"expected a finite number, got {value!r}")
        scaled = exact / self.scale
        if scaled != scaled.to_integral_value():
            raise PropertyError(f"{value!r} is not a multiple of {self.scale} {self.unit}".strip())
        raw = int(scaled)
        if not self.low <= raw <= self.high:
            raise PropertyError(f"value {value!r} (raw {raw}) outside {self.low}..{self.high}")
        return raw.to_bytes(self.size, "big", signed=self.signed)


def uint(
    size: int,
    minimum: int = 0,
    maximum: int | None = None,
    *,
    unit: str = "",
    scale: str = "1",
    none: Mapping[int, str] | None = None,
) -> Int:
    """Unsigned integer; ``none`` lists the sentinel patterns that mean "no value"."""
    return Int(size, False, minimum, maximum, Decimal(scale), unit, dict(none or {}))


def sint(
    size: int,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    unit: str = "",
    scale: str = "1",
    none: Mapping[int, str] | None = None,
) -> Int:
    """Signed (two's complement) integer; sentinels are given as unsigned bit patterns."""
    return Int(size, True, minimum, maximum, Decimal(scale), unit, dict(none or {}))


@dataclass(frozen=True, eq=False)
class Choice(Codec):
    """An enumeration: each code has a name ("charge", "on")."""

    names: Mapping[int, str]
    size: int = 1

    @property
    def size_range(self) -> tuple[int, int]:
        return (self.size, self.size)

    def decode(self, edt: bytes) -> str:
        self._check_size(edt)
        code = int.from_bytes(edt, "big")
        try:
            return self.names[code]
        except KeyError:
            known = ", ".join(f"0x{c:0{2 * self.size}X}" for c in self.names)
            raise PropertyError(f"code 0x{edt.hex().upper()} is not one of {known}") from None

    def code_of(self, value: object) -> int:
        if isinstance(value, str):
            for code, name in self.names.items():
                if name == value:
                    return code
            raise PropertyError(f"{value!r} is not one of {', '.join(self.names.values())}")
        if type(value) is int and value in self.names:
            return value
        raise PropertyError(f"{value!r} is not a valid choice")

    def encode(self, value: object) -> bytes:
        return self.code_of(value).to_bytes(self.size, "big")


@dataclass(frozen=True, eq=False)
class NumericChoice(Codec):
    """Codes that stand for numbers, such as the meter's unit multiplier (0x01 -> 0.1)."""

    values: Mapping[int, Decimal]
    size: int = 1
    unit: str = ""

    @property
    def size_range(self) -> tuple[int, int]:
        return (self.size, self.size)

    def decode_exact(self, edt: bytes) -> Decimal:
        self._check_size(edt)
        code = int.from_bytes(edt, "big")
        try:
            return self.values[code]
        except KeyError:
            raise PropertyError(f"code 0x{edt.hex().upper()} is not defined") from None

    def decode(self, edt: bytes) -> int | float:
        exact = self.decode_exact(edt)
        return int(exact) if exact == exact.to_integral_value() else float(exact)

    def encode(self, value: object) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise PropertyError(f"expected a number, got {value!r}")
        exact = value if isinstance(value, Decimal) else Decimal(str(value))
        for code, number in self.values.items():
            if number == exact:
                return code.to_bytes(self.size, "big")
        raise PropertyError(f"{value!r} has no code")


# ---------------------------------------------------------------------------------- date, time


@dataclass(frozen=True, eq=False)
class DateTime(Codec):
    """YYYY(2) MM DD hh mm [ss]: 7 bytes with seconds, 6 without.

    ECHONET carries no time zone: values are the device's wall clock (JST for Japanese meters)
    and decode to naive datetimes. All-0xFF bytes mean "not set" and decode to None.
    """

    size: int = 7

    @property
    def size_range(self) -> tuple[int, int]:
        return (self.size, self.size)

    def decode(self, edt: bytes) -> datetime | None:
        self._check_size(edt)
        if edt == b"\xff" * self.size:
            return None
        year = int.from_bytes(edt[:2], "big")
        second = edt[6] if self.size == 7 else 0
        try:
            return datetime(year, edt[2], edt[3], edt[4], edt[5], second)
        except ValueError as exc:
            raise PropertyError(f"invalid date-time {edt.hex()}: {exc}") from None

    def encode(self, value: object) -> bytes:
        if value is None:
            return b"\xff" * self.size
        if not isinstance(value, datetime):
            raise PropertyError(f"expected a datetime, got {value!r}")
        if self.size == 6 and value.second:
            raise PropertyError(f"{value} has seconds; this property has minute resolution")
        head = value.year.to_bytes(2, "big") + bytes(
            (value.month, value.day, value.hour, value.minute)
        )
        return head + bytes((value.second,)) if self.size == 7 else head


@dataclass(frozen=True, eq=False)
class Date(Codec):
    """YYYY(2) MM DD."""

    @property
    def size_range(self) -> tuple[int, int]:
        return (4, 4)

    def decode(self, edt: bytes) -> date | None:
        self._check_size(edt)
        if edt == b"\xff\xff\xff\xff":
            return None
        try:
            return date(int.from_bytes(edt[:2], "big"), edt[2], edt[3])
        except ValueError as exc:
            raise PropertyError(f"invalid date {edt.hex()}: {exc}") from None

    def encode(self, value: object) -> bytes:
        if value is None:
            return b"\xff\xff\xff\xff"
        if not isinstance(value, date) or isinstance(value, datetime):
            raise PropertyError(f"expected a date, got {value!r}")
        return value.year.to_bytes(2, "big") + bytes((value.month, value.day))


@dataclass(frozen=True, eq=False)
class Time(Codec):
    """hh mm (2 bytes) or hh mm ss (3 bytes) of the day."""

    size: int = 2

    @property
    def size_range(self) -> tuple[int, int]:
        return (self.size, self.size)

    def decode(self, edt: bytes) -> time:
        self._check_size(edt)
        try:
            return time(edt[0], edt[1], edt[2] if self.size == 3 else 0)
        except ValueError as exc:
            raise PropertyError(f"invalid time {edt.hex()}: {exc}") from None

    def encode(self, value: object) -> bytes:
        if not isinstance(value, time):
            raise PropertyError(f"expected a time, got {value!r}")
        if self.size == 2:
            if value.second:
                raise PropertyError(f"{value} has seconds; this property has minute resolution")
            return bytes((value.hour, value.minute))
        return bytes((value.hour, value.minute, value.second))


# ----------------------------------------------------------------------------- bytes and text


@dataclass(frozen=True, eq=False)
class Raw(Codec):
    """Opaque bytes (identification numbers, vendor data)."""

    min_size: int
    max_size: int

    @property
    def size_range(self) -> tuple[int, int]:
        return (self.min_size, self.max_size)

    def decode(self, edt: bytes) -> bytes:
        self._check_size(edt)
        return bytes(edt)

    def encode(self, value: object) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise PropertyError(f"expected bytes, got {value!r}")
        self._check_size(bytes(value))
        return bytes(value)


@dataclass(frozen=True, eq=False)
class Text(Codec):
    """Fixed-size ASCII field padded with NUL (product code, serial number)."""

    size: int

    @property
    def size_range(self) -> tuple[int, int]:
        return (self.size, self.size)

    def decode(self, edt: bytes) -> str:
        self._check_size(edt)
        # Devices pad with NUL or spaces and some put non-ASCII bytes in; show, don't fail.
        return edt.decode("ascii", errors="replace").rstrip("\x00 ")

    def encode(self, value: object) -> bytes:
        if not isinstance(value, str):
            raise PropertyError(f"expected text, got {value!r}")
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise PropertyError(f"{value!r} is not ASCII") from None
        if len(data) > self.size:
            raise PropertyError(f"{value!r} is longer than {self.size} bytes")
        return data.ljust(self.size, b"\x00")


@dataclass(frozen=True, eq=False)
class EojCodec(Codec):
    """A 3-byte object code, shown as "027D01"."""

    @property
    def size_range(self) -> tuple[int, int]:
        return (3, 3)

    def decode(self, edt: bytes) -> str:
        self._check_size(edt)
        return str(EOJ.from_bytes(edt))

    def encode(self, value: object) -> bytes:
        if isinstance(value, EOJ):
            return value.to_bytes()
        if isinstance(value, str):
            try:
                return EOJ.parse(value).to_bytes()
            except ValueError as exc:
                raise PropertyError(str(exc)) from None
        raise PropertyError(f"expected an EOJ, got {value!r}")


@dataclass(frozen=True, eq=False)
class ClassCode(Codec):
    """A 2-byte class code (group + class), shown as "027D"."""

    @property
    def size_range(self) -> tuple[int, int]:
        return (2, 2)

    def decode(self, edt: bytes) -> str:
        self._check_size(edt)
        return edt.hex().upper()

    def encode(self, value: object) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF:
            return value.to_bytes(2, "big")
        if isinstance(value, str) and len(value) == 4:
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        raise PropertyError(f"expected a class code like '027D', got {value!r}")


@dataclass(frozen=True, eq=False)
class PropertyMapCodec(Codec):
    """0x9D/0x9E/0x9F; decodes to the sorted list of EPCs."""

    @property
    def size_range(self) -> tuple[int, int]:
        return (1, 17)

    def decode(self, edt: bytes) -> list[Decoded]:
        try:
            return list[Decoded](sorted(decode_property_map(edt)))
        except PropertyMapError as exc:
            raise PropertyError(str(exc)) from None

    def encode(self, value: object) -> bytes:
        if not isinstance(value, list | tuple | set | frozenset):
            raise PropertyError(f"expected a collection of EPCs, got {value!r}")
        try:
            return encode_property_map(value)
        except PropertyMapError as exc:
            raise PropertyError(str(exc)) from None


# ---------------------------------------------------------------------------------- composites


@dataclass(frozen=True, eq=False)
class Struct(Codec):
    """Fixed fields one after the other; decodes to a dict in field order."""

    fields: Sequence[tuple[str, Codec]]
    unit: str = ""

    def __post_init__(self) -> None:
        for _, codec in self.fields:
            _fixed_size(codec)

    @property
    def size_range(self) -> tuple[int, int]:
        total = sum(_fixed_size(codec) for _, codec in self.fields)
        return (total, total)

    def decode(self, edt: bytes) -> dict[str, Decoded]:
        self._check_size(edt)
        out: dict[str, Decoded] = {}
        pos = 0
        for name, codec in self.fields:
            size = _fixed_size(codec)
            try:
                out[name] = codec.decode(edt[pos : pos + size])
            except PropertyError as exc:
                raise PropertyError(f"{name}: {exc}") from None
            pos += size
        return out

    def encode(self, value: object) -> bytes:
        if not isinstance(value, Mapping):
            raise PropertyError(f"expected a mapping with {[n for n, _ in self.fields]}")
        missing = [name for name, _ in self.fields if name not in value]
        extra = [key for key in value if key not in {name for name, _ in self.fields}]
        if missing or extra:
            raise PropertyError(f"fields missing {missing}, unexpected {extra}")
        parts = []
        for name, codec in self.fields:
            try:
                parts.append(codec.encode(value[name]))
            except PropertyError as exc:
                raise PropertyError(f"{name}: {exc}") from None
        return b"".join(parts)


@dataclass(frozen=True, eq=False)
class Array(Codec):
    """A fixed number of equal items."""

    item: Codec
    count: int
    unit: str = ""

    @property
    def size_range(self) -> tuple[int, int]:
        size = _fixed_size(self.item) * self.count
        return (size, size)

    def decode(self, edt: bytes) -> list[Decoded]:
        self._check_size(edt)
        size = _fixed_size(self.item)
        return [self.item.decode(edt[i : i + size]) for i in range(0, len(edt), size)]

    def encode(self, value: object) -> bytes:
        if not isinstance(value, list | tuple) or len(value) != self.count:
            raise PropertyError(f"expected {self.count} items, got {value!r}")
        return b"".join(self.item.encode(item) for item in value)


@dataclass(frozen=True, eq=False)
class Counted(Codec):
    """A 1-byte count followed by that many items (instance lists, class lists)."""

    item: Codec
    min_count: int
    max_count: int

    @property
    def size_range(self) -> tuple[int, int]:
        size = _fixed_size(self.item)
        return (1 + size * self.min_count, 1 + size * self.max_count)

    def decode(self, edt: bytes) -> list[Decoded]:
        self._check_size(edt)
        size = _fixed_size(self.item)
        count = edt[0]
        if not self.min_count <= count <= self.max_count:
            raise PropertyError(f"count {count} outside {self.min_count}..{self.max_count}")
        if len(edt) != 1 + count * size:
            raise PropertyError(f"count {count} needs {1 + count * size} bytes, got {len(edt)}")
        return [self.item.decode(edt[i : i + size]) for i in range(1, len(edt), size)]

    def encode(self, value: object) -> bytes:
        if not isinstance(value, list | tuple):
            raise PropertyError(f"expected a list, got {value!r}")
        if not self.min_count <= len(value) <= self.max_count:
            raise PropertyError(f"{len(value)} items outside {self.min_count}..{self.max_count}")
        return bytes((len(value),)) + b"".join(self.item.encode(item) for item in value)
