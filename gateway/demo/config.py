"""The demo's config files: the simulated home, as ``chisan run`` would read it.

``DEMO_CONFIG`` is the minimal home (meter, ECHONET PV + battery + water heater) the end-to-end
tests build on; ``DAY_CONFIG`` is the full demo's (a second PV inverter on SunSpec too), tuned
for an accelerated clock: every period and timeout that runs on the gateway's clock is long
enough in simulated seconds to survive real-time latencies multiplied by the speed-up.
"""

from __future__ import annotations

DEMO_CONFIG = """
[site]
id = "{site}"
fit = false

[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
telemetry_s = 10
ack_timeout_s = 30

[broute]
port = "{pty}"
dialect = "auto"
id = "{rbid}"
password_file = "broute-password"
poll_s = 10
timeout_s = 20

[echonet]
bind = "127.0.0.1"
multicast_interface = "127.0.0.1"
timeout_s = 2

[[device]]
name = "battery"
kind = "battery"
protocol = "echonet"
host = "{node}"
eoj = "027D01"
poll_s = 10

[[device]]
name = "pv"
kind = "pv"
protocol = "echonet"
host = "{node}"
eoj = "027901"
poll_s = 10

[[device]]
name = "ecocute"
kind = "water_heater"
protocol = "echonet"
host = "{node}"
eoj = "026B01"
poll_s = 30

[commands]
public_key_file = "backend.pub.pem"

[store]
path = "chisan.db"

[control]
socket = "control.sock"

[log]
level = "warning"
"""

DAY_CONFIG = """
[site]
id = "{site}"
fit = false

[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
protocol = "{protocol}"
telemetry_s = 60
ack_timeout_s = 1800

[broute]
port = "{pty}"
dialect = "auto"
id = "{rbid}"
password_file = "broute-password"
poll_s = 60
timeout_s = 120

[echonet]
bind = "{bind}"
multicast_interface = "127.0.0.1"
timeout_s = 2

[[device]]
name = "pv"
kind = "pv"
protocol = "echonet"
host = "{node}"
eoj = "027901"
poll_s = 60

[[device]]
name = "ecocute"
kind = "water_heater"
protocol = "echonet"
host = "{node}"
eoj = "026B01"
poll_s = 60
{sunspec_pv}{battery}
[limits]
# A small export limit, as a distribution grid with many PV homes would set: the evening
# discharge with export meets it, so the interlock's clamp shows in the demo.
export_limit_w = 1500
meter_stale_s = 900
battery_stale_s = 900

[commands]
public_key_file = "backend.pub.pem"

[store]
path = "chisan.db"
backfill_days = {backfill_days}

[control]
socket = "control.sock"

[log]
level = "warning"
"""

ECHONET_BATTERY = """
[[device]]
name = "battery"
kind = "battery"
protocol = "echonet"
host = "{node}"
eoj = "027D01"
poll_s = 60
"""

SUNSPEC_PV = """
[[device]]
name = "pv_flex"
kind = "pv"
protocol = "modbus"
host = "127.0.0.1"
port = {port}
unit_id = 1
sunspec = true
poll_s = 60
"""

SUNSPEC_BATTERY = """
[[device]]
name = "battery"
kind = "battery"
protocol = "modbus"
host = "127.0.0.1"
port = {port}
unit_id = 1
sunspec = true
poll_s = 60
"""


def day_config(
    *,
    site: str,
    mqtt_port: int,
    protocol: str,
    pty: str,
    rbid: str,
    bind: str,
    node: str,
    battery: str,
    backfill_days: int,
    sunspec_pv: str = "",
) -> str:
    return DAY_CONFIG.format(
        sunspec_pv=sunspec_pv,
        bind=bind,
        backfill_days=backfill_days,
        site=site,
        mqtt_port=mqtt_port,
        protocol=protocol,
        pty=pty,
        rbid=rbid,
        node=node,
        battery=battery,
    )
