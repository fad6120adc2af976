"""Simulated ECHONET objects: a property table with getters, validating setters and physics.

Each object answers for itself: which EPCs it can be read, written or announce (its property
maps are derived from that), and how a written value changes its state. Values are checked with
the same property specifications the gateway decodes with, plus the object's own limits, so an
out-of-range Set is refused (SNA) exactly where a careful device would refuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from drivers.echonet.frame import EOJ
from drivers.echonet.properties import PropertyError, spec_for
from drivers.echonet.propmap import encode_property_map
from gateway.clock import Clock

__all__ = ["Getter", "Setter", "SimObject", "s32", "u8", "u16", "u32"]

Getter = Callable[[], bytes]
Setter = Callable[[bytes], bool]

ON: Final = 0x30
OFF: Final = 0x31


def u8(value: int) -> bytes:
    return max(0, min(0xFF, int(value))).to_bytes(1, "big")


def u16(value: float) -> bytes:
    return max(0, min(0xFFFD, int(value))).to_bytes(2, "big")


def u32(value: float) -> bytes:
    return max(0, min(999_999_999, int(value))).to_bytes(4, "big")


def s32(value: float) -> bytes:
    return max(-999_999_999, min(999_999_999, int(value))).to_bytes(4, "big", signed=True)


class SimObject:
    """One device object (or the node profile) of a simulated node.

    Subclasses register getters/setters in ``__init__`` and advance their state in
    :meth:`advance`, which the node calls before every request and on every tick with the
    seconds elapsed on the injected clock.
    """

    class_id: int = 0x0000
    release: str = "J"

    def __init__(
        self,
        clock: Clock,
        instance: int = 1,
        *,
        maker_code: int = 0xFFFFFF,
        uid: bytes = b"",
    ) -> None:
        self.clock = clock
        self.eoj = EOJ.of(self.class_id, instance)
        self.maker_code = maker_code
        self.uid = (uid + bytes(13))[:13]
        self.operation = ON
        self.fault = 0x42
        self.announced: set[int] = {0x80}
        self._getters: dict[int, Getter] = {}
        self._setters: dict[int, Setter] = {}
        self._last_mono = clock.monotonic()
        self.getter(0x80, lambda: u8(self.operation))
        self.setter(0x80, self._set_operation)
        self.getter(0x81, lambda: b"\x00")
        self.getter(0x82, lambda: bytes((0, 0, ord(self.release), 1)))
        self.getter(0x83, lambda: b"\xfe" + self.maker_code.to_bytes(3, "big") + self.uid)
        self.getter(0x88, lambda: u8(self.fault))
        self.getter(0x8A, lambda: self.maker_code.to_bytes(3, "big"))
        self.getter(0x9D, lambda: encode_property_map(self.announced & self.gettable))
        self.getter(0x9E, lambda: encode_property_map(self.settable))
        self.getter(0x9F, lambda: encode_property_map(self.gettable))

    # ------------------------------------------------------------------------- registration

    def getter(self, epc: int, fn: Getter) -> None:
        self._getters[epc] = fn

    def setter(self, epc: int, fn: Setter) -> None:
        self._setters[epc] = fn

    @property
    def gettable(self) -> set[int]:
        return set(self._getters)

    @property
    def settable(self) -> set[int]:
        return set(self._setters)

    @property
    def on(self) -> bool:
        return self.operation == ON

    # ------------------------------------------------------------------------------ access

    def read(self, epc: int) -> bytes | None:
        """The EDT, or None when the object has no such readable property."""
        fn = self._getters.get(epc)
        return fn() if fn is not None else None

    def write(self, epc: int, edt: bytes) -> bool:
        """Apply a Set; False (SNA) for unknown EPCs and values the spec or the device refuses."""
        fn = self._setters.get(epc)
        if fn is None:
            return False
        spec = spec_for(self.class_id, epc)
        if spec is not None:
            try:
                spec.decode(edt)
            except PropertyError:
                return False
        return fn(edt)

    def update(self) -> None:
        """Advance the physics to the clock's present."""
        now = self.clock.monotonic()
        elapsed = now - self._last_mono
        if elapsed > 0:
            self.advance(self._last_mono, elapsed)
        self._last_mono = now

    def advance(self, start: float, seconds: float) -> None:
        """Integrate ``seconds`` of device behaviour that began at monotonic ``start``."""

    def _set_operation(self, edt: bytes) -> bool:
        if edt[0] not in (ON, OFF):
            return False
        self.operation = edt[0]
        return True
