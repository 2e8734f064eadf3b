"""The REALTIME settings: defaults, overrides, environment, validation."""

import re

import pytest
from django.core.exceptions import ImproperlyConfigured

from realtime.support.conf import DEFAULT_NAMESPACES, NAMESPACE_DEFAULTS, OPTIONS, load, realtime_settings
from tests.conftest import override_realtime

pytestmark = pytest.mark.unit


def test_defaults_match_the_protocol():
    values = load({}, {})
    assert values["AUTH_TIMEOUT"] == 10
    assert values["REFRESH_LEAD"] == 30
    assert values["HEARTBEAT"] == 25
    assert values["HEARTBEAT_TIMEOUT"] == 10
    assert values["RESUME_WINDOW"] == 120
    assert values["PRESENCE_GRACE"] == 10
    assert values["MAX_FRAME_BYTES"] == 65536
    assert values["MAX_ERRORS"] == 10
    assert values["RATE"] == 50 and values["RATE_BURST"] == 100
    assert values["MAX_SUBSCRIPTIONS"] == 100
    assert values["MAX_CONNECTIONS_PER_USER"] == 20
    assert values["CONNECT_RATE"] == 1 and values["CONNECT_BURST"] == 30  # every tab of a user at once, then 1/s
    assert values["SEND_QUEUE_BYTES"] == 1024 * 1024
    assert set(values) == set(OPTIONS)


def test_default_namespaces_match_the_protocol_table():
    namespaces = load({}, {})["NAMESPACES"]
    assert set(namespaces) == {"public", "room", "user"}
    assert namespaces["public"] == NAMESPACE_DEFAULTS
    assert namespaces["public"]["history_size"] == 100 and namespaces["public"]["history_ttl"] == 3600
    assert namespaces["room"]["subscribe"] == "realtime.namespaces.room_member"
    assert namespaces["user"]["publish"] == "realtime.namespaces.nobody"
    assert namespaces["user"]["history_ttl"] == 86400
    assert namespaces["user"]["presence"] is False and namespaces["user"]["join_leave"] is False


def test_settings_dict_overrides_defaults():
    values = load({"HEARTBEAT": 2, "MAX_ERRORS": 3}, {})
    assert values["HEARTBEAT"] == 2.0 and isinstance(values["HEARTBEAT"], float)
    assert values["MAX_ERRORS"] == 3 and isinstance(values["MAX_ERRORS"], int)


def test_environment_overrides_settings_dict():
    values = load({"HEARTBEAT": 2}, {"REALTIME_HEARTBEAT": "0.5", "REALTIME_MAX_ERRORS": " 4 "})
    assert values["HEARTBEAT"] == 0.5
    assert values["MAX_ERRORS"] == 4


def test_environment_namespaces_are_json():
    values = load({}, {"REALTIME_NAMESPACES": '{"chat": {"history_size": 5}}'})
    assert values["NAMESPACES"] == {"chat": {**NAMESPACE_DEFAULTS, "history_size": 5}}


@pytest.mark.parametrize(
    ("user", "environ", "named"),
    [
        ({"HEARTBEET": 2}, {}, "'HEARTBEET'"),
        ({}, {"REALTIME_HEARTBEET": "2"}, "REALTIME_HEARTBEET"),
        ({}, {"REALTIME_HEARTBEAT": "soon"}, "'HEARTBEAT'"),
        ({}, {"REALTIME_MAX_ERRORS": "2.5"}, "'MAX_ERRORS'"),
        ({"MAX_ERRORS": 2.5}, {}, "'MAX_ERRORS'"),
        ({"RATE": True}, {}, "'RATE'"),
        ({"RATE": "fast"}, {}, "'RATE'"),
        ({"HEARTBEAT": 0}, {}, "'HEARTBEAT'"),
        ({"AUTH_TIMEOUT": -1}, {}, "'AUTH_TIMEOUT'"),
        ({"NAMESPACES": {}}, {}, "'NAMESPACES'"),
        ({}, {"REALTIME_NAMESPACES": "{not json"}, "'NAMESPACES'"),
        ({"NAMESPACES": {"Bad Name": {}}}, {}, "NAMESPACES.Bad Name"),
        ({"NAMESPACES": {"chat": []}}, {}, "NAMESPACES.chat"),
        ({"NAMESPACES": {"chat": {"colour": "red"}}}, {}, "NAMESPACES.chat"),
        ({"NAMESPACES": {"chat": {"subscribe": "nodots"}}}, {}, "NAMESPACES.chat.subscribe"),
        ({"NAMESPACES": {"chat": {"history_size": -1}}}, {}, "NAMESPACES.chat.history_size"),
        ({"NAMESPACES": {"chat": {"presence": "yes"}}}, {}, "NAMESPACES.chat.presence"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(user, environ, named):
    with pytest.raises(ImproperlyConfigured) as info:
        load(user, environ)
    assert named in str(info.value)


def test_settings_must_be_a_dict():
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        load(["HEARTBEAT"], {})


def test_default_namespaces_are_not_mutated_by_loading():
    before = {name: dict(rules) for name, rules in DEFAULT_NAMESPACES.items()}
    load({}, {})["NAMESPACES"]["public"]["history_size"] = 1
    assert DEFAULT_NAMESPACES == before


def test_lazy_settings_follow_override_settings():
    assert realtime_settings.HEARTBEAT == 25
    with override_realtime({"HEARTBEAT": 3}):
        assert realtime_settings.HEARTBEAT == 3
    assert realtime_settings.HEARTBEAT == 25


def test_lazy_settings_reject_unknown_attributes():
    with pytest.raises(AttributeError):
        realtime_settings.NOT_A_SETTING  # noqa: B018


def test_every_setting_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for key, option in OPTIONS.items():
        default = option.default if option.kind is not dict else "see below"
        shown = f"{default:g}" if isinstance(default, float) else '""' if default == "" else default
        row = f"| `{key}` | {shown} |"
        assert row in doc, f"docs/configuration.md lacks the row for {key}: {row}"
    for rule in NAMESPACE_DEFAULTS:
        assert f"| `{rule}` |" in doc


@pytest.mark.parametrize(
    ("path", "says"),
    [("realtime.namespaces.no_such_rule", "cannot import"), ("realtime.namespaces.CHANNEL_RE", "not callable")],
)
def test_a_namespace_rule_that_does_not_import_fails_where_it_is_read_naming_it(path, says):
    """(Start-up does not raise: the system check realtime.E003 reports it, tests/unit/test_checks.py.)"""
    from realtime.namespaces import namespaces

    with override_realtime({"NAMESPACES": {"public": {"publish": path}}}):
        with pytest.raises(ImproperlyConfigured, match=rf"NAMESPACES\['public'\]\['publish'\].*{says}"):
            namespaces()
    assert namespaces()["public"].publish.__name__ == "authenticated"


def test_a_namespace_name_with_a_trailing_newline_is_refused():
    with pytest.raises(ImproperlyConfigured, match="not a valid namespace name"):
        load({"NAMESPACES": {"chat\n": {}}}, {})


@pytest.mark.parametrize(("key", "value"), [("CONNECT_RATE", "0"), ("CONNECT_BURST", "0"), ("CONNECT_BURST", "1.5")])
def test_the_connect_rate_settings_are_checked(key, value):
    with pytest.raises(ImproperlyConfigured, match=key):
        load({}, {f"REALTIME_{key}": value})


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("REDIS_URL", "http://cache:6379", "must start with redis://, rediss://, unix://"),
        ("REDIS_URL", 6379, "must be a string"),
        ("REDIS_PREFIX", "", "must be a non-empty word"),
        ("REDIS_PREFIX", "my app", "must be a non-empty word"),
        ("REDIS_PREFIX", "{rt}", "must be a non-empty word without spaces or braces"),
    ],
)
def test_a_bad_redis_setting_is_refused_naming_it(key, value, problem):
    with pytest.raises(ImproperlyConfigured, match=re.escape(f"REALTIME['{key}'] {problem}")):
        load({key: value}, {})


def test_redis_settings_from_the_environment_are_trimmed():
    values = load({}, {"REALTIME_REDIS_URL": " redis://cache:6379/1 ", "REALTIME_REDIS_PREFIX": "site2"})
    assert (values["REDIS_URL"], values["REDIS_PREFIX"]) == ("redis://cache:6379/1", "site2")
