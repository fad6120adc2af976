"""``chisan echonet discover|get|set`` and ``chisan sim echonet`` against simulators."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main

from .netsim import GATEWAY, SimThread, next_address

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["echonet", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_get_json_has_the_documented_shape() -> None:
    with SimThread(devices=("battery",), soc_pct=57) as sim:
        sim.call(setattr, sim.node.battery, "setting", 0x43)  # type: ignore[union-attr]
        code, out, err = run(
            "get", sim.address, "027d01", "E4", "0xda", "77", "--json", "--bind", GATEWAY
        )
    assert code == 0, err
    assert out.count("\n") == 1
    assert json.loads(out) == {
        "host": sim.address,
        "eoj": "027D01",
        "properties": {
            "E4": {"raw": "39", "value": 57, "unit": "%"},
            "DA": {"raw": "43", "value": "discharge"},
            "77": {"raw": "", "value": None},
        },
    }


def test_get_no_data_sentinel_is_null() -> None:
    with SimThread(devices=("battery",)) as sim:
        sim.call(sim.node.battery.setter, 0xAA, lambda edt: True)  # type: ignore[union-attr]
        code, out, _ = run("get", sim.address, "027D01", "AA", "--json", "--bind", GATEWAY)
    assert code == 0
    assert json.loads(out)["properties"]["AA"] == {"raw": "00000000", "value": None, "unit": "Wh"}


def test_get_table() -> None:
    with SimThread(devices=("pv",)) as sim:
        code, out, _ = run("get", sim.address, "027901", "E8", "C1", "--bind", GATEWAY)
    assert code == 0
    assert "rated_power" in out and "4500" in out and "non_fit" in out


def test_set_prints_each_result() -> None:
    with SimThread(devices=("battery",)) as sim:
        code, out, err = run("set", sim.address, "027D01", "DA=44", "--bind", GATEWAY)
        assert (code, out) == (0, "DA=44 accepted\n")
        code, out, err = run(
            "set", sim.address, "027D01", "C1=03", "EB=00FFFFFF", "--bind", GATEWAY
        )
        log = [(r.epc, r.edt) for r in sim.node.set_log]  # type: ignore[union-attr]
    assert code == 1
    assert out == "C1=03 accepted\nEB=00FFFFFF refused\n"
    assert err == f"error: {sim.address} 027D01 refused EB\n"
    assert log == [(0xDA, b"\x44"), (0xC1, b"\x03")]


def test_discover_by_host_table_and_json() -> None:
    with SimThread(devices=("pv", "battery")) as a, SimThread(devices=("water_heater",)) as b:
        code, out, err = run(
            "discover", "--host", a.address, "--host", b.address, "--bind", GATEWAY
        )
        assert code == 0, err
        for text in (a.address, "027D01", "storage battery", "026B01", "maker 0xFFFFFF"):
            assert text in out
        code, out, _ = run("discover", "--host", b.address, "--json", "--bind", GATEWAY)
    assert code == 0
    data = json.loads(out)
    assert [n["address"] for n in data["nodes"]] == [b.address]
    assert data["nodes"][0]["objects"][0]["class_name"] == "electric water heater"
    assert data["nodes"][0]["objects"][0]["release"] == "J"


def test_discover_by_multicast() -> None:
    with SimThread(devices=("battery",), multicast_interface=GATEWAY) as sim:
        if not sim.node.multicast_joined:  # type: ignore[union-attr]
            pytest.skip("cannot join 224.0.23.0 on loopback here")
        code, out, err = run(
            "discover", "--interface", GATEWAY, "--bind", GATEWAY, "--timeout", "0.5", "--json"
        )
    if code != 0 and "no ECHONET node answered" in err:
        pytest.skip("multicast is not delivered on loopback here")
    assert sim.address in [n["address"] for n in json.loads(out)["nodes"]]


def test_errors_are_one_line() -> None:
    dead = next_address()
    cases = [
        (["get", dead, "027D01", "E4", "--timeout", "0.1", "--bind", GATEWAY], 1,
         f"error: {dead} 027D01: no answer after 3 attempts (0.1 s each)"),
        (["get", dead, "27D01", "E4"], 2, "error: EOJ must be 6 hex digits like 027D01"),
        (["get", dead, "027D01", "E"], 2, "error: EPC must be two hex digits like E4, got 'E'"),
        (["set", dead, "027D01", "DA"], 2, "error: expected EPC=HEX like DA=42, got 'DA'"),
        (["set", dead, "027D01", "DA=4"], 2, "error: value of DA must be hex bytes"),
        (["set", dead, "027D01", "DA="], 2, "error: value of DA must be 1 to 255 bytes"),
        (["discover", "--host", dead, "--timeout", "0.1", "--bind", GATEWAY], 1,
         f"error: no ECHONET node answered ({dead}, 0.1 s)"),
    ]  # fmt: skip
    for args, want_code, want in cases:
        code, _, err = run(*args)
        assert code == want_code, (args, err)
        assert err.splitlines()[-1].startswith(want), (args, err)
        assert "Traceback" not in err
        if args[0] != "discover":
            assert len(err.splitlines()) == 1, err


def test_errors_about_the_device() -> None:
    with SimThread(devices=("pv",)) as sim:
        code, _, err = run(
            "get", sim.address, "0A0101", "80", "--timeout", "0.1", "--bind", GATEWAY
        )
        assert (code, err) == (
            1,
            f"error: {sim.address} has no object 0A0101 (its objects: 027901)\n",
        )
        code, _, err = run("get", sim.address, "027901", "70", "71", "--bind", GATEWAY)
        assert (code, err) == (
            1,
            f"error: {sim.address} 027901: the device refused every property asked (70 71)\n",
        )
        with SimThread(address=GATEWAY, devices=("pv",)):
            code, _, err = run("get", sim.address, "027901", "80", "--bind", GATEWAY)
    assert code == 1
    assert err.startswith("error: echonet: cannot bind UDP 127.0.0.1:3610")
    assert "is the chisan daemon running?" in err


def test_sim_command_runs_until_sigterm() -> None:
    address = next_address()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sim", "echonet", "--bind", address,
         "--devices", "battery,aircon", "--soc", "33", "--speed", "10", "--sna", "D3",
         "--no-reverse-flow", "--no-multicast"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "ECHONET simulator on" in line or not line:
                break
        assert "ECHONET simulator on" in lines[-1], "".join(lines)
        code, out, err = run(
            "get", address, "027D01", "E4", "DB", "D3", "--json", "--bind", GATEWAY
        )
        assert code == 0, err
        props = json.loads(out)["properties"]
        assert props["E4"]["value"] == 33
        assert props["DB"]["value"] == "reverse_flow_not_ok"
        assert props["D3"]["value"] is None
        assert run("set", address, "013001", "8F=41", "--bind", GATEWAY)[0] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "set accepted" in rest and "epc=8F" in rest


def test_sim_command_rejects_bad_options() -> None:
    result = CliRunner().invoke(
        main, ["sim", "echonet", "--bind", "127.0.0.250", "--devices", "fridge"]
    )
    assert result.exit_code == 2
    assert "--devices takes pv, battery, water_heater, aircon, ev" in result.stderr
