"""Node profile (0x0EF0): who the node is and which objects it hosts (discovery)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .spec import PropertySpec, prop, table
from .superclass import COMMON, ON_OFF
from .types import ClassCode, Counted, EojCodec, Raw, Struct, uint

__all__ = ["CLASS_ID", "PROPERTIES"]

CLASS_ID: Final = 0x0EF0

MAX_INSTANCES: Final = 84
MAX_CLASSES: Final = 8

PROPERTIES: Final[Mapping[int, PropertySpec]] = table(
    CLASS_ID,
    (
        prop(0x80, "operating_status", ON_OFF),
        prop(
            0x82,
            "version",
            Struct(
                (
                    ("major", uint(1)),
                    ("minor", uint(1)),
                    ("message_formats", uint(1)),
                    ("reserved", uint(1)),
                )
            ),
        ),
        *COMMON,
        prop(0xBF, "unique_identifier", Raw(2, 2), "GSI"),
        prop(0xD3, "instance_count", uint(3)),
        prop(0xD4, "class_count", uint(2, 1, 253)),
        # Lists may be empty in the field (a node with only its profile); the count byte still
        # has to agree with the length.
        prop(0xD5, "instance_list_notification", Counted(EojCodec(), 0, MAX_INSTANCES)),
        prop(0xD6, "instance_list", Counted(EojCodec(), 0, MAX_INSTANCES)),
        prop(0xD7, "class_list", Counted(ClassCode(), 0, MAX_CLASSES)),
    ),
)
