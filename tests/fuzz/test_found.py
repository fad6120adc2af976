"""What the fuzzer found, pinned, and property tests on the inputs it cannot reach by bytes.

Found: a slot ack of deeply nested JSON made the json module raise RecursionError out of the
uplink's receive loop (one hostile or broken backend message dropped the MQTT session, again on
every redelivery); a config path holding a NUL character or an over-long name raised ValueError /
OSError out of the loader instead of a ConfigError naming the key.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import config as config_module
from gateway.config_errors import ConfigError
from gateway.uplink import MAX_ACK_BYTES, AckError, parse_slot_ack
from tests.fuzz.targets import _BASE_CONFIG, _KEYS, config_dir

SLOW = os.environ.get("CHISAN_SLOW") == "1"
PROPS = settings(
    max_examples=20_000 if SLOW else 150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------- ack


@pytest.mark.parametrize("depth", [200, 1000, 5000])
def test_deeply_nested_ack_is_a_bad_ack(depth: int) -> None:
    data = (b"[" * depth + b"]" * depth)[:MAX_ACK_BYTES]
    with pytest.raises(AckError):
        parse_slot_ack(data)
    with pytest.raises(AckError):
        parse_slot_ack(b'{"seq": 1, "x": ' + b"[" * 900 + b"]" * 900 + b"}")


def test_long_ack_is_refused_unread() -> None:
    with pytest.raises(AckError, match="longer than"):
        parse_slot_ack(b'{"seq": 1, "pad": "' + b"x" * MAX_ACK_BYTES + b'"}')


@pytest.mark.parametrize(
    ("data", "seq"),
    [(b'{"seq": 0}', 0), (b'{"seq": 1440, "stored": true}', 1440), (b' {"seq":7}\n', 7)],
)
def test_good_acks(data: bytes, seq: int) -> None:
    assert parse_slot_ack(data) == seq


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@PROPS
@given(st.dictionaries(st.sampled_from(["seq", "Seq", "s"]), json_values, max_size=3) | json_values)
def test_any_json_is_an_ack_only_with_a_non_negative_integer_seq(doc: Any) -> None:
    data = json.dumps(doc).encode()
    expected = doc.get("seq") if isinstance(doc, dict) else None
    good = isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0
    if good and len(data) <= MAX_ACK_BYTES:
        assert parse_slot_ack(data) == expected
    else:
        with pytest.raises(AckError):
            parse_slot_ack(data)


# ------------------------------------------------------------------------------------- config


def _load(text: bytes) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        config_module.loads(text, config_dir() / "chisan.toml")
    return err.value


@pytest.mark.parametrize(
    ("section_key", "value"),
    [
        ("store.path", "chisan\\u0000.db"),
        ("broute.password_file", "broute\\u0000password"),
        ("commands.public_key_file", "k\\u0000"),
        ("commands.public_key_file", "a" * 300),
        ("store.key_file", "site\\u0000key.pem"),
        ("store.key_file", "a" * 300),
        ("store.key_file", "~no-such-user-here/key.pem"),
        ("broute.password_file", "~no-such-user-here/pw"),
    ],
)
def test_unusable_paths_are_config_errors_naming_the_key(section_key: str, value: str) -> None:
    section, key = section_key.split(".")
    text = _BASE_CONFIG.decode()
    text = text.replace(f"[{section}]\n", f'[{section}]\n{key} = "{value}"\n', 1)
    text = "\n".join(
        ln for ln in text.splitlines() if not (ln.startswith(f"{key} =") and value not in ln)
    )
    error = _load(text.encode())
    assert any(i.path == section_key for i in error.issues), error


toml_scalars = (
    st.text(max_size=12)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.dates()
    | st.times()
    | st.datetimes()
    | st.datetimes(timezones=st.just(timezone(timedelta(hours=9))))
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
sections = st.dictionaries(st.sampled_from(_KEYS), toml_values, max_size=6)
trees = st.dictionaries(
    st.sampled_from([*config_module.SECTIONS, "device", "extra"]),
    sections | st.lists(sections, max_size=3) | toml_values,
    max_size=8,
)


@PROPS
@given(trees)
def test_arbitrary_toml_trees_only_ever_raise_config_error(tree: dict[str, Any]) -> None:
    try:
        config_module.parse(tree, config_dir() / "chisan.toml", "")
    except ConfigError as exc:
        assert exc.issues
        assert all(isinstance(i.message, str) and i.message for i in exc.issues)


@PROPS
@given(
    st.sampled_from(_KEYS),
    toml_values,
    st.sampled_from(["site", "mqtt", "broute", "limits", "store", "commands"]),
)
def test_one_bad_value_in_a_valid_config_is_one_clear_error(
    key: str, value: Any, section: str
) -> None:
    import tomllib

    tree = tomllib.loads(_BASE_CONFIG.decode())
    tree.setdefault(section, {})[key] = value
    try:
        config_module.parse(tree, config_dir() / "chisan.toml", "")
    except ConfigError as exc:
        assert exc.issues and all(i.path for i in exc.issues), exc


def test_the_base_config_is_valid() -> None:
    cfg = config_module.loads(_BASE_CONFIG, config_dir() / "chisan.toml")
    assert [d.name for d in cfg.devices] == ["battery", "pv"]


def test_toml_value_types_cover_what_tomllib_returns() -> None:
    import tomllib

    raw = tomllib.loads("a = 1979-05-27\nb = 07:32:00\nc = 1979-05-27T07:32:00\nd = nan\ne = inf\n")
    assert [type(v) for v in raw.values()] == [date, time, datetime, float, float]
