"""Two PV inverters in one home, end to end: the rooftop array on a simulated ECHONET node and a
second array on a SunSpec inverter (a real pymodbus server). Neither overwrites the other's
power; the gateway's PV power is their sum, dated by the older reading; a DR ``pv_limit`` in W is
shared between them by rating, one in % reaches both, and the backend hears one outcome."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from drivers.modbus.sim import ModbusSim
from drivers.modbus.simdevices import SimPvInverter
from drivers.readings import PV_POWER_W
from gateway import status
from gateway.clock import JST, AcceleratedClock
from tests.support.backend import Signer, acks
from tests.support.home import SITE, simulated_home, until
from tests.support.mosquitto import Mosquitto

NODE = "127.0.10.2"


def modbus_pv(port: int) -> str:
    return (
        '\n[[device]]\nname = "pv_flex"\nkind = "pv"\nprotocol = "modbus"\n'
        f'host = "127.0.0.1"\nport = {port}\nunit_id = 1\nsunspec = true\npoll_s = 5\n'
        "\n[limits]\nmin_dwell_s = 0\nfailsafe_hysteresis_s = 20\n"
    )


async def test_two_pv_inverters_sum_and_share_a_dr_limit(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = AcceleratedClock(10, datetime(2026, 11, 27, 11, 1, 0, tzinfo=JST))
    signer = Signer(tmp_path)
    flex = SimPvInverter(clock, rated_w=2000, serial="FLEX-1")
    async with (
        ModbusSim(clock, [flex]) as sim,
        simulated_home(
            tmp_path,
            mosquitto.port,
            clock,
            NODE,
            ("battery", "pv"),
            edit_config=lambda text: text + modbus_pv(sim.port),
        ) as home,
    ):
        app, node, backend = home.app, home.node, home.backend
        await until(lambda: len(app.hub.by_device(PV_POWER_W)) == 2, 30)
        await until(lambda: app.uplink.connected and not app.control.failsafe, 60)

        # The sum, and each inverter's own value beside it.
        parts = app.hub.by_device(PV_POWER_W)
        total = app.hub.latest(PV_POWER_W)
        assert total is not None and set(parts) == {"pv", "pv_flex"}
        assert total.value == sum(r.value for r in parts.values())
        assert total.at == min(r.at for r in parts.values())
        assert parts["pv"].value > 0 and parts["pv_flex"].value > 0
        flows = status.flows(app.hub, has_pv=True, has_battery=True)
        assert set(flows["pv_devices"]) == {"pv", "pv_flex"}
        assert flows["pv_w"]["value"] == total.value

        # 3250 W over 4500 W + 2000 W of ratings: 2250 W and 1000 W (50 % of the SunSpec one).
        await backend.send(
            SITE,
            "cmd",
            signer.command(clock, kind="pv_limit", power_w=None, allow_export=None, limit_w=3250),
        )
        first = f"dr-{signer.n}"
        await until(lambda: "started" in acks(backend, first), 20)
        await until(lambda: node.pv.limit_w == 2250 and flex.limit_pct == 50.0, 20)
        assert acks(backend, first)[:3] == ["received", "scheduled", "started"]

        # A percentage reaches both inverters as it is.
        await backend.send(
            SITE,
            "cmd",
            signer.command(
                clock, kind="pv_limit", power_w=None, allow_export=None, limit_pct=40, priority=20
            ),
        )
        second = f"dr-{signer.n}"
        await until(lambda: "started" in acks(backend, second), 20)
        await until(lambda: node.pv.limit_pct == 40 and flex.limit_pct == 40.0, 20)
        assert acks(backend, second).count("started") == 1
    assert backend.invalid == [], backend.invalid
