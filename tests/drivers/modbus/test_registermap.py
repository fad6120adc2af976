"""Register maps: the pure codec, and the register-map adapters against a real pymodbus server
serving a vendor map (the shared battery contract runs them too)."""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.capabilities import BatteryMode, PvLimit, PvState
from drivers.modbus.adapters import MappedBattery, MappedPv, adapter_for
from drivers.modbus.mapped import MappedNotFollowing, MappedPvLimit, MappedSetpointError
from drivers.modbus.registermap import (
    RegisterMapError,
    RegisterSpec,
    decode,
    encode,
    missing_meanings,
    overlaps,
    read_plan,
)
from drivers.readings import (
    BATTERY_CHARGED_WH,
    BATTERY_MODE,
    BATTERY_POWER_W,
    BATTERY_REMAINING_WH,
    BATTERY_SOC_PCT,
    PV_GENERATED_WH,
    PV_LIMIT_PCT,
    PV_LIMIT_W,
    PV_POWER_W,
)
from gateway.clock import ManualClock
from tests.drivers.modbus.mapsim import (
    BATTERY_REGISTERS,
    CHARGE_SP,
    DISCHARGE_SP,
    MODE,
    PV_LIMIT,
    PV_LIMIT_REGISTERS,
    PV_REGISTERS,
    MapSim,
    config_text,
    device_toml,
    load_text,
    tcp_server,
)
from tests.drivers.modbus.simnet import drive

# ---------------------------------------------------------------------------------- the codec


@pytest.mark.parametrize(
    ("rtype", "order", "words", "value"),
    [
        ("u16", "big", [0xFFFF], 65535.0),
        ("s16", "big", [0xFFFF], -1.0),
        ("u32", "big", [0x0001, 0x0002], 65538.0),
        ("u32", "little", [0x0002, 0x0001], 65538.0),
        ("s32", "big", [0xFFFF, 0xFC18], -1000.0),
        ("s32", "little", [0xFC18, 0xFFFF], -1000.0),
        ("f32", "big", [0x4228, 0x0000], 42.0),
        ("f32", "little", [0x0000, 0x4228], 42.0),
    ],
)
def test_types_and_word_orders_round_trip(
    rtype: str, order: str, words: list[int], value: float
) -> None:
    spec = RegisterSpec("power_w", 0, type=rtype, word_order=order, unit="W")
    assert decode(spec, words) == value
    assert encode(spec, value) == words


def test_scale_and_unit_convert_to_watts_and_watt_hours() -> None:
    energy = RegisterSpec("charged_kwh", 0, type="u32", scale=0.01, unit="kWh")
    assert decode(energy, [0, 1234]) == pytest.approx(12_340.0)  # 12.34 kWh in Wh
    power = RegisterSpec("power_w", 0, type="s16", scale=0.1, unit="kW")
    assert decode(power, [0xFFF6]) == pytest.approx(-1000.0)  # -1.0 kW
    assert encode(power, -1000.0) == [0xFFF6]
    soc = RegisterSpec("soc_pct", 0, scale=0.1, unit="%")
    assert decode(soc, [505]) == pytest.approx(50.5)


def test_nan_is_no_data_and_constants_need_no_register() -> None:
    spec = RegisterSpec("power_w", 0, type="f32")
    nan = struct.pack(">f", math.nan)
    assert decode(spec, [int.from_bytes(nan[:2], "big"), int.from_bytes(nan[2:], "big")]) is None
    capacity = RegisterSpec("capacity_kwh", value=9.8, unit="kWh")
    assert decode(capacity, []) == pytest.approx(9800.0)


def test_values_that_do_not_fit_are_refused() -> None:
    with pytest.raises(RegisterMapError, match="does not fit a u16"):
        encode(RegisterSpec("charge_setpoint_w", 0), 70_000)
    with pytest.raises(RegisterMapError, match="does not fit a u16"):
        encode(RegisterSpec("charge_setpoint_w", 0), -1)
    with pytest.raises(RegisterMapError, match="does not fit a s16"):
        encode(RegisterSpec("setpoint_w", 0, type="s16"), -40_000)
    with pytest.raises(RegisterMapError, match="finite"):
        encode(RegisterSpec("setpoint_w", 0, type="f32"), math.inf)
    with pytest.raises(RegisterMapError, match="expected 2 words"):
        decode(RegisterSpec("power_w", 0, type="s32"), [1])


def test_read_plan_merges_back_to_back_registers_only() -> None:
    specs = [
        RegisterSpec("soc_pct", 102, function="input"),
        RegisterSpec("power_w", 100, function="input", type="s32"),
        RegisterSpec("charged_kwh", 104, function="input", type="u32"),
        RegisterSpec("discharged_kwh", 107, function="input", type="u32"),  # gap at 106
        RegisterSpec("mode", 102),  # same address, other table
        RegisterSpec("capacity_kwh", value=5.0),
    ]
    plan = [[(s.function, s.address) for s in group] for group in read_plan(specs)]
    assert plan == [
        [("holding", 102)],
        [("input", 100), ("input", 102)],
        [("input", 104)],
        [("input", 107)],
    ]
    many = [RegisterSpec("power_w", a, type="u32") for a in range(0, 300, 2)]
    assert all(sum(s.words for s in group) <= 125 for group in read_plan(many))


def test_overlaps_and_missing_meanings() -> None:
    specs = [
        RegisterSpec("power_w", 100, type="s32"),
        RegisterSpec("soc_pct", 101),
        RegisterSpec("mode", 101, function="input"),
    ]
    assert overlaps(specs) == [(0, 1)]
    assert missing_meanings("battery", ["power_w", "soc_pct"]) == [
        "mode",
        "charge_setpoint_w + discharge_setpoint_w or setpoint_w",
    ]
    assert missing_meanings("battery", ["power_w", "soc_pct", "mode", "setpoint_w"]) == []
    assert missing_meanings("pv", []) == ["power_w"]


# ------------------------------------------------------------------------------ the adapters


@contextlib.asynccontextmanager
async def mapped(
    kind: str, registers: str, tmp_path: Path, **sim_options: Any
) -> AsyncIterator[tuple[MapSim, Any, ManualClock]]:
    clock = ManualClock()
    sim = MapSim(clock, **sim_options)
    async with tcp_server(sim.device(1)) as served:
        where = f'host = "{served.host}"\nport = {served.port}\ntimeout_s = 0.5'
        (device,) = load_text(
            config_text(device_toml(kind, kind, registers, where=where)), tmp_path
        ).devices
        adapter = adapter_for(device, clock, confirm_timeout_s=5.0)
        try:
            yield sim, adapter, clock
        finally:
            await adapter.transport.close()


async def test_battery_poll_reads_the_map_in_few_requests(tmp_path: Path) -> None:
    async with mapped("battery", BATTERY_REGISTERS, tmp_path, soc_pct=40) as (sim, bat, clock):
        assert isinstance(bat, MappedBattery)
        await drive(clock, bat.charge(2000))
        clock.advance(1800)
        before = sim.requests
        readings = await bat.poll()
        # input 100-102 and 104-107 (103 is not mapped), mode 200; capacity is a constant
        assert sim.requests - before == 3
        values = {k: m.value for k, m in readings.items()}
        assert values[BATTERY_POWER_W] == 2000.0
        assert values[BATTERY_MODE] == "charge"
        assert values[BATTERY_SOC_PCT] == pytest.approx(40 + 100 * 1000 / 9800, abs=0.1)
        assert values[BATTERY_CHARGED_WH] == pytest.approx(1000, abs=10)
        assert values[BATTERY_REMAINING_WH] == pytest.approx(
            9800 * values[BATTERY_SOC_PCT] / 100, abs=1
        )
        assert all(m.at == clock.now() for m in readings.values())


async def test_setpoint_is_written_before_the_mode_and_read_back(tmp_path: Path) -> None:
    async with mapped("battery", BATTERY_REGISTERS, tmp_path) as (sim, bat, clock):
        await drive(clock, bat.discharge(1230))
        assert sim.reg(DISCHARGE_SP) == 123  # 10 W steps
        assert sim.reg(MODE) == 2 and sim.power_w() == -1230.0
        with pytest.raises(MappedSetpointError, match="above the device's rating 5000 W"):
            await bat.charge(6000)
        assert sim.reg(CHARGE_SP) == 0 and sim.reg(MODE) == 2  # nothing written
        await drive(clock, bat.standby())
        assert (await bat.mode()).value is BatteryMode.STANDBY and sim.power_w() == 0.0


async def test_device_that_does_not_follow_is_reported(tmp_path: Path) -> None:
    async with mapped("battery", BATTERY_REGISTERS, tmp_path) as (sim, bat, clock):
        sim.follow = False
        with pytest.raises(MappedNotFollowing, match="charge") as info:
            await drive(clock, bat.charge(1000))
        assert info.value.device == "battery"


async def test_signed_single_setpoint_and_kw_units(tmp_path: Path) -> None:
    registers = BATTERY_REGISTERS.replace(
        'meaning = "charge_setpoint_w"\naddress = 201',
        'meaning = "setpoint_w"\naddress = 201\ntype = "s16"\nscale = 0.001\nunit = "kW"',
    ).replace(
        '[[device.registers]]\nmeaning = "discharge_setpoint_w"\naddress = 202\nscale = 10\n', ""
    )
    async with mapped("battery", registers, tmp_path) as (sim, bat, clock):
        await drive(clock, bat.charge(1500))
        assert sim.reg(CHARGE_SP) == 1500 and sim.power_w() == 1500.0
        await drive(clock, bat.discharge(700))
        assert sim.reg(CHARGE_SP) == (-700) & 0xFFFF  # the signed setpoint register
        assert sim.reg(MODE) == 2


async def test_pv_map(tmp_path: Path) -> None:
    async with mapped("pv", PV_REGISTERS, tmp_path, pv_w=2100) as (_, pv, clock):
        assert isinstance(pv, MappedPv) and isinstance(pv, PvState)
        assert (await pv.generation_w()).value == 2100.0
        first = (await pv.generated_wh()).value
        clock.advance(3600)
        second = (await pv.generated_wh()).value
        assert first is not None and second is not None
        assert second - first == pytest.approx(2100, abs=1)  # f32 kWh, ~0.1 Wh resolution here
        readings = await pv.poll()
        assert readings[PV_POWER_W].value == 2100.0
        assert readings[PV_GENERATED_WH].value == second


async def test_pv_limit_through_a_percent_register(tmp_path: Path) -> None:
    registers = PV_REGISTERS + PV_LIMIT_REGISTERS
    async with mapped("pv", registers, tmp_path, pv_w=3000) as (sim, pv, clock):
        assert isinstance(pv, MappedPvLimit) and isinstance(pv, PvLimit)
        assert await pv.rated_w() == 4000.0
        await drive(clock, pv.limit_pct(50))
        assert sim.reg(PV_LIMIT) == 50 and (await pv.generation_w()).value == 2000.0
        await drive(clock, pv.limit_w(1000))  # 1 kW of the 4 kW rating: 25 %
        assert sim.reg(PV_LIMIT) == 25 and (await pv.generation_w()).value == 1000.0
        readings = await pv.poll()
        assert readings[PV_LIMIT_PCT].value == 25.0 and readings[PV_LIMIT_W].value is None
        await drive(clock, pv.limit_w(None))
        assert sim.reg(PV_LIMIT) == 100 and (await pv.generation_w()).value == 3000.0
        for bad in (101, -1, True):
            with pytest.raises(MappedSetpointError):
                await pv.limit_pct(bad)
        sim.follow = False
        with pytest.raises(MappedNotFollowing, match="pv_limit_pct"):
            await drive(clock, pv.limit_pct(10))


async def test_pv_without_a_limit_register_has_no_limit_capability(tmp_path: Path) -> None:
    async with mapped("pv", PV_REGISTERS, tmp_path) as (_, pv, _clock):
        assert not isinstance(pv, PvLimit)


def test_a_single_limit_register_needs_the_rating() -> None:
    assert missing_meanings("pv", ["power_w", "pv_limit_w"]) == [
        "rated_w (to convert limits for pv_limit_w)"
    ]
    assert missing_meanings("pv", ["power_w", "pv_limit_w", "pv_limit_pct"]) == []


async def test_an_incomplete_map_is_refused_by_the_adapter() -> None:
    from drivers.modbus.transport import ModbusSettings, ModbusTransport

    transport = ModbusTransport("x", ModbusSettings(host="127.0.0.1"))
    with pytest.raises(ValueError, match="needs mode"):
        MappedBattery(
            "x",
            transport,
            ManualClock(),
            [
                RegisterSpec("power_w", 1),
                RegisterSpec("soc_pct", 2),
                RegisterSpec("setpoint_w", 3, type="s16"),
            ],
        )
