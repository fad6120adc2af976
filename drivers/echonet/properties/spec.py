"""Property specifications: one EPC of one class, its codec and its access rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from enum import Flag
from typing import Final

from .types import Codec, Decoded, Int, PropertyError

__all__ = ["JSON", "Access", "PropertySpec", "Value", "prop", "table", "to_json"]

JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]


class Access(Flag):
    """What the Appendix allows for a property (required or optional, not "notApplicable")."""

    NONE = 0
    GET = 1
    SET = 2
    INF = 4

    @classmethod
    def parse(cls, text: str) -> Access:
        """Compact table notation: "GSI", "G-I", "-S-" (position matters, '-' = absent)."""
        if len(text) != 3:
            raise ValueError(f"access must look like 'GSI' or 'G-I', got {text!r}")
        result = cls.NONE
        for char, flag, letter in zip(text, (cls.GET, cls.SET, cls.INF), "GSI", strict=True):
            if char == letter:
                result |= flag
            elif char != "-":
                raise ValueError(f"access must look like 'GSI' or 'G-I', got {text!r}")
        return result


@dataclass(frozen=True, eq=False)
class PropertySpec:
    """How to read and write one EPC of one class."""

    epc: int
    name: str
    codec: Codec
    access: Access
    class_id: int = 0

    @property
    def unit(self) -> str:
        return self.codec.unit

    @property
    def gettable(self) -> bool:
        return Access.GET in self.access

    @property
    def settable(self) -> bool:
        return Access.SET in self.access

    @property
    def announced(self) -> bool:
        """Whether the Appendix allows the device to send it by INF (optional or required)."""
        return Access.INF in self.access

    def decode(self, edt: bytes) -> Decoded:
        try:
            return self.codec.decode(edt)
        except PropertyError as exc:
            raise PropertyError(
                f"({self.name}): {exc.reason}", class_id=self.class_id, epc=self.epc
            ) from None

    def encode(self, value: object) -> bytes:
        try:
            return self.codec.encode(value)
        except PropertyError as exc:
            raise PropertyError(
                f"({self.name}): {exc.reason}", class_id=self.class_id, epc=self.epc
            ) from None

    def state(self, edt: bytes) -> str | None:
        """Sentinel name ("noData", "noSetting" ...) when the EDT holds one."""
        return self.codec.state(edt) if isinstance(self.codec, Int) else None


@dataclass(frozen=True)
class Value:
    """A decoded property ready for logs, telemetry and the discovery table."""

    epc: int
    name: str
    raw: str
    value: JSON
    unit: str
    state: str | None = None


def prop(epc: int, name: str, codec: Codec, access: str = "G-I") -> PropertySpec:
    return PropertySpec(epc, name, codec, Access.parse(access))


def table(class_id: int, specs: Iterable[PropertySpec]) -> Mapping[int, PropertySpec]:
    """Index specs by EPC, stamping the class id that errors will name."""
    out: dict[int, PropertySpec] = {}
    for spec in specs:
        if spec.epc in out:
            raise ValueError(f"class 0x{class_id:04X}: EPC 0x{spec.epc:02X} defined twice")
        out[spec.epc] = replace(spec, class_id=class_id)
    return out


_ISO: Final = (datetime, date, time)


def to_json(value: Decoded) -> JSON:
    """Flatten a decoded value: dates to ISO 8601, bytes to upper-case hex."""
    if isinstance(value, _ISO):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value
