"""The simulated devices: storage battery, PV inverter, water heater, air conditioner.

Physics is deliberately simple but honest about the things the gateway must get right: the
battery's actual mode (CF) lags the requested one (DA), its SOC integrates D3 over time and stops
at empty and full, the PV follows a clear-sky day and obeys its output limit, the water heater
heats only when told and stops when the tank is full. Everything runs on the injected clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final

from drivers.echonet.frame import EOJ
from drivers.echonet.propmap import encode_property_map
from gateway.clock import Clock

from .objects import SimObject, s32, u8, u16, u32

__all__ = [
    "SimAircon",
    "SimBattery",
    "SimNodeProfile",
    "SimPv",
    "SimV2h",
    "SimWaterHeater",
]

# Battery operation modes (DA / CF codes).
RAPID_CHARGE: Final = 0x41
CHARGE: Final = 0x42
DISCHARGE: Final = 0x43
STANDBY: Final = 0x44
AUTO: Final = 0x46
SETTABLE_MODES: Final = frozenset({RAPID_CHARGE, CHARGE, DISCHARGE, STANDBY, AUTO})
DESIGNATED_POWER: Final = 0x03


def _uint(edt: bytes) -> int:
    return int.from_bytes(edt, "big")


class SimBattery(SimObject):
    """Storage battery 0x027D."""

    class_id = 0x027D
    release = "J"
    settable_modes: frozenset[int] = SETTABLE_MODES

    def __init__(
        self,
        clock: Clock,
        instance: int = 1,
        *,
        capacity_wh: int = 9800,
        soc_pct: float = 50.0,
        max_charge_w: int = 3000,
        max_discharge_w: int = 3000,
        min_power_w: int = 100,
        reverse_flow: bool = True,
        mode_delay_s: float = 2.0,
        maker_code: int = 0xFFFFFF,
        uid: bytes = b"",
    ) -> None:
        super().__init__(clock, instance, maker_code=maker_code, uid=uid)
        self.capacity_wh = capacity_wh
        self.energy_wh = capacity_wh * max(0.0, min(100.0, soc_pct)) / 100
        self.max_charge_w = max_charge_w
        self.max_discharge_w = max_discharge_w
        self.min_power_w = min_power_w
        self.interconnection = 0x00 if reverse_flow else 0x02
        self.mode_delay_s = mode_delay_s
        self.setting = AUTO  # DA
        self.actual = AUTO  # CF
        self.pending: tuple[int, float] | None = None
        self.charge_method = 0x02
        self.discharge_method = 0x02
        self.charge_power_w = max_charge_w  # EB
        self.discharge_power_w = max_discharge_w  # EC
        self.charge_amount_wh = 0  # AA (0 = not set)
        self.discharge_amount_wh = 0  # AB
        self.done_wh = 0.0  # energy moved since the last mode command, for AA/AB
        self.charged_wh = 0.0
        self.discharged_wh = 0.0
        self.announced |= {0xCF, 0xDA}

        cap = lambda: u32(self.capacity_wh)  # noqa: E731
        self.getter(0xA0, cap)
        self.getter(0xA1, cap)
        self.getter(0xA4, lambda: u32(self.chargeable_wh))
        self.getter(0xA5, lambda: u32(self.dischargeable_wh))
        self.getter(0xA8, lambda: u32(self.charged_wh % 1_000_000_000))
        self.getter(0xA9, lambda: u32(self.discharged_wh % 1_000_000_000))
        self.getter(0xAA, lambda: u32(self.charge_amount_wh))
        self.getter(0xAB, lambda: u32(self.discharge_amount_wh))
        self.getter(0xC1, lambda: u8(self.charge_method))
        self.getter(0xC2, lambda: u8(self.discharge_method))
        self.getter(0xC7, cap)
        self.getter(0xC8, lambda: u32(self.min_power_w) + u32(self.max_charge_w))
        self.getter(0xC9, lambda: u32(self.min_power_w) + u32(self.max_discharge_w))
        self.getter(0xCF, lambda: u8(self.actual))
        self.getter(0xD0, cap)
        self.getter(0xD3, lambda: s32(round(self.power_w)))
        self.getter(0xD6, lambda: u32(self.discharged_wh % 1_000_000_000))
        self.getter(0xD8, lambda: u32(self.charged_wh % 1_000_000_000))
        self.getter(0xDA, lambda: u8(self.setting))
        self.getter(0xDB, lambda: u8(self.interconnection))
        self.getter(0xE2, lambda: u32(self.energy_wh))
        self.getter(0xE4, lambda: u8(round(self.soc_pct)))
        self.getter(0xE6, lambda: b"\x04")
        self.getter(0xEB, lambda: u32(self.charge_power_w))
        self.getter(0xEC, lambda: u32(self.discharge_power_w))
        self.setter(0xAA, self._set_charge_amount)
        self.setter(0xAB, self._set_discharge_amount)
        self.setter(0xC1, self._set_charge_method)
        self.setter(0xC2, self._set_discharge_method)
        self.setter(0xDA, self._set_mode)
        self.setter(0xEB, self._set_charge_power)
        self.setter(0xEC, self._set_discharge_power)

    # ---------------------------------------------------------------------------- state

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_wh / self.capacity_wh

    @property
    def chargeable_wh(self) -> int:
        return max(0, int(self.capacity_wh - self.energy_wh))

    @property
    def dischargeable_wh(self) -> int:
        return max(0, int(self.energy_wh))

    @property
    def power_w(self) -> float:
        """D3 now: + charging, − discharging; zero at the limits and when the amount is done."""
        if not self.on:
            return 0.0
        if self.actual in (CHARGE, RAPID_CHARGE):
            if self.energy_wh >= self.capacity_wh:
                return 0.0
            if self.charge_amount_wh and self.done_wh >= self.charge_amount_wh:
                return 0.0
            if self.actual == RAPID_CHARGE or self.charge_method != DESIGNATED_POWER:
                return float(self.max_charge_w)
            return float(min(self.charge_power_w, self.max_charge_w))
        if self.actual == DISCHARGE:
            if self.energy_wh <= 0:
                return 0.0
            if self.discharge_amount_wh and self.done_wh >= self.discharge_amount_wh:
                return 0.0
            if self.discharge_method != DESIGNATED_POWER:
                return -float(self.max_discharge_w)
            return -float(min(self.discharge_power_w, self.max_discharge_w))
        return 0.0

    def advance(self, start: float, seconds: float) -> None:
        end = start + seconds
        if self.pending is not None and self.pending[1] <= end:
            code, due = self.pending
            self._integrate(max(0.0, due - start))
            self.actual = code
            self.pending = None
            self._integrate(end - max(start, due))
        else:
            self._integrate(seconds)

    def _integrate(self, seconds: float) -> None:
        if seconds <= 0:
            return
        power = self.power_w
        if power == 0:
            return
        before = self.energy_wh
        delta = power * seconds / 3600.0
        limit = None
        if power > 0 and self.charge_amount_wh:
            limit = self.charge_amount_wh - self.done_wh
        elif power < 0 and self.discharge_amount_wh:
            limit = self.discharge_amount_wh - self.done_wh
        if limit is not None:
            delta = max(-limit, min(limit, delta))
        self.energy_wh = max(0.0, min(float(self.capacity_wh), before + delta))
        moved = self.energy_wh - before
        self.done_wh += abs(moved)
        if moved > 0:
            self.charged_wh += moved
        else:
            self.discharged_wh -= moved

    # -------------------------------------------------------------------------- setters

    def _set_mode(self, edt: bytes) -> bool:
        code = edt[0]
        if code not in self.settable_modes:
            return False
        self.setting = code
        self.done_wh = 0.0
        if self.mode_delay_s <= 0:
            self.actual = code
            self.pending = None
        else:
            self.pending = (code, self.clock.monotonic() + self.mode_delay_s)
        return True

    def _set_charge_amount(self, edt: bytes) -> bool:
        value = _uint(edt)
        if value > self.chargeable_wh:
            return False
        self.charge_amount_wh = value
        return True

    def _set_discharge_amount(self, edt: bytes) -> bool:
        value = _uint(edt)
        if value > self.dischargeable_wh:
            return False
        self.discharge_amount_wh = value
        return True

    def _set_charge_method(self, edt: bytes) -> bool:
        if edt[0] not in (0x01, 0x02, 0x03):
            return False
        self.charge_method = edt[0]
        return True

    def _set_discharge_method(self, edt: bytes) -> bool:
        if edt[0] not in (0x01, 0x02, 0x03):
            return False
        self.discharge_method = edt[0]
        return True

    def _set_charge_power(self, edt: bytes) -> bool:
        value = _uint(edt)
        if not self.min_power_w <= value <= self.max_charge_w:
            return False
        self.charge_power_w = value
        return True

    def _set_discharge_power(self, edt: bytes) -> bool:
        value = _uint(edt)
        if not self.min_power_w <= value <= self.max_discharge_w:
            return False
        self.discharge_power_w = value
        return True


class SimV2h(SimBattery):
    """EV charger/discharger (V2H) 0x027E with a car plugged in: the battery's physics, V2H codes.

    DA takes 0x49 for automatic; the actual mode is E1 (where automatic shows as standby), the
    amounts are E7/EA and the car's state C7 says chargeable and dischargeable.
    """

    class_id = 0x027E
    release = "Q"
    settable_modes = frozenset({CHARGE, DISCHARGE, STANDBY, 0x47, 0x49})

    def __init__(self, clock: Clock, instance: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("capacity_wh", 40000)
        kwargs.setdefault("max_charge_w", 6000)
        kwargs.setdefault("max_discharge_w", 6000)
        super().__init__(clock, instance, **kwargs)
        self.setting = self.actual = STANDBY
        keep = {0x80, 0x81, 0x82, 0x83, 0x88, 0x8A, 0x9D, 0x9E, 0x9F}
        getters = {e: f for e, f in self._getters.items() if e in keep | {0xD3, 0xD6, 0xD8}}
        getters |= {e: self._getters[e] for e in (0xC8, 0xC9, 0xDA, 0xDB, 0xE2, 0xE4, 0xEB, 0xEC)}
        self._getters = getters
        self._setters = {e: self._setters[e] for e in (0x80, 0xDA, 0xEB, 0xEC)}
        self.announced = {0x80, 0xDA, 0xE1}
        self.getter(0xC7, lambda: b"\x43")
        self.getter(0xC2, lambda: u32(self.dischargeable_wh))
        self.getter(0xCF, lambda: u32(self.chargeable_wh))
        self.getter(
            0xE1, lambda: u8(self.actual if self.actual in (CHARGE, DISCHARGE) else STANDBY)
        )
        self.getter(0xE7, lambda: u32(self.charge_amount_wh))
        self.getter(0xEA, lambda: u32(self.discharge_amount_wh))
        # Power settings apply directly: V2H units have no charge/discharge method property.
        self.charge_method = self.discharge_method = DESIGNATED_POWER


class SimPv(SimObject):
    """Household PV 0x0279 on a clear-sky day (sunrise 06:00, sunset 18:00 JST)."""

    class_id = 0x0279
    release = "J"

    def __init__(
        self,
        clock: Clock,
        instance: int = 1,
        *,
        rated_w: int = 4500,
        fit: bool = False,
        load_w: float = 400.0,
        maker_code: int = 0xFFFFFF,
        uid: bytes = b"",
    ) -> None:
        super().__init__(clock, instance, maker_code=maker_code, uid=uid)
        self.rated_w = rated_w
        self.contract = 0x41 if fit else 0x42
        self.load_w = load_w
        #: What the panels could produce now (W), when another model owns the weather: e.g. a
        #: simulated meter's PV, so both report the same sunshine. None: the built-in clear sky.
        self.profile: Callable[[], float] | None = None
        self.limit_pct = 100
        self.limit_w = rated_w
        self.generated_wh = 0.0
        self.sold_wh = 0.0
        self.announced |= {0xA0, 0xA1}
        self.getter(0xA0, lambda: u8(self.limit_pct))
        self.getter(0xA1, lambda: u16(self.limit_w))
        self.getter(0xC1, lambda: u8(self.contract))
        self.getter(0xD0, lambda: b"\x00")
        self.getter(0xD1, lambda: b"\x41" if self.restrained else b"\x44")
        self.getter(0xE0, lambda: u16(round(self.generation_w)))
        self.getter(0xE1, lambda: u32(self.generated_wh % 1_000_000_000))
        self.getter(0xE3, lambda: u32(self.sold_wh % 1_000_000_000))
        self.getter(0xE8, lambda: u16(self.rated_w))
        self.setter(0xA0, self._set_limit_pct)
        self.setter(0xA1, self._set_limit_w)
        self.setter(0xC1, self._set_contract)

    def clear_sky_w(self) -> float:
        if self.profile is not None:
            return max(0.0, float(self.profile()))
        now = self.clock.now()
        hour = now.hour + now.minute / 60 + now.second / 3600
        if not 6.0 < hour < 18.0:
            return 0.0
        return float(self.rated_w * 0.85 * math.sin(math.pi * (hour - 6.0) / 12.0) ** 1.2)

    @property
    def ceiling_w(self) -> float:
        return min(self.rated_w * self.limit_pct / 100, float(self.limit_w))

    @property
    def generation_w(self) -> float:
        if not self.on:
            return 0.0
        return min(self.clear_sky_w(), self.ceiling_w)

    @property
    def restrained(self) -> bool:
        return self.on and self.clear_sky_w() > self.ceiling_w

    def advance(self, start: float, seconds: float) -> None:
        power = self.generation_w
        self.generated_wh += power * seconds / 3600
        self.sold_wh += max(0.0, power - self.load_w) * seconds / 3600

    def _set_limit_pct(self, edt: bytes) -> bool:
        if edt[0] > 100:
            return False
        self.limit_pct = edt[0]
        return True

    def _set_limit_w(self, edt: bytes) -> bool:
        value = _uint(edt)
        if value > 65533:
            return False
        self.limit_w = value
        return True

    def _set_contract(self, edt: bytes) -> bool:
        if edt[0] not in (0x41, 0x42, 0x43):
            return False
        self.contract = edt[0]
        return True


class SimWaterHeater(SimObject):
    """Electric water heater (EcoCute) 0x026B: heats on B0 = manual start until the tank is full."""

    class_id = 0x026B
    release = "J"

    def __init__(
        self,
        clock: Clock,
        instance: int = 1,
        *,
        tank_l: int = 460,
        hot_l: float = 200.0,
        heat_rate_l_per_h: float = 120.0,
        heating_w: float = 1300.0,
        maker_code: int = 0xFFFFFF,
        uid: bytes = b"",
    ) -> None:
        super().__init__(clock, instance, maker_code=maker_code, uid=uid)
        self.heating_w = heating_w
        self.tank_l = tank_l
        self.hot_l = hot_l
        self.heat_rate_l_per_h = heat_rate_l_per_h
        self.automatic = 0x41  # B0
        self.daytime_reheat = 0x42  # C0
        self.target_c = 65
        self.shift_participation = 0x00
        self.announced |= {0xB0, 0xB2}
        self.getter(0xB0, lambda: u8(self.automatic))
        self.getter(0xB2, lambda: b"\x41" if self.heating else b"\x42")
        self.getter(0xB3, lambda: u8(self.target_c))
        self.getter(0xC0, lambda: u8(self.daytime_reheat))
        self.getter(0xC1, lambda: u8(round(40 + 25 * self.hot_l / self.tank_l)))
        self.getter(0xC7, lambda: u8(self.shift_participation))
        self.getter(0xE1, lambda: u16(self.hot_l))
        self.getter(0xE2, lambda: u16(self.tank_l))
        self.setter(0xB0, self._set_automatic)
        self.setter(0xB3, self._set_target)
        self.setter(0xC0, self._set_reheat)
        self.setter(0xC7, self._set_participation)

    @property
    def heating(self) -> bool:
        return self.on and self.automatic == 0x42 and self.hot_l < self.tank_l

    @property
    def power_w(self) -> float:
        """The heat pump's draw, for a simulated meter that sees it (a heat pump: ~1.3 kW)."""
        return self.heating_w if self.heating else 0.0

    def advance(self, start: float, seconds: float) -> None:
        if not self.heating:
            return
        self.hot_l = min(float(self.tank_l), self.hot_l + self.heat_rate_l_per_h * seconds / 3600)
        if self.hot_l >= self.tank_l:
            self.automatic = 0x41  # a full tank ends manual heating, as real units do

    def _set_automatic(self, edt: bytes) -> bool:
        if edt[0] not in (0x41, 0x42, 0x43):
            return False
        self.automatic = edt[0]
        return True

    def _set_target(self, edt: bytes) -> bool:
        if not 30 <= edt[0] <= 90:
            return False
        self.target_c = edt[0]
        return True

    def _set_reheat(self, edt: bytes) -> bool:
        if edt[0] not in (0x41, 0x42):
            return False
        self.daytime_reheat = edt[0]
        return True

    def _set_participation(self, edt: bytes) -> bool:
        if edt[0] not in (0x00, 0x01):
            return False
        self.shift_participation = edt[0]
        return True


class SimAircon(SimObject):
    """Home air conditioner 0x0130 cooling a warm room; power-saving cuts its draw by 30 %."""

    class_id = 0x0130
    release = "J"

    def __init__(
        self,
        clock: Clock,
        instance: int = 1,
        *,
        room_c: int = 29,
        maker_code: int = 0xFFFFFF,
        uid: bytes = b"",
    ) -> None:
        super().__init__(clock, instance, maker_code=maker_code, uid=uid)
        self.saving = 0x42
        self.mode = 0x42
        self.target_c = 26
        self.room_c = room_c
        self.energy_wh = 0.0
        self.announced |= {0x8F, 0xB0}
        self.getter(0x84, lambda: u16(round(self.power_w)))
        self.getter(0x85, lambda: u32(self.energy_wh % 1_000_000_000))
        self.getter(0x8F, lambda: u8(self.saving))
        self.getter(0xB0, lambda: u8(self.mode))
        self.getter(0xB3, lambda: u8(self.target_c))
        self.getter(0xBB, lambda: u8(self.room_c))
        self.getter(0xBE, lambda: u8(33))
        self.setter(0x8F, self._set_saving)
        self.setter(0xB0, self._set_mode)
        self.setter(0xB3, self._set_target)

    @property
    def power_w(self) -> float:
        if not self.on:
            return 0.0
        base = 400.0 + 150.0 * max(0, self.room_c - self.target_c)
        return base * (0.7 if self.saving == 0x41 else 1.0)

    def advance(self, start: float, seconds: float) -> None:
        self.energy_wh += self.power_w * seconds / 3600

    def _set_saving(self, edt: bytes) -> bool:
        if edt[0] not in (0x41, 0x42):
            return False
        self.saving = edt[0]
        return True

    def _set_mode(self, edt: bytes) -> bool:
        if edt[0] not in (0x41, 0x42, 0x43, 0x44, 0x45):
            return False
        self.mode = edt[0]
        return True

    def _set_target(self, edt: bytes) -> bool:
        if not 16 <= edt[0] <= 30:
            return False
        self.target_c = edt[0]
        return True


class SimNodeProfile(SimObject):
    """Node profile 0x0EF001: who the node is and which objects it hosts."""

    class_id = 0x0EF0

    def __init__(
        self,
        clock: Clock,
        devices: Sequence[SimObject],
        *,
        maker_code: int = 0xFFFFFF,
        uid: bytes = b"",
    ) -> None:
        super().__init__(clock, 1, maker_code=maker_code, uid=uid)
        self.devices = list(devices)
        self.announced = {0x80, 0xD5}
        del self._getters[0x81], self._getters[0x88]
        del self._setters[0x80]
        self.getter(0x82, lambda: b"\x01\x0d\x01\x00")
        self.getter(0x9D, lambda: encode_property_map(self.announced))
        self.getter(0xD3, lambda: len(self.devices).to_bytes(3, "big"))
        self.getter(0xD4, lambda: (len(self.classes) + 1).to_bytes(2, "big"))
        self.getter(0xD5, self.instance_list)
        self.getter(0xD6, self.instance_list)
        self.getter(
            0xD7,
            lambda: (
                bytes((len(self.classes[:8]),))
                + b"".join(c.to_bytes(2, "big") for c in self.classes[:8])
            ),
        )

    @property
    def eojs(self) -> list[EOJ]:
        return [d.eoj for d in self.devices]

    @property
    def classes(self) -> list[int]:
        return list(dict.fromkeys(d.class_id for d in self.devices))

    def instance_list(self) -> bytes:
        eojs = self.eojs[:84]
        return bytes((len(eojs),)) + b"".join(e.to_bytes() for e in eojs)
