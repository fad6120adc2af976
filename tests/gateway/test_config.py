"""The installer's contract: every broken config is reported with file, line, key path, reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import load
from gateway.config_errors import ConfigError, ConfigIssue, locate_keys
from tests.conftest import BASE_CONFIG, REPO

WriteConfig = Callable[..., Path]


def issues_of(path: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.issues


def only(path: Path) -> ConfigIssue:
    found = issues_of(path)
    assert len(found) == 1, [str(i) for i in found]
    return found[0]


def test_base_config_is_valid(write_config: WriteConfig) -> None:
    cfg = load(write_config())
    assert cfg.site.id == "sg-0001"
    assert cfg.mqtt.client_id == "sg-0001"  # defaults to site.id
    assert cfg.mqtt.topic_prefix == "chisan/v1"
    assert cfg.broute is not None and cfg.broute.dialect == "bp35a1"
    assert cfg.devices[0].eoj == "027D01"
    assert cfg.store.path == write_config().parent / "chisan.db"


def test_example_config_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config/example.toml validates on a gateway whose secrets systemd hands over."""
    (tmp_path / "broute-password").write_text("ABCDEFGH1234\n")
    (tmp_path / "backend-ed25519.pub.pem").write_text("-----BEGIN PUBLIC KEY-----\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = load(REPO / "config" / "example.toml")
    assert [d.name for d in cfg.devices] == ["battery", "pv", "ecocute", "hybrid-inverter"]


# (edit to the base config, expected key path, expected words in the message, expected line or None)
CASES: list[tuple[str, tuple[str, str], str, str]] = [
    ("unknown key", ("fit = false", 'fit = false\ncolour = "red"'), "site.colour", "unknown key"),
    (
        "did you mean",
        ("fit = false", 'fit = false\ntimezon = "Asia/Tokyo"'),
        "site.timezon",
        'did you mean "timezone"',
    ),
    ("unknown section", ("[limits]", "[limts]\nx = 1\n[limits]"), "limts", 'did you mean "limits"'),
    (
        "wrong type bool",
        ("fit = false", 'fit = "no"'),
        "site.fit",
        "expected true or false, found string 'no'",
    ),
    (
        "wrong type int",
        ("soc_reserve_pct = 30", 'soc_reserve_pct = "thirty"'),
        "limits.soc_reserve_pct",
        "expected a number 0-100, found string 'thirty'",
    ),
    (
        "out of range",
        ("soc_reserve_pct = 30", "soc_reserve_pct = 150"),
        "limits.soc_reserve_pct",
        "expected a number 0-100, found integer 150",
    ),
    (
        "negative export",
        ("[limits]", "[limits]\nexport_limit_w = -1"),
        "limits.export_limit_w",
        "expected an integer >= 0, found integer -1",
    ),
    (
        "breaker range",
        ("[limits]", "[limits]\nbreaker_a = 5"),
        "limits.breaker_a",
        "expected an integer 10-120, found integer 5",
    ),
    ("missing site id", ('id = "sg-0001"\n', ""), "site.id", "missing required key"),
    ("missing fit", ("fit = false\n", ""), "site.fit", "missing required key"),
    (
        "bad site id",
        ('id = "sg-0001"', 'id = "SG_0001"'),
        "site.id",
        "expected 3-64 of a-z 0-9 -, found string 'SG_0001'",
    ),
    (
        "bad dialect",
        ('dialect = "bp35a1"', 'dialect = "bp35x9"'),
        "broute.dialect",
        "expected one of bp35a1 | bp35c0 | rl7023 | auto, found string 'bp35x9'",
    ),
    (
        "bad broute id",
        ('id = "0123456789ABCDEF0123456789ABCDEF"', 'id = "0123"'),
        "broute.id",
        "expected 32 hexadecimal characters, found string '0123'",
    ),
    (
        "bad eoj",
        ('eoj = "027D01"', 'eoj = "27D1"'),
        "device[0].eoj",
        "expected 6 hexadecimal digits",
    ),
    (
        "eoj of wrong class",
        ('eoj = "027D01"', 'eoj = "027901"'),
        "device[0].eoj",
        'a battery has class 027Dxx, found "027901"',
    ),
    (
        "eoj on modbus",
        ('protocol = "echonet"', 'protocol = "modbus"\nsunspec = true'),
        "device[0].eoj",
        'only valid for protocol = "echonet"',
    ),
    (
        "missing eoj",
        ('eoj = "027D01"\n', ""),
        "device[0].eoj",
        "missing required key (echonet devices need eoj)",
    ),
    (
        "bad kind",
        ('kind = "battery"', 'kind = "fridge"'),
        "device[0].kind",
        "expected one of battery | pv | ev | water_heater | aircon, found string 'fridge'",
    ),
    (
        "bad protocol",
        ('protocol = "echonet"', 'protocol = "zigbee"'),
        "device[0].protocol",
        "expected one of echonet | modbus",
    ),
    (
        "soc_max <= reserve",
        ("soc_max_pct = 95", "soc_max_pct = 30"),
        "limits.soc_max_pct",
        "must be greater than limits.soc_reserve_pct (30), found 30",
    ),
    (
        "missing password file",
        ('password_file = "broute-password"', 'password_file = "nope/broute-password"'),
        "broute.password_file",
        "file not found",
    ),
    (
        "password in main file",
        ('password_file = "broute-password"', 'password_file = "broute-password"\npassword = "x"'),
        "broute.password",
        "secrets are not allowed in the config file",
    ),
    (
        "bad mqtt url",
        ('url = "mqtt://127.0.0.1:1883"', 'url = "http://broker"'),
        "mqtt.url",
        "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], found string 'http://broker'",
    ),
    (
        "mqtts needs ca",
        ('url = "mqtt://127.0.0.1:1883"', 'url = "mqtts://broker.example:8883"'),
        "mqtt.ca_file",
        "mqtts:// requires ca_file",
    ),
    ("missing ca file", ("[mqtt]", '[mqtt]\nca_file = "ca.pem"'), "mqtt.ca_file", "file not found"),
    (
        "bad keepalive",
        ("[mqtt]", "[mqtt]\nkeepalive_s = 1"),
        "mqtt.keepalive_s",
        "expected an integer 5-3600, found integer 1",
    ),
    (
        "bad log level",
        ("[store]", '[log]\nlevel = "verbose"\n[store]'),
        "log.level",
        "expected one of debug | info | warning | error, found string 'verbose'",
    ),
    (
        "bad timezone",
        ("fit = false", 'fit = false\ntimezone = "Mars/Olympus"'),
        "site.timezone",
        "an IANA time zone",
    ),
    (
        "device not a table list",
        ("[[device]]", "[device.x]\n[[devicez]]"),
        "device",
        "expected an array of tables [[device]], found table",
    ),
    (
        "bad echonet bind",
        ("[store]", '[echonet]\nbind = "localhost"\n[store]'),
        "echonet.bind",
        "expected an IPv4 address, found string 'localhost'",
    ),
    ("bad scan durations", ("poll_s = 10", ""), "", ""),  # placeholder replaced below
]
CASES[-1] = (
    "bad scan durations",
    ('dialect = "bp35a1"', 'dialect = "bp35a1"\nscan_durations = [6, 99]'),
    "broute.scan_durations",
    "expected a non-empty array of integers 1-14, found array",
)


@pytest.mark.parametrize(
    ("edit", "key", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_config(
    write_config: WriteConfig, edit: tuple[str, str], key: str, message: str
) -> None:
    old, new = edit
    assert old in BASE_CONFIG, old
    path = write_config(BASE_CONFIG.replace(old, new, 1))
    found = issues_of(path)
    matching = [i for i in found if i.path == key]
    assert matching, f"no issue for {key}: {[str(i) for i in found]}"
    assert message in matching[0].message, str(matching[0])
    assert matching[0].file == str(path)
    text = str(matching[0])
    assert text.startswith(str(path))
    assert key in text


def test_line_numbers_point_at_the_key(write_config: WriteConfig) -> None:
    path = write_config(BASE_CONFIG.replace("soc_reserve_pct = 30", "soc_reserve_pct = 150"))
    issue = only(path)
    lines = path.read_text().splitlines()
    assert issue.line is not None
    assert lines[issue.line - 1].strip() == "soc_reserve_pct = 150"


def test_line_of_second_device(write_config: WriteConfig) -> None:
    text = BASE_CONFIG + '\n[[device]]\nname = "pv"\nkind = "pv"\nprotocol = "echonet"\n'
    text += 'host = "127.0.0.21"\neoj = "ZZZZZZ"\n'
    path = write_config(text)
    issue = only(path)
    assert issue.path == "device[1].eoj"
    assert path.read_text().splitlines()[issue.line - 1] == 'eoj = "ZZZZZZ"'  # type: ignore[operator]


def test_toml_syntax_error_has_line_number(write_config: WriteConfig) -> None:
    path = write_config(BASE_CONFIG.replace("soc_max_pct = 95", "soc_max_pct = = 95"))
    issue = only(path)
    assert "TOML syntax error" in issue.message
    lines = path.read_text().splitlines()
    assert issue.line is not None and "soc_max_pct = = 95" in lines[issue.line - 1]


def test_all_errors_are_listed_not_just_the_first(write_config: WriteConfig) -> None:
    text = (
        BASE_CONFIG.replace('dialect = "bp35a1"', 'dialect = "nope"')
        .replace("soc_reserve_pct = 30", "soc_reserve_pct = 101")
        .replace('eoj = "027D01"', 'eoj = "xyz"')
        .replace("fit = false", "fit = false\nbogus = 1")
    )
    keys = {i.path for i in issues_of(write_config(text))}
    assert {"broute.dialect", "limits.soc_reserve_pct", "device[0].eoj", "site.bogus"} <= keys


def test_duplicate_device_name(write_config: WriteConfig) -> None:
    text = BASE_CONFIG + '\n[[device]]\nname = "battery"\nkind = "pv"\nprotocol = "echonet"\n'
    text += 'host = "127.0.0.21"\neoj = "027901"\n'
    issue = only(write_config(text))
    assert issue.path == "device[1].name"
    assert issue.message == 'duplicate device name "battery" (also device[0])'


def test_open_permission_secret(write_config: WriteConfig, config_dir: Path) -> None:
    (config_dir / "broute-password").chmod(0o644)
    issue = only(write_config())
    assert issue.path == "broute.password_file"
    assert "readable by group or others (mode 0644)" in issue.message
    assert "chmod 600" in issue.message


def test_wrong_length_password_never_shows_it(write_config: WriteConfig, config_dir: Path) -> None:
    (config_dir / "broute-password").write_text("short-secret-value-x\n")
    issue = only(write_config())
    assert issue.path == "broute.password_file"
    assert "12-character" in issue.message and "found 20 characters" in issue.message
    assert "short-secret-value-x" not in str(issue)


def test_credentials_directory_wins(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "broute-password").write_text("ABCDEFGH1234")
    (creds / "broute-password").chmod(0o440)  # systemd manages these permissions
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    text = BASE_CONFIG.replace('"broute-password"', '"/etc/chisan/broute-password"')
    assert load(write_config(text)).broute is not None


def test_missing_config_file(tmp_path: Path) -> None:
    issue = only(tmp_path / "absent.toml")
    assert issue.message == "file not found"


def test_not_a_table(write_config: WriteConfig) -> None:
    text = "log = 3\n" + BASE_CONFIG
    issue = only(write_config(text))
    assert issue.path == "log"
    assert issue.message == "expected a table, found integer 3"
    assert issue.line == 1


def test_locate_keys_handles_arrays_and_subtables() -> None:
    text = "[a]\nx = 1\n[[d]]\nn = 1\n[[d]]\nn = 2\n[d.registers]\nsoc = 3\n"
    lines = locate_keys(text)
    assert lines["a.x"] == 2
    assert lines["d[0].n"] == 4
    assert lines["d[1].n"] == 6
    assert lines["d[1].registers.soc"] == 8


# ------------------------------------------------------------------ Modbus register maps, links

#: The base config without its ECHONET battery: a register-mapped hybrid is the battery here.
MAP_BASE = BASE_CONFIG.replace(
    'name = "battery"\nkind = "battery"', 'name = "battery"\nkind = "battery"\nenabled = false'
)
assert MAP_BASE != BASE_CONFIG

MAP_DEVICE = """
[[device]]
name = "hybrid"
kind = "battery"
protocol = "modbus"
host = "192.0.2.10"
unit_id = 1

[[device.registers]]
meaning = "power_w"
address = 30775
function = "input"
type = "s32"

[[device.registers]]
meaning = "soc_pct"
address = 30845
function = "input"
type = "u32"
word_order = "big"
scale = 1.0
unit = "%"

[[device.registers]]
meaning = "mode"
address = 40236
values = { auto = 0, charge = 1, discharge = 2, standby = 3 }

[[device.registers]]
meaning = "charge_setpoint_w"
address = 40149
type = "u32"

[[device.registers]]
meaning = "discharge_setpoint_w"
address = 40151
type = "u32"

[[device.registers]]
meaning = "capacity_kwh"
value = 9.8
"""


def test_register_map_is_parsed(write_config: WriteConfig) -> None:
    cfg = load(write_config(MAP_BASE + MAP_DEVICE))
    dev = cfg.devices[-1]
    assert [r.meaning for r in dev.registers] == [
        "power_w",
        "soc_pct",
        "mode",
        "charge_setpoint_w",
        "discharge_setpoint_w",
        "capacity_kwh",
    ]
    soc = dev.registers[1]
    assert (soc.address, soc.function, soc.type, soc.unit) == (30845, "input", "u32", "%")
    assert dev.registers[2].values == {"auto": 0, "charge": 1, "discharge": 2, "standby": 3}
    assert dev.registers[0].unit == "W" and dev.registers[5].value == 9.8
    assert dev.registers[5].address is None
    assert (dev.timeout_s, dev.retries, dev.parity) == (3.0, 1, "N")


# (edit to MAP_DEVICE, expected key path, expected words in the message)
MAP_CASES: list[tuple[str, tuple[str, str], str, str]] = [
    (
        "unknown meaning",
        ('meaning = "soc_pct"', 'meaning = "soc_pc"'),
        "device[1].registers[1].meaning",
        "found string 'soc_pc'; did you mean \"soc_pct\"?",
    ),
    (
        "meaning of another kind",
        ('meaning = "soc_pct"', 'meaning = "energy_kwh"'),
        "device[1].registers[1].meaning",
        '"energy_kwh" is not a battery reading; a battery has power_w, soc_pct',
    ),
    (
        "unknown type",
        ('type = "u32"\nword_order', 'type = "u64"\nword_order'),
        "device[1].registers[1].type",
        "expected one of u16 | s16 | u32 | s32 | f32, found string 'u64'",
    ),
    (
        "unknown function",
        ('function = "input"\ntype = "s32"', 'function = "coil"\ntype = "s32"'),
        "device[1].registers[0].function",
        "expected one of holding | input, found string 'coil'",
    ),
    (
        "write to an input register",
        ("address = 40149", 'address = 40149\nfunction = "input"'),
        "device[1].registers[3].function",
        'charge_setpoint_w is written by the gateway: expected "holding", found "input"',
    ),
    (
        "overlapping registers",
        ("address = 40151", "address = 40150"),
        "device[1].registers[4].address",
        "holding registers 40150-40151 (discharge_setpoint_w) overlap device[1].registers[3] "
        "at 40149-40150 (charge_setpoint_w)",
    ),
    (
        "missing meaning for the kind",
        ('meaning = "mode"\naddress = 40236', 'meaning = "max_charge_w"\naddress = 40236'),
        "device[1].registers",
        "a battery register map needs meaning mode",
    ),
    (
        "unit of the wrong dimension",
        ('unit = "%"', 'unit = "kWh"'),
        "device[1].registers[1].unit",
        "expected % for soc_pct, found string 'kWh'",
    ),
    (
        "unknown register key",
        ("scale = 1.0", "scael = 1.0"),
        "device[1].registers[1].scael",
        'unknown key; did you mean "scale"?',
    ),
    (
        "mode without a code",
        ("charge = 1, discharge", "charge = 1, dischrge"),
        "device[1].registers[2].values.discharge",
        "missing required key",
    ),
    (
        "constant for a measurement",
        ("address = 30845", "value = 50"),
        "device[1].registers[1].value",
        "a constant value is only allowed for capacity and rates, not soc_pct",
    ),
    (
        "address out of range",
        ("address = 30845", "address = 70000"),
        "device[1].registers[1].address",
        "expected an integer 0-65535, found integer 70000",
    ),
    (
        "zero scale",
        ("scale = 1.0", "scale = 0"),
        "device[1].registers[1].scale",
        "expected a non-zero number",
    ),
    (
        "duplicate meaning",
        ('meaning = "discharge_setpoint_w"', 'meaning = "charge_setpoint_w"'),
        "device[1].registers[4].meaning",
        'duplicate meaning "charge_setpoint_w" (also device[1].registers[3])',
    ),
    (
        "sunspec and registers",
        ("unit_id = 1\n", "unit_id = 1\nsunspec = true\n"),
        "device[1].registers",
        "give sunspec = true or registers, not both",
    ),
    (
        "serial settings on TCP",
        ("unit_id = 1\n", 'unit_id = 1\nparity = "E"\n'),
        "device[1].parity",
        "only valid for serial (RTU) devices",
    ),
    (
        "bad parity",
        ('host = "192.0.2.10"', 'serial = "/dev/ttyUSB1"\nparity = "X"'),
        "device[1].parity",
        "expected one of N | E | O, found string 'X'",
    ),
]


@pytest.mark.parametrize(
    ("edit", "key", "message"), [c[1:] for c in MAP_CASES], ids=[c[0] for c in MAP_CASES]
)
def test_broken_register_map(
    write_config: WriteConfig, edit: tuple[str, str], key: str, message: str
) -> None:
    old, new = edit
    assert old in MAP_DEVICE, old
    path = write_config(MAP_BASE + MAP_DEVICE.replace(old, new, 1))
    found = issues_of(path)
    matching = [i for i in found if i.path == key]
    assert matching, f"no issue for {key}: {[str(i) for i in found]}"
    assert message in matching[0].message, str(matching[0])
    assert matching[0].line is not None
    line = path.read_text().splitlines()[matching[0].line - 1]
    parts = [p.partition("[")[0] for p in key.split(".")[1:]]
    assert any(p in line for p in parts) or "[[device" in line, (line, str(matching[0]))


def test_example_register_map_validates(write_config: WriteConfig) -> None:
    """The commented register-map device in config/example.toml is a working map."""
    example = (REPO / "config" / "example.toml").read_text()
    block = example.split('# [[device]]\n# name = "hybrid"')[1].split("\n\n[")[0]
    lines = ['[[device]]\nname = "hybrid"'] + [
        line[2:] if line.startswith("# ") else "" for line in block.splitlines()
    ]
    dev = load(write_config(MAP_BASE + "\n".join(lines) + "\n")).devices[-1]
    assert dev.serial == "/dev/ttyUSB1" and dev.unit_id == 3 and len(dev.registers) == 7


def test_register_map_as_a_plain_table_is_refused(write_config: WriteConfig) -> None:
    text = MAP_BASE + MAP_DEVICE.split("[[device.registers]]")[0]
    issue = only(write_config(text + "[device.registers]\nsoc = 30845\n"))
    assert issue.path == "device[1].registers"
    assert issue.message == "expected an array of tables [[device.registers]], found table"


def test_register_map_issue_points_at_its_own_line(write_config: WriteConfig) -> None:
    path = write_config(MAP_BASE + MAP_DEVICE.replace('type = "s32"', 'type = "i32"'))
    issue = only(path)
    assert issue.path == "device[1].registers[0].type"
    assert path.read_text().splitlines()[issue.line - 1] == 'type = "i32"'  # type: ignore[operator]


def test_devices_sharing_a_line_share_its_settings(write_config: WriteConfig) -> None:
    rtu = (
        '\n[[device]]\nname = "{name}"\nkind = "pv"\nprotocol = "modbus"\nsunspec = true\n'
        'serial = "/dev/ttyUSB1"\nunit_id = {unit}\nbaudrate = {baud}\n'
    )
    text = MAP_BASE + rtu.format(name="a", unit=1, baud=9600)
    text += rtu.format(name="b", unit=2, baud=19200) + rtu.format(name="c", unit=1, baud=9600)
    found = {i.path: i.message for i in issues_of(write_config(text))}
    assert found == {
        "device[2].baudrate": "/dev/ttyUSB1 is shared with device[1] (a), which has "
        "baudrate = 9600; found 19200",
        "device[3].unit_id": "unit 1 on /dev/ttyUSB1 is already the pv device[1] (a)",
    }
    # A hybrid inverter: its PV and its battery answer at the same unit id.
    hybrid = rtu.format(name="b", unit=1, baud=9600).replace('kind = "pv"', 'kind = "battery"')
    load(write_config(MAP_BASE + rtu.format(name="a", unit=1, baud=9600) + hybrid))


def test_locate_keys_handles_nested_arrays_of_tables() -> None:
    text = "[[d]]\nn = 1\n[[d.r]]\nm = 1\n[[d.r]]\nm = 2\n[[d]]\nn = 2\n[[d.r]]\nm = 3\n"
    lines = locate_keys(text)
    assert lines["d[0].r[1].m"] == 6
    assert lines["d[1].r[0]"] == 9
    assert lines["d[1].r[0].m"] == 10


def test_check_config_reports_register_map_mistakes(write_config: WriteConfig) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    text = MAP_DEVICE.replace('meaning = "soc_pct"', 'meaning = "soc"').replace(
        "address = 40149", 'address = 40149\nfunction = "input"'
    )
    path = write_config(MAP_BASE + text)
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"2 errors in {path}"
    source = path.read_text().splitlines()
    for key, words in (
        ("device[1].registers[1].meaning", 'did you mean "soc_pct"?'),
        ("device[1].registers[3].function", "input registers are read-only"),
    ):
        (line,) = [x for x in lines if f": {key}: " in x]
        where = int(line.split(":")[1])
        assert line.startswith(f"{path}:") and words in line
        assert key.rpartition(".")[2] in source[where - 1]


def test_battery_stale_s_reaches_the_interlock(write_config: WriteConfig) -> None:
    from gateway.interlock.model import Limits

    cfg = load(write_config(BASE_CONFIG.replace("[limits]", "[limits]\nbattery_stale_s = 900", 1)))
    assert cfg.limits.battery_stale_s == 900
    assert Limits.from_config(cfg.limits, fit=cfg.site.fit).battery_stale_s == 900
    default = load(write_config())
    assert Limits.from_config(default.limits, fit=False).battery_stale_s == 60


def test_battery_stale_s_out_of_range(write_config: WriteConfig) -> None:
    path = write_config(BASE_CONFIG.replace("[limits]", "[limits]\nbattery_stale_s = 2", 1))
    issue = only(path)
    assert issue.path == "limits.battery_stale_s"


SUNSPEC_BATTERY = (
    '\n[[device]]\nname = "{name}"\nkind = "battery"\nprotocol = "modbus"\n'
    'host = "192.0.2.20"\nsunspec = true\n{extra}'
)


def test_reverse_flow_is_declared_on_a_battery(write_config: WriteConfig) -> None:
    text = MAP_BASE + SUNSPEC_BATTERY.format(name="inverter", extra="reverse_flow = true\n")
    cfg = load(write_config(text))
    assert cfg.devices[-1].reverse_flow is True
    assert cfg.devices[0].reverse_flow is None  # not declared: unknown


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('reverse_flow = "yes"', "expected true or false, found string 'yes'"),
        ("reverse_flow = 1", "expected true or false, found integer 1"),
    ],
)
def test_reverse_flow_takes_a_boolean(write_config: WriteConfig, line: str, message: str) -> None:
    issue = only(write_config(MAP_BASE + SUNSPEC_BATTERY.format(name="inv", extra=line + "\n")))
    assert issue.path == "device[1].reverse_flow"
    assert issue.message == message


def test_reverse_flow_is_for_batteries_only(write_config: WriteConfig) -> None:
    text = BASE_CONFIG + (
        '\n[[device]]\nname = "pv"\nkind = "pv"\nprotocol = "echonet"\n'
        'host = "127.0.0.21"\neoj = "027901"\nreverse_flow = true\n'
    )
    issue = only(write_config(text))
    assert issue.path == "device[1].reverse_flow"
    assert issue.message == "only valid for batteries, not a pv"


def test_a_second_battery_is_refused(write_config: WriteConfig) -> None:
    path = write_config(BASE_CONFIG + SUNSPEC_BATTERY.format(name="inverter", extra=""))
    issue = only(path)
    assert issue.path == "device[1].kind"
    assert issue.message == (
        "only one battery can be controlled; device[0] (battery) is already the battery "
        "(set enabled = false on one of them)"
    )
    assert path.read_text().splitlines()[issue.line - 1] == 'kind = "battery"'  # type: ignore[operator]
    # Disabled, it may stay in the file (a spare, or the old one kept for reference).
    spare = SUNSPEC_BATTERY.format(name="inverter", extra="enabled = false\n")
    assert len(load(write_config(BASE_CONFIG + spare)).devices) == 2


def test_several_pv_inverters_are_accepted(write_config: WriteConfig) -> None:
    text = BASE_CONFIG
    for i, eoj in enumerate(("027901", "027902")):
        text += (
            f'\n[[device]]\nname = "pv{i}"\nkind = "pv"\nprotocol = "echonet"\n'
            f'host = "127.0.0.21"\neoj = "{eoj}"\n'
        )
    text += '\n[[device]]\nname = "flex"\nkind = "pv"\nprotocol = "modbus"\n'
    text += 'host = "192.0.2.30"\nsunspec = true\n'
    assert [d.kind for d in load(write_config(text)).devices].count("pv") == 3
